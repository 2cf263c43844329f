/**
 * `lstmSequence` (per-step outputs and final state, for language-model pretraining) and the `prefix` parameter group:
 * the tfjs reference against a plain-JS LSTM, the fused op (src/engine/lstm-op.ts) against the reference, gradients
 * against finite differences, and the window-to-window state carry-over.
 */
import { afterAll, describe, expect, test } from "bun:test"
import * as tf from "@tensorflow/tfjs-core"
import fc from "fast-check"
import { lstm, lstmSequence, type LstmState, type Params } from "../../src/model/classifier.ts"
import { rng } from "../../src/random.ts"
import { loadBlas } from "../../src/engine/blas.ts"
import type { ModelEngine } from "../../src/engine/model-engine.ts"
import { setSimdGates } from "../../src/engine/gates.ts"
import { expectClose, initBackend, maxRelativeError, randomFloats, useBackend, values } from "../helpers.ts"

useBackend("cpu")

const blas = loadBlas()
if (blas === undefined) process.stderr.write("[lstm-sequence.test] no BLAS library: the fused LSTM op is not tested\n")

/** Select the cpu backend with the reference (tfjs ops) or the fused LSTM; returns the engine the model runs on. */
async function useEngine(fused: boolean): Promise<ModelEngine> {
  const active = await initBackend("cpu", { fusedLstm: fused ? "auto" : "off" })
  expect(active.fusedLstm).toBe(fused)
  expect(active.engine.fused !== undefined).toBe(fused)
  return active.engine
}

const engines = [false, ...(blas === undefined ? [] : [true])]
const engineName = (fused: boolean) => (fused ? "fused LSTM" : "reference LSTM")

afterAll(async () => {
  await initBackend("cpu")
})

/** Two LSTM parameter groups ("lstm" and "lstmReverse") with random weights and biases, every gate active. */
function twoGroups(D: number, H: number, seed: number): Record<string, tf.Tensor> {
  const params: Record<string, tf.Tensor> = {}
  for (const prefix of ["lstm", "lstmReverse"]) {
    const random = rng(seed, "lstm-sequence-params", prefix)
    params[`${prefix}/inputKernel`] = tf.tensor2d(randomFloats(D * 4 * H, random, -0.6, 0.6), [D, 4 * H])
    params[`${prefix}/recurrentKernel`] = tf.tensor2d(randomFloats(H * 4 * H, random, -0.6, 0.6), [H, 4 * H])
    params[`${prefix}/bias`] = tf.tensor1d(randomFloats(4 * H, random, -0.5, 0.5))
  }
  return params
}

const swapGroups = (params: Params): Params =>
  Object.fromEntries(Object.entries(params).map(([name, t]) => [name.startsWith("lstmReverse/") ? name.replace("lstmReverse/", "lstm/") : name.replace("lstm/", "lstmReverse/"), t]))

interface Problem {
  readonly B: number
  readonly T: number
  readonly D: number
  readonly H: number
  readonly x: Float32Array
  readonly lengths: Int32Array
  readonly initial: { readonly c: Float32Array; readonly h: Float32Array } | undefined
}

function problem(B: number, T: number, D: number, H: number, seed: number, withInitial = true, lengths?: Int32Array): Problem {
  const random = rng(seed, "lstm-sequence-problem")
  const lens = lengths ?? Int32Array.from({ length: B }, (_, b) => (b === 0 ? T : random.int(T + 1)))
  return {
    B,
    T,
    D,
    H,
    // Padding positions hold random values too: masking, not zero inputs, must stop the state and the outputs.
    x: randomFloats(B * T * D, random),
    lengths: lens,
    initial: withInitial ? { c: randomFloats(B * H, random), h: randomFloats(B * H, random) } : undefined
  }
}

const initialTensors = (p: Problem): LstmState | undefined =>
  p.initial === undefined ? undefined : { c: tf.tensor2d(p.initial.c, [p.B, p.H]), h: tf.tensor2d(p.initial.h, [p.B, p.H]) }

/** lstmSequence's values (read inside a tidy, so nothing outlives the call). */
function sequenceValues(engine: ModelEngine, params: Params, p: Problem, prefix = "lstm") {
  return tf.tidy(() => {
    const seq = lstmSequence(engine, params, tf.tensor3d(p.x, [p.B, p.T, p.D]), p.lengths, initialTensors(p), prefix)
    expect(seq.outputs.shape).toEqual([p.B, p.T, p.H])
    return { outputs: values(seq.outputs), c: values(seq.final.c), h: values(seq.final.h) }
  })
}

const sigmoid = (x: number) => 1 / (1 + Math.exp(-x))

