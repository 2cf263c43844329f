import { describe, expect, test } from "bun:test"
import * as tf from "@tensorflow/tfjs-core"
import fc from "fast-check"
import { fusedNormalizeEmbeddings } from "../../src/engine/normalize-op.ts"
import { normalizeEmbeddings as referenceNormalizeEmbeddings } from "../../src/method/method.ts"
import { rng } from "../../src/random.ts"
import { heapKernels, setHeapKernels } from "../../src/engine/heap-kernels.ts"
import { expectClose, initBackend, randomFloats, useBackend } from "../helpers.ts"

useBackend("cpu")

/** Random unigram frequencies summing to 1 (some tiny, like rare words). */
function frequencies(V: number, seed: number): Float32Array {
  const random = rng(seed, "freq")
  const raw = Array.from({ length: V }, () => Math.exp(6 * random.uniform()))
  const total = raw.reduce((a, b) => a + b, 0)
  return Float32Array.from(raw, (x) => x / total)
}

describe("fusedNormalizeEmbeddings (Eq. 1 as one op)", () => {
  test("equals the tfjs reference in value and in the gradient of a random weighting", () => {
    fc.assert(
      fc.property(fc.integer({ min: 2, max: 40 }), fc.integer({ min: 1, max: 9 }), fc.integer({ min: 0, max: 1e6 }), fc.double({ min: 0.01, max: 10, noNaN: true }), (V, D, seed, magnitude) => {
        const random = rng(seed, "normalize-op")
        const raw = tf.tensor2d(randomFloats(V * D, random, -magnitude, magnitude), [V, D])
        const f = tf.tensor1d(frequencies(V, seed))
        const weights = tf.tensor2d(randomFloats(V * D, random), [V, D])
        tf.tidy(() => {
          expectClose(fusedNormalizeEmbeddings(raw, f).dataSync(), referenceNormalizeEmbeddings(raw, f).dataSync(), 1e-4, 1e-4)
          const loss = (normalize: typeof fusedNormalizeEmbeddings) => (e: tf.Tensor) => tf.sum(tf.mul(normalize(e as tf.Tensor2D, f), weights)) as tf.Scalar
          expectClose(tf.grad(loss(fusedNormalizeEmbeddings))(raw).dataSync(), tf.grad(loss(referenceNormalizeEmbeddings))(raw).dataSync(), 1e-3, 1e-3)
        })
        tf.dispose([raw, f, weights])
      }),
      { numRuns: 60 }
    )
  })

  test("output has f-weighted mean 0 and variance ≈ 1 per dimension; gradient matches finite differences", () => {
    const [V, D] = [12, 3]
    const f = frequencies(V, 7)
    const raw = randomFloats(V * D, rng(7, "raw"), -2, 2)
    const out = tf.tidy(() => fusedNormalizeEmbeddings(tf.tensor2d(raw, [V, D]), tf.tensor1d(f)).dataSync())
    for (let d = 0; d < D; d++) {
      let mean = 0
      let variance = 0
      for (let k = 0; k < V; k++) mean += f[k] * out[k * D + d]
      for (let k = 0; k < V; k++) variance += f[k] * (out[k * D + d] - mean) ** 2
      expect(Math.abs(mean)).toBeLessThan(1e-5)
      expect(variance).toBeCloseTo(1, 4)
    }
    const weights = randomFloats(V * D, rng(7, "w"))
    const lossAt = (x: Float32Array) => {
      const y = tf.tidy(() => fusedNormalizeEmbeddings(tf.tensor2d(x, [V, D]), tf.tensor1d(f)).dataSync())
      let s = 0
      for (let i = 0; i < y.length; i++) s += y[i] * weights[i]
      return s
    }
    const grad = tf.tidy(() =>
      tf.grad((e: tf.Tensor) => tf.sum(tf.mul(fusedNormalizeEmbeddings(e as tf.Tensor2D, tf.tensor1d(f)), tf.tensor2d(weights, [V, D]))) as tf.Scalar)(tf.tensor2d(raw, [V, D])).dataSync()
    )
    for (const i of [0, 5, 17, V * D - 1]) {
      const h = 1e-2
      const up = Float32Array.from(raw)
      const down = Float32Array.from(raw)
      up[i] += h
      down[i] -= h
      expect(grad[i]).toBeCloseTo((lossAt(up) - lossAt(down)) / (2 * h), 2)
    }
  })

  test("no tensor leaks", () => {
    const raw = tf.tensor2d(randomFloats(20, rng(1, "leak")), [5, 4])
    const f = tf.tensor1d(frequencies(5, 1))
    const before = tf.memory().numTensors
    for (let i = 0; i < 3; i++) {
      tf.tidy(() => {
        tf.grad((e: tf.Tensor) => tf.sum(fusedNormalizeEmbeddings(e as tf.Tensor2D, f)))(raw)
      })
    }
    expect(tf.memory().numTensors).toBe(before)
    tf.dispose([raw, f])
  })
})

describe("fusedNormalizeEmbeddings on the wasm heap (SIMD kernels)", () => {
  test("value and gradient are the same bits as the JS loops, for even and odd D", async () => {
    await initBackend("wasm")
    try {
      fc.assert(
        fc.property(fc.integer({ min: 2, max: 60 }), fc.integer({ min: 1, max: 11 }), fc.integer({ min: 0, max: 1e6 }), (V, D, seed) => {
          const random = rng(seed, "normalize-heap")
          const raw = tf.tensor2d(randomFloats(V * D, random, -3, 3), [V, D])
          const f = tf.tensor1d(frequencies(V, seed))
          const weights = tf.tensor2d(randomFloats(V * D, random), [V, D])
          const run = (simd: boolean) => {
            setHeapKernels(simd)
            expect(heapKernels() !== undefined).toBe(simd)
            return tf.tidy(() => {
              const loss = (e: tf.Tensor) => tf.sum(tf.mul(fusedNormalizeEmbeddings(e as tf.Tensor2D, f), weights)) as tf.Scalar
              return [Array.from(fusedNormalizeEmbeddings(raw, f).dataSync()), Array.from(tf.grad(loss)(raw).dataSync())]
            })
          }
          const before = tf.memory().numTensors
          expect(run(true)).toEqual(run(false))
          expect(tf.memory().numTensors).toBe(before)
          tf.dispose([raw, f, weights])
        }),
        { numRuns: 40 }
      )
    } finally {
      setHeapKernels(true)
      await initBackend("cpu")
    }
  })
})
