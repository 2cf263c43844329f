/**
 * The bidirectional classifier (spec A1.4, A2.5, A3.7): parameters, paired batches (row 2b = document b, row 2b + 1 =
 * it reversed), features concatenated along the feature axis with each half from its own LSTM and its own document,
 * prefix state for windows shorter than the document, training steps, and per-direction perturbation norms.
 */
import { afterAll, describe, expect, test } from "bun:test"
import * as tf from "@tensorflow/tfjs-core"
import fc from "fast-check"
import { loadBlas } from "../../src/engine/blas.ts"
import type { ModelEngine } from "../../src/engine/model-engine.ts"
import { embed, features, initialParams, isBidirectional, lstm, prefixStateOf, type ModelShape, type Params } from "../../src/model/classifier.ts"
import { createTrainState, disposeTrainState, type OptimizerConfig, type TrainState, OPTIMIZER_DEFAULTS } from "../../src/model/optimizer.ts"
import { rng } from "../../src/random.ts"
import { makeBatch, rowsOf, sliceBatch, type Batch, type EncodedDoc, type StepBatches } from "../../src/stages/batch.ts"
import { reverseIds } from "../../src/stages/lm-batch.ts"
import {
  adversarialPerturbation,
  classificationLoss,
  DEFAULT_PERTURBATION,
  gaussian,
  klDivergence,
  randomPerturbation,
  virtualAdversarialPerturbation,
  type Method
} from "../../src/method/method.ts"
import { embeddingTable, prefixState, trainStep, type StepOptions } from "../../src/stages/train.ts"
import { expectClose, initBackend, useBackend, values, withRandomBiases } from "../helpers.ts"

useBackend("cpu")

afterAll(async () => {
  await initBackend("cpu")
})

const V = 15
const EOS = V - 1
const D = 4
const H = 5
const shape: ModelShape = { vocabSize: V, embeddingDim: D, lstmUnits: H, hiddenUnits: 3, numClasses: 2, bidirectional: true }

/** Bidirectional params with random LSTM biases (so the two LSTMs, and every gate, clearly differ). */
function biParams(seed: number, s: ModelShape = shape): Record<string, tf.Tensor> {
  return withRandomBiases(initialParams(s, rng(seed, "init")), ["lstm/bias", "lstmReverse/bias", "head/hiddenBias"], rng(seed, "bi-biases"))
}

/** Documents: `lengths[i]` words (ids 0 … V−2) then EOS. */
function docsOf(lengths: ReadonlyArray<number>, seed: number): Array<EncodedDoc> {
  const random = rng(seed, "bi-docs")
  return lengths.map((n, i) => ({ ids: Int32Array.from([...Array.from({ length: n }, () => random.int(V - 1)), EOS]), label: i % 2 }))
}

const row = (a: Int32Array, r: number, width: number, n: number) => Array.from(a.subarray(r * width, r * width + n))

const frequencies = () => tf.tensor1d(Array.from({ length: V }, (_, i) => (V - i) / ((V * (V + 1)) / 2)))

const blas = loadBlas()
const engines = [false, ...(blas === undefined ? [] : [true])]
async function useEngine(fused: boolean): Promise<ModelEngine> {
  const { engine } = await initBackend("cpu", { fusedLstm: fused ? "auto" : "off" })
  expect(engine.fused !== undefined).toBe(fused)
  return engine
}

