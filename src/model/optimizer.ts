/**
 * Optimizer (spec A4.1): Adam with TF1 semantics (bias correction folded into the step size), an exact per-step
 * exponential learning-rate decay, global-norm clipping over every variable except the embedding (whose gradient is
 * dense through Eq. 1 and left unclipped), and an exponential moving average of all weights used for evaluation.
 */
import * as tf from "@tensorflow/tfjs-core"
import { adamEmaStep } from "../engine/adam-ema.ts"
import { sumOfSquares } from "../engine/heap-kernels.ts"
import { tidy } from "../engine/tidy.ts"
import { EMBEDDING } from "./classifier.ts"

/**
 * The optimizer's settings. The names are those of the experiment config's `train` section, which holds them
 * (`optimizerConfig` in src/pipeline/run.ts picks them out), so one name means one thing everywhere.
 */
export interface OptimizerConfig {
  readonly learningRate: number
  readonly learningRateDecay: number
  readonly maxGradNorm: number
  readonly beta1: number
  readonly beta2: number
  readonly adamEpsilon: number
  readonly emaDecay: number
}

/** The paper's classifier optimizer (Section 4.2: Adam, 0.0005 decayed by 0.9998 per step, clipping at 1.0; spec A4). */
export const OPTIMIZER_DEFAULTS: OptimizerConfig = {
  learningRate: 5e-4,
  learningRateDecay: 0.9998,
  maxGradNorm: 1.0,
  beta1: 0.9,
  beta2: 0.999,
  adamEpsilon: 1e-8,
  emaDecay: 0.999
}

/** The fields of OptimizerConfig, for picking them out of a larger settings object. */
export const OPTIMIZER_FIELDS = Object.keys(OPTIMIZER_DEFAULTS) as ReadonlyArray<keyof OptimizerConfig>

/** All tensors a training run owns; every one is a tf.Variable so updates happen in place. */
export interface TrainState {
  readonly params: Record<string, tf.Variable>
  readonly adamM: Record<string, tf.Variable>
  readonly adamV: Record<string, tf.Variable>
  readonly ema: Record<string, tf.Variable>
  /** Number of optimizer steps taken so far (TF's global_step). */
  step: number
}

let statesCreated = 0

export function createTrainState(initial: Record<string, tf.Tensor>, step = 0): TrainState {
  // tfjs variable names are process-global; a per-state suffix lets several states coexist (e.g. two runs in tests).
  const id = statesCreated++
  const params: Record<string, tf.Variable> = {}
  const adamM: Record<string, tf.Variable> = {}
  const adamV: Record<string, tf.Variable> = {}
  const ema: Record<string, tf.Variable> = {}
  for (const [name, value] of Object.entries(initial)) {
    params[name] = tf.variable(value, true, `params/${name}#${id}`)
    adamM[name] = tf.tidy(() => tf.variable(tf.zerosLike(value), false, `adam_m/${name}#${id}`))
    adamV[name] = tf.tidy(() => tf.variable(tf.zerosLike(value), false, `adam_v/${name}#${id}`))
    ema[name] = tf.variable(value, false, `ema/${name}#${id}`)
  }
  return { params, adamM, adamV, ema, step }
}

export function disposeTrainState(state: TrainState): void {
  for (const group of [state.params, state.adamM, state.adamV, state.ema]) for (const v of Object.values(group)) v.dispose()
}

export const learningRateAt = (config: OptimizerConfig, step: number): number => config.learningRate * Math.pow(config.learningRateDecay, step)

/** Names of the variables whose gradients are clipped: all but the embedding. */
export const isClipped = (name: string): boolean => !name.startsWith(EMBEDDING)

/** tf.clipByGlobalNorm's norm and factor: ‖g‖ over the clipped group, and maxNorm / max(‖g‖, maxNorm). */
function globalNormScale(grads: Readonly<Record<string, tf.Tensor>>, maxNorm: number): { readonly globalNorm: tf.Scalar; readonly scale: tf.Scalar } {
  const clippedNames = Object.keys(grads).filter(isClipped)
  const globalNorm = tf.sqrt(tf.addN(clippedNames.map((n) => sumOfSquares(grads[n])))) as tf.Scalar
  return { globalNorm, scale: tf.div(maxNorm, tf.maximum(globalNorm, maxNorm)) }
}

