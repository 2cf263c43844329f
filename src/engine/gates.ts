/**
 * LSTM gate kernels: WebAssembly SIMD (4 × f32 lanes, src/engine/assembly/lstm-gates.ts, compiled from source with the
 * npm `assemblyscript` compiler on first use and cached in build/), or plain JS loops when that is unavailable.
 *
 * Each fused-LSTM call works in a `Workspace`: one WebAssembly.Memory sized up front for all of the call's buffers
 * (so views never detach), with its own instance of the kernel module. BLAS writes into the same memory through
 * bun:ffi, so nothing is copied between the GEMMs and the gate loops.
 */
import { Effect, type Scope } from "effect"
import { assemblyBinary } from "./assembly.ts"

const PAGE = 65536
/** The module's own statics live below this offset. */
const RESERVED = PAGE

interface KernelExports {
  forwardStep(z: number, c: number, h: number, tanhC: number, lengths: number, t: number, B: number, H: number): void
  backwardStep(gates: number, cPrev: number, tanhC: number, dh: number, dc: number, dz: number, lengths: number, t: number, B: number, H: number): void
}

/** The sampled softmax's row pass (SIMD module only; see src/engine/assembly/lstm-gates.ts). */
export interface SoftmaxRowsKernel {
  softmaxRows(logits: number, trueLogits: number, targets: number, ids: number, shift: number, pTrue: number, loss: number, N: number, K: number): void
}

let compiled: WebAssembly.Module | undefined
let loadError: string | undefined

/** Compile (if the cached .wasm is missing or older than its source) and load the SIMD kernels. */
export async function loadGateKernels(): Promise<{ readonly simd: boolean; readonly note: string }> {
  if (compiled !== undefined) return { simd: true, note: "wasm SIMD gate kernels" }
  if (process.env.ADVTEXT_GATES === "js") return { simd: false, note: "JS gate loops (ADVTEXT_GATES=js)" }
  try {
    compiled = new WebAssembly.Module(await assemblyBinary("lstm-gates"))
    return { simd: true, note: "wasm SIMD gate kernels" }
  } catch (cause) {
    loadError = cause instanceof Error ? cause.message : String(cause)
    return { simd: false, note: `JS gate loops (SIMD kernels unavailable: ${loadError})` }
  }
}

/** Whether new workspaces get the SIMD module. */
export const simdGatesActive = (): boolean => compiled !== undefined && !simdDisabled

/** Use the JS loops even when the SIMD module is loaded (tests compare the two). */
export function setSimdGates(enabled: boolean): void {
  simdDisabled = !enabled
}
let simdDisabled = false

/**
 * Fresh memory costs a page fault per 4 KiB on first touch (measured here: ~0.65 s for the 240 MB of one PAPER-RT
 * VAT forward pass), so released workspaces are kept and reused, up to `POOL_BYTES` in total.
 */
const POOL_BYTES = 6 * 2 ** 30
const pool: Array<Workspace> = []

/** Bytes the pool of released workspaces holds. */
export const pooledWorkspaceBytes = (): number => pool.reduce((a, w) => a + w.byteLength, 0)

/**
 * The workspace pool as a resource of a scope (a training run): the workspaces released into it while the scope is
 * open are reused, and when it closes the pool lets them go, instead of holding up to POOL_BYTES for the rest of the
 * process.
 */
export const scopedWorkspacePool: Effect.Effect<void, never, Scope.Scope> = Effect.acquireRelease(Effect.void, () => Effect.sync(() => void pool.splice(0)))

/** The most one WebAssembly memory (wasm32) can hold: 65,536 pages of 64 KiB. */
export const WASM_MEMORY_LIMIT = 65536 * PAGE

/** Bytes of the workspace for `floats` values: the module's statics, the values, 16-byte alignment of each buffer. */
export const workspaceBytes = (floats: number): number => RESERVED + floats * 4 + 64 * 16

export class Workspace {
  private buffer: ArrayBuffer
  private next = RESERVED
  private readonly memory: WebAssembly.Memory | undefined
  readonly kernels: KernelExports
  /** Present in SIMD workspaces only. */
  readonly softmax: SoftmaxRowsKernel | undefined

  /** A workspace with room for `floats` values: a pooled one when available. Give it back with `release`. */
  static acquire(floats: number): Workspace {
    const bytes = workspaceBytes(floats)
    if (bytes > WASM_MEMORY_LIMIT) {
      throw new Error(
        `a fused-LSTM pass needs ${(bytes / 2 ** 30).toFixed(1)} GiB in one WebAssembly memory, more than the 4 GiB WebAssembly allows: ` +
          `lower the batch size, data.window or model.lstmUnits`
      )
    }
    const simd = simdGatesActive()
    // Prefer the smallest pooled workspace that fits, else grow the largest one.
    let best = -1
    for (let i = 0; i < pool.length; i++) {
      if (pool[i].simd !== simd) continue
      const fits = pool[i].buffer.byteLength >= bytes
      if (best < 0 || (fits && (pool[best].buffer.byteLength < bytes || pool[i].buffer.byteLength < pool[best].buffer.byteLength)) || (!fits && pool[best].buffer.byteLength < bytes && pool[i].buffer.byteLength > pool[best].buffer.byteLength)) best = i
    }
    const ws = best >= 0 ? pool.splice(best, 1)[0] : new Workspace(bytes, simd)
    ws.reserve(bytes)
    return ws
  }