/** Plain-JS BasicLSTMCell (gates i, j, f, o; forget bias 0) in float64: per-step outputs [B, T, H] and final state. */
function jsLstmSequence(params: Params, p: Problem, prefix = "lstm") {
  const { B, T, D, H } = p
  const Wx = values(params[`${prefix}/inputKernel`])
  const Wh = values(params[`${prefix}/recurrentKernel`])
  const bias = values(params[`${prefix}/bias`])
  const outputs = new Array<number>(B * T * H).fill(0)
  const finalC: Array<number> = []
  const finalH: Array<number> = []
  for (let b = 0; b < B; b++) {
    let c = p.initial ? Array.from(p.initial.c.subarray(b * H, (b + 1) * H)) : new Array<number>(H).fill(0)
    let h = p.initial ? Array.from(p.initial.h.subarray(b * H, (b + 1) * H)) : new Array<number>(H).fill(0)
    for (let t = 0; t < p.lengths[b]; t++) {
      const z = bias.slice()
      for (let n = 0; n < 4 * H; n++) {
        for (let d = 0; d < D; d++) z[n] += p.x[(b * T + t) * D + d] * Wx[d * 4 * H + n]
        for (let k = 0; k < H; k++) z[n] += h[k] * Wh[k * 4 * H + n]
      }
      c = c.map((cv, k) => cv * sigmoid(z[2 * H + k]) + sigmoid(z[k]) * Math.tanh(z[H + k]))
      h = c.map((cv, k) => Math.tanh(cv) * sigmoid(z[3 * H + k]))
      for (let k = 0; k < H; k++) outputs[(b * T + t) * H + k] = h[k]
    }
    finalC.push(...c)
    finalH.push(...h)
  }
  return { outputs, c: finalC, h: finalH }
}

/**
 * loss = Σ w ⊙ outputs (+ the final state, which must contribute no gradient), its gradients w.r.t. the inputs and
 * the three weights, and the outputs and final state seen inside the differentiated function (the tape-keeping path).
 */
function sequenceGradients(engine: ModelEngine, params: Params, p: Problem, w: Float32Array, includeFinal: boolean) {
  let seen: { outputs: Array<number>; c: Array<number>; h: Array<number> } | undefined
  const names = ["lstm/inputKernel", "lstm/recurrentKernel", "lstm/bias"]
  const result = tf.tidy(() => {
    const weights = tf.tensor3d(w, [p.B, p.T, p.H])
    const initial = initialTensors(p)
    const f = (x: tf.Tensor, ...ws: Array<tf.Tensor>) => {
      const seq = lstmSequence(engine, { ...params, ...Object.fromEntries(names.map((n, i) => [n, ws[i]])) }, x as tf.Tensor3D, p.lengths, initial)
      seen = { outputs: values(seq.outputs), c: values(seq.final.c), h: values(seq.final.h) }
      const loss = tf.sum(tf.mul(weights, seq.outputs)) as tf.Scalar
      return includeFinal ? (tf.addN([loss, tf.sum(seq.final.c), tf.sum(seq.final.h)]) as tf.Scalar) : loss
    }
    const grads = tf.grads(f)([tf.tensor3d(p.x, [p.B, p.T, p.D]), ...names.map((n) => params[n])])
    return grads.map(values)
  })
  return { dx: result[0], dWx: result[1], dWh: result[2], db: result[3], seen: seen! }
}

describe("reference lstmSequence", () => {
  test("outputs equal a plain-JS LSTM at every step, 0 past the length; final equals lstm's state", async () => {
    const engine = await useEngine(false)
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 4 }),
        fc.integer({ min: 1, max: 6 }),
        fc.integer({ min: 1, max: 4 }),
        fc.integer({ min: 1, max: 6 }),
        fc.boolean(),
        fc.nat(),
        (B, T, D, H, withInitial, seed) => {
          const params = twoGroups(D, H, seed)
          const p = problem(B, T, D, H, seed, withInitial)
          const got = sequenceValues(engine, params, p)
          const expected = jsLstmSequence(params, p)
          expectClose(got.outputs, expected.outputs, 1e-5, 1e-4)
          for (let b = 0; b < B; b++) for (let i = p.lengths[b] * H; i < T * H; i++) expect(Math.abs(got.outputs[b * T * H + i])).toBe(0) // m·h may be −0
          expectClose(got.c, expected.c, 1e-5, 1e-4)
          expectClose(got.h, expected.h, 1e-5, 1e-4)
          const state = tf.tidy(() => {
            const s = lstm(engine, params, tf.tensor3d(p.x, [B, T, D]), p.lengths, initialTensors(p), "none")
            return { c: values(s.c), h: values(s.h) }
          })
          expect(got.c).toEqual(state.c)
          expect(got.h).toEqual(state.h)
          tf.dispose(Object.values(params))
        }
      ),
      { numRuns: 25 }
    )
  })
})

