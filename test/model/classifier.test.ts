import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import * as tf from "@tensorflow/tfjs-core"
import fc from "fast-check"
import {
  EMBEDDING,
  embed,
  embeddingDropoutMask,
  head,
  initialParams,
  logitsFromEmbedded,
  lstm,
  normalizeEmbeddings,
  outputUnits,
  predict,
  timeMask,
  type ModelShape,
  type Params
} from "../../src/model/classifier.ts"
import { rng } from "../../src/random.ts"
import { makeBatch, type Batch, type EncodedDoc } from "../../src/stages/batch.ts"
import { classificationLoss } from "../../src/method/method.ts"
import { batchTensors, embeddingTable, prefixState } from "../../src/stages/train.ts"
import type { EngineOptions } from "../../src/engine/backend.ts"
import { loadBlas } from "../../src/engine/blas.ts"
import { fusedEngine, type ModelEngine, REFERENCE_ENGINE } from "../../src/engine/model-engine.ts"
import { setSimdGates } from "../../src/engine/gates.ts"
import { expectClose, initBackend, maxRelativeError, randomFloats, take, useBackend, values, withRandomBiases } from "../helpers.ts"

const backend = useBackend("cpu")

const sigmoid = (x: number) => 1 / (1 + Math.exp(-x))

/** A tiny model with random (nonzero) biases so every gate matters. */
function tinyParams(shape: ModelShape, seed: number): Record<string, tf.Tensor> {
  return withRandomBiases(initialParams(shape, rng(seed, "init")), ["lstm/bias", "head/hiddenBias", "head/outputBias"], rng(seed, "biases"))
}

/** Plain-JS BasicLSTMCell (gates i, j, f, o; forget bias 0) over one sequence x[t][d], from state (c, h). */
function referenceLstm(params: Params, x: Array<Array<number>>, c0: Array<number>, h0: Array<number>) {
  const H = params["lstm/recurrentKernel"].shape[0]!
  const D = params["lstm/inputKernel"].shape[0]!
  const Wx = values(params["lstm/inputKernel"])
  const Wh = values(params["lstm/recurrentKernel"])
  const bias = values(params["lstm/bias"])
  let c = [...c0]
  let h = [...h0]
  for (const xt of x) {
    const z = bias.slice()
    for (let n = 0; n < 4 * H; n++) {
      for (let d = 0; d < D; d++) z[n] += xt[d] * Wx[d * 4 * H + n]
      for (let k = 0; k < H; k++) z[n] += h[k] * Wh[k * 4 * H + n]
    }
    const cNext = c.map((cv, k) => cv * sigmoid(z[2 * H + k]) + sigmoid(z[k]) * Math.tanh(z[H + k]))
    h = cNext.map((cv, k) => Math.tanh(cv) * sigmoid(z[3 * H + k]))
    c = cNext
  }
  return { c, h }
}

/** Row b of a [B, T, D] array as T × D nested arrays, first `len` steps. */
const steps = (flat: Float32Array, b: number, T: number, D: number, len: number) =>
  Array.from({ length: len }, (_, t) => Array.from(flat.subarray((b * T + t) * D, (b * T + t + 1) * D)))

const disposeAll = (params: Record<string, tf.Tensor>) => tf.dispose(Object.values(params))

