/**
 * Paper Eq. (1) as one op for the CPU engine: the frequency-weighted standardization of the embedding matrix and its
 * gradient in plain loops over V × D (a few passes), instead of the dozen full-size tfjs ops (and their autodiff
 * casts and broadcasts) that otherwise dominate a small model's step. Same math as `normalizeEmbeddings`:
 *
 *   μ = Σ_k f_k v_k,  c_k = v_k − μ,  σ² = Σ_k f_k c_k²,  s = (σ² + 1e-6)^(−1/2),  v̄_k = c_k · s        (per dim)
 *   backward, with G = ∂L/∂v̄:   A_k = s·G_k − s³ · (Σ_j G_j c_j) · f_k c_k,   ∂L/∂v_k = A_k − f_k Σ_j A_j
 *
 * The frequencies are a constant (no gradient).
 */
import * as tf from "@tensorflow/tfjs-core"
import { valuesView } from "./js-kernel.ts"

export function fusedNormalizeEmbeddings(embedding: tf.Tensor2D, frequencies: tf.Tensor1D): tf.Tensor2D {
  const [V, D] = embedding.shape
  const f = frequencies.dataSync() as Float32Array
  const op = tf.customGrad(((raw: tf.Tensor) => {
    const v = valuesView(raw)
    const centered = new Float32Array(V * D)
    const scale = new Float64Array(D)
    standardize(v, f, centered, scale, V, D)
    const out = new Float32Array(V * D)
    for (let k = 0; k < V; k++) for (let d = 0, o = k * D; d < D; d++) out[o + d] = centered[o + d] * scale[d]
    return {
      value: tf.tensor2d(out, [V, D]),
      gradFunc: (dy: tf.Tensor) => tf.tensor2d(standardizeBackward(valuesView(dy), f, centered, scale, V, D), [V, D])
    }
  }) as unknown as Parameters<typeof tf.customGrad>[0])
  return op(embedding) as tf.Tensor2D
}

/** Fills `centered` with v − μ and `scale` with (σ² + 1e-6)^(−1/2), per dimension. */
function standardize(v: Float32Array, f: Float32Array, centered: Float32Array, scale: Float64Array, V: number, D: number): void {
  const mean = new Float64Array(D)
  for (let k = 0; k < V; k++) {
    const fk = f[k]
    for (let d = 0, o = k * D; d < D; d++) mean[d] += fk * v[o + d]
  }
  const variance = new Float64Array(D)
  for (let k = 0; k < V; k++) {
    const fk = f[k]
    for (let d = 0, o = k * D; d < D; d++) {
      const c = v[o + d] - mean[d]
      centered[o + d] = c
      variance[d] += fk * c * c
    }
  }
  for (let d = 0; d < D; d++) scale[d] = 1 / Math.sqrt(variance[d] + 1e-6)
}

function standardizeBackward(g: Float32Array, f: Float32Array, centered: Float32Array, scale: Float64Array, V: number, D: number): Float32Array {
  // gc[d] = Σ_j G_jd c_jd
  const gc = new Float64Array(D)
  for (let k = 0; k < V; k++) for (let d = 0, o = k * D; d < D; d++) gc[d] += g[o + d] * centered[o + d]
  const coef = new Float64Array(D)
  for (let d = 0; d < D; d++) coef[d] = scale[d] * scale[d] * scale[d] * gc[d]
  const a = new Float32Array(V * D)
  const sumA = new Float64Array(D)
  for (let k = 0; k < V; k++) {
    const fk = f[k]
    for (let d = 0, o = k * D; d < D; d++) {
      const x = scale[d] * g[o + d] - coef[d] * fk * centered[o + d]
      a[o + d] = x
      sumA[d] += x
    }
  }
  for (let k = 0; k < V; k++) {
    const fk = f[k]
    for (let d = 0, o = k * D; d < D; d++) a[o + d] -= fk * sumA[d]
  }
  return a
}