describe("bidirectional parameters", () => {
  test("initialParams adds lstmReverse/* with lstm/*'s shapes and a [2H, K] hidden kernel; the unidirectional model has neither", () => {
    const bi = initialParams(shape, rng(1, "init"))
    const uni = initialParams({ ...shape, bidirectional: false }, rng(1, "init"))
    try {
      for (const part of ["inputKernel", "recurrentKernel", "bias"]) {
        expect(bi[`lstmReverse/${part}`]).toBeDefined()
        expect(bi[`lstmReverse/${part}`].shape).toEqual(bi[`lstm/${part}`].shape)
      }
      expect(bi["lstm/inputKernel"].shape).toEqual([D, 4 * H])
      expect(bi["lstm/recurrentKernel"].shape).toEqual([H, 4 * H])
      // Separate weights, not a shared tensor.
      expect(values(bi["lstmReverse/inputKernel"])).not.toEqual(values(bi["lstm/inputKernel"]))
      expect(bi["head/hiddenKernel"].shape).toEqual([2 * H, 3])
      expect(isBidirectional(bi)).toBe(true)

      expect(Object.keys(uni).some((n) => n.startsWith("lstmReverse/"))).toBe(false)
      expect(uni["head/hiddenKernel"].shape).toEqual([H, 3])
      expect(isBidirectional(uni)).toBe(false)
      // One shared embedding either way.
      expect(Object.keys(bi).filter((n) => n.startsWith("embedding"))).toEqual(["embedding"])
    } finally {
      tf.dispose([...Object.values(bi), ...Object.values(uni)])
    }
  })
})

describe("bidirectional batches", () => {
  test("reverseIds reverses the words, keeps EOS last, and is an involution", () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: V - 2 }), { minLength: 1, maxLength: 20 }), (words) => {
        const ids = Int32Array.from([...words, EOS])
        const rev = reverseIds(ids)
        expect(Array.from(rev)).toEqual([...[...words].reverse(), EOS])
        expect(Array.from(reverseIds(rev))).toEqual(Array.from(ids))
      })
    )
  })

  test("makeBatch(…, true): two rows per document, row 2b forward and row 2b + 1 reversed (EOS last), same lengths, one label per document; sliceBatch keeps the pairs", () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 1, max: 12 }), { minLength: 1, maxLength: 6 }),
        fc.integer({ min: 1, max: 14 }),
        fc.integer({ min: 0, max: 1000 }),
        (lengths, window, seed) => {
          const docs = docsOf(lengths, seed)
          const batch = makeBatch(docs, window, true)
          const forward = makeBatch(docs, window, false)
          const reversed = makeBatch(docs.map((d) => ({ ids: reverseIds(d.ids), label: d.label })), window, false)
          const B = docs.length
          expect(batch.size).toBe(B)
          expect(batch.directions).toBe(2)
          expect(rowsOf(batch)).toBe(2 * B)
          expect(batch.lengths.length).toBe(2 * B)
          expect(batch.ids.length).toBe(2 * B * batch.steps)
          expect(Array.from(batch.labels)).toEqual(docs.map((d) => d.label))
          for (let b = 0; b < B; b++) {
            const n = Math.min(window, docs[b].ids.length)
            expect(batch.lengths[2 * b]).toBe(n)
            expect(batch.lengths[2 * b + 1]).toBe(n)
            const fwd = row(batch.ids, 2 * b, batch.steps, n)
            const rev = row(batch.ids, 2 * b + 1, batch.steps, n)
            // The final window of each sequence: the document's last n ids, and the reversed document's last n ids.
            expect(fwd).toEqual(Array.from(docs[b].ids.subarray(docs[b].ids.length - n)))
            expect(rev).toEqual(Array.from(reverseIds(docs[b].ids).subarray(docs[b].ids.length - n)))
            expect(fwd.at(-1)).toBe(EOS)
            expect(rev.at(-1)).toBe(EOS)
            // The same rows as unidirectional batches of the documents and of the reversed documents.
            expect(fwd).toEqual(row(forward.ids, b, forward.steps, n))
            expect(rev).toEqual(row(reversed.ids, b, reversed.steps, n))
            // Padding is zero.
            for (const r of [2 * b, 2 * b + 1]) for (let t = n; t < batch.steps; t++) expect(batch.ids[r * batch.steps + t]).toBe(0)
            // Prefixes: the tokens before each window.
            const p = docs[b].ids.length - n
            if (p > 0) {
              expect(batch.prefix).toBeDefined()
              const prefix = batch.prefix!
              expect(prefix.lengths[2 * b]).toBe(p)
              expect(prefix.lengths[2 * b + 1]).toBe(p)
              expect(Array.from(prefix.rows[2 * b])).toEqual(Array.from(docs[b].ids.subarray(0, p)))
              expect(Array.from(prefix.rows[2 * b + 1])).toEqual(Array.from(reverseIds(docs[b].ids).subarray(0, p)))
            } else if (batch.prefix !== undefined) {
              expect(batch.prefix.lengths[2 * b]).toBe(0)
              expect(batch.prefix.lengths[2 * b + 1]).toBe(0)
            }
          }
          expect(batch.prefix !== undefined).toBe(docs.some((d) => d.ids.length > window))

          // Any slice keeps whole pairs, in order.
          for (let start = 0; start < B; start++) {
            for (let end = start + 1; end <= B; end++) {
              const part = sliceBatch(batch, start, end)
              expect(part.size).toBe(end - start)
              expect(part.directions).toBe(2)
              expect(Array.from(part.lengths)).toEqual(Array.from(batch.lengths.subarray(2 * start, 2 * end)))
              expect(Array.from(part.ids)).toEqual(Array.from(batch.ids.subarray(2 * start * batch.steps, 2 * end * batch.steps)))
              expect(Array.from(part.labels)).toEqual(Array.from(batch.labels.subarray(start, end)))
              if (batch.prefix !== undefined) {
                expect(Array.from(part.prefix!.lengths)).toEqual(Array.from(batch.prefix.lengths.subarray(2 * start, 2 * end)))
                expect(part.prefix!.rows).toEqual(batch.prefix.rows.slice(2 * start, 2 * end))
              }
            }
          }
        }
      ),
      { numRuns: 60 }
    )
  })
})

