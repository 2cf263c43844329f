/**
 * The fused Adam + EMA update of the JS backends (spec A4.1's TF1 Adam and the evaluation EMA in one pass over
 * param, m, v, ema and the gradient). Where a variable owns its buffer alone, the pass writes into it in place, so
 * an update allocates nothing: at LM sizes (6.4 M parameters) allocating, zero-filling and swapping in four fresh
 * outputs per variable was about half of the step. On the wasm backend the in-place pass is a SIMD kernel on the
 * backend's heap (src/engine/heap-kernels.ts), the same float64 arithmetic two values at a time.
 */
import * as tf from "@tensorflow/tfjs-core"
import { blasMatMulActive } from "./blas.ts"
import { heapKernels, heapOffset } from "./heap-kernels.ts"
import { registerJsKernel, valuesView } from "./js-kernel.ts"

/** Name of the fused kernel registered for the JS backends (the out-of-place form). */
export const ADAM_EMA_KERNEL = "AdvtextAdamEma"

export interface AdamEmaAttrs {
  readonly beta1: number
  readonly beta2: number
  readonly epsilon: number
  /** lr · √(1 − β2^t) / (1 − β1^t): TF1's bias correction folded into the step size. */
  readonly stepSize: number
  readonly emaDecay: number
  /** A float32 factor the gradient is multiplied by first, rounded to float32 (clipping); 1 leaves it as it is. */
  readonly gradScale?: number
}

/**
 * The update on plain arrays (float64 arithmetic, float32 storage): m, v, param and ema in one pass.
 * out = [param', m', v', ema']; `out` may be the inputs themselves (each element is read before it is written).
 */
export function adamEmaUpdate(
  param: Float32Array,
  m: Float32Array,
  v: Float32Array,
  ema: Float32Array,
  grad: Float32Array,
  a: AdamEmaAttrs,
  out: readonly [Float32Array, Float32Array, Float32Array, Float32Array]
): void {
  const [po, mo, vo, eo] = out
  const { beta1, beta2, epsilon, stepSize } = a
  const keep = 1 - a.emaDecay
  const scale = a.gradScale ?? 1
  for (let i = 0; i < param.length; i++) {
    const g = Math.fround(grad[i] * scale)
    const mi = beta1 * m[i] + (1 - beta1) * g
    const vi = beta2 * v[i] + (1 - beta2) * g * g
    const p = param[i] - (stepSize * mi) / (Math.sqrt(vi) + epsilon)
    const e = ema[i]
    mo[i] = mi
    vo[i] = vi
    po[i] = p
    eo[i] = e - keep * (e - p)
  }
}

export function registerAdamEmaKernel(): void {
  registerJsKernel(ADAM_EMA_KERNEL, (io, { param, m, v, ema, grad }, attrs) => {
    const out = io.outputs([param, m, v, ema].map((t) => ({ shape: t.shape, dtype: "float32" as const })))
    const inputs = [param, m, v, ema, grad].map((t) => io.read(t)) as [Float32Array, Float32Array, Float32Array, Float32Array, Float32Array]
    adamEmaUpdate(...inputs, attrs as unknown as AdamEmaAttrs, out.views as [Float32Array, Float32Array, Float32Array, Float32Array])
    return out.infos
  })
}

interface RefCounting {
  refCount(dataId: object): number
}

/** Whether the four state variables each own their buffer: no other tensor (or each other) would see a write. */
function ownsBuffers(vars: ReadonlyArray<tf.Variable>): boolean {
  const backend = tf.backend() as unknown as Partial<RefCounting>
  if (typeof backend.refCount !== "function") return false
  const ids = new Set(vars.map((x) => x.dataId))
  return ids.size === vars.length && vars.every((x) => x.dtype === "float32" && backend.refCount!(x.dataId) === 1)
}

/**
 * One Adam + EMA step of a variable. Returns false where the fused kernel is not registered for the active backend
 * (the caller then uses tfjs ops). In place when the variables own their buffers and nothing caches them; otherwise
 * (e.g. the first step, where param and ema still share the initial value's buffer) through the kernel's fresh
 * outputs, after which they do.
 */
export function adamEmaStep(param: tf.Variable, m: tf.Variable, v: tf.Variable, ema: tf.Variable, grad: tf.Tensor, attrs: AdamEmaAttrs): boolean {
  const backendName = tf.getBackend()
  if (tf.getKernel(ADAM_EMA_KERNEL, backendName) === undefined) return false
  const vars = [param, m, v, ema]
  // tfjs-wasm's own matrix product (XNNPACK) caches packed weights keyed on their buffer, so a weight changed in place
  // would be read stale there: in place only where products run on BLAS (or on the cpu backend, which caches nothing).
  const inPlaceSafe = backendName === "cpu" || (backendName === "wasm" && blasMatMulActive())
  if (inPlaceSafe && ownsBuffers(vars)) {
    const simd = heapKernels()
    if (simd !== undefined) {
      const [p, mv, vv, e, g] = [...vars, grad].map(heapOffset)
      simd.adamEma(p, mv, vv, e, g, param.size, attrs.beta1, attrs.beta2, attrs.epsilon, attrs.stepSize, 1 - attrs.emaDecay, attrs.gradScale ?? 1)
      return true
    }
    // Views taken together and used before any allocation (a growing wasm heap would detach them).
    const [p, mv, vv, e, g] = [...vars, grad].map(valuesView)
    adamEmaUpdate(p, mv, vv, e, g, attrs, [p, mv, vv, e])
    return true
  }
  tf.tidy(() => {
    const inputs = { param, m, v, ema, grad } as unknown as tf.NamedTensorMap
    const outs = tf.engine().runKernel(ADAM_EMA_KERNEL, inputs, attrs as unknown as tf.NamedAttrMap) as Array<tf.Tensor>
    vars.forEach((x, i) => x.assign(outs[i]))
  })
  return true
}
