/**
 * A fused LSTM sequence op for the CPU backends: forward over the whole window with the gates kept in one buffer, and
 * a backward pass whose weight gradients are single large GEMMs over all time steps (not T small ones). Matrix
 * products go to BLAS (bun:ffi); the gate math runs in WebAssembly SIMD kernels (src/engine/gates.ts) on the same
 * memory. Semantics match `referenceLstm` in src/model/classifier.ts exactly (TF BasicLSTMCell, gates i, j, f, o,
 * forget bias 0, state frozen past each sequence's length).
 *
 * Sequences are packed (as PyTorch's PackedSequence): the rows are sorted by length, longest first, so the rows still
 * running at step t are a prefix of `active[t]` rows, and the per-step buffers hold only those, one step after
 * another. Every GEMM and gate pass then costs what the real tokens cost, not B × T: on RT, whose sentences are a
 * fraction of the longest in their batch, that is most of the work.
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

/** The packing of a batch: rows by length (longest first), rows running at each step, each step's first packed row. */
interface Packing {
  /** order[i]: the batch row at sorted position i. */
  readonly order: Int32Array
  /** active[t]: rows with length > t (a prefix of the sorted rows). */
  readonly active: Int32Array
  /** offset[t]: packed rows before step t; offset[T] is the total. */
  readonly offset: Int32Array
  /** Steps that run (the longest length, at most T). */
  readonly steps: number
}

function packing(lengths: Int32Array, T: number): Packing {
  const B = lengths.length
  const length = (b: number) => Math.max(0, Math.min(T, lengths[b]))
  const order = Int32Array.from({ length: B }, (_, b) => b).sort((a, b) => length(b) - length(a) || a - b)
  const steps = B === 0 ? 0 : length(order[0])
  const active = new Int32Array(steps)
  for (let i = 0; i < B; i++) for (let t = 0; t < length(order[i]); t++) active[t]++
  const offset = new Int32Array(steps + 1)
  for (let t = 0; t < steps; t++) offset[t + 1] = offset[t] + active[t]
  return { order, active, offset, steps }
}

