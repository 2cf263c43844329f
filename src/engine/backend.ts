/**
 * Tensor engine selection. `auto` prefers tfjs-node-gpu / tfjs-node (native TensorFlow) when importable, then wasm,
 * then the pure-JS cpu backend, and says which one runs. An explicitly requested backend that cannot load is an error,
 * never a silent fallback.
 *
 * tfjs-core ships no gradient registrations by default, and the wasm backend lacks `UnsortedSegmentSum` (the gradient
 * of a gather, i.e. of the embedding lookup) while the cpu backend's version loops over every segment id per input
 * row (O(vocab × rows)). We register one linear-time scatter-add for both.
 */
import * as tf from "@tensorflow/tfjs-core"
import "@tensorflow/tfjs-core/dist/register_all_gradients"
// Both JS backends register their kernels on import; ours (below) must come after, so import them eagerly.
import "@tensorflow/tfjs-backend-cpu"
import "@tensorflow/tfjs-backend-wasm"
import { Effect } from "effect"
import { BackendError } from "../errors.ts"

export type BackendName = "auto" | "tensorflow" | "wasm" | "cpu"

/** out[segmentIds[r], :] += x[r, :] for every row r; rows with ids outside [0, numSegments) are dropped (as TF does). */
export function scatterAddRows(
  x: ArrayLike<number>,
  segmentIds: ArrayLike<number>,
  rowSize: number,
  out: Float32Array
): void {
  const rows = segmentIds.length
  const numSegments = out.length / rowSize
  for (let r = 0; r < rows; r++) {
    const id = segmentIds[r]
    if (id < 0 || id >= numSegments) continue
    const src = r * rowSize
    const dst = id * rowSize
    for (let k = 0; k < rowSize; k++) out[dst + k] += x[src + k]
  }
}

/** Shape bookkeeping shared by both kernels: segment ids cover the leading dims of x. */
function segmentShapes(xShape: number[], idsShape: number[], numSegments: number) {
  const idsSize = idsShape.reduce((a, b) => a * b, 1)
  const rowShape = xShape.slice(idsShape.length)
  const rowSize = rowShape.reduce((a, b) => a * b, 1)
  return { idsSize, rowSize, outShape: [numSegments, ...rowShape] }
}

let kernelsRegistered = false
function registerScatterAddKernels(): void {
  if (kernelsRegistered) return
  kernelsRegistered = true
  for (const backendName of ["cpu", "wasm"]) {
    if (tf.getKernel("UnsortedSegmentSum", backendName) !== undefined) tf.unregisterKernel("UnsortedSegmentSum", backendName)
  }
  tf.registerKernel({
    kernelName: "UnsortedSegmentSum",
    backendName: "cpu",
    kernelFunc: ({ inputs, backend, attrs }) => {
      const { x, segmentIds } = inputs as { x: tf.TensorInfo; segmentIds: tf.TensorInfo }
      const { numSegments } = attrs as unknown as { numSegments: number }
      const cpu = backend as unknown as {
        data: { get(id: object): { values: ArrayLike<number> } }
        makeTensorInfo(shape: number[], dtype: tf.DataType, values: Float32Array): tf.TensorInfo
      }
      const { rowSize, outShape } = segmentShapes(x.shape, segmentIds.shape, numSegments)
      const out = new Float32Array(numSegments * rowSize)
      scatterAddRows(cpu.data.get(x.dataId).values, cpu.data.get(segmentIds.dataId).values, rowSize, out)
      return cpu.makeTensorInfo(outShape, "float32", out)
    }
  })
  tf.registerKernel({
    kernelName: "UnsortedSegmentSum",
    backendName: "wasm",
    kernelFunc: ({ inputs, backend, attrs }) => {
      const { x, segmentIds } = inputs as { x: tf.TensorInfo; segmentIds: tf.TensorInfo }
      const { numSegments } = attrs as unknown as { numSegments: number }
      const wasm = backend as unknown as {
        makeOutput(shape: number[], dtype: tf.DataType): tf.TensorInfo
        typedArrayFromHeap(t: tf.TensorInfo): ArrayLike<number>
      }
      const { rowSize, outShape } = segmentShapes(x.shape, segmentIds.shape, numSegments)
      const outInfo = wasm.makeOutput(outShape, "float32")
      const out = wasm.typedArrayFromHeap(outInfo) as Float32Array
      out.fill(0)
      scatterAddRows(wasm.typedArrayFromHeap(x), wasm.typedArrayFromHeap(segmentIds), rowSize, out)
      return outInfo
    }
  })
}

async function tryTensorflow(): Promise<string | undefined> {
  for (const pkg of ["@tensorflow/tfjs-node-gpu", "@tensorflow/tfjs-node"]) {
    try {
      await import(pkg)
      return pkg
    } catch {
      // not installed or its native library is missing: try the next one
    }
  }
  return undefined
}

async function trySet(name: "wasm" | "cpu"): Promise<boolean> {
  try {
    return await tf.setBackend(name)
  } catch {
    return false
  }
}

export interface ActiveBackend {
  /** tfjs backend name: "tensorflow", "wasm" or "cpu". */
  readonly name: string
  /** What was loaded, for logs and summary.json. */
  readonly description: string
}

/** Select and initialize the tensor backend. Idempotent for the same request. */
export const selectBackend = (requested: BackendName): Effect.Effect<ActiveBackend, BackendError> =>
  Effect.tryPromise({
    try: async (): Promise<ActiveBackend> => {
      registerScatterAddKernels()
      // tfjs-backend-cpu prints a banner recommending tfjs-node; we log our own backend line instead.
      tf.env().set("PROD", true)
      if (requested === "auto" || requested === "tensorflow") {
        const pkg = await tryTensorflow()
        if (pkg !== undefined && (await tf.setBackend("tensorflow"))) {
          await tf.ready()
          return { name: "tensorflow", description: `tensorflow (${pkg})` }
        }
        if (requested === "tensorflow") {
          throw new Error(
            "backend 'tensorflow' was requested but neither @tensorflow/tfjs-node-gpu nor @tensorflow/tfjs-node could be " +
              "loaded (they need libtensorflow, which their install script downloads). Install one of them on a machine " +
              "with internet access, or use --set backend=auto (falls back to wasm, then cpu)."
          )
        }
      }
      for (const name of ["wasm", "cpu"] as const) {
        if (requested !== "auto" && requested !== name) continue
        if (await trySet(name)) {
          await tf.ready()
          return { name, description: name === "wasm" ? "wasm (tfjs-backend-wasm)" : "cpu (tfjs-backend-cpu, pure JS)" }
        }
        if (requested === name) throw new Error(`backend '${name}' was requested but @tensorflow/tfjs-backend-${name} failed to initialize.`)
      }
      throw new Error("no tensor backend could be initialized (tried tensorflow, wasm, cpu).")
    },
    catch: (cause) => new BackendError({ message: cause instanceof Error ? cause.message : String(cause) })
  })