/** One document's final h from one LSTM, computed alone (a batch of one row, whole sequence, zero state). */
function singleDocH(engine: ModelEngine, params: Params, table: tf.Tensor2D, ids: Int32Array, prefix: "lstm" | "lstmReverse"): Array<number> {
  return tf.tidy(() => {
    const e = embed(table, tf.tensor2d(ids, [1, ids.length], "int32"), undefined)
    return values(lstm(engine, params, e, Int32Array.of(ids.length), undefined, "none", prefix).h)
  })
}

/** Features [B, 2H] of a bidirectional batch, with the prefix state when the batch has one. */
function batchFeatures(engine: ModelEngine, params: Params, table: tf.Tensor2D, batch: Batch, gradients: "all" | "none" = "all"): { shape: Array<number>; values: Array<number> } {
  return tf.tidy(() => {
    const e = embed(table, tf.tensor2d(batch.ids, [rowsOf(batch), batch.steps], "int32"), undefined)
    const f = features(engine, params, e, batch.lengths, prefixState(engine, params, table, batch, undefined), gradients)
    return { shape: f.shape, values: values(f) }
  })
}

for (const fused of engines) {
  describe(`bidirectional features (${fused ? "fused" : "reference"} LSTM)`, () => {
    test("features are [B, 2H]: columns 0…H−1 are the forward LSTM on document b, H…2H−1 the reverse LSTM on document b reversed", async () => {
      const engine = await useEngine(fused)
      const params = biParams(2)
      const freq = frequencies()
      try {
        const table = tf.keep(embeddingTable(engine, params, freq, true))
        const docs = docsOf([3, 7, 1, 5, 9], 4)
        const B = docs.length
        const batch = makeBatch(docs, 50, true)
        for (const gradients of ["all", "none"] as const) {
          const f = batchFeatures(engine, params, table, batch, gradients)
          expect(f.shape).toEqual([B, 2 * H])
          for (let b = 0; b < B; b++) {
            const got = f.values.slice(b * 2 * H, (b + 1) * 2 * H)
            expectClose(got.slice(0, H), singleDocH(engine, params, table, docs[b].ids, "lstm"), 2e-5, 1e-4)
            expectClose(got.slice(H), singleDocH(engine, params, table, reverseIds(docs[b].ids), "lstmReverse"), 2e-5, 1e-4)
            // The halves really are different computations (catches using one LSTM twice, or swapping them).
            const swapped = singleDocH(engine, params, table, reverseIds(docs[b].ids), "lstm")
            expect(got.slice(H).some((x, k) => Math.abs(x - swapped[k]) > 1e-3)).toBe(true)
          }
        }
        // Permuting the documents permutes the feature rows, both halves together.
        const perm = [3, 0, 4, 2, 1]
        const base = batchFeatures(engine, params, table, batch)
        const permuted = batchFeatures(engine, params, table, makeBatch(perm.map((i) => docs[i]), 50, true))
        for (let b = 0; b < B; b++) {
          expectClose(permuted.values.slice(b * 2 * H, (b + 1) * 2 * H), base.values.slice(perm[b] * 2 * H, (perm[b] + 1) * 2 * H), 2e-5, 1e-4)
        }
        table.dispose()
      } finally {
        tf.dispose([...Object.values(params), freq])
      }
    })

    test("with a window shorter than some documents, features (prefix state + final window) equal running each whole document in one window", async () => {
      const engine = await useEngine(fused)
      const params = biParams(5)
      const freq = frequencies()
      try {
        const table = tf.keep(embeddingTable(engine, params, freq, true))
        fc.assert(
          fc.property(
            fc.array(fc.integer({ min: 1, max: 14 }), { minLength: 1, maxLength: 5 }),
            fc.integer({ min: 1, max: 6 }),
            fc.integer({ min: 0, max: 1000 }),
            (lengths, window, seed) => {
              const docs = docsOf(lengths, seed)
              const windowed = makeBatch(docs, window, true)
              const whole = makeBatch(docs, 100, true)
              expect(whole.prefix).toBeUndefined()
              const a = batchFeatures(engine, params, table, windowed)
              const b = batchFeatures(engine, params, table, whole)
              expect(a.shape).toEqual([docs.length, 2 * H])
              expectClose(a.values, b.values, 3e-5, 1e-4)
            }
          ),
          { numRuns: 25 }
        )
        // prefixStateOf keeps the interleaved row layout: row 2b is the forward state, 2b + 1 the reverse state.
        const docs = docsOf([9, 4], 1)
        const batch = makeBatch(docs, 3, true)
        const prefix = batch.prefix!
        tf.tidy(() => {
          const ids = new Int32Array(rowsOf(batch) * prefix.steps)
          prefix.rows.forEach((r, i) => ids.set(r, i * prefix.steps))
          const e = embed(table, tf.tensor2d(ids, [rowsOf(batch), prefix.steps], "int32"), undefined)
          const s = prefixStateOf(engine, params, e, prefix.lengths)
          expect(s.h.shape).toEqual([4, H])
          const h = values(s.h)
          expectClose(h.slice(0, H), singleDocH(engine, params, table, docs[0].ids.subarray(0, 7), "lstm"), 2e-5, 1e-4)
          expectClose(h.slice(H, 2 * H), singleDocH(engine, params, table, reverseIds(docs[0].ids).subarray(0, 7), "lstmReverse"), 2e-5, 1e-4)
          expectClose(h.slice(2 * H, 3 * H), singleDocH(engine, params, table, docs[1].ids.subarray(0, 2), "lstm"), 2e-5, 1e-4)
          expectClose(h.slice(3 * H), singleDocH(engine, params, table, reverseIds(docs[1].ids).subarray(0, 2), "lstmReverse"), 2e-5, 1e-4)
        })
        table.dispose()
      } finally {
        tf.dispose([...Object.values(params), freq])
      }
    })
  })
}

