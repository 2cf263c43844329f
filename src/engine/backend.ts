/**
 * Tensor engine selection. `auto` prefers tfjs-node-gpu / tfjs-node (native TensorFlow) when importable, then wasm,
 * then the pure-JS cpu backend, and says which one runs. An explicitly requested backend that cannot load is an error,
 * never a silent fallback.
 *
 * tfjs-core ships no gradient registrations by default, and the wasm backend lacks `UnsortedSegmentSum` (the gradient
 * of a gather, i.e. of the embedding lookup) while the cpu backend's version loops over every segment id per input
 * row (O(vocab × rows)). We register one linear-time scatter-add for both. wasm's Unpack (tf.unstack, used by the LSTM
 * to walk time steps) and SplitV (tf.split, the LSTM gates) slice one output at a time, ~0.5 s per Unpack call on a
 * [50, 32, 1024] tensor; ours are plain copies.
 */
import * as tf from "@tensorflow/tfjs-core"
import "@tensorflow/tfjs-core/dist/register_all_gradients"
// Both JS backends register their kernels on import; ours (below) must come after, so import them eagerly.
import "@tensorflow/tfjs-backend-cpu"
import "@tensorflow/tfjs-backend-wasm"
import { Effect, type Scope } from "effect"
import { BackendError } from "../errors.ts"
import { type Blas, blasMatMulEngine, loadBlas, type OpenedBlas, openBlas, processBlas, useBlasMatMul } from "./blas.ts"
import { registerAdamEmaKernel } from "./adam-ema.ts"
import { registerJsKernel, type Values } from "./js-kernel.ts"
import { loadGateKernels } from "./gates.ts"
import { loadHeapKernels } from "./heap-kernels.ts"
import { fusedEngine, type ModelEngine, REFERENCE_ENGINE } from "./model-engine.ts"

/** The tensor backends a config may name (`auto`: tensorflow, then wasm, then cpu). */
export const BACKENDS = ["auto", "tensorflow", "wasm", "cpu"] as const
export type BackendName = (typeof BACKENDS)[number]

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

/** out[i, :] = x[indices[i], :]; an index outside [0, rows) is an error, as in tfjs's kernel. */
export function gatherRows(x: Values, indices: Values, rows: number, rowSize: number, out: Values): void {
  for (let i = 0; i < indices.length; i++) {
    const r = indices[i]
    if (!(r >= 0 && r < rows)) throw new Error(`GatherV2: the index value ${r} is not in [0, ${rows - 1}]`)
    out.set(x.subarray(r * rowSize, (r + 1) * rowSize), i * rowSize)
  }
}

/** Shape bookkeeping shared by both kernels: segment ids cover the leading dims of x. */
function segmentShapes(xShape: number[], idsShape: number[], numSegments: number) {
  const idsSize = idsShape.reduce((a, b) => a * b, 1)
  const rowShape = xShape.slice(idsShape.length)
  const rowSize = rowShape.reduce((a, b) => a * b, 1)
  return { idsSize, rowSize, outShape: [numSegments, ...rowShape] }
}

/** out_i[o, k] = x[o, i, k]: the outputs of unstacking x (viewed as [outer, n, inner]) along its middle axis. */
export function unpackRows(x: ArrayLike<number>, outer: number, n: number, inner: number, outputs: ReadonlyArray<Float32Array | Int32Array>): void {
  const typed = x as Float32Array
  for (let o = 0; o < outer; o++) {
    for (let i = 0; i < n; i++) {
      const src = (o * n + i) * inner
      outputs[i].set(typed.subarray(src, src + inner), o * inner)
    }
  }
}

/** Split x (viewed as [outer, total, inner]) along its middle axis into consecutive pieces of `sizes`. */
export function splitRows(x: ArrayLike<number>, outer: number, sizes: ReadonlyArray<number>, inner: number, outputs: ReadonlyArray<Float32Array | Int32Array>): void {
  const typed = x as Float32Array
  const total = sizes.reduce((a, b) => a + b, 0)
  for (let o = 0; o < outer; o++) {
    let offset = 0
    for (let i = 0; i < sizes.length; i++) {
      const len = sizes[i] * inner
      const src = (o * total + offset) * inner
      outputs[i].set(typed.subarray(src, src + len), o * len)
      offset += sizes[i]
    }
  }
}

