// AssemblyScript source of the LSTM gate kernels (WebAssembly SIMD, 4 lanes of f32), compiled by
// src/engine/gates.ts with the npm `assemblyscript` compiler. Pointers are byte offsets into the imported memory.
// Semantics match the scalar loops in src/engine/fused-lstm.ts: TF BasicLSTMCell, gates i, j, f, o, forget bias 0,
// rows with t >= length left untouched.

// exp for 4 lanes: Cephes-style range reduction x = n·ln2 + r and a degree-6 polynomial (|rel. error| < 2e-7).
@inline function exp4(x: v128): v128 {
  x = f32x4.min(f32x4.max(x, f32x4.splat(-87.0)), f32x4.splat(88.0))
  const n = f32x4.nearest(f32x4.mul(x, f32x4.splat(1.44269504088896341)))
  let r = f32x4.sub(x, f32x4.mul(n, f32x4.splat(0.693359375)))
  r = f32x4.sub(r, f32x4.mul(n, f32x4.splat(-2.12194440e-4)))
  let p = f32x4.splat(1.9875691500e-4)
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(1.3981999507e-3))
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(8.3334519073e-3))
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(4.1665795894e-2))
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(1.6666665459e-1))
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(5.0000001201e-1))
  p = f32x4.add(f32x4.mul(f32x4.mul(p, r), r), f32x4.add(r, f32x4.splat(1.0)))
  const scale = i32x4.shl(i32x4.add(i32x4.trunc_sat_f32x4_s(n), i32x4.splat(127)), 23)
  return f32x4.mul(p, scale)
}

@inline function sigmoid4(x: v128): v128 {
  const one = f32x4.splat(1.0)
  return f32x4.div(one, f32x4.add(one, exp4(f32x4.neg(x))))
}

// tanh(x) = 1 − 2 / (1 + e^{2x}): exact limits ±1 since exp4 saturates instead of overflowing.
@inline function tanh4(x: v128): v128 {
  const one = f32x4.splat(1.0)
  return f32x4.sub(one, f32x4.div(f32x4.splat(2.0), f32x4.add(one, exp4(f32x4.add(x, x)))))
}

@inline function sigmoid1(x: f32): f32 {
  return 1.0 / (1.0 + Mathf.exp(-x))
}

@inline function tanh1(x: f32): f32 {
  return 1.0 - 2.0 / (1.0 + Mathf.exp(Mathf.min(2.0 * x, 88.0)))
}

// One forward time step over a batch. z: [B, 4H] pre-activations in, activated gates out; c, h: [B, H] state,
// updated in place; tanhC: [B, H] out (may be 0 when not needed); lengths: i32[B].
export function forwardStep(z: usize, c: usize, h: usize, tanhC: usize, lengths: usize, t: i32, B: i32, H: i32): void {
  const G = 4 * H
  const vecEnd = H & ~3
  for (let b = 0; b < B; b++) {
    if (t >= load<i32>(lengths + (<usize>b << 2))) continue
    const zi = z + (<usize>(b * G) << 2)
    const zj = zi + (<usize>H << 2)
    const zf = zj + (<usize>H << 2)
    const zo = zf + (<usize>H << 2)
    const cb = c + (<usize>(b * H) << 2)
    const hb = h + (<usize>(b * H) << 2)
    const tb: usize = tanhC == 0 ? <usize>0 : tanhC + (<usize>(b * H) << 2)
    for (let k = 0; k < vecEnd; k += 4) {
      const off = <usize>k << 2
      const i = sigmoid4(v128.load(zi + off))
      const j = tanh4(v128.load(zj + off))
      const f = sigmoid4(v128.load(zf + off))
      const o = sigmoid4(v128.load(zo + off))
      v128.store(zi + off, i)
      v128.store(zj + off, j)
      v128.store(zf + off, f)
      v128.store(zo + off, o)
      const cn = f32x4.add(f32x4.mul(f, v128.load(cb + off)), f32x4.mul(i, j))
      const tc = tanh4(cn)
      v128.store(cb + off, cn)
      v128.store(hb + off, f32x4.mul(o, tc))
      if (tb != 0) v128.store(tb + off, tc)
    }
    for (let k = vecEnd; k < H; k++) {
      const off = <usize>k << 2
      const i = sigmoid1(load<f32>(zi + off))
      const j = tanh1(load<f32>(zj + off))
      const f = sigmoid1(load<f32>(zf + off))
      const o = sigmoid1(load<f32>(zo + off))
      store<f32>(zi + off, i)
      store<f32>(zj + off, j)
      store<f32>(zf + off, f)
      store<f32>(zo + off, o)
      const cn = f * load<f32>(cb + off) + i * j
      const tc = tanh1(cn)
      store<f32>(cb + off, cn)
      store<f32>(hb + off, o * tc)
      if (tb != 0) store<f32>(tb + off, tc)
    }
  }
}