describe("normalizeEmbeddings (paper Eq. 1)", () => {
  test("output has frequency-weighted mean 0 and weighted variance σ²/(σ²+1e-6) ≈ 1 per dimension", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 2, max: 30 }),
        fc.integer({ min: 1, max: 6 }),
        fc.array(fc.integer({ min: 1, max: 100 }), { minLength: 30, maxLength: 30 }),
        fc.integer({ min: 0, max: 1 << 20 }),
        fc.double({ min: -3, max: 3, noNaN: true }),
        fc.double({ min: 0.05, max: 5, noNaN: true }),
        (V, D, allCounts, seed, offset, scale) => {
          const counts = allCounts.slice(0, V)
          const total = counts.reduce((a, b) => a + b, 0)
          const f = counts.map((c) => c / total)
          const raw = Array.from(randomFloats(V * D, rng(seed, "emb")), (x) => offset + scale * x)
          const out = tf.tidy(() => values(normalizeEmbeddings(backend().engine, tf.tensor2d(raw, [V, D]), tf.tensor1d(f))))
          for (let d = 0; d < D; d++) {
            // Float64 statistics of the input column …
            let mu = 0
            for (let k = 0; k < V; k++) mu += f[k] * raw[k * D + d]
            let sigma2 = 0
            for (let k = 0; k < V; k++) sigma2 += f[k] * (raw[k * D + d] - mu) ** 2
            // … and of the output column.
            let mean = 0
            for (let k = 0; k < V; k++) mean += f[k] * out[k * D + d]
            let variance = 0
            for (let k = 0; k < V; k++) variance += f[k] * (out[k * D + d] - mean) ** 2
            expect(Math.abs(mean)).toBeLessThan(1e-4)
            expect(Math.abs(variance - sigma2 / (sigma2 + 1e-6))).toBeLessThan(2e-4)
            if (sigma2 > 1e-3) expect(Math.abs(variance - 1)).toBeLessThan(2e-3)
            for (let k = 0; k < V; k++) {
              const expected = (raw[k * D + d] - mu) / Math.sqrt(sigma2 + 1e-6)
              expect(Math.abs(out[k * D + d] - expected)).toBeLessThan(1e-3 * Math.max(1, Math.abs(expected)))
            }
          }
        }
      ),
      { numRuns: 60 }
    )
  })

  test("gradients reach every row (dense through the mean and variance)", () => {
    const emb = tf.tensor2d(randomFloats(6 * 3, rng(1, "dense")), [6, 3])
    const f = tf.tensor1d([0.4, 0.3, 0.1, 0.1, 0.05, 0.05])
    const g = tf.grad((e: tf.Tensor) => tf.sum(tf.gather(normalizeEmbeddings(backend().engine, e as tf.Tensor2D, f), [0])))(emb)
    const rows = values(g)
    for (let k = 0; k < 6; k++) expect(rows.slice(k * 3, k * 3 + 3).some((x) => Math.abs(x) > 1e-6)).toBe(true)
    tf.dispose([emb, f, g])
  })
})

describe("embeddingDropoutMask (variational, spec A2.1)", () => {
  test("shape [B,1,D], values in {0, 1/keep}, undefined when keep = 1", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 8 }),
        fc.integer({ min: 1, max: 16 }),
        fc.constantFrom(0.1, 0.25, 0.5, 0.8, 0.9),
        fc.nat(),
        (B, D, keep, seed) => {
          const mask = embeddingDropoutMask(B, D, keep, rng(seed, "dropout"))!
          expect(mask.shape).toEqual([B, 1, D])
          for (const v of take(mask)) expect(v === 0 || v === Math.fround(1 / keep)).toBe(true)
        }
      ),
      { numRuns: 60 }
    )
    expect(embeddingDropoutMask(3, 4, 1, rng(0, "x"))).toBeUndefined()
  })

  test("the kept fraction is about keep, and masks are deterministic per random stream", () => {
    const keep = 0.5
    const mask = embeddingDropoutMask(64, 256, keep, rng(3 << 8, "dropout"))!
    const kept = take(mask).filter((v) => v !== 0).length / (64 * 256)
    expect(Math.abs(kept - keep)).toBeLessThan(0.02) // σ ≈ 0.003
    expect(take(embeddingDropoutMask(4, 8, keep, rng(5 << 8, "d"))!)).toEqual(take(embeddingDropoutMask(4, 8, keep, rng(5 << 8, "d"))!))
  })

  test("embed applies the same mask at every time step", () => {
    const [V, D, B, T] = [9, 6, 3, 5]
    const random = rng(11 << 8, "embed")
    const table = tf.tensor2d(randomFloats(V * D, random), [V, D])
    const idsArr = Int32Array.from({ length: B * T }, () => random.int(V))
    const ids = tf.tensor2d(idsArr, [B, T], "int32")
    const mask = embeddingDropoutMask(B, D, 0.5, random)!
    const m = values(mask)
    const tableValues = values(table)
    const out = embed(table, ids, mask)
    expect(out.shape).toEqual([B, T, D])
    const e = values(out)
    for (let b = 0; b < B; b++)
      for (let t = 0; t < T; t++)
        for (let d = 0; d < D; d++) expect(e[(b * T + t) * D + d]).toBeCloseTo(tableValues[idsArr[b * T + t] * D + d] * m[b * D + d], 6)
    expect(values(embed(table, ids, undefined))).toEqual(Array.from({ length: B * T * D }, (_, i) => tableValues[idsArr[Math.floor(i / D)] * D + (i % D)]))
    tf.dispose([table, ids, mask, out])
  })
})