function splitShapes(x: tf.TensorInfo, attrs: unknown) {
  const { numOrSizeSplits, axis: axisAttr } = attrs as { numOrSizeSplits: number | number[]; axis: number }
  const axis = axisAttr < 0 ? axisAttr + x.shape.length : axisAttr
  const sizes = tf.backend_util.prepareSplitSize(x as tf.Tensor, numOrSizeSplits, axis)
  const outer = x.shape.slice(0, axis).reduce((a, b) => a * b, 1)
  const inner = x.shape.slice(axis + 1).reduce((a, b) => a * b, 1)
  return { sizes, outer, inner, shapes: sizes.map((s) => x.shape.map((d, i) => (i === axis ? s : d))) }
}

function unpackShapes(shape: Array<number>, axisAttr: number) {
  const axis = axisAttr < 0 ? axisAttr + shape.length : axisAttr
  const outer = shape.slice(0, axis).reduce((a, b) => a * b, 1)
  const inner = shape.slice(axis + 1).reduce((a, b) => a * b, 1)
  return { n: shape[axis], outer, inner, outShape: shape.filter((_, i) => i !== axis) }
}

/**
 * The gradient of a row gather (axis 0, no batch dims: the embedding lookup) as one scatter-add of the upstream
 * gradient. tfjs's own gradient wraps it in two transposes whose permutations are the identity here, and the wasm
 * backend runs a no-op transpose as a full copy: of the [rows, D] upstream gradient and of the whole [V, D] result
 * (~0.3 s per IMDB step). Other gathers keep tfjs's gradient.
 */
function registerGatherGradient(): void {
  const original = tf.getGradient("GatherV2")
  tf.registerGradient({
    kernelName: "GatherV2",
    inputsToSave: ["x", "indices"],
    gradFunc: (dy, saved, attrs) => {
      const [x, indices] = saved
      const { axis, batchDims } = attrs as unknown as { axis: number; batchDims: number }
      if (batchDims !== 0 || tf.util.parseAxisParam(axis, x.shape)[0] !== 0) return original.gradFunc(dy, saved, attrs)
      return {
        x: () => tf.unsortedSegmentSum(tf.reshape(dy as tf.Tensor, [indices.size, ...x.shape.slice(1)]), tf.reshape(indices, [indices.size]), x.shape[0]),
        indices: () => indices
      }
    }
  })
}

