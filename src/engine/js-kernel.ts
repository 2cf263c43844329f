/**
 * Registering one JS kernel for both JS backends. Kernels see their inputs as typed arrays and write into typed-array
 * outputs; this adapter hides where those live (the cpu backend's JS heap, or the wasm backend's heap, whose views
 * detach when it grows — so output views are handed out only after every output is allocated).
 */
import * as tf from "@tensorflow/tfjs-core"
import { heapTensor } from "./heap-kernels.ts"

export type Values = Float32Array | Int32Array

export interface KernelIo {
  /** An input's values (read only). */
  read(t: tf.TensorInfo): Values
  /** Allocate outputs, then get views of all of them at once. */
  outputs(specs: ReadonlyArray<{ readonly shape: Array<number>; readonly dtype: tf.DataType }>): {
    readonly infos: Array<tf.TensorInfo>
    readonly views: Array<Values>
  }
}

interface CpuBackend {
  data: { get(id: object): { values: Values } }
  makeTensorInfo(shape: Array<number>, dtype: tf.DataType, values: Values): tf.TensorInfo
}
interface WasmBackend {
  makeOutput(shape: Array<number>, dtype: tf.DataType): tf.TensorInfo
  typedArrayFromHeap(t: tf.TensorInfo): Values
}

const size = (shape: ReadonlyArray<number>) => shape.reduce((a, b) => a * b, 1)

function cpuIo(backend: unknown): KernelIo {
  const cpu = backend as CpuBackend
  return {
    read: (t) => cpu.data.get(t.dataId).values,
    outputs: (specs) => {
      // The cpu backend keeps the array it is given, so the views are the tensors' storage.
      const views = specs.map((s) => (s.dtype === "int32" ? new Int32Array(size(s.shape)) : new Float32Array(size(s.shape))))
      return { infos: specs.map((s, i) => cpu.makeTensorInfo(s.shape, s.dtype, views[i])), views }
    }
  }
}

function wasmIo(backend: unknown): KernelIo {
  const wasm = backend as WasmBackend
  return {
    read: (t) => wasm.typedArrayFromHeap(t),
    outputs: (specs) => {
      const infos = specs.map((s) => wasm.makeOutput(s.shape, s.dtype))
      const views = infos.map((info) => wasm.typedArrayFromHeap(info))
      for (const v of views) v.fill(0)
      return { infos, views }
    }
  }
}

/** The original registration of a kernel, saved before the first replacement (to restore it or delegate to it). */
const originals = new Map<string, tf.KernelConfig | undefined>()
export const originalKernel = (kernelName: string, backendName: string): tf.KernelConfig | undefined => originals.get(`${kernelName}/${backendName}`)

/**
 * Register `compute` as `kernelName` on the cpu and wasm backends (replacing tfjs's). `compute` may return undefined
 * to delegate a call to the original kernel. Inputs are read through `io.read` *after* outputs are allocated.
 */
export function registerJsKernel(
  kernelName: string,
  compute: (io: KernelIo, inputs: Record<string, tf.TensorInfo>, attrs: Record<string, unknown>) => tf.TensorInfo | Array<tf.TensorInfo> | undefined
): void {
  for (const [backendName, makeIo] of [
    ["cpu", cpuIo],
    ["wasm", wasmIo]
  ] as const) {
    const key = `${kernelName}/${backendName}`
    if (!originals.has(key)) originals.set(key, tf.getKernel(kernelName, backendName))
    if (tf.getKernel(kernelName, backendName) !== undefined) tf.unregisterKernel(kernelName, backendName)
    const original = originals.get(key)
    tf.registerKernel({
      kernelName,
      backendName,
      // The wasm backend calls each kernel's setupFunc when it initializes; keep tfjs's so a later restore works.
      setupFunc: original?.setupFunc,
      disposeFunc: original?.disposeFunc,
      kernelFunc: (args) => {
        const out = compute(makeIo(args.backend), args.inputs as Record<string, tf.TensorInfo>, args.attrs as Record<string, unknown>)
        if (out !== undefined) return out
        if (original === undefined) throw new Error(`${kernelName}: no ${backendName} kernel for these inputs`)
        return original.kernelFunc(args)
      }
    })
  }
}

/** Put tfjs's own kernel back on both backends. */
export function restoreKernel(kernelName: string): void {
  for (const backendName of ["cpu", "wasm"]) {
    const key = `${kernelName}/${backendName}`
    if (!originals.has(key)) continue // never replaced: tfjs's kernel is still the registered one
    const original = originals.get(key)
    if (tf.getKernel(kernelName, backendName) !== undefined) tf.unregisterKernel(kernelName, backendName)
    if (original !== undefined) tf.registerKernel(original)
  }
}

/**
 * A float tensor's values without copying on the JS backends (the wasm heap or the cpu backend's array; dataSync
 * elsewhere). Read only, and only until the next tensor allocation: a growing wasm heap detaches the view.
 */
export function valuesView(t: tf.Tensor): Float32Array {
  const name = tf.getBackend()
  if (name === "wasm") return (tf.backend() as unknown as WasmBackend).typedArrayFromHeap(t) as Float32Array
  if (name === "cpu") {
    const values = (tf.backend() as unknown as CpuBackend).data.get(t.dataId).values
    if (values instanceof Float32Array) return values
  }
  return t.dataSync() as Float32Array
}

/**
 * A new float32 tensor whose values `fill` writes directly into the backend's memory (no JS-side array and copy on
 * the JS backends). `fill` gets the output view first, then views of `inputs`, all taken after the allocation (so a
 * growing wasm heap cannot detach them); it must write every element and allocate no tensor.
 */
export function filledTensor(shape: Array<number>, inputs: ReadonlyArray<tf.Tensor>, fill: (out: Float32Array, ...inputs: Array<Float32Array>) => void): tf.Tensor {
  const name = tf.getBackend()
  if (name === "wasm") {
    const out = heapTensor(shape)
    fill(valuesView(out), ...inputs.map(valuesView))
    return out
  }
  const out = new Float32Array(size(shape))
  fill(out, ...inputs.map(valuesView))
  return tf.tensor(out, shape, "float32")
}