/** What the backward pass needs from the forward pass, all inside one workspace. */
export interface LstmTape {
  readonly dims: LstmDims
  readonly ws: Workspace
  readonly packing: Packing
  /** Lengths in sorted order (what the gate kernels read). */
  readonly lengths: { readonly at: number; readonly view: Int32Array }
  /** Inputs, packed [rows, D]. */
  readonly inputs: Buffer
  /** Activated gates i, j, f, o per packed row, [rows, 4H]. */
  readonly gates: Buffer
  /** State before each step: h, c; tanh(c) after each step; packed [rows, H]. */
  readonly hPrev: Buffer
  readonly cPrev: Buffer
  readonly tanhC: Buffer
  /**
   * Backward scratch, allocated with the forward pass: dZ [rows, 4H] (the gates' own memory: the backward step reads a
   * unit's four gates before it writes their gradients, and nothing reads the gates after it; this keeps a pass over
   * 256 rows × 400 steps at H 1024 within one WebAssembly memory), dh, dc, dh_recurrent [B, H] (sorted rows).
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

/**
 * Floats of one `lstmForward` workspace at most (every row running all T steps): lengths, inputs, gates, state, and
 * with a tape h, c, tanh(c) per step. Shorter rows take less.
 */
export function lstmWorkspaceFloats(dims: LstmDims, keepTape: boolean): number {
  return workspaceFloats(dims, dims.batch * dims.steps, keepTape)
}

const workspaceFloats = (dims: LstmDims, rows: number, keepTape: boolean): number => {
  const { batch: B, inputSize: D, units: H } = dims
  return B + rows * D + rows * 4 * H + 2 * B * H + (keepTape ? 3 * rows * H + 3 * B * H : 0)
}

/** Rows of a [B, ·] state in batch order → sorted order (or back, with `inverse`). */
function permuteRows(from: Float32Array, to: Float32Array, order: Int32Array, width: number, inverse = false): void {
  for (let i = 0; i < order.length; i++) {
    const [src, dst] = inverse ? [i, order[i]] : [order[i], i]
    to.set(from.subarray(src * width, (src + 1) * width), dst * width)
  }
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
  const pack = packing(lengths, T)
  const { order, active, offset } = pack
  const rows = offset[pack.steps]
  const ws = Workspace.acquire(workspaceFloats(dims, rows, keepTape))
  const lens = ws.i32(Int32Array.from(order, (b) => lengths[b]))
  const x = ws.f32(rows * D)
  const z = ws.f32(rows * G)
  const h = ws.f32(B * H)
  const c = ws.f32(B * H)
  const hPrev = keepTape ? ws.f32(rows * H) : undefined
  const cPrev = keepTape ? ws.f32(rows * H) : undefined
  const tanhC = keepTape ? ws.f32(rows * H) : undefined
  const outputs = keepOutputs ? new Float32Array(B * T * H) : undefined
  // Packed inputs: step t's running rows, in sorted order.
  for (let t = 0; t < pack.steps; t++) {
    for (let i = 0; i < active[t]; i++) {
      const src = (order[i] * T + t) * D
      x.view.set(inputs.subarray(src, src + D), (offset[t] + i) * D)
    }
  }
  // All input projections in one GEMM: Z[r] = x[r]·Wx + bias; the recurrent term is added per step.
  for (let r = 0; r < rows; r++) z.view.set(w.bias, r * G)
  if (rows > 0) blas.sgemm(false, false, rows, G, D, 1, x.view, D, w.inputKernel, G, 1, z.view, G)
  if (initial) {
    permuteRows(initial.h, h.view, order, H)
    permuteRows(initial.c, c.view, order, H)
  } else {
    h.view.fill(0)
    c.view.fill(0)
  }
  for (let t = 0; t < pack.steps; t++) {
    const n = active[t]
    const zt = z.view.subarray(offset[t] * G, (offset[t] + n) * G)
    hPrev?.view.set(h.view.subarray(0, n * H), offset[t] * H)
    cPrev?.view.set(c.view.subarray(0, n * H), offset[t] * H)
    blas.sgemm(false, false, n, G, H, 1, h.view, H, w.recurrentKernel, G, 1, zt, G)
    ws.kernels.forwardStep(z.at + offset[t] * G * 4, c.at, h.at, tanhC === undefined ? 0 : tanhC.at + offset[t] * H * 4, lens.at, t, n, H)
    // Copy the rows that stepped straight into batch-major order; rows past their end keep the array's zeros.
    if (outputs !== undefined) for (let i = 0; i < n; i++) outputs.set(h.view.subarray(i * H, (i + 1) * H), (order[i] * T + t) * H)
  }
  const tape: LstmTape | undefined = keepTape
    ? { dims, ws, packing: pack, lengths: lens, inputs: x, gates: z, hPrev: hPrev!, cPrev: cPrev!, tanhC: tanhC!, dz: z, dh: ws.f32(B * H), dc: ws.f32(B * H), dhRecurrent: ws.f32(B * H) }
    : undefined
  const finalH = new Float32Array(B * H)
  const finalC = new Float32Array(B * H)
  permuteRows(h.view, finalH, order, H, true)
  permuteRows(c.view, finalC, order, H, true)
  if (tape === undefined) ws.release()
  return { h: finalH, c: finalC, tape, outputs }
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
  const { order, active, offset } = tape.packing
  const rows = offset[tape.packing.steps]
  if (dhFinal === undefined) dh.view.fill(0)
  else permuteRows(dhFinal, dh.view, order, H)
  dc.view.fill(0)
  const dhv = dh.view
  for (let t = tape.packing.steps - 1; t >= 0; t--) {
    const n = active[t]
    // The output at step t is the h this step produced, so its gradient joins dh before the step's backward. Rows
    // past their end output a constant 0 and get nothing; their dh (from the final h) passes through unchanged.
    if (dOutputs !== undefined) {
      for (let i = 0; i < n; i++) {
        const from = (order[i] * T + t) * H
        const to = i * H
        for (let k = 0; k < H; k++) dhv[to + k] += dOutputs[from + k]
      }
    }
    ws.kernels.backwardStep(gates.at + offset[t] * G * 4, cPrev.at + offset[t] * H * 4, tanhC.at + offset[t] * H * 4, dh.at, dc.at, dz.at + offset[t] * G * 4, lengths.at, t, n, H)
    // dh_{t−1} = dZ_t · Whᵀ for the rows that stepped; rows past their end pass dh through unchanged.
    blas.sgemm(false, true, n, H, G, 1, dz.view.subarray(offset[t] * G, (offset[t] + n) * G), G, w.recurrentKernel, G, 0, dhRecurrent.view, H)
    dh.view.set(dhRecurrent.view.subarray(0, n * H))
  }
  const dx = new Float32Array(rows * D)
  if (rows > 0) blas.sgemm(false, true, rows, D, G, 1, dz.view, G, w.inputKernel, G, 0, dx, D)
  // Unpack to batch-major [B, T, D]; padded steps get zero.
  const inputs = new Float32Array(B * T * D)
  for (let t = 0; t < tape.packing.steps; t++) {
    for (let i = 0; i < active[t]; i++) {
      const src = (offset[t] + i) * D
      inputs.set(dx.subarray(src, src + D), (order[i] * T + t) * D)
    }
  }
  if (!weightGradients) {
    ws.release()
    return { inputs, weights: undefined }
  }
  // Weight gradients as single GEMMs over all packed rows.
  const dRecurrent = new Float32Array(H * G)
  const dInputKernel = new Float32Array(D * G)
  if (rows > 0) {
    blas.sgemm(true, false, H, G, rows, 1, tape.hPrev.view, H, dz.view, G, 0, dRecurrent, G)
    blas.sgemm(true, false, D, G, rows, 1, tape.inputs.view, D, dz.view, G, 0, dInputKernel, G)
  }
  const dBias = new Float32Array(G)
  const dzv = dz.view
  for (let r = 0; r < rows; r++) {
    const o = r * G
    for (let k = 0; k < G; k++) dBias[k] += dzv[o + k]
  }
  ws.release()
  return { inputs, weights: { inputKernel: dInputKernel, recurrentKernel: dRecurrent, bias: dBias } }
}