/** tf.clipByGlobalNorm: g · maxNorm / max(‖g‖, maxNorm) over the clipped group. Returns clipped grads and the norm. */
export function clipByGlobalNorm(
  grads: Readonly<Record<string, tf.Tensor>>,
  maxNorm: number
): { readonly grads: Record<string, tf.Tensor>; readonly globalNorm: tf.Scalar } {
  const { globalNorm, scale } = globalNormScale(grads, maxNorm)
  const out: Record<string, tf.Tensor> = {}
  for (const [name, g] of Object.entries(grads)) out[name] = isClipped(name) ? tf.mul(g, scale) : g
  return { grads: out, globalNorm }
}

export type UpdateResult = { readonly ok: true; readonly gradNorm: number; readonly learningRate: number } | { readonly ok: false; readonly value: number }

/**
 * Clip (all but the embedding) and apply one Adam + EMA step, unless a gradient is not finite: a finite loss can still
 * come with NaN gradients (wasm's relu maps NaN to 0 in the forward pass). The embedding's gradient is not in the
 * clipped norm, so it is checked on its own. Returns the clipped group's norm, or the first non-finite value.
 */
export function clipAndApply(state: TrainState, grads: Readonly<Record<string, tf.Tensor>>, config: OptimizerConfig): UpdateResult {
  return tidy((): UpdateResult => {
    const { globalNorm, scale } = globalNormScale(grads, config.maxGradNorm)
    const gradNorm = globalNorm.dataSync()[0]
    const embeddingNorm = grads[EMBEDDING] === undefined ? 0 : sumOfSquares(grads[EMBEDDING]).dataSync()[0]
    if (!Number.isFinite(gradNorm) || !Number.isFinite(embeddingNorm)) return { ok: false, value: Number.isFinite(gradNorm) ? embeddingNorm : gradNorm }
    const learningRate = learningRateAt(config, state.step)
    // The clip factor is applied inside the update (as tf.mul by the float32 factor would), not as a separate pass.
    applyGradients(state, grads, config, scale.dataSync()[0])
    return { ok: true, gradNorm, learningRate }
  })
}

/** One Adam + EMA step; `clipScale` (a float32 value) multiplies the gradients of the clipped group first. */
export function applyGradients(state: TrainState, grads: Readonly<Record<string, tf.Tensor>>, config: OptimizerConfig, clipScale = 1): void {
  const t = state.step + 1
  const lr = learningRateAt(config, state.step)
  const stepSize = (lr * Math.sqrt(1 - Math.pow(config.beta2, t))) / (1 - Math.pow(config.beta1, t))
  // TF's ExponentialMovingAverage with num_updates: decay = min(decay, (1 + t) / (10 + t)).
  const emaDecay = Math.min(config.emaDecay, (1 + t) / (10 + t))
  const attrs = { beta1: config.beta1, beta2: config.beta2, epsilon: config.adamEpsilon, stepSize, emaDecay }
  tf.tidy(() => {
    for (const [name, param] of Object.entries(state.params)) {
      const raw = grads[name]
      if (raw === undefined) continue
      const gradScale = isClipped(name) ? clipScale : 1
      // One pass over (param, m, v, ema, grad), in place where possible, instead of a dozen full-size tensor ops.
      if (adamEmaStep(param, state.adamM[name], state.adamV[name], state.ema[name], raw, { ...attrs, gradScale })) continue
      const g = gradScale === 1 ? raw : tf.mul(raw, gradScale)
      const m = tf.add(tf.mul(state.adamM[name], config.beta1), tf.mul(g, 1 - config.beta1))
      const v = tf.add(tf.mul(state.adamV[name], config.beta2), tf.mul(tf.square(g), 1 - config.beta2))
      state.adamM[name].assign(m)
      state.adamV[name].assign(v)
      param.assign(tf.sub(param, tf.mul(stepSize, tf.div(m, tf.add(tf.sqrt(v), config.adamEpsilon)))))
      const shadow = state.ema[name]
      shadow.assign(tf.sub(shadow, tf.mul(1 - emaDecay, tf.sub(shadow, param))))
    }
  })
  state.step = t
}
