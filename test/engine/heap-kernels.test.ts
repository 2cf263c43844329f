import { expect, test } from "bun:test"
import * as tf from "@tensorflow/tfjs-core"
import fc from "fast-check"
import { heapKernels, sumOfSquares } from "../../src/engine/heap-kernels.ts"
import { rng } from "../../src/random.ts"
import { initBackend, randomFloats } from "../helpers.ts"

test("sumOfSquares on the wasm heap is tf.sum(tf.square(x)) to the bit, and leaves no tensor behind", async () => {
  await initBackend("wasm")
  expect(heapKernels()).toBeDefined()
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 5000 }), fc.double({ min: 1e-3, max: 1e3, noNaN: true }), fc.nat(), (n, scale, seed) => {
      const x = tf.tensor1d(randomFloats(n, rng(seed, "sum-of-squares"), -scale, scale))
      const before = tf.memory().numTensors
      const got = sumOfSquares(x)
      const want = tf.tidy(() => tf.sum(tf.square(x)))
      expect(got.dataSync()[0]).toBe(want.dataSync()[0])
      tf.dispose([got, want])
      expect(tf.memory().numTensors).toBe(before)
      x.dispose()
    }),
    { numRuns: 60 }
  )
  await initBackend("cpu")
})