// One backward time step. gates: [B, 4H] activated gates of step t; cPrev, tanhC: [B, H] of step t; dh: [B, H] in;
// dc: [B, H] in/out (becomes dc_{t−1}); dz: [B, 4H] out (pre-activation gradients).
export function backwardStep(gates: usize, cPrev: usize, tanhC: usize, dh: usize, dc: usize, dz: usize, lengths: usize, t: i32, B: i32, H: i32): void {
  const G = 4 * H
  const vecEnd = H & ~3
  const one = f32x4.splat(1.0)
  for (let b = 0; b < B; b++) {
    if (t >= load<i32>(lengths + (<usize>b << 2))) continue
    const gi = gates + (<usize>(b * G) << 2)
    const gj = gi + (<usize>H << 2)
    const gf = gj + (<usize>H << 2)
    const go = gf + (<usize>H << 2)
    const di = dz + (<usize>(b * G) << 2)
    const dj = di + (<usize>H << 2)
    const df = dj + (<usize>H << 2)
    const dO = df + (<usize>H << 2)
    const row = <usize>(b * H) << 2
    for (let k = 0; k < vecEnd; k += 4) {
      const off = <usize>k << 2
      const i = v128.load(gi + off)
      const j = v128.load(gj + off)
      const f = v128.load(gf + off)
      const o = v128.load(go + off)
      const tc = v128.load(tanhC + row + off)
      const dhk = v128.load(dh + row + off)
      const dcn = f32x4.add(v128.load(dc + row + off), f32x4.mul(f32x4.mul(dhk, o), f32x4.sub(one, f32x4.mul(tc, tc))))
      v128.store(di + off, f32x4.mul(f32x4.mul(dcn, j), f32x4.mul(i, f32x4.sub(one, i))))
      v128.store(dj + off, f32x4.mul(f32x4.mul(dcn, i), f32x4.sub(one, f32x4.mul(j, j))))
      v128.store(df + off, f32x4.mul(f32x4.mul(dcn, v128.load(cPrev + row + off)), f32x4.mul(f, f32x4.sub(one, f))))
      v128.store(dO + off, f32x4.mul(f32x4.mul(dhk, tc), f32x4.mul(o, f32x4.sub(one, o))))
      v128.store(dc + row + off, f32x4.mul(dcn, f))
    }
    for (let k = vecEnd; k < H; k++) {
      const off = <usize>k << 2
      const i = load<f32>(gi + off)
      const j = load<f32>(gj + off)
      const f = load<f32>(gf + off)
      const o = load<f32>(go + off)
      const tc = load<f32>(tanhC + row + off)
      const dhk = load<f32>(dh + row + off)
      const dcn = load<f32>(dc + row + off) + dhk * o * (1.0 - tc * tc)
      store<f32>(di + off, dcn * j * i * (1.0 - i))
      store<f32>(dj + off, dcn * i * (1.0 - j * j))
      store<f32>(df + off, dcn * load<f32>(cPrev + row + off) * f * (1.0 - f))
      store<f32>(dO + off, dhk * tc * o * (1.0 - o))
      store<f32>(dc + row + off, dcn * f)
    }
  }
}

