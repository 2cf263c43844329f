// AssemblyScript source of the kernels that run on tfjs-backend-wasm's own heap (its memory is imported, pointers
// are the tensors' byte offsets), compiled by src/engine/heap-kernels.ts with the npm `assemblyscript` compiler.
// They must write nothing but through their pointer arguments: no statics, no allocation (the loader refuses a
// build with a data segment).

// Adam + EMA in place over n float32 values (spec A4.1), in float64 like the JS loop in src/engine/adam-ema.ts and
// in the same order of operations, so the results are the same bits: two lanes of f64 per iteration. The gradient
// is first multiplied by gradScale and rounded to f32 (the clipping factor, as a float32 multiply would; the exact
// product of two f32 in f64 rounded once), which leaves it as it is for 1.
export function adamEma(p: usize, m: usize, v: usize, e: usize, g: usize, n: i32, beta1: f64, beta2: f64, epsilon: f64, stepSize: f64, keep: f64, gradScale: f64): void {
  const c1 = 1.0 - beta1
  const c2 = 1.0 - beta2
  const b1 = f64x2.splat(beta1)
  const b2 = f64x2.splat(beta2)
  const oc1 = f64x2.splat(c1)
  const oc2 = f64x2.splat(c2)
  const eps = f64x2.splat(epsilon)
  const ss = f64x2.splat(stepSize)
  const kp = f64x2.splat(keep)
  const gs = f64x2.splat(gradScale)
  let i = 0
  for (; i + 2 <= n; i += 2) {
    const o = (<usize>i) << 2
    const gi = f64x2.promote_low_f32x4(f32x4.demote_f64x2_zero(f64x2.mul(f64x2.promote_low_f32x4(v128.load64_zero(g + o)), gs)))
    const mi = f64x2.add(f64x2.mul(b1, f64x2.promote_low_f32x4(v128.load64_zero(m + o))), f64x2.mul(oc1, gi))
    const vi = f64x2.add(f64x2.mul(b2, f64x2.promote_low_f32x4(v128.load64_zero(v + o))), f64x2.mul(f64x2.mul(oc2, gi), gi))
    const pi = f64x2.sub(f64x2.promote_low_f32x4(v128.load64_zero(p + o)), f64x2.div(f64x2.mul(ss, mi), f64x2.add(f64x2.sqrt(vi), eps)))
    const ei = f64x2.promote_low_f32x4(v128.load64_zero(e + o))
    v128.store64_lane(m + o, f32x4.demote_f64x2_zero(mi), 0)
    v128.store64_lane(v + o, f32x4.demote_f64x2_zero(vi), 0)
    v128.store64_lane(p + o, f32x4.demote_f64x2_zero(pi), 0)
    v128.store64_lane(e + o, f32x4.demote_f64x2_zero(f64x2.sub(ei, f64x2.mul(kp, f64x2.sub(ei, pi)))), 0)
  }
  for (; i < n; i++) {
    const o = (<usize>i) << 2
    const gi = <f64>(<f32>(<f64>load<f32>(g + o) * gradScale))
    const mi = beta1 * <f64>load<f32>(m + o) + c1 * gi
    const vi = beta2 * <f64>load<f32>(v + o) + c2 * gi * gi
    const pi = <f64>load<f32>(p + o) - (stepSize * mi) / (Math.sqrt(vi) + epsilon)
    const ei = <f64>load<f32>(e + o)
    store<f32>(m + o, <f32>mi)
    store<f32>(v + o, <f32>vi)
    store<f32>(p + o, <f32>pi)
    store<f32>(e + o, <f32>(ei - keep * (ei - pi)))
  }
}

