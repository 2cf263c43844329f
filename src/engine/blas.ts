/**
 * BLAS through bun:ffi. `cblas_sgemm` from OpenBLAS (Debian/Ubuntu: libopenblas0-pthread), MKL or Apple Accelerate,
 * discovered at run time; undefined when none loads (the pure-tfjs kernels then stay in place).
 *
 * `useBlasMatMul` replaces tfjs's BatchMatMul kernel on the wasm and cpu backends: their own GEMMs reach
 * 1–25 GFLOP/s here and are poor at the skinny shapes of an LSTM step, while sgemm reaches ~150+ GFLOP/s on 2 cores.
 */
import * as tf from "@tensorflow/tfjs-core"
import { dlopen, FFIType } from "bun:ffi"
import { registerJsKernel, restoreKernel } from "./js-kernel.ts"

const CBLAS_ROW_MAJOR = 101
const CBLAS_NO_TRANS = 111
const CBLAS_TRANS = 112
/** Multiply-adds below which a GEMM runs on one thread. */
const PARALLEL_MIN_MACS = Number(process.env.ADVTEXT_BLAS_PARALLEL_MIN ?? 1 << 24)

export interface Blas {
  /** Library path that was loaded and what it reports about itself. */
  readonly library: string
  readonly description: string
  readonly threads: number
  /** Row-major C[M×N] = alpha·op(A)·op(B) + beta·C. */
  sgemm(
    transA: boolean,
    transB: boolean,
    m: number,
    n: number,
    k: number,
    alpha: number,
    a: Float32Array,
    lda: number,
    b: Float32Array,
    ldb: number,
    beta: number,
    c: Float32Array,
    ldc: number
  ): void
}

const CANDIDATES: ReadonlyArray<string> = [
  "libopenblas.so.0",
  "libopenblas.so",
  "/usr/lib/x86_64-linux-gnu/libopenblas.so.0",
  "/usr/lib/aarch64-linux-gnu/libopenblas.so.0",
  "libmkl_rt.so",
  "libmkl_rt.so.2",
  "/opt/homebrew/opt/openblas/lib/libopenblas.dylib",
  "/usr/local/opt/openblas/lib/libopenblas.dylib",
  "/System/Library/Frameworks/Accelerate.framework/Accelerate"
]

const sgemmSymbol = {
  cblas_sgemm: {
    args: [
      FFIType.i32, FFIType.i32, FFIType.i32, FFIType.i32, FFIType.i32, FFIType.i32,
      FFIType.f32, FFIType.ptr, FFIType.i32, FFIType.ptr, FFIType.i32, FFIType.f32, FFIType.ptr, FFIType.i32
    ],
    returns: FFIType.void
  }
} as const

/** A handle on a BLAS library; closing it unloads the library once no other handle holds it. */
export interface OpenedBlas extends Blas {
  close(): void
}

