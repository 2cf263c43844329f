/**
 * Shared helpers for the stage, model and engine tests.
 *
 * bun:test runs every test file in one process, so the tfjs backend and kernel registrations are process-wide: each
 * file that touches tensors selects its backend in `beforeAll` (via `useBackend`) instead of relying on another file.
 */
import { beforeAll } from "bun:test"
import * as tf from "@tensorflow/tfjs-core"
import { Effect } from "effect"
import { type ActiveBackend, selectBackend, type BackendName, type EngineOptions } from "../src/engine/backend.ts"
import { rng, type Rng } from "../src/random.ts"

/** Initialize the backend (registers gradients, our custom kernels and the BLAS matmul when available). */
export const initBackend = (name: Exclude<BackendName, "auto" | "tensorflow"> = "cpu", engine: EngineOptions = {}) =>
  Effect.runPromise(selectBackend(name, engine))

/**
 * Register a `beforeAll` that selects `name` (and engine options) for the current file/describe block. Returns the
 * selection, for tests to pass its `engine` to the model (readable once the `beforeAll` ran, i.e. inside a test).
 */
export const useBackend = (name: Exclude<BackendName, "auto" | "tensorflow"> = "cpu", engine: EngineOptions = {}): (() => ActiveBackend) =>
  selectInBeforeAll(() => initBackend(name, engine))

/** Register a `beforeAll` that runs `select`; returns its selection (readable once the `beforeAll` ran). */
export const selectInBeforeAll = (select: () => Promise<ActiveBackend>): (() => ActiveBackend) => {
  let active: ActiveBackend | undefined
  beforeAll(async () => {
    active = await select()
  })
  return () => {
    if (active === undefined) throw new Error("the backend is selected in beforeAll; read it inside a test")
    return active
  }
}

/** Synchronous copy of a tensor's values as a plain number array. */
export const values = (t: tf.Tensor): Array<number> => Array.from(t.dataSync())

/** Read a tensor's values and dispose it. */
export const take = (t: tf.Tensor): Array<number> => {
  const out = values(t)
  t.dispose()
  return out
}

/** Uniform floats in [lo, hi). */
export function randomFloats(n: number, random: Rng, lo = -1, hi = 1): Float32Array {
  const out = new Float32Array(n)
  for (let i = 0; i < n; i++) out[i] = lo + (hi - lo) * random.uniform()
  return out
}

/** Replace the named parameters (biases, typically) with uniform values in [−0.5, 0.5), so every gate matters. */
export function withRandomBiases(params: Record<string, tf.Tensor>, names: ReadonlyArray<string>, random: Rng): Record<string, tf.Tensor> {
  for (const name of names) {
    const old = params[name]
    params[name] = tf.tensor(randomFloats(old.size, random, -0.5, 0.5), old.shape)
    old.dispose()
  }
  return params
}

/** A random tensor of the given shape from a deterministic stream. */
export function randomTensor(shape: Array<number>, seed: number, ...keys: Array<string | number>): tf.Tensor {
  const size = shape.reduce((a, b) => a * b, 1)
  return tf.tensor(randomFloats(size, rng(seed, "test-tensor", ...keys)), shape)
}

/** max |a − b|; arrays of different lengths are infinitely apart. */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) return Infinity
  let m = 0
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]))
  return m
}

/** max |a − b| / max(1, |b|) — relative error with an absolute floor. */
export function maxRelativeError(a: ArrayLike<number>, b: ArrayLike<number>, floor = 1): number {
  if (a.length !== b.length) return Infinity
  let worst = 0
  for (let i = 0; i < a.length; i++) {
    const err = Math.abs(a[i] - b[i]) / Math.max(floor, Math.abs(b[i]))
    if (!(err <= worst)) worst = Number.isNaN(err) ? Infinity : Math.max(worst, err)
  }
  return worst
}

/** Element-wise closeness: |a − b| ≤ atol + rtol·|b| everywhere. */
export function expectClose(actual: ArrayLike<number>, expected: ArrayLike<number>, atol = 1e-5, rtol = 1e-5): void {
  if (actual.length !== expected.length) throw new Error(`length ${actual.length} ≠ expected ${expected.length}`)
  for (let i = 0; i < actual.length; i++) {
    const diff = Math.abs(actual[i] - expected[i])
    if (!(diff <= atol + rtol * Math.abs(expected[i]))) {
      throw new Error(`element ${i}: ${actual[i]} vs expected ${expected[i]} (|diff| = ${diff}, atol ${atol}, rtol ${rtol})`)
    }
  }
}
