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


// c = f32(v − μ) at dimension d of a row (two lanes, as f64), the centred value Eq. (1)'s passes share.
@inline function centered2(row: usize, mean: usize, d: i32): v128 {
  return f64x2.promote_low_f32x4(f32x4.demote_f64x2_zero(f64x2.sub(f64x2.promote_low_f32x4(v128.load64_zero(row + ((<usize>d) << 2))), v128.load(mean + ((<usize>d) << 3)))))
}

@inline function centered1(row: usize, mean: usize, d: i32): f64 {
  return <f64>(<f32>(<f64>load<f32>(row + ((<usize>d) << 2)) - load<f64>(mean + ((<usize>d) << 3))))
}

// Paper Eq. (1) over a [V, D] embedding, as src/engine/normalize-op.ts's JS loops (the same float64 operations in
// the same order, two dimensions at a time). stats: 3·D f64 — mean, variance, scale — written here.
export function standardize(v: usize, f: usize, out: usize, stats: usize, V: i32, D: i32): void {
  const mean = stats
  const variance = stats + ((<usize>D) << 3)
  const scale = stats + ((<usize>D) << 4)
  memory.fill(stats, 0, (<usize>D) << 4)
  const D2 = D & ~1
  for (let k = 0; k < V; k++) {
    const fk = <f64>load<f32>(f + ((<usize>k) << 2))
    const fv = f64x2.splat(fk)
    const row = v + ((<usize>k * <usize>D) << 2)
    let d = 0
    for (; d < D2; d += 2) {
      const at = mean + ((<usize>d) << 3)
      v128.store(at, f64x2.add(v128.load(at), f64x2.mul(fv, f64x2.promote_low_f32x4(v128.load64_zero(row + ((<usize>d) << 2))))))
    }
    for (; d < D; d++) store<f64>(mean + ((<usize>d) << 3), load<f64>(mean + ((<usize>d) << 3)) + fk * <f64>load<f32>(row + ((<usize>d) << 2)))
  }
  for (let k = 0; k < V; k++) {
    const fk = <f64>load<f32>(f + ((<usize>k) << 2))
    const fv = f64x2.splat(fk)
    const row = v + ((<usize>k * <usize>D) << 2)
    let d = 0
    for (; d < D2; d += 2) {
      const c = f64x2.sub(f64x2.promote_low_f32x4(v128.load64_zero(row + ((<usize>d) << 2))), v128.load(mean + ((<usize>d) << 3)))
      const at = variance + ((<usize>d) << 3)
      v128.store(at, f64x2.add(v128.load(at), f64x2.mul(f64x2.mul(fv, c), c)))
    }
    for (; d < D; d++) {
      const c = <f64>load<f32>(row + ((<usize>d) << 2)) - load<f64>(mean + ((<usize>d) << 3))
      store<f64>(variance + ((<usize>d) << 3), load<f64>(variance + ((<usize>d) << 3)) + fk * c * c)
    }
  }
  for (let d = 0; d < D; d++) store<f64>(scale + ((<usize>d) << 3), 1.0 / Math.sqrt(load<f64>(variance + ((<usize>d) << 3)) + 1e-6))
  for (let k = 0; k < V; k++) {
    const row = v + ((<usize>k * <usize>D) << 2)
    const orow = out + ((<usize>k * <usize>D) << 2)
    let d = 0
    for (; d < D2; d += 2) {
      v128.store64_lane(orow + ((<usize>d) << 2), f32x4.demote_f64x2_zero(f64x2.mul(centered2(row, mean, d), v128.load(scale + ((<usize>d) << 3)))), 0)
    }
    for (; d < D; d++) {
      store<f32>(orow + ((<usize>d) << 2), <f32>(centered1(row, mean, d) * load<f64>(scale + ((<usize>d) << 3))))
    }
  }
}