describe.skipIf(blas === undefined)("fused lstmSequence vs reference lstmSequence", () => {
  for (const simd of [true, false]) {
    test(`the same outputs, final state and gradients (${simd ? "SIMD" : "JS"} gate kernels)`, async () => {
      setSimdGates(simd)
      try {
        // 7 units: the SIMD kernels' 4-lane loops and their scalar tails both run.
        for (const [B, T, D, H, seed] of [
          [4, 6, 5, 7, 1],
          [1, 3, 2, 4, 2],
          [5, 9, 3, 8, 3]
        ]) {
          const params = twoGroups(D, H, seed)
          const p = problem(B, T, D, H, seed, seed !== 2)
          const w = randomFloats(B * T * H, rng(seed, "loss-weights"))
          const results = []
          for (const fused of [false, true]) {
            const engine = await useEngine(fused)
            results.push({ forward: sequenceValues(engine, params, p), grads: sequenceGradients(engine, params, p, w, false) })
          }
          const [reference, fused] = results
          expectClose(fused.forward.outputs, reference.forward.outputs, 1e-5, 1e-4)
          expectClose(fused.forward.c, reference.forward.c, 1e-5, 1e-4)
          expectClose(fused.forward.h, reference.forward.h, 1e-5, 1e-4)
          // The tape-keeping forward (inside tf.grads) gives the same values as the evaluation forward.
          expect(fused.grads.seen.outputs).toEqual(fused.forward.outputs)
          expect(fused.grads.seen.c).toEqual(fused.forward.c)
          expect(fused.grads.seen.h).toEqual(fused.forward.h)
          for (const name of ["dx", "dWx", "dWh", "db"] as const) {
            const err = maxRelativeError(fused.grads[name], reference.grads[name], 1e-2)
            if (err > 1e-4) throw new Error(`${name}: fused and reference gradients differ (max relative error ${err})`)
          }
          tf.dispose(Object.values(params))
        }
      } finally {
        setSimdGates(true)
      }
    })
  }
})