const blas = loadBlas()
/**
 * The LSTM runs either as tfjs ops (`referenceLstm`) or, with a BLAS, as the fused op (src/engine/lstm-op.ts); `engine`
 * is what selecting the cpu backend with `options` gives (checked in each block's beforeAll).
 */
const engines: Array<{ readonly name: string; readonly options: EngineOptions; readonly engine: ModelEngine }> = [
  { name: "reference LSTM", options: { fusedLstm: "off" }, engine: REFERENCE_ENGINE },
  ...(blas === undefined ? [] : [{ name: "fused LSTM", options: { fusedLstm: "auto" } as EngineOptions, engine: fusedEngine(blas) }])
]
if (blas === undefined) process.stderr.write("[classifier.test] no BLAS library: the fused LSTM op is not tested\n")

const lstmShape: ModelShape = { vocabSize: 8, embeddingDim: 4, lstmUnits: 5, hiddenUnits: 3, numClasses: 2 }

test("timeMask is [T,B,1] with 1 exactly where t < length", () => {
  const m = timeMask(Int32Array.from([2, 0, 3]), 4)
  expect(m.shape).toEqual([4, 3, 1])
  expect(take(m)).toEqual([1, 0, 1, 1, 0, 1, 0, 0, 1, 0, 0, 0])
})