describe("bidirectional training step", () => {
  const optimizer: OptimizerConfig = { ...OPTIMIZER_DEFAULTS, learningRate: 0.02, learningRateDecay: 0.999 }
  const labeled = docsOf(Array.from({ length: 16 }, (_, i) => 1 + ((i * 5) % 11)), 11)
  const unlabeled = docsOf(Array.from({ length: 9 }, (_, i) => 2 + ((i * 3) % 10)), 12).map((d) => ({ ...d, label: -1 }))
  const WINDOW = 6
  const batchesAt = (step: number): StepBatches => {
    const pick = (docs: Array<EncodedDoc>, size: number) => Array.from({ length: size }, (_, j) => docs[(step * size + j) % docs.length])
    return { step, labeled: makeBatch(pick(labeled, 4), WINDOW, true), unlabeled: makeBatch(pick(unlabeled, 3), WINDOW, true) }
  }

  for (const method of ["adversarial", "virtual"] as const satisfies ReadonlyArray<Method>) {
    test(`${method}: finite losses, flat tf.memory().numTensors, both LSTMs and the [2H, K] head updated`, async () => {
      const { engine } = await initBackend("cpu")
      const initial = biParams(3)
      const state: TrainState = createTrainState(initial)
      tf.dispose(Object.values(initial))
      const freq = frequencies()
      const options: StepOptions = {
        engine,
        seed: 9,
        embeddingKeepProb: 0.7,
        normalizeEmbeddings: true,
        optimizer,
        method,
        perturbation: { ...DEFAULT_PERTURBATION, epsilon: 1, vatMicroBatch: method === "virtual" ? 2 : 0 }
      }
      try {
        const before0 = Object.fromEntries(Object.entries(state.params).map(([n, v]) => [n, values(v)]))
        const batches = Array.from({ length: 8 }, (_, s) => batchesAt(s))
        expect(batches.some((b) => b.labeled.prefix !== undefined)).toBe(true)
        const count = tf.memory().numTensors
        for (const b of batches) {
          const result = trainStep(state, b, freq, options)
          if (!result.ok) throw new Error(`step ${b.step}: non-finite loss ${result.loss}`)
          const m = result.metrics
          expect(Number.isFinite(m.loss)).toBe(true)
          expect(m.loss).toBeGreaterThanOrEqual(m.nll)
          expect(m.examples).toBe(4)
          if (method === "adversarial") expect(Number.isFinite(m.perturbedLoss!)).toBe(true)
          else expect(m.virtualLoss!).toBeGreaterThanOrEqual(0)
          expect(tf.memory().numTensors).toBe(count)
        }
        for (const name of ["embedding", "lstm/inputKernel", "lstm/recurrentKernel", "lstmReverse/inputKernel", "lstmReverse/recurrentKernel", "lstmReverse/bias", "head/hiddenKernel"]) {
          const now = values(state.params[name])
          expect(now.some((x, i) => x !== before0[name][i])).toBe(true)
        }
        // Both halves of the head's input matter: gradient reached the rows read from the reverse LSTM's features.
        const hk = values(state.params["head/hiddenKernel"])
        const K = 3
        const changedRows = (lo: number, hi: number) => before0["head/hiddenKernel"].slice(lo * K, hi * K).some((x, i) => x !== hk[lo * K + i])
        expect(changedRows(0, H)).toBe(true)
        expect(changedRows(H, 2 * H)).toBe(true)
      } finally {
        disposeTrainState(state)
        freq.dispose()
      }
    })
  }

  test("the same seed gives the same bidirectional steps (adversarial+virtual)", async () => {
    const { engine } = await initBackend("cpu")
    const run = () => {
      const initial = biParams(8)
      const state = createTrainState(initial)
      tf.dispose(Object.values(initial))
      const freq = frequencies()
      const options: StepOptions = { engine, seed: 4, embeddingKeepProb: 0.6, normalizeEmbeddings: true, optimizer, method: "adversarial+virtual", perturbation: { ...DEFAULT_PERTURBATION, epsilon: 2 } }
      try {
        const losses = Array.from({ length: 3 }, (_, s) => {
          const r = trainStep(state, batchesAt(s), freq, options)
          if (!r.ok) throw new Error("non-finite")
          return r.metrics.loss
        })
        return { losses, reverse: values(state.params["lstmReverse/inputKernel"]) }
      } finally {
        disposeTrainState(state)
        freq.dispose()
      }
    }
    const a = run()
    const b = run()
    expect(b.losses).toEqual(a.losses)
    expect(b.reverse).toEqual(a.reverse)
  })
})