// Its gradient: a = s·G − s³(Σ G c)·f c, then a −= f Σ a. stats: 4·D f64 — mean and scale (read), then two
// accumulators (written here).
export function standardizeBackward(g: usize, v: usize, f: usize, a: usize, stats: usize, V: i32, D: i32): void {
  const mean = stats
  const scale = stats + ((<usize>D) << 3)
  const gc = stats + ((<usize>D) << 4)
  const sumA = stats + (<usize>D) * 24
  memory.fill(gc, 0, (<usize>D) << 4)
  const D2 = D & ~1
  for (let k = 0; k < V; k++) {
    const row = (<usize>k * <usize>D) << 2
    let d = 0
    for (; d < D2; d += 2) {
      const c = centered2(v + row, mean, d)
      const at = gc + ((<usize>d) << 3)
      v128.store(at, f64x2.add(v128.load(at), f64x2.mul(f64x2.promote_low_f32x4(v128.load64_zero(g + row + ((<usize>d) << 2))), c)))
    }
    for (; d < D; d++) {
      const c = centered1(v + row, mean, d)
      store<f64>(gc + ((<usize>d) << 3), load<f64>(gc + ((<usize>d) << 3)) + <f64>load<f32>(g + row + ((<usize>d) << 2)) * c)
    }
  }
  // gc becomes coef = s³ · gc, in place.
  for (let d = 0; d < D; d++) {
    const s = load<f64>(scale + ((<usize>d) << 3))
    store<f64>(gc + ((<usize>d) << 3), s * s * s * load<f64>(gc + ((<usize>d) << 3)))
  }
  const coef = gc
  for (let k = 0; k < V; k++) {
    const fk = <f64>load<f32>(f + ((<usize>k) << 2))
    const fv = f64x2.splat(fk)
    const row = (<usize>k * <usize>D) << 2
    let d = 0
    for (; d < D2; d += 2) {
      const c = centered2(v + row, mean, d)
      const x = f64x2.sub(
        f64x2.mul(v128.load(scale + ((<usize>d) << 3)), f64x2.promote_low_f32x4(v128.load64_zero(g + row + ((<usize>d) << 2)))),
        f64x2.mul(f64x2.mul(v128.load(coef + ((<usize>d) << 3)), fv), c)
      )
      v128.store64_lane(a + row + ((<usize>d) << 2), f32x4.demote_f64x2_zero(x), 0)
      const at = sumA + ((<usize>d) << 3)
      v128.store(at, f64x2.add(v128.load(at), x))
    }
    for (; d < D; d++) {
      const c = centered1(v + row, mean, d)
      const x = load<f64>(scale + ((<usize>d) << 3)) * <f64>load<f32>(g + row + ((<usize>d) << 2)) - load<f64>(coef + ((<usize>d) << 3)) * fk * c
      store<f32>(a + row + ((<usize>d) << 2), <f32>x)
      store<f64>(sumA + ((<usize>d) << 3), load<f64>(sumA + ((<usize>d) << 3)) + x)
    }
  }
  for (let k = 0; k < V; k++) {
    const fk = <f64>load<f32>(f + ((<usize>k) << 2))
    const fv = f64x2.splat(fk)
    const row = a + ((<usize>k * <usize>D) << 2)
    let d = 0
    for (; d < D2; d += 2) {
      const at = row + ((<usize>d) << 2)
      v128.store64_lane(at, f32x4.demote_f64x2_zero(f64x2.sub(f64x2.promote_low_f32x4(v128.load64_zero(at)), f64x2.mul(fv, v128.load(sumA + ((<usize>d) << 3))))), 0)
    }
    for (; d < D; d++) {
      const at = row + ((<usize>d) << 2)
      store<f32>(at, <f32>(<f64>load<f32>(at) - fk * load<f64>(sumA + ((<usize>d) << 3))))
    }
  }
}

// Σ x² over n float32 values, as tfjs's Square then Sum compute it: each square rounded to f32, added in order into
// an f32 accumulator (the same bits; a sequential chain, so no lanes).
export function sumOfSquares(x: usize, n: i32): f32 {
  let acc: f32 = 0
  for (let i = 0; i < n; i++) {
    const v = load<f32>(x + ((<usize>i) << 2))
    acc += v * v
  }
  return acc
}