  private constructor(bytes: number, readonly simd: boolean) {
    if (simd) {
      this.memory = new WebAssembly.Memory({ initial: Math.ceil(bytes / PAGE) })
      const instance = new WebAssembly.Instance(compiled!, { env: { memory: this.memory, abort: () => undefined } })
      this.buffer = this.memory.buffer
      this.kernels = instance.exports as unknown as KernelExports
      this.softmax = instance.exports as unknown as SoftmaxRowsKernel
    } else {
      this.memory = undefined
      this.buffer = new ArrayBuffer(bytes)
      this.kernels = jsKernels(() => this.buffer)
      this.softmax = undefined
    }
  }

  private reserve(bytes: number): void {
    this.next = RESERVED
    if (this.buffer.byteLength >= bytes) return
    if (this.memory !== undefined) {
      this.memory.grow(Math.ceil((bytes - this.buffer.byteLength) / PAGE))
      this.buffer = this.memory.buffer
    } else {
      this.buffer = new ArrayBuffer(bytes)
    }
  }

  get byteLength(): number {
    return this.buffer.byteLength
  }

  /** Return to the pool (views handed out before must not be used afterwards). */
  release(): void {
    const total = pooledWorkspaceBytes()
    if (total + this.buffer.byteLength <= POOL_BYTES) pool.push(this)
  }

  /** A float32 buffer of n values and its byte offset (for the kernels). Not zeroed: pooled memory is reused. */
  f32(n: number): { readonly at: number; readonly view: Float32Array } {
    const at = this.take(n)
    return { at, view: new Float32Array(this.buffer, at, n) }
  }

  i32(values: Int32Array): { readonly at: number; readonly view: Int32Array } {
    const at = this.take(values.length)
    const view = new Int32Array(this.buffer, at, values.length)
    view.set(values)
    return { at, view }
  }

  private take(n: number): number {
    const at = this.next
    this.next = at + Math.ceil((n * 4) / 16) * 16
    if (this.next > this.buffer.byteLength) throw new Error("workspace overflow")
    return at
  }
}

/** The same kernels in plain JS over the workspace's memory (`buffer()`: it may be replaced when it grows). */
function jsKernels(buffer: () => ArrayBuffer): KernelExports {
  let current: ArrayBuffer | undefined
  let f = new Float32Array(0)
  let n = new Int32Array(0)
  const views = () => {
    if (current !== buffer()) {
      current = buffer()
      f = new Float32Array(current)
      n = new Int32Array(current)
    }
  }
  const sigmoid = (x: number) => 1 / (1 + Math.exp(-x))
  // tanh through one exp: 2.4× faster than Math.tanh in Bun, exact limits ±1.
  const tanh = (x: number) => 1 - 2 / (1 + Math.exp(2 * x))
  return {
    forwardStep(z, c, h, tanhC, lengths, t, B, H) {
      views()
      const G = 4 * H
      for (let b = 0; b < B; b++) {
        if (t >= n[lengths / 4 + b]) continue
        const g = z / 4 + b * G
        const s = b * H
        for (let k = 0; k < H; k++) {
          const i = sigmoid(f[g + k])
          const j = tanh(f[g + H + k])
          const fg = sigmoid(f[g + 2 * H + k])
          const o = sigmoid(f[g + 3 * H + k])
          f[g + k] = i
          f[g + H + k] = j
          f[g + 2 * H + k] = fg
          f[g + 3 * H + k] = o
          const cn = fg * f[c / 4 + s + k] + i * j
          const tc = tanh(cn)
          f[c / 4 + s + k] = cn
          f[h / 4 + s + k] = o * tc
          if (tanhC !== 0) f[tanhC / 4 + s + k] = tc
        }
      }
    },
    backwardStep(gates, cPrev, tanhC, dh, dc, dz, lengths, t, B, H) {
      views()
      const G = 4 * H
      for (let b = 0; b < B; b++) {
        if (t >= n[lengths / 4 + b]) continue
        const g = gates / 4 + b * G
        const d = dz / 4 + b * G
        const s = b * H
        for (let k = 0; k < H; k++) {
          const i = f[g + k]
          const j = f[g + H + k]
          const fg = f[g + 2 * H + k]
          const o = f[g + 3 * H + k]
          const tc = f[tanhC / 4 + s + k]
          const dhk = f[dh / 4 + s + k]
          const dcn = f[dc / 4 + s + k] + dhk * o * (1 - tc * tc)
          f[d + k] = dcn * j * i * (1 - i)
          f[d + H + k] = dcn * i * (1 - j * j)
          f[d + 2 * H + k] = dcn * f[cPrev / 4 + s + k] * fg * (1 - fg)
          f[d + 3 * H + k] = dhk * tc * o * (1 - o)
          f[dc / 4 + s + k] = dcn * fg
        }
      }
    }
  }
}