describe("per-direction perturbation norms (spec A3.7)", () => {
  /** ‖x[r]‖₂ for each row r of [R, T, D]. */
  const rowNorms = (x: tf.Tensor3D): Array<number> => {
    const [R, T, Dx] = x.shape
    const v = values(x)
    return Array.from({ length: R }, (_, r) => Math.sqrt(v.slice(r * T * Dx, (r + 1) * T * Dx).reduce((a, y) => a + y * y, 0)))
  }

  test("adversarialPerturbation scales each row (each direction of each document) to ε, even for rows of very different magnitudes", () => {
    const epsilon = 2.5
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 4 }), fc.integer({ min: 1, max: 6 }), fc.integer({ min: 0, max: 1000 }), (B, T, seed) => {
        tf.tidy(() => {
          const random = rng(seed, "magnitudes")
          const g = gaussian([2 * B, T, D], random) as tf.Tensor3D
          // Forward rows ×1e3, reverse rows ×1e-3: a joint (per-document) norm would leave the reverse rows ≈ 0.
          const scales = tf.tensor3d(Array.from({ length: 2 * B }, (_, r) => (r % 2 === 0 ? 1e3 : 1e-3)), [2 * B, 1, 1])
          const r = adversarialPerturbation(tf.mul(g, scales) as tf.Tensor3D, epsilon)
          for (const n of rowNorms(r)) expect(n).toBeCloseTo(epsilon, 3)
        })
      }),
      { numRuns: 20 }
    )
  })

  test("r_adv, r_vadv and r_rand built from a bidirectional batch's embedded rows have norm ε per row", async () => {
    const { engine } = await initBackend("cpu")
    const params = biParams(6)
    const freq = frequencies()
    const epsilon = 1.5
    try {
      tf.tidy(() => {
        const docs = docsOf([4, 9, 2, 6], 21)
        const batch = makeBatch(docs, 5, true)
        const table = embeddingTable(engine, params, freq, true)
        const e = embed(table, tf.tensor2d(batch.ids, [rowsOf(batch), batch.steps], "int32"), undefined)
        const initial = prefixState(engine, params, table, batch, undefined)
        const labels = tf.tensor1d(batch.labels, "int32")
        const logits = (x: tf.Tensor3D) => {
          const f = features(engine, params, x, batch.lengths, initial)
          const hidden = tf.relu(tf.add(tf.matMul(f, params["head/hiddenKernel"] as tf.Tensor2D), params["head/hiddenBias"]))
          return tf.add(tf.matMul(hidden, params["head/outputKernel"] as tf.Tensor2D), params["head/outputBias"]) as tf.Tensor2D
        }
        const g = tf.grad((x: tf.Tensor) => classificationLoss(logits(x as tf.Tensor3D), labels))(e) as tf.Tensor3D
        expect(g.shape).toEqual([2 * docs.length, batch.steps, D])
        const gNorms = rowNorms(g)
        // Both directions get gradient, of different sizes (so a joint per-document norm would not give ε to each row).
        expect(gNorms.every((n) => n > 0)).toBe(true)
        expect(gNorms.some((n, r) => r % 2 === 0 && Math.abs(n - gNorms[r + 1]) > 1e-3 * n)).toBe(true)
        const adv = rowNorms(adversarialPerturbation(g, epsilon))
        for (const n of adv) expect(n).toBeCloseTo(epsilon, 4)

        const q = logits(e)
        const noise = gaussian(e.shape, rng(3, "vat-noise")) as tf.Tensor3D
        const vadv = virtualAdversarialPerturbation(e.shape, batch.lengths, { epsilon, xi: 0.1, iterations: 1 }, (d) => tf.sum(klDivergence(q, logits(tf.add(e, d) as tf.Tensor3D))) as tf.Scalar, noise)
        for (const n of rowNorms(vadv)) expect(n).toBeCloseTo(epsilon, 3)

        // r_rand: masked at EOS and padding, ε per row (every row here has ≥ 1 word before EOS).
        const rand = randomPerturbation(noise, batch.lengths, epsilon)
        for (const n of rowNorms(rand)) expect(n).toBeCloseTo(epsilon, 4)
        const rv = values(rand)
        for (let r = 0; r < rowsOf(batch); r++) {
          for (let t = batch.lengths[r] - 1; t < batch.steps; t++) for (let d = 0; d < D; d++) expect(Math.abs(rv[(r * batch.steps + t) * D + d])).toBe(0)
        }
      })
    } finally {
      tf.dispose([...Object.values(params), freq])
    }
  })
})
