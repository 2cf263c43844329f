/**
 * A fused LSTM sequence op for the CPU backends: forward over the whole window with the gates kept in one buffer, and
 * a backward pass whose weight gradients are single large GEMMs over all time steps (not T small ones). Matrix
 * products go to BLAS (bun:ffi); the gate math runs in WebAssembly SIMD kernels (src/engine/gates.ts) on the same
 * memory. Semantics match `referenceLstm` in src/model/classifier.ts exactly (TF BasicLSTMCell, gates i, j, f, o,
 * forget bias 0, state frozen past each sequence's length).
 */
import type { Blas } from "./blas.ts"
import { Workspace } from "./gates.ts"

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

type Buffer = { readonly at: number; readonly view: Float32Array }

/** What the backward pass needs from the forward pass, all inside one workspace. */
export interface LstmTape {
  readonly dims: LstmDims
  readonly ws: Workspace
  readonly lengths: { readonly at: number; readonly view: Int32Array }
  /** Inputs, time-major [T, B, D]. */
  readonly inputs: Buffer
  /** Activated gates i, j, f, o per step, [T, B, 4H]. */
  readonly gates: Buffer
  /** State before each step: h, c [T, B, H]; tanh(c) after each step [T, B, H]. */
  readonly hPrev: Buffer
  readonly cPrev: Buffer
  readonly tanhC: Buffer
  /**
   * Backward scratch, allocated with the forward pass: dZ [T, B, 4H] (the gates' own memory: the backward step reads a
   * unit's four gates before it writes their gradients, and nothing reads the gates after it; this keeps a pass over
   * 256 rows × 400 steps at H 1024 within one WebAssembly memory), dh, dc, dh_recurrent [B, H].
   */
  readonly dz: Buffer
  readonly dh: Buffer
  readonly dc: Buffer
  readonly dhRecurrent: Buffer
}

export interface LstmForward {
  /** Final state [B, H] (the state at each sequence's last valid step). */
  readonly h: Float32Array
  readonly c: Float32Array
  readonly tape: LstmTape | undefined
  /** h after every step, batch-major [B, T, H], zero at steps t ≥ length; present when `keepOutputs` was set. */
  readonly outputs: Float32Array | undefined
}

/** x batch-major [B, T, D] → time-major [T, B, D] (and back with `toBatchMajor`). */
function copyToTimeMajor(x: Float32Array, out: Float32Array, B: number, T: number, D: number): void {
  for (let b = 0; b < B; b++) for (let t = 0; t < T; t++) out.set(x.subarray((b * T + t) * D, (b * T + t + 1) * D), (t * B + b) * D)
}

function toBatchMajor(x: Float32Array, B: number, T: number, D: number): Float32Array {
  const out = new Float32Array(x.length)
  for (let t = 0; t < T; t++) for (let b = 0; b < B; b++) out.set(x.subarray((t * B + b) * D, (t * B + b + 1) * D), (b * T + t) * D)
  return out
}

/** Floats of one `lstmForward` workspace: lengths, inputs, gates, state, and with a tape h, c, tanh(c) per step. */
export function lstmWorkspaceFloats(dims: LstmDims, keepTape: boolean): number {
  const { batch: B, steps: T, inputSize: D, units: H } = dims
  return B + T * B * D + T * B * 4 * H + 2 * B * H + (keepTape ? 3 * T * B * H + 3 * B * H : 0)
}

export function lstmForward(
  blas: Blas,
  dims: LstmDims,
  inputs: Float32Array,
  lengths: Int32Array,
  w: LstmWeights,
  initial: { readonly h: Float32Array; readonly c: Float32Array } | undefined,
  keepTape: boolean,
  keepOutputs = false
): LstmForward {
  const { batch: B, steps: T, inputSize: D, units: H } = dims
  const G = 4 * H
  const ws = Workspace.acquire(lstmWorkspaceFloats(dims, keepTape))
  const lens = ws.i32(lengths)
  const x = ws.f32(T * B * D)
  const z = ws.f32(T * B * G)
  const h = ws.f32(B * H)
  const c = ws.f32(B * H)
  const hPrev = keepTape ? ws.f32(T * B * H) : undefined
  const cPrev = keepTape ? ws.f32(T * B * H) : undefined
  const tanhC = keepTape ? ws.f32(T * B * H) : undefined
  const outputs = keepOutputs ? new Float32Array(B * T * H) : undefined
  copyToTimeMajor(inputs, x.view, B, T, D)
  // All input projections in one GEMM: Z[t, b] = x[t, b]·Wx + bias; the recurrent term is added per step.
  for (let r = 0; r < T * B; r++) z.view.set(w.bias, r * G)
  blas.sgemm(false, false, T * B, G, D, 1, x.view, D, w.inputKernel, G, 1, z.view, G)
  if (initial) {
    h.view.set(initial.h)
    c.view.set(initial.c)
  } else {
    h.view.fill(0)
    c.view.fill(0)
  }
  for (let t = 0; t < T; t++) {
    const zt = z.view.subarray(t * B * G, (t + 1) * B * G)
    hPrev?.view.set(h.view, t * B * H)
    cPrev?.view.set(c.view, t * B * H)
    blas.sgemm(false, false, B, G, H, 1, h.view, H, w.recurrentKernel, G, 1, zt, G)
    ws.kernels.forwardStep(z.at + t * B * G * 4, c.at, h.at, tanhC === undefined ? 0 : tanhC.at + t * B * H * 4, lens.at, t, B, H)
    // Copy the rows that stepped straight into batch-major order; rows past their end keep the array's zeros.
    if (outputs !== undefined) for (let b = 0; b < B; b++) if (t < lengths[b]) outputs.set(h.view.subarray(b * H, (b + 1) * H), (b * T + t) * H)
  }
  const tape: LstmTape | undefined = keepTape
    ? { dims, ws, lengths: lens, inputs: x, gates: z, hPrev: hPrev!, cPrev: cPrev!, tanhC: tanhC!, dz: z, dh: ws.f32(B * H), dc: ws.f32(B * H), dhRecurrent: ws.f32(B * H) }
    : undefined
  const result = { h: h.view.slice(), c: c.view.slice(), tape, outputs }
  if (tape === undefined) ws.release()
  return result
}

