/**
 * The no-gradient prefix in window-sized chunks (issue 13, case 4) computes the state one pass over the whole prefix
 * computes, bit for bit: rows whose prefix ends in an earlier chunk keep their state, the others carry theirs on.
 */
import { afterAll, expect, test } from "bun:test"
import * as tf from "@tensorflow/tfjs-core"
import fc from "fast-check"
import { loadBlas } from "../../src/engine/blas.ts"
import { embed, embeddingDropoutMask, initialParams, prefixStateOf } from "../../src/model/classifier.ts"
import { rng } from "../../src/random.ts"
import { type EncodedDoc, makeBatch, rowsOf } from "../../src/stages/batch.ts"
import { embeddingTable, prefixState } from "../../src/stages/train.ts"
import { initBackend, values, withRandomBiases } from "../helpers.ts"

afterAll(async () => {
  await initBackend("cpu")
})

const V = 20
const engines = [false, ...(loadBlas() === undefined ? [] : [true])]

for (const bidirectional of [false, true]) {
  for (const fused of engines) {
    test(`chunked prefix state = one pass over the whole prefix (${bidirectional ? "bidirectional" : "unidirectional"}, ${fused ? "fused" : "reference"} LSTM, with dropout)`, async () => {
      const { engine } = await initBackend("cpu", { fusedLstm: fused ? "auto" : "off" })
      expect(engine.fused !== undefined).toBe(fused)
      const shape = { vocabSize: V, embeddingDim: 4, lstmUnits: 5, hiddenUnits: 3, numClasses: 2, bidirectional }
      const params = withRandomBiases(initialParams(shape, rng(1, "init")), bidirectional ? ["lstm/bias", "lstmReverse/bias"] : ["lstm/bias"], rng(2, "b"))
      const freq = tf.tensor1d(Array.from({ length: V }, () => 1 / V))
      try {
        const table = tf.keep(embeddingTable(engine, params, freq, true))
        fc.assert(
          fc.property(fc.array(fc.integer({ min: 1, max: 40 }), { minLength: 1, maxLength: 6 }), fc.integer({ min: 1, max: 7 }), fc.integer({ min: 0, max: 999 }), (lengths, window, seed) => {
            const random = rng(seed, "docs")
            const docs: Array<EncodedDoc> = lengths.map((n) => ({ ids: Int32Array.from([...Array.from({ length: n }, () => random.int(V - 1)), V - 1]), label: 0 }))
            const batch = makeBatch(docs, window, bidirectional)
            if (batch.prefix === undefined) return
            const prefix = batch.prefix
            tf.tidy(() => {
              const dropout = embeddingDropoutMask(rowsOf(batch), 4, 0.7, rng(seed, "dropout"))
              const chunked = prefixState(engine, params, table, batch, dropout)!
              // The whole prefix padded into one [rows, longest prefix] pass.
              const ids = new Int32Array(rowsOf(batch) * prefix.steps)
              prefix.rows.forEach((r, i) => ids.set(r, i * prefix.steps))
              const whole = prefixStateOf(engine, params, embed(table, tf.tensor2d(ids, [rowsOf(batch), prefix.steps], "int32"), dropout), prefix.lengths)
              expect(values(chunked.h)).toEqual(values(whole.h))
              expect(values(chunked.c)).toEqual(values(whole.c))
            })
          }),
          { numRuns: 40 }
        )
        table.dispose()
      } finally {
        tf.dispose([...Object.values(params), freq])
      }
    })
  }
}