let kernelsRegistered = false
function registerScatterAddKernels(): void {
  if (kernelsRegistered) return
  kernelsRegistered = true
  registerGatherGradient()
  registerJsKernel("Unpack", (io, { value }, attrs) => {
    const { n, outer, inner, outShape } = unpackShapes(value.shape, attrs.axis as number)
    const out = io.outputs(Array.from({ length: n }, () => ({ shape: outShape, dtype: value.dtype })))
    unpackRows(io.read(value), outer, n, inner, out.views)
    return out.infos
  })
  registerJsKernel("SplitV", (io, { x }, attrs) => {
    const { sizes, outer, inner, shapes } = splitShapes(x, attrs)
    const out = io.outputs(shapes.map((shape) => ({ shape, dtype: x.dtype })))
    splitRows(io.read(x), outer, sizes, inner, out.views)
    return out.infos
  })
  registerAdamEmaKernel()
  registerJsKernel("GatherV2", (io, { x, indices }, attrs) => {
    // Row gathers (the embedding lookup, picking LSTM outputs) as row copies; tfjs-wasm's strided element loop
    // took ~10 ms for 2,304 rows of 128. Other axes and batch dims go to tfjs's kernel.
    if ((attrs.batchDims as number) !== 0 || tf.util.parseAxisParam(attrs.axis as number, x.shape)[0] !== 0) return undefined
    const rows = x.shape[0]
    const rowSize = x.shape.slice(1).reduce((a, b) => a * b, 1)
    const out = io.outputs([{ shape: [...indices.shape, ...x.shape.slice(1)], dtype: x.dtype }])
    gatherRows(io.read(x), io.read(indices), rows, rowSize, out.views[0])
    return out.infos[0]
  })
  registerJsKernel("UnsortedSegmentSum", (io, { x, segmentIds }, attrs) => {
    const { rowSize, outShape } = segmentShapes(x.shape, segmentIds.shape, attrs.numSegments as number)
    const out = io.outputs([{ shape: outShape, dtype: "float32" }])
    scatterAddRows(io.read(x), io.read(segmentIds), rowSize, out.views[0] as Float32Array)
    return out.infos[0]
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
  /** The BLAS library the JS backends' matrix products run on, if any. */
  readonly blas: string | undefined
  /** Whether the fused LSTM op (BLAS + typed-array gate loops) is active: `engine` has a BLAS. */
  readonly fusedLstm: boolean
  /** How the model runs on this backend: pass it to the stages (StepOptions.engine, …) and the model functions. */
  readonly engine: ModelEngine
}

/** `auto`: use a system BLAS for the JS backends' matrix products when one loads; `off`: tfjs's own kernels. */
export const ENGINE_CHOICES = ["auto", "off"] as const
export type BlasChoice = (typeof ENGINE_CHOICES)[number]

export interface EngineOptions {
  readonly blas?: BlasChoice
  /** `auto`: the fused LSTM op whenever BLAS is in use; `off`: the tfjs reference LSTM. */
  readonly fusedLstm?: BlasChoice
}

async function configureEngine(backendName: string, options: EngineOptions, findBlas: () => Blas | undefined): Promise<Pick<ActiveBackend, "blas" | "fusedLstm" | "engine" | "description">> {
  const blas = (options.blas ?? "auto") === "auto" && backendName !== "tensorflow" ? findBlas() : undefined
  useBlasMatMul(blas)
  const fused = blas !== undefined && (options.fusedLstm ?? "auto") === "auto"
  const gates = fused ? (await loadGateKernels()).note : undefined
  await loadHeapKernels()
  const blasText = blas === undefined ? undefined : `${blas.description} (${blas.threads} thread${blas.threads === 1 ? "" : "s"})`
  const description = blasText === undefined ? "tfjs matmul, reference LSTM" : `matmul on ${blasText}, ${fused ? `fused LSTM with ${gates}` : "reference LSTM"}`
  return { blas: blasText, fusedLstm: fused, engine: fused ? fusedEngine(blas) : REFERENCE_ENGINE, description }
}

/** Select and initialize the tensor backend, its BLAS held by the process (loadBlas). Idempotent for the same request. */
export const selectBackend = (requested: BackendName, options: EngineOptions = {}): Effect.Effect<ActiveBackend, BackendError> => selectBackendWith(requested, options, loadBlas)

/**
 * selectBackend as a resource of a scope (a training run): when the process holds no BLAS yet, the scope opens a
 * handle of its own and closes it when it ends; either way the matrix-product kernels the scope routed through BLAS
 * are put back as they were before it. (The model's fused ops need no putting back: they run where the returned
 * `engine` is passed.)
 */
export const selectBackendScoped = (requested: BackendName, options: EngineOptions = {}): Effect.Effect<ActiveBackend, BackendError, Scope.Scope> =>
  Effect.gen(function* () {
    const before = blasMatMulEngine()
    let opened: OpenedBlas | undefined
    yield* Effect.addFinalizer(() =>
      Effect.sync(() => {
        useBlasMatMul(before)
        opened?.close()
      })
    )
    return yield* selectBackendWith(requested, options, () => {
      const held = processBlas()
      if (held !== undefined) return held.blas
      opened ??= openBlas()
      return opened
    })
  })

const selectBackendWith = (requested: BackendName, options: EngineOptions, findBlas: () => Blas | undefined): Effect.Effect<ActiveBackend, BackendError> =>
  Effect.tryPromise({
    try: async (): Promise<ActiveBackend> => {
      registerScatterAddKernels()
      // tfjs-backend-cpu prints a banner recommending tfjs-node; we log our own backend line instead.
      tf.env().set("PROD", true)
      if (requested === "auto" || requested === "tensorflow") {
        const pkg = await tryTensorflow()
        if (pkg !== undefined && (await tf.setBackend("tensorflow"))) {
          await tf.ready()
          const e = await configureEngine("tensorflow", options, findBlas)
          return { name: "tensorflow", description: `tensorflow (${pkg}), ${e.description}`, blas: e.blas, fusedLstm: e.fusedLstm, engine: e.engine }
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
          const e = await configureEngine(name, options, findBlas)
          const base = name === "wasm" ? "wasm (tfjs-backend-wasm)" : "cpu (tfjs-backend-cpu, pure JS)"
          return { name, description: `${base}, ${e.description}`, blas: e.blas, fusedLstm: e.fusedLstm, engine: e.engine }
        }
        if (requested === name) throw new Error(`backend '${name}' was requested but @tensorflow/tfjs-backend-${name} failed to initialize.`)
      }
      throw new Error("no tensor backend could be initialized (tried tensorflow, wasm, cpu).")
    },
    catch: (cause) => new BackendError({ message: cause instanceof Error ? cause.message : String(cause) })
  })
