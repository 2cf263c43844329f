/**
 * WebAssembly SIMD kernels that work on tfjs-backend-wasm's heap in place (src/engine/assembly/heap-kernels.ts): the
 * module imports the backend's own memory, so a kernel reads and writes tensors at their byte offsets with no copy.
 * Used where a JS loop over millions of values was a large share of a step (the Adam + EMA update).
 */
import * as tf from "@tensorflow/tfjs-core"
import { assemblyBinary, hasDataSegments } from "./assembly.ts"

export interface HeapKernels {
  sumOfSquares(x: number, n: number): number
  standardize(v: number, f: number, out: number, stats: number, V: number, D: number): void
  standardizeBackward(g: number, v: number, f: number, a: number, stats: number, V: number, D: number): void
  adamEma(p: number, m: number, v: number, e: number, g: number, n: number, beta1: number, beta2: number, epsilon: number, stepSize: number, keep: number, gradScale: number): void
}

interface WasmBackend {
  wasm: { asm: { memory: WebAssembly.Memory } }
  dataIdMap: { get(dataId: object): { memoryOffset: number } | undefined }
  makeOutput(shape: Array<number>, dtype: tf.DataType): tf.TensorInfo
}

let compiled: WebAssembly.Module | undefined
let disabled = false
const instances = new WeakMap<WebAssembly.Memory, HeapKernels>()

/** Compile the module (cached in build/); a failure leaves the JS loops in use and says why. */
export async function loadHeapKernels(): Promise<string> {
  if (compiled !== undefined) return "wasm SIMD heap kernels"
  try {
    const binary = await assemblyBinary("heap-kernels")
    // A data segment would be written into the backend's heap at instantiation: never allow it.
    if (hasDataSegments(binary)) throw new Error("the heap-kernels build has a data segment")
    compiled = new WebAssembly.Module(binary)
    return "wasm SIMD heap kernels"
  } catch (cause) {
    return `JS loops (heap kernels unavailable: ${cause instanceof Error ? cause.message : String(cause)})`
  }
}

/** Use the JS loops even when the module is loaded (tests compare the two). */
export function setHeapKernels(enabled: boolean): void {
  disabled = !enabled
}

/** The kernels bound to the active wasm backend's heap, or undefined (another backend, or not loaded). */
export function heapKernels(): HeapKernels | undefined {
  if (compiled === undefined || disabled || tf.getBackend() !== "wasm") return undefined
  const memory = (tf.backend() as unknown as WasmBackend).wasm.asm.memory
  let kernels = instances.get(memory)
  if (kernels === undefined) {
    kernels = new WebAssembly.Instance(compiled, { env: { memory, abort: () => undefined } }).exports as unknown as HeapKernels
    instances.set(memory, kernels)
  }
  return kernels
}

/** A wasm-backend tensor's byte offset in the heap. */
export const heapOffset = (t: tf.Tensor): number => (tf.backend() as unknown as WasmBackend).dataIdMap.get(t.dataId)!.memoryOffset

/** A new float32 tensor on the wasm heap, uninitialized: a kernel must write all of it. */
export function heapTensor(shape: Array<number>): tf.Tensor {
  return tf.engine().makeTensorFromTensorInfo((tf.backend() as unknown as WasmBackend).makeOutput(shape, "float32"))
}

/**
 * Scratch for n float64 values on the heap (a kernel's float64 statistics): a tensor with room to align them to 8
 * bytes, the aligned byte offset, and a view of them. Dispose the tensor when done.
 */
export function heapF64Scratch(n: number): { readonly tensor: tf.Tensor; readonly at: number; readonly view: Float64Array } {
  const tensor = heapTensor([2 * n + 2])
  const at = Math.ceil(heapOffset(tensor) / 8) * 8
  return { tensor, at, view: new Float64Array((tf.backend() as unknown as WasmBackend).wasm.asm.memory.buffer, at, n) }
}

/** Σ x² of a float32 tensor as tf.sum(tf.square(x)) gives it (same bits), without the squares' full-size tensor. */
export function sumOfSquares(x: tf.Tensor): tf.Scalar {
  const simd = heapKernels()
  if (simd === undefined || x.dtype !== "float32") return tf.tidy(() => tf.sum(tf.square(x)))
  return tf.scalar(simd.sumOfSquares(heapOffset(x), x.size))
}