for (const fused of engines) {
  describe(`lstmSequence — ${engineName(fused)}`, () => {
    test("the final state carries no gradient: adding it to the loss leaves every gradient unchanged", async () => {
      const engine = await useEngine(fused)
      const [B, T, D, H] = [3, 5, 3, 4]
      const params = twoGroups(D, H, 31)
      const p = problem(B, T, D, H, 31)
      const w = randomFloats(B * T * H, rng(31, "loss-weights"))
      const without = sequenceGradients(engine, params, p, w, false)
      const withFinal = sequenceGradients(engine, params, p, w, true)
      for (const name of ["dx", "dWx", "dWh", "db"] as const) expect(withFinal[name]).toEqual(without[name])
      tf.dispose(Object.values(params))
    })

    test("finite differences of Σ w ⊙ outputs w.r.t. the inputs", async () => {
      const engine = await useEngine(fused)
      const [B, T, D, H] = [3, 5, 3, 4]
      const params = twoGroups(D, H, 41)
      const p = problem(B, T, D, H, 41, true, Int32Array.from([5, 2, 4]))
      const w = randomFloats(B * T * H, rng(41, "loss-weights"))
      const { dx } = sequenceGradients(engine, params, p, w, false)
      // The loss in float64 from float32 outputs: the central difference's error is then ~1e-7 / h.
      const lossAt = (x: Float32Array) => sequenceValues(engine, params, { ...p, x }).outputs.reduce((acc, o, i) => acc + w[i] * o, 0)
      const h = 1e-2
      const coords = Array.from(dx, (g, i) => [Math.abs(g), i] as const)
        .filter(([a]) => a > 1e-2)
        .sort((a, b) => b[0] - a[0])
        .slice(0, 8)
        .map(([, i]) => i)
      expect(coords.length).toBe(8)
      for (const i of coords) {
        const shifted = (delta: number) => {
          const x = p.x.slice()
          x[i] += delta
          return lossAt(x)
        }
        const numeric = (shifted(h) - shifted(-h)) / (2 * h)
        const error = Math.abs(numeric - dx[i]) / Math.abs(dx[i])
        if (error > 1e-2) throw new Error(`inputs[${i}]: numeric ${numeric} vs analytic ${dx[i]} (relative error ${error})`)
      }
      // Inputs at padding positions do not affect the outputs.
      for (let b = 0; b < B; b++) for (let i = p.lengths[b] * D; i < T * D; i++) expect(dx[b * T * D + i]).toBe(0)
      tf.dispose(Object.values(params))
    })

    test('prefix "lstmReverse" reads the other parameter group', async () => {
      const engine = await useEngine(fused)
      const [B, T, D, H] = [3, 4, 3, 5]
      const params = twoGroups(D, H, 51)
      const swapped = swapGroups(params)
      const p = problem(B, T, D, H, 51)
      const state = (ps: Params, gradients: "all" | "none", prefix?: string) =>
        tf.tidy(() => values(lstm(engine, ps, tf.tensor3d(p.x, [B, T, D]), p.lengths, initialTensors(p), gradients, prefix).h))
      for (const gradients of ["all", "none"] as const) {
        const forward = state(params, gradients)
        const reverse = state(params, gradients, "lstmReverse")
        expect(maxRelativeError(reverse, forward)).toBeGreaterThan(1e-3)
        expect(reverse).toEqual(state(swapped, gradients, "lstm"))
        expect(forward).toEqual(state(swapped, gradients, "lstmReverse"))
      }
      const reverseSequence = sequenceValues(engine, params, p, "lstmReverse")
      expect(maxRelativeError(reverseSequence.outputs, sequenceValues(engine, params, p).outputs)).toBeGreaterThan(1e-3)
      expect(reverseSequence).toEqual(sequenceValues(engine, swapped, p))
      expectClose(reverseSequence.outputs, jsLstmSequence(params, p, "lstmReverse").outputs, 1e-5, 1e-4)
      tf.dispose(Object.values(params))
    })

    test("two windows with the state carried over equal one window over the whole documents", async () => {
      const engine = await useEngine(fused)
      const H = 6
      const params = twoGroups(3, H, 61)
      fc.assert(
        fc.property(fc.array(fc.integer({ min: 0, max: 9 }), { minLength: 1, maxLength: 5 }), fc.nat(), fc.boolean(), fc.nat(), (lens, split0, withInitial, seed) => {
          const [B, T, D] = [lens.length, Math.max(2, ...lens), 3]
          const k = 1 + (split0 % (T - 1)) // the first window's steps, 1..T-1
          const whole = problem(B, T, D, H, seed, withInitial, Int32Array.from(lens))
          const slice = (from: number, to: number) => {
            const x = new Float32Array(B * (to - from) * D)
            for (let b = 0; b < B; b++) x.set(whole.x.subarray((b * T + from) * D, (b * T + to) * D), b * (to - from) * D)
            return x
          }
          const first = { ...whole, T: k, x: slice(0, k), lengths: Int32Array.from(lens, (l) => Math.min(l, k)) }
          const firstResult = sequenceValues(engine, params, first)
          const second = {
            ...whole,
            T: T - k,
            x: slice(k, T),
            lengths: Int32Array.from(lens, (l) => Math.max(0, l - k)),
            initial: { c: Float32Array.from(firstResult.c), h: Float32Array.from(firstResult.h) }
          }
          const secondResult = sequenceValues(engine, params, second)
          const wholeResult = sequenceValues(engine, params, whole)
          const joined: Array<number> = []
          for (let b = 0; b < B; b++) {
            joined.push(...firstResult.outputs.slice(b * k * H, (b + 1) * k * H))
            joined.push(...secondResult.outputs.slice(b * (T - k) * H, (b + 1) * (T - k) * H))
          }
          expectClose(joined, wholeResult.outputs, 1e-6, 1e-5)
          expectClose(secondResult.c, wholeResult.c, 1e-6, 1e-5)
          expectClose(secondResult.h, wholeResult.h, 1e-6, 1e-5)
        }),
        { numRuns: 30 }
      )
      tf.dispose(Object.values(params))
    })

    test("no tensors leak across repeated forward and gradient calls", async () => {
      const engine = await useEngine(fused)
      const [B, T, D, H] = [3, 5, 3, 4]
      const params = twoGroups(D, H, 71)
      const p = problem(B, T, D, H, 71)
      const w = randomFloats(B * T * H, rng(71, "loss-weights"))
      const round = () => {
        sequenceValues(engine, params, p)
        sequenceValues(engine, params, p, "lstmReverse")
        sequenceGradients(engine, params, p, w, true)
        tf.tidy(() => {
          const seq = lstmSequence(engine, params, tf.tensor3d(p.x, [B, T, D]), p.lengths, undefined)
          // Outputs used without any gradient: the fused op must not keep tensors (or a tape) for a backward pass.
          return tf.sum(seq.outputs)
        }).dispose()
      }
      round()
      const before = tf.memory().numTensors
      for (let i = 0; i < 5; i++) round()
      expect(tf.memory().numTensors).toBe(before)
      tf.dispose(Object.values(params))
    })
  })
}
