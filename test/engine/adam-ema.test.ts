import { describe, expect, test } from "bun:test"
import * as tf from "@tensorflow/tfjs-core"
import fc from "fast-check"
import { ADAM_EMA_KERNEL, adamEmaStep, adamEmaUpdate, type AdamEmaAttrs } from "../../src/engine/adam-ema.ts"
import { heapKernels, setHeapKernels } from "../../src/engine/heap-kernels.ts"
import { tensorsIn, tidy } from "../../src/engine/tidy.ts"
import { rng } from "../../src/random.ts"
import { initBackend, randomFloats } from "../helpers.ts"

/** The update as separate tfjs ops (the form applyGradients uses where no fused kernel is registered). */
function opsUpdate(p: tf.Tensor, m: tf.Tensor, v: tf.Tensor, e: tf.Tensor, g: tf.Tensor, a: AdamEmaAttrs): Array<Float32Array> {
  return tf.tidy(() => {
    const m2 = tf.add(tf.mul(m, a.beta1), tf.mul(g, 1 - a.beta1))
    const v2 = tf.add(tf.mul(v, a.beta2), tf.mul(tf.square(g), 1 - a.beta2))
    const p2 = tf.sub(p, tf.mul(a.stepSize, tf.div(m2, tf.add(tf.sqrt(v2), a.epsilon))))
    const e2 = tf.sub(e, tf.mul(1 - a.emaDecay, tf.sub(e, p2)))
    return [p2, m2, v2, e2].map((t) => t.dataSync() as Float32Array)
  })
}

/** A variable alone on its buffer (tf.variable shares its initial value's buffer until that is disposed). */
function ownedVariable(values: Float32Array): tf.Variable {
  const t = tf.tensor1d(values)
  const x = tf.variable(t)
  t.dispose()
  return x
}

const attrsArb = fc.record({
  beta1: fc.constantFrom(0.9, 0.5),
  beta2: fc.constantFrom(0.999, 0.99),
  epsilon: fc.constantFrom(1e-8, 1e-6),
  stepSize: fc.double({ min: 1e-5, max: 0.1, noNaN: true }),
  emaDecay: fc.double({ min: 0.1, max: 0.9999, noNaN: true })
})

for (const [backend, simd] of [["cpu", false], ["wasm", false], ["wasm", true]] as const) {
  describe(`fused Adam + EMA on ${backend}${simd ? " (SIMD heap kernel)" : ""}`, () => {
    test("in place (variables that own their buffers) equals the kernel's fresh outputs bit for bit, and the tfjs ops within 1e-6", async () => {
      await initBackend(backend)
      setHeapKernels(simd)
      expect(heapKernels() !== undefined).toBe(simd)
      expect(tf.getKernel(ADAM_EMA_KERNEL, backend)).toBeDefined()
      fc.assert(
        fc.property(fc.integer({ min: 1, max: 300 }), attrsArb, fc.nat(), (n, attrs, seed) => {
          const random = rng(seed, "adam-ema")
          const arrays = [randomFloats(n, random), randomFloats(n, random, -0.1, 0.1), randomFloats(n, random, 0, 0.01), randomFloats(n, random), randomFloats(n, random, -3, 3)]
          const [p, m, v, e] = arrays.slice(0, 4).map(ownedVariable)
          const g = tf.tensor1d(arrays[4])
          // Reference: the pure-array pass into separate outputs.
          const want = Array.from({ length: 4 }, () => new Float32Array(n))
          adamEmaUpdate(arrays[0], arrays[1], arrays[2], arrays[3], arrays[4], attrs, want as [Float32Array, Float32Array, Float32Array, Float32Array])
          const viaOps = opsUpdate(p, m, v, e, g, attrs)
          const before = tf.memory().numTensors
          const ids = [p, m, v, e].map((x) => x.dataId)
          expect(adamEmaStep(p, m, v, e, g, attrs)).toBe(true)
          // Nothing allocated, the same buffers: the update ran in place.
          expect(tf.memory().numTensors).toBe(before)
          expect([p, m, v, e].map((x) => x.dataId)).toEqual(ids)
          ;[p, m, v, e].forEach((x, i) => {
            expect(Array.from(x.dataSync())).toEqual(Array.from(want[i]))
            x.dataSync().forEach((y, k) => expect(Math.abs(y - viaOps[i][k])).toBeLessThanOrEqual(1e-6 * Math.max(1, Math.abs(viaOps[i][k]))))
          })
          tf.dispose([p, m, v, e, g])
        }),
        { numRuns: 40 }
      )
      setHeapKernels(true)
    })

    test("a buffer shared with another tensor is never written: that step goes through fresh outputs", async () => {
      await initBackend(backend)
      setHeapKernels(simd)
      const initial = tf.tensor1d([1, 2, 3])
      // param and ema start on the initial value's buffer, as createTrainState makes them.
      const p = tf.variable(initial)
      const e = tf.variable(initial)
      const m = tf.variable(tf.zeros([3]))
      const v = tf.variable(tf.zeros([3]))
      const view = tf.reshape(p, [3, 1]) // shares p's buffer too
      const g = tf.tensor1d([0.5, -0.5, 1])
      const attrs = { beta1: 0.9, beta2: 0.999, epsilon: 1e-8, stepSize: 0.1, emaDecay: 0.5 }
      adamEmaStep(p, m, v, e, g, attrs)
      expect(Array.from(initial.dataSync())).toEqual([1, 2, 3])
      expect(Array.from(view.dataSync())).toEqual([1, 2, 3])
      expect(p.dataId).not.toBe(initial.dataId)
      expect(p.dataId).not.toBe(e.dataId)
      // The next step finds each variable alone on its buffer and updates in place.
      const id = p.dataId
      adamEmaStep(p, m, v, e, g, attrs)
      expect(p.dataId).toBe(id)
      tf.dispose([initial, p, e, m, v, view, g])
      setHeapKernels(true)
    })
  })
}

