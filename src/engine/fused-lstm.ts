/**
 * A fused LSTM sequence op for the CPU backends: forward over the whole window with the gates kept in one buffer, and
 * a backward pass whose weight gradients are single large GEMMs over all time steps (not T small ones). Gate math runs
 * in tight loops over typed arrays; matrix products go to BLAS (bun:ffi). Semantics match `lstm` in
 * src/model/classifier.ts exactly (TF BasicLSTMCell, gates i, j, f, o, forget bias 0, state frozen past each length).
 */
import type { Blas } from "./blas.ts"

export interface LstmWeights {
  /** [D, 4H] */
  readonly inputKernel: Float32Array
  /** [H, 4H] */
  readonly recurrentKernel: Float32Array
  /** [4H] */
  readonly bias: Float32Array
}

export interface LstmDims {
  readonly batch: number
  readonly steps: number
  readonly inputSize: number
  readonly units: number
}

/** What the backward pass needs from the forward pass. */
export interface LstmTape {
  readonly dims: LstmDims
  readonly lengths: Int32Array
  /** Inputs, time-major [T, B, D]. */
  readonly inputs: Float32Array
  /** Activated gates i, j, f, o per step, [T, B, 4H]. */
  readonly gates: Float32Array
  /** State before each step: h, c [T, B, H]. */
  readonly hPrev: Float32Array
  readonly cPrev: Float32Array
  /** tanh(c) after each step, [T, B, H]. */
  readonly tanhC: Float32Array
}

export interface LstmForward {
  /** Final state [B, H] (the state at each sequence's last valid step). */
  readonly h: Float32Array
  readonly c: Float32Array
  readonly tape: LstmTape | undefined
}

const sigmoid = (x: number) => 1 / (1 + Math.exp(-x))
/** tanh through one exp: 2.4× faster than Math.tanh in Bun (15 vs 36 ns), exact limits ±1 (no Inf/Inf). */
const tanh = (x: number) => 1 - 2 / (1 + Math.exp(2 * x))

/** x batch-major [B, T, D] → time-major [T, B, D] (and back with `toBatchMajor`). */
function toTimeMajor(x: Float32Array, B: number, T: number, D: number): Float32Array {
  const out = new Float32Array(x.length)
  for (let b = 0; b < B; b++) for (let t = 0; t < T; t++) out.set(x.subarray((b * T + t) * D, (b * T + t + 1) * D), (t * B + b) * D)
  return out
}

function toBatchMajor(x: Float32Array, B: number, T: number, D: number): Float32Array {
  const out = new Float32Array(x.length)
  for (let t = 0; t < T; t++) for (let b = 0; b < B; b++) out.set(x.subarray((t * B + b) * D, (t * B + b + 1) * D), (b * T + t) * D)
  return out
}

export function lstmForward(
  blas: Blas,
  dims: LstmDims,
  inputs: Float32Array,
  lengths: Int32Array,
  w: LstmWeights,
  initial: { readonly h: Float32Array; readonly c: Float32Array } | undefined,
  keepTape: boolean
): LstmForward {
  const { batch: B, steps: T, inputSize: D, units: H } = dims
  const G = 4 * H
  const x = toTimeMajor(inputs, B, T, D)
  // All input projections in one GEMM: Z[t, b] = x[t, b]·Wx + bias; the recurrent term is added per step.
  const z = new Float32Array(T * B * G)
  for (let r = 0; r < T * B; r++) z.set(w.bias, r * G)
  blas.sgemm(false, false, T * B, G, D, 1, x, D, w.inputKernel, G, 1, z, G)
  const h = initial ? Float32Array.from(initial.h) : new Float32Array(B * H)
  const c = initial ? Float32Array.from(initial.c) : new Float32Array(B * H)
  const hPrev = keepTape ? new Float32Array(T * B * H) : undefined
  const cPrev = keepTape ? new Float32Array(T * B * H) : undefined
  const tanhC = keepTape ? new Float32Array(T * B * H) : undefined
  for (let t = 0; t < T; t++) {
    const zt = z.subarray(t * B * G, (t + 1) * B * G)
    hPrev?.set(h, t * B * H)
    cPrev?.set(c, t * B * H)
    blas.sgemm(false, false, B, G, H, 1, h, H, w.recurrentKernel, G, 1, zt, G)
    for (let b = 0; b < B; b++) {
      if (t >= lengths[b]) continue
      const g = b * G
      const s = b * H
      const tc0 = (t * B + b) * H
      for (let k = 0; k < H; k++) {
        const i = sigmoid(zt[g + k])
        const j = tanh(zt[g + H + k])
        const f = sigmoid(zt[g + 2 * H + k])
        const o = sigmoid(zt[g + 3 * H + k])
        zt[g + k] = i
        zt[g + H + k] = j
        zt[g + 2 * H + k] = f
        zt[g + 3 * H + k] = o
        const cNew = f * c[s + k] + i * j
        const tc = tanh(cNew)
        c[s + k] = cNew
        h[s + k] = o * tc
        if (tanhC !== undefined) tanhC[tc0 + k] = tc
      }
    }
  }
  const tape = keepTape ? { dims, lengths, inputs: x, gates: z, hPrev: hPrev!, cPrev: cPrev!, tanhC: tanhC! } : undefined
  return { h, c, tape }
}

