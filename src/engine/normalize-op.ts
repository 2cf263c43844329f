/**
 * Paper Eq. (1) as one op for the CPU engine: the frequency-weighted standardization of the embedding matrix and its
 * gradient in plain loops over V × D (a few passes, straight into the output tensors' memory), instead of the dozen
 * full-size tfjs ops (and their autodiff casts and broadcasts) that otherwise dominate a small model's step. Same
 * math as `normalizeEmbeddings`:
 *
 *   μ = Σ_k f_k v_k,  c_k = v_k − μ,  σ² = Σ_k f_k c_k²,  s = (σ² + 1e-6)^(−1/2),  v̄_k = c_k · s        (per dim)
 *   backward, with G = ∂L/∂v̄:   A_k = s·G_k − s³ · (Σ_j G_j c_j) · f_k c_k,   ∂L/∂v_k = A_k − f_k Σ_j A_j
 *
 * The frequencies are a constant (no gradient). c is recomputed from v in the backward pass (v is unchanged until
 * the optimizer step), rounded to float32 exactly where a stored float32 copy of it would be. On the wasm backend the
 * passes run as SIMD kernels on the backend's heap (src/engine/assembly/heap-kernels.ts), with the same bits.
 */
import * as tf from "@tensorflow/tfjs-core"
import { heapF64Scratch, type HeapKernels, heapKernels, heapOffset, heapTensor } from "./heap-kernels.ts"
import { filledTensor } from "./js-kernel.ts"

export function fusedNormalizeEmbeddings(embedding: tf.Tensor2D, frequencies: tf.Tensor1D): tf.Tensor2D {
  const [V, D] = embedding.shape
  const f = frequencies.dataSync() as Float32Array
  const op = tf.customGrad(((raw: tf.Tensor) => {
    const mean = new Float64Array(D)
    const scale = new Float64Array(D)
    const simd = heapKernels()
    const value =
      simd === undefined || frequencies.dtype !== "float32"
        ? filledTensor([V, D], [raw], (out, v) => standardize(v, f, mean, scale, out, V, D))
        : heapStandardize(simd, raw, frequencies, mean, scale, V, D)
    return {
      value,
      gradFunc: (dy: tf.Tensor) => {
        if (raw.isDisposed) throw new Error("normalizeEmbeddings: the embedding was disposed before its gradient was taken")
        return simd === undefined || frequencies.dtype !== "float32" || frequencies.isDisposed
          ? filledTensor([V, D], [dy, raw], (a, g, v) => standardizeBackward(g, v, f, mean, scale, a, V, D))
          : heapStandardizeBackward(simd, dy, raw, frequencies, mean, scale, V, D)
      }
    }
  }) as unknown as Parameters<typeof tf.customGrad>[0])
  return op(embedding) as tf.Tensor2D
}

/** The forward pass as the SIMD kernel on the wasm heap (same bits); keeps μ and s for the backward pass. */
function heapStandardize(simd: HeapKernels, raw: tf.Tensor, frequencies: tf.Tensor, mean: Float64Array, scale: Float64Array, V: number, D: number): tf.Tensor {
  const out = heapTensor([V, D])
  const stats = heapF64Scratch(3 * D)
  simd.standardize(heapOffset(raw), heapOffset(frequencies), heapOffset(out), stats.at, V, D)
  mean.set(stats.view.subarray(0, D)) // nothing was allocated since the view was taken
  scale.set(stats.view.subarray(2 * D, 3 * D))
  stats.tensor.dispose()
  return out
}

function heapStandardizeBackward(simd: HeapKernels, dy: tf.Tensor, raw: tf.Tensor, frequencies: tf.Tensor, mean: Float64Array, scale: Float64Array, V: number, D: number): tf.Tensor {
  const out = heapTensor([V, D])
  const stats = heapF64Scratch(4 * D)
  stats.view.set(mean, 0)
  stats.view.set(scale, D)
  simd.standardizeBackward(heapOffset(dy), heapOffset(raw), heapOffset(frequencies), heapOffset(out), stats.at, V, D)
  stats.tensor.dispose()
  return out
}

/** Fills `mean` with μ, `scale` with (σ² + 1e-6)^(−1/2) per dimension, and `out` with (v − μ) · s. */
function standardize(v: Float32Array, f: Float32Array, mean: Float64Array, scale: Float64Array, out: Float32Array, V: number, D: number): void {
  for (let k = 0; k < V; k++) {
    const fk = f[k]
    for (let d = 0, o = k * D; d < D; d++) mean[d] += fk * v[o + d]
  }
  const variance = new Float64Array(D)
  for (let k = 0; k < V; k++) {
    const fk = f[k]
    for (let d = 0, o = k * D; d < D; d++) {
      const c = v[o + d] - mean[d]
      variance[d] += fk * c * c
    }
  }
  for (let d = 0; d < D; d++) scale[d] = 1 / Math.sqrt(variance[d] + 1e-6)
  for (let k = 0; k < V; k++) for (let d = 0, o = k * D; d < D; d++) out[o + d] = Math.fround(v[o + d] - mean[d]) * scale[d]
}

function standardizeBackward(g: Float32Array, v: Float32Array, f: Float32Array, mean: Float64Array, scale: Float64Array, a: Float32Array, V: number, D: number): void {
  // gc[d] = Σ_j G_jd c_jd
  const gc = new Float64Array(D)
  for (let k = 0; k < V; k++) for (let d = 0, o = k * D; d < D; d++) gc[d] += g[o + d] * Math.fround(v[o + d] - mean[d])
  const coef = new Float64Array(D)
  for (let d = 0; d < D; d++) coef[d] = scale[d] * scale[d] * scale[d] * gc[d]
  const sumA = new Float64Array(D)
  for (let k = 0; k < V; k++) {
    const fk = f[k]
    for (let d = 0, o = k * D; d < D; d++) {
      const x = scale[d] * g[o + d] - coef[d] * fk * Math.fround(v[o + d] - mean[d])
      a[o + d] = x
      sumA[d] += x
    }
  }
  for (let k = 0; k < V; k++) {
    const fk = f[k]
    for (let d = 0, o = k * D; d < D; d++) a[o + d] -= fk * sumA[d]
  }
}