for (const { name, options, engine } of engines) {
  describe(`lstm (BasicLSTMCell, forget bias 0) — ${name}`, () => {
    beforeAll(async () => {
      const active = await initBackend("cpu", options)
      expect(active.fusedLstm).toBe(options.fusedLstm !== "off")
      expect(active.engine.fused).toBe(engine.fused)
    })

    /** Final (c, h) without gradient, and h from the differentiable path (whose c may be a placeholder). */
    function run(params: Params, x: Float32Array, shape: [number, number, number], lengths: Int32Array, initial?: { c: Float32Array; h: Float32Array }) {
      const B = shape[0]
      const H = params["lstm/recurrentKernel"].shape[0]!
      return tf.tidy(() => {
        const inputs = tf.tensor3d(x, shape)
        const init = initial === undefined ? undefined : { c: tf.tensor2d(initial.c, [B, H]), h: tf.tensor2d(initial.h, [B, H]) }
        const state = lstm(engine, params, inputs, lengths, init, "none")
        const differentiable = lstm(engine, params, inputs, lengths, init, "all")
        return { c: values(state.c), h: values(state.h), hGrad: values(differentiable.h) }
      })
    }

    test("equals a plain-JS BasicLSTMCell, from zero and from a given initial state", () => {
      const params = tinyParams(lstmShape, 21)
      const [B, T, D, H] = [3, 4, 4, 5]
      const random = rng(21, "inputs")
      const x = randomFloats(B * T * D, random)
      const c0 = randomFloats(B * H, random)
      const h0 = randomFloats(B * H, random)
      const lengths = Int32Array.from([T, 2, 1])
      for (const initial of [undefined, { c: c0, h: h0 }]) {
        const got = run(params, x, [B, T, D], lengths, initial)
        for (let b = 0; b < B; b++) {
          const zero = new Array<number>(H).fill(0)
          const ref = referenceLstm(
            params,
            steps(x, b, T, D, lengths[b]),
            initial ? Array.from(c0.subarray(b * H, (b + 1) * H)) : zero,
            initial ? Array.from(h0.subarray(b * H, (b + 1) * H)) : zero
          )
          expectClose(got.c.slice(b * H, (b + 1) * H), ref.c, 1e-5, 1e-4)
          expectClose(got.h.slice(b * H, (b + 1) * H), ref.h, 1e-5, 1e-4)
          expectClose(got.hGrad.slice(b * H, (b + 1) * H), ref.h, 1e-5, 1e-4)
        }
      }
      disposeAll(params)
    })

    test("masking: a padded batch gives each sequence's state at its own length (length 0 keeps the initial state)", () => {
      const params = tinyParams(lstmShape, 5)
      const H = lstmShape.lstmUnits
      fc.assert(
        fc.property(fc.array(fc.integer({ min: 0, max: 7 }), { minLength: 1, maxLength: 5 }), fc.boolean(), fc.nat(), (lens, withInitial, seed) => {
          const [B, T, D] = [lens.length, Math.max(1, ...lens), lstmShape.embeddingDim]
          // Padding positions hold random values too: masking, not zero inputs, must freeze the state.
          const x = randomFloats(B * T * D, rng(seed, "padded"))
          const initial = withInitial ? { c: randomFloats(B * H, rng(seed, "c0")), h: randomFloats(B * H, rng(seed, "h0")) } : undefined
          const got = run(params, x, [B, T, D], Int32Array.from(lens), initial)
          for (let b = 0; b < B; b++) {
            const rowInitial = initial && { c: initial.c.slice(b * H, (b + 1) * H), h: initial.h.slice(b * H, (b + 1) * H) }
            let ref: { c: Array<number>; h: Array<number> }
            if (lens[b] === 0) ref = rowInitial ? { c: Array.from(rowInitial.c), h: Array.from(rowInitial.h) } : { c: new Array(H).fill(0), h: new Array(H).fill(0) }
            else {
              const alone = run(params, Float32Array.from(steps(x, b, T, D, lens[b]).flat()), [1, lens[b], D], Int32Array.from([lens[b]]), rowInitial)
              ref = { c: alone.c, h: alone.h }
              expectClose(alone.hGrad, alone.h, 1e-6, 1e-6)
            }
            expectClose(got.c.slice(b * H, (b + 1) * H), ref.c, 1e-5, 1e-4)
            expectClose(got.h.slice(b * H, (b + 1) * H), ref.h, 1e-5, 1e-4)
            expectClose(got.hGrad.slice(b * H, (b + 1) * H), ref.h, 1e-5, 1e-4)
          }
        }),
        { numRuns: 30 }
      )
      disposeAll(params)
    })

    test("the initial state is used: nonzero changes the output; prefix then rest equals the whole sequence", () => {
      const params = tinyParams(lstmShape, 8)
      const [D, H] = [lstmShape.embeddingDim, lstmShape.lstmUnits]
      fc.assert(
        fc.property(fc.integer({ min: 2, max: 9 }), fc.nat(), fc.nat(), (L, k0, seed) => {
          const k = 1 + (k0 % (L - 1)) // split point 1..L-1
          const x = randomFloats(L * D, rng(seed, "split"))
          const part = (from: number, to: number, initial?: { c: Float32Array; h: Float32Array }) =>
            run(params, x.subarray(from * D, to * D), [1, to - from, D], Int32Array.from([to - from]), initial)
          const whole = part(0, L)
          const first = part(0, k)
          const split = part(k, L, { c: Float32Array.from(first.c), h: Float32Array.from(first.h) })
          expectClose(split.c, whole.c, 1e-5, 1e-4)
          expectClose(split.h, whole.h, 1e-5, 1e-4)
          expectClose(split.hGrad, whole.h, 1e-5, 1e-4)
          const zeroStart = part(k, L)
          const randomStart = part(k, L, { c: randomFloats(H, rng(seed, "c")), h: randomFloats(H, rng(seed, "h")) })
          const diff = Math.max(...randomStart.hGrad.map((v, i) => Math.abs(v - zeroStart.hGrad[i])))
          expect(diff).toBeGreaterThan(1e-4)
        }),
        { numRuns: 30 }
      )
      disposeAll(params)
    })

    test("batched prefix state (train/evaluate path) reproduces reading each whole document", () => {
      // Documents longer than the window run their prefix to produce the initial state; short ones start from zero.
      const s: ModelShape = { vocabSize: 12, embeddingDim: 4, lstmUnits: 5, hiddenUnits: 3, numClasses: 3 }
      const params = tinyParams(s, 13)
      const frequencies = tf.tensor1d(Array.from({ length: 12 }, (_, i) => (12 - i) / 78))
      const random = rng(13, "docs")
      const docs: Array<EncodedDoc> = [11, 3, 5, 1, 8].map((words, i) => ({
        ids: Int32Array.from([...Array.from({ length: words }, () => random.int(11)), 11]),
        label: i % 3
      }))
      const batch = makeBatch(docs, 5)
      expect(batch.prefix).toBeDefined()
      expect([...batch.prefix!.lengths]).toEqual([7, 0, 1, 0, 4])
      const logitsOf = (b: Batch) =>
        tf.tidy(() => {
          const table = embeddingTable(engine, params, frequencies, true)
          const t = batchTensors(b)
          const initial = prefixState(engine, params, table, b, undefined)
          const out = values(logitsFromEmbedded(engine, params, embed(table, t.ids, undefined), b.lengths, initial).logits)
          t.dispose()
          return out
        })
      const batched = logitsOf(batch)
      const O = outputUnits(s.numClasses)
      docs.forEach((doc, b) => expectClose(batched.slice(b * O, (b + 1) * O), logitsOf(makeBatch([doc], 1000)), 1e-5, 1e-4))
      disposeAll(params)
      frequencies.dispose()
    })

    for (const numClasses of [2, 3]) {
      test(`finite-difference gradient check of classificationLoss ∘ logitsFromEmbedded, ${numClasses} classes`, () => {
        gradientCheck(engine, numClasses)
      })
    }
  })
}