export interface LstmGradients {
  /** Batch-major [B, T, D]. */
  readonly inputs: Float32Array
  readonly inputKernel: Float32Array
  readonly recurrentKernel: Float32Array
  readonly bias: Float32Array
}

/** Gradients of a loss with gradient `dhFinal` [B, H] w.r.t. the final h (the final c gets none). */
export function lstmBackward(blas: Blas, tape: LstmTape, w: LstmWeights, dhFinal: Float32Array): LstmGradients {
  const { batch: B, steps: T, inputSize: D, units: H } = tape.dims
  const G = 4 * H
  const { gates, cPrev, tanhC, lengths } = tape
  const dh = Float32Array.from(dhFinal)
  const dc = new Float32Array(B * H)
  const dz = new Float32Array(T * B * G)
  const dhRecurrent = new Float32Array(B * H)
  for (let t = T - 1; t >= 0; t--) {
    const dzt = dz.subarray(t * B * G, (t + 1) * B * G)
    let anyValid = false
    for (let b = 0; b < B; b++) {
      if (t >= lengths[b]) continue // past the end: the state passed through unchanged, so do its gradients
      anyValid = true
      const g = (t * B + b) * G
      const s = b * H
      const st = (t * B + b) * H
      const dg = b * G
      for (let k = 0; k < H; k++) {
        const i = gates[g + k]
        const j = gates[g + H + k]
        const f = gates[g + 2 * H + k]
        const o = gates[g + 3 * H + k]
        const tc = tanhC[st + k]
        const dhk = dh[s + k]
        const dcn = dc[s + k] + dhk * o * (1 - tc * tc)
        dzt[dg + k] = dcn * j * i * (1 - i)
        dzt[dg + H + k] = dcn * i * (1 - j * j)
        dzt[dg + 2 * H + k] = dcn * cPrev[st + k] * f * (1 - f)
        dzt[dg + 3 * H + k] = dhk * tc * o * (1 - o)
        dc[s + k] = dcn * f
      }
    }
    if (!anyValid) continue
    // dh_{t-1} = dZ_t · Whᵀ for the rows that stepped.
    blas.sgemm(false, true, B, H, G, 1, dzt, G, w.recurrentKernel, G, 0, dhRecurrent, H)
    for (let b = 0; b < B; b++) if (t < lengths[b]) dh.set(dhRecurrent.subarray(b * H, (b + 1) * H), b * H)
  }
  // Weight gradients as single GEMMs over all T·B rows.
  const dRecurrent = new Float32Array(H * G)
  blas.sgemm(true, false, H, G, T * B, 1, tape.hPrev, H, dz, G, 0, dRecurrent, G)
  const dInputKernel = new Float32Array(D * G)
  blas.sgemm(true, false, D, G, T * B, 1, tape.inputs, D, dz, G, 0, dInputKernel, G)
  const dBias = new Float32Array(G)
  for (let r = 0; r < T * B; r++) {
    const o = r * G
    for (let k = 0; k < G; k++) dBias[k] += dz[o + k]
  }
  const dx = new Float32Array(T * B * D)
  blas.sgemm(false, true, T * B, D, G, 1, dz, G, w.inputKernel, G, 0, dx, D)
  return { inputs: toBatchMajor(dx, B, T, D), inputKernel: dInputKernel, recurrentKernel: dRecurrent, bias: dBias }
}