export interface LstmGradients {
  /** Batch-major [B, T, D]. */
  readonly inputs: Float32Array
  /** Absent when not requested. */
  readonly weights: { readonly inputKernel: Float32Array; readonly recurrentKernel: Float32Array; readonly bias: Float32Array } | undefined
}

/**
 * Gradients of a loss w.r.t. the inputs and weights, given its gradient `dhFinal` [B, H] w.r.t. the final h (the final
 * c gets none) and/or `dOutputs` [B, T, H] (batch-major) w.r.t. the per-step outputs of `lstmForward(…, keepOutputs)`.
 * Either may be undefined (no gradient from there). Releases the tape's workspace: call at most once per tape.
 */
export function lstmBackward(
  blas: Blas,
  tape: LstmTape,
  w: LstmWeights,
  dhFinal: Float32Array | undefined,
  weightGradients = true,
  dOutputs?: Float32Array
): LstmGradients {
  const { batch: B, steps: T, inputSize: D, units: H } = tape.dims
  const G = 4 * H
  const { ws, gates, cPrev, tanhC, dz, dh, dc, dhRecurrent, lengths } = tape
  if (dhFinal === undefined) dh.view.fill(0)
  else dh.view.set(dhFinal)
  dc.view.fill(0)
  let maxLength = 0
  for (const n of lengths.view) maxLength = Math.max(maxLength, n)
  // dz shares the gates' memory: the steps and rows the backward pass never visits must read as zero gradient.
  dz.view.fill(0, Math.min(T, maxLength) * B * G)
  const dhv = dh.view
  for (let t = Math.min(T, maxLength) - 1; t >= 0; t--) {
    for (let b = 0; b < B; b++) if (t >= lengths.view[b]) dz.view.fill(0, (t * B + b) * G, (t * B + b + 1) * G)
    // The output at step t is the h this step produced, so its gradient joins dh before the step's backward. Rows
    // past their end output a constant 0 and get nothing; their dh (from the final h) passes through unchanged.
    if (dOutputs !== undefined) {
      for (let b = 0; b < B; b++) {
        if (t >= lengths.view[b]) continue
        const from = (b * T + t) * H
        const to = b * H
        for (let k = 0; k < H; k++) dhv[to + k] += dOutputs[from + k]
      }
    }
    ws.kernels.backwardStep(gates.at + t * B * G * 4, cPrev.at + t * B * H * 4, tanhC.at + t * B * H * 4, dh.at, dc.at, dz.at + t * B * G * 4, lengths.at, t, B, H)
    // dh_{t−1} = dZ_t · Whᵀ for the rows that stepped; rows past their end pass dh through unchanged.
    blas.sgemm(false, true, B, H, G, 1, dz.view.subarray(t * B * G, (t + 1) * B * G), G, w.recurrentKernel, G, 0, dhRecurrent.view, H)
    for (let b = 0; b < B; b++) if (t < lengths.view[b]) dh.view.set(dhRecurrent.view.subarray(b * H, (b + 1) * H), b * H)
  }
  const dx = new Float32Array(T * B * D)
  blas.sgemm(false, true, T * B, D, G, 1, dz.view, G, w.inputKernel, G, 0, dx, D)
  const inputs = toBatchMajor(dx, B, T, D)
  if (!weightGradients) {
    ws.release()
    return { inputs, weights: undefined }
  }
  // Weight gradients as single GEMMs over all T·B rows.
  const dRecurrent = new Float32Array(H * G)
  blas.sgemm(true, false, H, G, T * B, 1, tape.hPrev.view, H, dz.view, G, 0, dRecurrent, G)
  const dInputKernel = new Float32Array(D * G)
  blas.sgemm(true, false, D, G, T * B, 1, tape.inputs.view, D, dz.view, G, 0, dInputKernel, G)
  const dBias = new Float32Array(G)
  const dzv = dz.view
  for (let r = 0; r < T * B; r++) {
    const o = r * G
    for (let k = 0; k < G; k++) dBias[k] += dzv[o + k]
  }
  ws.release()
  return { inputs, weights: { inputKernel: dInputKernel, recurrentKernel: dRecurrent, bias: dBias } }
}