/** Loss of a tiny fixed batch through normalization, dropout, masking, an initial state and the head. */
function tinyProblem(engine: ModelEngine, numClasses: number) {
  const shape: ModelShape = { vocabSize: 7, embeddingDim: 3, lstmUnits: 4, hiddenUnits: 3, numClasses }
  const base = tinyParams(shape, 100 + numClasses)
  const random = rng(100 + numClasses, "fd")
  const [B, T, H] = [3, 4, 4]
  const lengths = Int32Array.from([4, 2, 3])
  const ids = tf.tensor2d(Int32Array.from({ length: B * T }, () => random.int(7)), [B, T], "int32")
  const labels = tf.tensor1d(Int32Array.from({ length: B }, (_, b) => b % numClasses), "int32")
  const frequencies = tf.tensor1d([0.3, 0.2, 0.15, 0.15, 0.1, 0.05, 0.05])
  const dropout = tf.tensor3d(Float32Array.from({ length: B * 3 }, (_, i) => (i % 4 === 1 ? 0 : 2)), [B, 1, 3])
  const initial = { c: tf.tensor2d(randomFloats(B * H, random), [B, H]), h: tf.tensor2d(randomFloats(B * H, random), [B, H]) }
  const forward = (params: Params) => {
    const e = embed(normalizeEmbeddings(engine, params[EMBEDDING] as tf.Tensor2D, frequencies), ids, dropout)
    const out = logitsFromEmbedded(engine, params, e, lengths, initial)
    return { loss: classificationLoss(out.logits, labels), hidden: out.hidden }
  }
  const lossOf = (params: Params) => tf.tidy(() => forward(params).loss)
  /** Loss value and which hidden ReLU units are active (finite differences across a kink are meaningless). */
  const probe = (params: Params) =>
    tf.tidy(() => {
      const out = forward(params)
      return { loss: out.loss.dataSync()[0], pattern: Array.from(out.hidden.dataSync(), (v) => (v > 0 ? 1 : 0)).join("") }
    })
  const dispose = () => {
    tf.dispose([ids, labels, frequencies, dropout, initial.c, initial.h])
    disposeAll(base)
  }
  return { base, lossOf, probe, dispose }
}

/** Analytic gradients of the tiny problem by parameter name. */
function analyticGradients(problem: ReturnType<typeof tinyProblem>, tag: string): Record<string, Array<number>> {
  const variables: Record<string, tf.Variable> = {}
  for (const [name, t] of Object.entries(problem.base)) variables[name] = tf.variable(t, true, `${tag}/${name}`)
  const { value, grads } = tf.variableGrads(() => problem.lossOf(variables), Object.values(variables))
  value.dispose()
  const out: Record<string, Array<number>> = {}
  for (const [name, v] of Object.entries(variables)) out[name] = take(grads[v.name])
  tf.dispose(Object.values(variables))
  return out
}