describe("tidy", () => {
  test("keeps exactly the tensors reachable from the result (arrays, records, nested), and does not walk typed arrays", async () => {
    await initBackend("cpu")
    const before = tf.memory().numTensors
    const big = new Float32Array(1 << 20)
    const result = tidy(() => {
      const a = tf.ones([2])
      tf.zeros([3]) // dropped
      return { a, nested: [{ b: tf.scalar(1) }], carried: [{ c: big }], n: 3 }
    })
    expect(tf.memory().numTensors).toBe(before + 2)
    expect(tensorsIn(result).length).toBe(2)
    expect(result.carried[0].c).toBe(big)
    tf.dispose([result.a, result.nested[0].b])
    expect(tf.memory().numTensors).toBe(before)
  })

  test("a throwing function leaves no tensor behind", async () => {
    await initBackend("cpu")
    const before = tf.memory().numTensors
    expect(() =>
      tidy(() => {
        tf.ones([4])
        throw new Error("boom")
      })
    ).toThrow("boom")
    expect(tf.memory().numTensors).toBe(before)
  })
})

test("on wasm without BLAS (tfjs's own matmul caches packed weights by buffer) the update never writes in place", async () => {
  await initBackend("wasm", { blas: "off" })
  try {
    const [p, m, v, e] = [[1, 2], [0, 0], [0, 0], [1, 2]].map((x) => ownedVariable(Float32Array.from(x)))
    const g = tf.tensor1d([0.5, -0.5])
    const ids = [p, m, v, e].map((x) => x.dataId)
    const want = Array.from({ length: 4 }, () => new Float32Array(2))
    const attrs = { beta1: 0.9, beta2: 0.999, epsilon: 1e-8, stepSize: 0.1, emaDecay: 0.5 }
    adamEmaUpdate(Float32Array.from([1, 2]), new Float32Array(2), new Float32Array(2), Float32Array.from([1, 2]), Float32Array.from([0.5, -0.5]), attrs, want as [Float32Array, Float32Array, Float32Array, Float32Array])
    expect(adamEmaStep(p, m, v, e, g, attrs)).toBe(true)
    ;[p, m, v, e].forEach((x, i) => {
      expect(x.dataId).not.toBe(ids[i])
      expect(Array.from(x.dataSync())).toEqual(Array.from(want[i]))
    })
    tf.dispose([p, m, v, e, g])
  } finally {
    await initBackend("wasm")
  }
})