// The sampled softmax's row pass (src/engine/sampled-softmax-op.ts): per row n, the logits [K] (in: z − shift
// applied here) become probabilities over [true, sampled…] with accidental hits (ids[k] == targets[n]) removed;
// pTrue[n] and loss[n] = log Σ − (true logit − max) out. Sums in f64. logits: f32[N·K]; trueLogits, pTrue, loss:
// f32[N]; targets: i32[N]; ids: i32[K]; shift: f32[K] (sampled bias − log expected count).
export function softmaxRows(logits: usize, trueLogits: usize, targets: usize, ids: usize, shift: usize, pTrue: usize, loss: usize, N: i32, K: i32): void {
  const vecEnd = K & ~3
  const negInf = f32x4.splat(-Infinity)
  for (let n = 0; n < N; n++) {
    const row = logits + ((<usize>n * <usize>K) << 2)
    const t = load<i32>(targets + ((<usize>n) << 2))
    const tv = i32x4.splat(t)
    const trueLogit = load<f32>(trueLogits + ((<usize>n) << 2))
    let maxv = f32x4.splat(trueLogit)
    for (let k = 0; k < vecEnd; k += 4) {
      const off = (<usize>k) << 2
      const z = f32x4.add(v128.load(row + off), v128.load(shift + off))
      v128.store(row + off, z)
      maxv = f32x4.max(maxv, v128.bitselect(negInf, z, i32x4.eq(v128.load(ids + off), tv)))
    }
    let max = Mathf.max(Mathf.max(f32x4.extract_lane(maxv, 0), f32x4.extract_lane(maxv, 1)), Mathf.max(f32x4.extract_lane(maxv, 2), f32x4.extract_lane(maxv, 3)))
    for (let k = vecEnd; k < K; k++) {
      const off = (<usize>k) << 2
      const z = load<f32>(row + off) + load<f32>(shift + off)
      store<f32>(row + off, z)
      if (load<i32>(ids + off) != t && z > max) max = z
    }
    const mv = f32x4.splat(max)
    const eTrue = Math.exp(<f64>trueLogit - <f64>max)
    let sumv = f64x2.splat(0)
    for (let k = 0; k < vecEnd; k += 4) {
      const off = (<usize>k) << 2
      const e = v128.andnot(exp4(f32x4.sub(v128.load(row + off), mv)), i32x4.eq(v128.load(ids + off), tv))
      v128.store(row + off, e)
      sumv = f64x2.add(sumv, f64x2.add(f64x2.promote_low_f32x4(e), f64x2.promote_low_f32x4(i32x4.shuffle(e, e, 2, 3, 0, 1))))
    }
    let sum = eTrue + f64x2.extract_lane(sumv, 0) + f64x2.extract_lane(sumv, 1)
    for (let k = vecEnd; k < K; k++) {
      const off = (<usize>k) << 2
      const e: f32 = load<i32>(ids + off) == t ? 0 : <f32>Math.exp(<f64>load<f32>(row + off) - <f64>max)
      store<f32>(row + off, e)
      sum += <f64>e
    }
    const inv = 1.0 / sum
    const invv = f32x4.splat(<f32>inv)
    for (let k = 0; k < vecEnd; k += 4) {
      const off = (<usize>k) << 2
      v128.store(row + off, f32x4.mul(v128.load(row + off), invv))
    }
    for (let k = vecEnd; k < K; k++) {
      const off = (<usize>k) << 2
      store<f32>(row + off, <f32>(<f64>load<f32>(row + off) * inv))
    }
    store<f32>(pTrue + ((<usize>n) << 2), <f32>(eTrue * inv))
    store<f32>(loss + ((<usize>n) << 2), <f32>(Math.log(sum) + <f64>max - <f64>trueLogit))
  }
}