let gradientChecks = 0
function gradientCheck(engine: ModelEngine, numClasses: number): void {
  const problem = tinyProblem(engine, numClasses)
  const analytic = analyticGradients(problem, `fd-${numClasses}-${gradientChecks++}`)
  const h = 1e-2
  const pattern = problem.probe(problem.base).pattern
  let checked = 0
  const groups = new Set<string>()
  for (const [name, g] of Object.entries(analytic)) {
    const raw = values(problem.base[name])
    // The four coordinates with the largest gradient (sizable ones only: float32 losses differ by ~1e-7, so the
    // central difference carries an absolute error of ~1e-5).
    const coords = g
      .map((v, i) => [Math.abs(v), i] as const)
      .filter(([a]) => a > 1e-3)
      .sort((a, b) => b[0] - a[0])
      .slice(0, 4)
      .map(([, i]) => i)
    for (const i of coords) {
      const at = (delta: number) => {
        const shifted = raw.slice()
        shifted[i] += delta
        const t = tf.tensor(shifted, problem.base[name].shape)
        const result = problem.probe({ ...problem.base, [name]: t })
        t.dispose()
        return result
      }
      const [plus, minus] = [at(h), at(-h)]
      if (plus.pattern !== pattern || minus.pattern !== pattern) continue // the step crosses a ReLU kink
      const numeric = (plus.loss - minus.loss) / (2 * h)
      const error = Math.abs(numeric - g[i]) / Math.abs(g[i])
      if (error > 2e-2) throw new Error(`${name}[${i}]: numeric ${numeric} vs analytic ${g[i]} (relative error ${error})`)
      checked++
      groups.add(name)
    }
  }
  expect(checked).toBeGreaterThanOrEqual(12)
  // Every parameter group was checked somewhere (the output bias gradient is sizable too: one logit per class).
  expect([...groups].sort()).toEqual(Object.keys(analytic).sort())
  problem.dispose()
}

describe.skipIf(blas === undefined)("fused LSTM op vs tfjs reference LSTM", () => {
  afterAll(async () => {
    await initBackend("cpu")
  })

  test("the same loss and the same gradients for every parameter", async () => {
    for (const numClasses of [2, 4]) {
      const results: Array<{ loss: number; grads: Record<string, Array<number>> }> = []
      for (const options of [{ fusedLstm: "off" }, { fusedLstm: "auto" }] as const) {
        const { engine } = await initBackend("cpu", options)
        const problem = tinyProblem(engine, numClasses)
        results.push({ loss: take(problem.lossOf(problem.base))[0], grads: analyticGradients(problem, `cmp-${numClasses}-${options.fusedLstm}`) })
        problem.dispose()
      }
      const [reference, fused] = results
      expect(fused.loss).toBeCloseTo(reference.loss, 5)
      for (const name of Object.keys(reference.grads)) {
        const err = maxRelativeError(fused.grads[name], reference.grads[name], 1e-2)
        if (err > 1e-3) throw new Error(`${name}: fused and reference gradients differ (max relative error ${err})`)
      }
    }
  })
})

describe("head, predict and classificationLoss", () => {
  test("logits have one unit for 2 classes, C otherwise", () => {
    expect(outputUnits(2)).toBe(1)
    expect(outputUnits(3)).toBe(3)
    expect(outputUnits(14)).toBe(14)
    const params = tinyParams({ vocabSize: 5, embeddingDim: 2, lstmUnits: 3, hiddenUnits: 4, numClasses: 5 }, 1)
    const out = head(params, tf.ones([2, 3]) as tf.Tensor2D)
    expect(out.logits.shape).toEqual([2, 5])
    expect(out.hidden.shape).toEqual([2, 4])
    expect(take(out.hidden).every((v) => v >= 0)).toBe(true)
    out.logits.dispose()
    disposeAll(params)
  })

  test("predict thresholds a single logit at 0 and argmaxes otherwise", () => {
    expect(take(predict(tf.tensor2d([[-2], [0], [1e-6], [0.4], [0.6], [-1e-6]])))).toEqual([0, 0, 1, 1, 1, 0])
    expect(take(predict(tf.tensor2d([[0.1, 0.5, -1], [3, 2, 1], [-5, -4, -4.5]])))).toEqual([1, 0, 1])
    fc.assert(
      fc.property(fc.array(fc.array(fc.float({ min: -10, max: 10, noNaN: true }), { minLength: 2, maxLength: 5 }), { minLength: 1, maxLength: 6 }), (rows) => {
        const C = rows[0].length
        const logits = rows.map((r) => [...r, ...new Array<number>(C).fill(0)].slice(0, C))
        const expected = logits.map((r) => r.indexOf(Math.max(...r.map(Math.fround))))
        expect(take(predict(tf.tensor2d(logits)))).toEqual(expected)
      }),
      { numRuns: 50 }
    )
  })

  test("sigmoid cross-entropy equals a hand computation, stably for large logits", () => {
    const z = [-30, -2, -0.5, 0, 0.7, 3, 40]
    const y = [0, 1, 0, 1, 1, 0, 1]
    const expected = z.reduce((acc, zi, i) => acc + (y[i] === 1 ? Math.log1p(Math.exp(-zi)) : Math.log1p(Math.exp(zi))), 0) / z.length
    const loss = take(classificationLoss(tf.tensor2d(z, [z.length, 1]), tf.tensor1d(y, "int32")))[0]
    expect(loss).toBeCloseTo(expected, 5)
    // Extreme logits stay finite (no log(0)).
    const extreme = take(classificationLoss(tf.tensor2d([[-100], [100]]), tf.tensor1d([1, 0], "int32")))[0]
    expect(extreme).toBeCloseTo(100, 3)
  })

  test("softmax cross-entropy equals a hand computation", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 2, max: 6 }),
        fc.array(fc.tuple(fc.array(fc.double({ min: -8, max: 8, noNaN: true }), { minLength: 6, maxLength: 6 }), fc.nat()), { minLength: 1, maxLength: 5 }),
        (C, rows) => {
          if (C === 2) C = 3 // two classes use one logit
          const logits = rows.map(([r]) => r.slice(0, C).map(Math.fround))
          const labels = rows.map(([, l]) => l % C)
          const expected =
            logits.reduce((acc, r, i) => {
              const max = Math.max(...r)
              const lse = max + Math.log(r.reduce((s, v) => s + Math.exp(v - max), 0))
              return acc + (lse - r[labels[i]])
            }, 0) / logits.length
          const loss = take(classificationLoss(tf.tensor2d(logits), tf.tensor1d(labels, "int32")))[0]
          expect(Math.abs(loss - expected)).toBeLessThan(1e-4 * Math.max(1, expected))
        }
      ),
      { numRuns: 50 }
    )
  })
})

