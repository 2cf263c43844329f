/**
 * Perturbations on the embedded window e [B, T, D] (paper §3, spec A3). All are added *after* embedding dropout.
 *
 *   r_adv  = ε · g / ‖g‖₂,   g = ∇_e ℓ(e)                                    (paper Eq. 5; spec A3.3)
 *   r_vadv = ε · d / ‖d‖₂,   d = ∇_d KL(p(·|e) ‖ p(·|e + d)) at d = ξ·u/‖u‖   (paper Eq. 7; spec A3.4)
 *   r_rand = ε · u / ‖u‖₂,   u ~ N(0, I)                                     (spec A3.5)
 *
 * Norms are per example over time × embedding dims of the window, with the reference's max-rescale guard so that a
 * zero direction maps to zero, never NaN. Random directions are masked at EOS and padding; the adversarial gradient
 * and the final VAT direction are not (spec A6).
 */
import * as tf from "@tensorflow/tfjs-core"
import type { Rng } from "../random.ts"

/**
 * scale_l2: ε·x / ‖x‖₂ per example (norm over all axes but the first).
 *
 * Like the reference (spec A3.2) it divides by α = max|x| first, so squaring neither overflows nor underflows for any
 * float32 magnitude, and maps x = 0 to 0 (never NaN). Unlike the reference we add no 1e-12 to α and no 1e-6 under the
 * root: those shrink the result for directions with max|x| ≲ 1e-6 (a nearly-zero gradient would get a nearly-zero
 * perturbation instead of norm ε). Here Σ(x/α)² ≥ 1 whenever x ≠ 0, so ‖result‖ = ε exactly for every nonzero x —
 * the paper's definition r = ε·g/‖g‖₂.
 */
export function scaleL2(x: tf.Tensor, epsilon: number): tf.Tensor {
  return tf.tidy(() => {
    const axes = x.shape.map((_, i) => i).slice(1)
    const alpha = tf.max(tf.abs(x), axes, true)
    const unit = tf.div(x, tf.where(tf.greater(alpha, 0), alpha, tf.onesLike(alpha)))
    const norm = tf.sqrt(tf.maximum(tf.sum(tf.square(unit), axes, true), 1))
    return tf.mul(epsilon, tf.div(unit, norm))
  })
}

/** [B, T, 1] mask keeping steps 0 … len−2: zero at the last valid step (EOS) and on padding (spec A3.2 mask_by_length). */
export function beforeEosMask(lengths: Int32Array, steps: number): tf.Tensor3D {
  const B = lengths.length
  const m = new Float32Array(B * steps)
  for (let b = 0; b < B; b++) for (let t = 0; t < lengths[b] - 1 && t < steps; t++) m[b * steps + t] = 1
  return tf.tensor3d(m, [B, steps, 1])
}

/** Standard normal noise of `shape` from a seeded generator (so a step's noise is reproducible on resume). */
export function gaussian(shape: ReadonlyArray<number>, random: Rng): tf.Tensor {
  const size = shape.reduce((a, b) => a * b, 1)
  const values = new Float32Array(size)
  for (let i = 0; i < size; i++) values[i] = random.normal()
  return tf.tensor(values, [...shape])
}

/** r_rand: Gaussian `noise` [B, T, D] masked at EOS and padding, scaled to norm ε per example. */
export function randomPerturbation(noise: tf.Tensor3D, lengths: Int32Array, epsilon: number): tf.Tensor3D {
  return tf.tidy(() => scaleL2(tf.mul(noise, beforeEosMask(lengths, noise.shape[1])), epsilon) as tf.Tensor3D)
}

/** r_adv from the loss gradient g = ∇_e ℓ (already a constant: computed in its own pass, no gradient flows through it). */
export function adversarialPerturbation(lossGradient: tf.Tensor3D, epsilon: number): tf.Tensor3D {
  return scaleL2(lossGradient, epsilon) as tf.Tensor3D
}

/**
 * r_vadv by power iteration (paper Eq. 7, spec A3.4): d ← ∇_d KL(q ‖ p(e + d)) at d = ξ·normalize(mask(d)), repeated
 * `iterations` times from d ~ N(0, I), then scaled to ε. `klAt(d)` must return the KL with q held constant.
 */
export function virtualAdversarialPerturbation(
  shape: ReadonlyArray<number>,
  lengths: Int32Array,
  options: { readonly epsilon: number; readonly xi: number; readonly iterations: number },
  klAt: (d: tf.Tensor3D) => tf.Scalar,
  noise: tf.Tensor3D
): tf.Tensor3D {
  return tf.tidy(() => {
    const mask = beforeEosMask(lengths, shape[1])
    let d: tf.Tensor3D = noise
    for (let k = 0; k < options.iterations; k++) {
      const probe = scaleL2(tf.mul(d, mask), options.xi) as tf.Tensor3D
      d = tf.grad((x: tf.Tensor) => klAt(x as tf.Tensor3D))(probe) as tf.Tensor3D
    }
    return scaleL2(d, options.epsilon) as tf.Tensor3D
  })
}