function tryOpen(path: string): OpenedBlas | undefined {
  let lib: ReturnType<typeof dlopen<typeof sgemmSymbol>>
  try {
    lib = dlopen(path, sgemmSymbol)
  } catch {
    return undefined
  }
  let description = path.includes("mkl") ? "MKL" : path.includes("Accelerate") ? "Apple Accelerate" : "OpenBLAS"
  let threads = 1
  let setThreads: ((n: number) => void) | undefined
  let closeExtra = () => {}
  try {
    const extra = dlopen(path, {
      openblas_get_num_threads: { args: [], returns: FFIType.i32 },
      openblas_set_num_threads: { args: [FFIType.i32], returns: FFIType.void },
      openblas_get_config: { args: [], returns: FFIType.cstring }
    })
    threads = extra.symbols.openblas_get_num_threads()
    description = `OpenBLAS ${String(extra.symbols.openblas_get_config()).trim()}`
    setThreads = (n) => extra.symbols.openblas_set_num_threads(n)
    closeExtra = () => extra.close()
  } catch {
    // not OpenBLAS: MKL and Accelerate manage their own threads
  }
  const f = lib.symbols.cblas_sgemm
  // Waking OpenBLAS's threads costs more than it saves on the small per-time-step GEMMs of an LSTM (measured here:
  // 2 threads made a step's matmuls 2.5× slower), so only large products use them.
  let current = threads
  const useThreads = (n: number) => {
    if (setThreads !== undefined && n !== current) {
      setThreads(n)
      current = n
    }
  }
  return {
    library: path,
    description,
    threads,
    sgemm: (transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc) => {
      useThreads(m * n * k >= PARALLEL_MIN_MACS ? threads : 1)
      f(CBLAS_ROW_MAJOR, transA ? CBLAS_TRANS : CBLAS_NO_TRANS, transB ? CBLAS_TRANS : CBLAS_NO_TRANS, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
    },
    close: () => {
      closeExtra()
      lib.close()
    }
  }
}

/** A new handle on the first BLAS that loads, or undefined. `ADVTEXT_BLAS=/path/lib.so` picks one; `ADVTEXT_BLAS=none` disables. */
export function openBlas(): OpenedBlas | undefined {
  const requested = process.env.ADVTEXT_BLAS
  if (requested === "none") return undefined
  if (requested !== undefined && requested !== "") return tryOpen(requested)
  for (const path of CANDIDATES) {
    const blas = tryOpen(path)
    if (blas !== undefined) return blas
  }
  return undefined
}

let cached: { blas: Blas | undefined } | undefined

/** The process's BLAS, opened on first use and held until the process ends (a scope opens its own: see processBlas). */
export function loadBlas(): Blas | undefined {
  if (cached === undefined) cached = { blas: openBlas() }
  return cached.blas
}

/** What loadBlas found, once it has looked (a scoped engine then uses it rather than opening a handle of its own). */
export const processBlas = (): { readonly blas: Blas | undefined } | undefined => cached

/**
 * Shapes of a BatchMatMul (leading batch dims, then M×K · K×N), or undefined for the cases this kernel leaves to
 * tfjs's own: non-float32 inputs, mismatched inner dimensions, and batch broadcasts other than "same batch dims" or
 * "one side has none / all ones".
 */
function matmulShapes(a: tf.TensorInfo, b: tf.TensorInfo, transposeA: boolean, transposeB: boolean) {
  if (a.dtype !== "float32" || b.dtype !== "float32" || a.shape.length < 2 || b.shape.length < 2) return undefined
  const ra = a.shape.length
  const rb = b.shape.length
  const m = transposeA ? a.shape[ra - 1] : a.shape[ra - 2]
  const k = transposeA ? a.shape[ra - 2] : a.shape[ra - 1]
  const kb = transposeB ? b.shape[rb - 1] : b.shape[rb - 2]
  const n = transposeB ? b.shape[rb - 2] : b.shape[rb - 1]
  if (k !== kb) return undefined
  const dimsA = a.shape.slice(0, -2)
  const dimsB = b.shape.slice(0, -2)
  const batchA = dimsA.reduce((x, y) => x * y, 1)
  const batchB = dimsB.reduce((x, y) => x * y, 1)
  const same = dimsA.length === dimsB.length && dimsA.every((d, i) => d === dimsB[i])
  if (!same && batchA !== 1 && batchB !== 1) return undefined
  // The output's batch dims are the broadcast of both (so [M,K]·[1,K,N] is [1,M,N], as in tfjs).
  const batchShape = tf.backend_util.assertAndGetBroadcastShape(dimsA, dimsB)
  return { m, k, n, batchA, batchB, batch: Math.max(batchA, batchB), outShape: [...batchShape, m, n] }
}

/** C_i = op(A_i)·op(B_i) for each batch entry, writing into `out`. */
function batchedSgemm(
  blas: Blas,
  a: Float32Array,
  b: Float32Array,
  out: Float32Array,
  s: NonNullable<ReturnType<typeof matmulShapes>>,
  transposeA: boolean,
  transposeB: boolean
): void {
  const { m, k, n } = s
  if (m === 0 || n === 0) return
  if (k === 0) {
    out.fill(0)
    return
  }
  const lda = transposeA ? m : k
  const ldb = transposeB ? k : n
  for (let i = 0; i < s.batch; i++) {
    const ai = s.batchA === 1 ? a : a.subarray(i * m * k, (i + 1) * m * k)
    const bi = s.batchB === 1 ? b : b.subarray(i * k * n, (i + 1) * k * n)
    blas.sgemm(transposeA, transposeB, m, n, k, 1, ai, lda, bi, ldb, 0, out.subarray(i * m * n, (i + 1) * m * n), n)
  }
}

/**
 * Route BatchMatMul on the wasm and cpu backends through `blas`, or restore tfjs's own kernels when `blas` is
 * undefined. Kernel registration is process-wide.
 */
let matmulBlas: Blas | undefined
/** Whether matrix products run on BLAS (our kernel) rather than tfjs's own, which may cache state keyed on a buffer. */
export const blasMatMulActive = (): boolean => matmulBlas !== undefined
/** The BLAS matrix products run on now, if any. */
export const blasMatMulEngine = (): Blas | undefined => matmulBlas

export function useBlasMatMul(blas: Blas | undefined): void {
  matmulBlas = blas
  if (blas === undefined) return restoreKernel("BatchMatMul")
  registerJsKernel("BatchMatMul", (io, { a, b }, attrs) => {
    const transposeA = attrs.transposeA as boolean
    const transposeB = attrs.transposeB as boolean
    const s = matmulShapes(a, b, transposeA, transposeB)
    if (s === undefined) return undefined // tfjs's own kernel handles the rest
    const out = io.outputs([{ shape: s.outShape, dtype: "float32" }])
    batchedSgemm(blas, io.read(a) as Float32Array, io.read(b) as Float32Array, out.views[0] as Float32Array, s, transposeA, transposeB)
    return out.infos[0]
  })
}