describe("fused LSTM, input-gradient-only mode", () => {
  test.skipIf(loadBlas() === undefined)('lstm(…, "inputs") gives the same ∂/∂inputs as "all" and zero weight gradients', async () => {
    const { engine } = await initBackend("wasm", { fusedLstm: "auto" })
    const params = initialParams({ vocabSize: 5, embeddingDim: 3, lstmUnits: 4, hiddenUnits: 2, numClasses: 2 }, rng(9, "inputs-mode"))
    tf.tidy(() => {
      const x = tf.randomNormal([2, 5, 3], 0, 1, "float32", 1) as tf.Tensor3D
      const lengths = Int32Array.from([5, 3])
      const grads = (mode: "all" | "inputs") =>
        tf.grads((xx: tf.Tensor, k: tf.Tensor) => tf.sum(lstm(engine, { ...params, "lstm/recurrentKernel": k }, xx as tf.Tensor3D, lengths, undefined, mode).h))([x, params["lstm/recurrentKernel"]])
      const [dxAll, dkAll] = grads("all")
      const [dxInputs, dkInputs] = grads("inputs")
      expect(Array.from(dxInputs.dataSync())).toEqual(Array.from(dxAll.dataSync()))
      expect(Math.max(...Array.from(dkAll.dataSync(), Math.abs))).toBeGreaterThan(0)
      expect(Math.max(...Array.from(dkInputs.dataSync(), Math.abs))).toBe(0)
    })
    tf.dispose(Object.values(params))
  })
})

describe("fused LSTM gate kernels", () => {
  test.skipIf(loadBlas() === undefined)("the WebAssembly SIMD kernels and the JS loops give the same outputs and gradients", async () => {
    const { engine } = await initBackend("wasm", { fusedLstm: "auto" })
    const params = initialParams({ vocabSize: 5, embeddingDim: 6, lstmUnits: 7, hiddenUnits: 2, numClasses: 2 }, rng(4, "gates"))
    const run = () =>
      tf.tidy(() => {
        const x = tf.randomNormal([3, 6, 6], 0, 2, "float32", 2) as tf.Tensor3D
        const lengths = Int32Array.from([6, 2, 4])
        const [dx, dk] = tf.grads((xx: tf.Tensor, k: tf.Tensor) => tf.sum(tf.square(lstm(engine, { ...params, "lstm/inputKernel": k }, xx as tf.Tensor3D, lengths, undefined).h)))([
          x,
          params["lstm/inputKernel"]
        ])
        return [values(lstm(engine, params, x, lengths, undefined, "none").h), values(dx), values(dk)]
      })
    const simd = run()
    setSimdGates(false)
    try {
      const js = run()
      // 7 units: the SIMD kernel's 4-lane loop and its scalar tail are both exercised.
      simd.forEach((a, i) => expectClose(js[i], a, 1e-5, 1e-4))
    } finally {
      setSimdGates(true)
    }
    tf.dispose(Object.values(params))
  })
})
