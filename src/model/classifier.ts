/**
 * The model (spec A2): frequency-normalized word embeddings → embedding dropout → one LSTM layer → ReLU hidden layer →
 * one logit (2 classes, sigmoid) or C logits (softmax). Everything here is a pure function of a parameter record, so
 * the same code runs the trainable weights and their EMA copy. The functions that run the LSTM or Eq. (1) take the
 * `ModelEngine` (src/engine/model-engine.ts) first: the fused CPU ops or the tfjs reference ops.
 */
import * as tf from "@tensorflow/tfjs-core"
import { fusedLstmOutput, fusedLstmSequence, fusedLstmState } from "../engine/lstm-op.ts"
import type { ModelEngine } from "../engine/model-engine.ts"
import { fusedNormalizeEmbeddings } from "../engine/normalize-op.ts"
import { normalizeEmbeddings as frequencyNormalized } from "../method/method.ts"
import type { Rng } from "../random.ts"

export interface ModelShape {
  readonly vocabSize: number
  readonly embeddingDim: number
  readonly lstmUnits: number
  readonly hiddenUnits: number
  readonly numClasses: number
  /** Forward and reverse LSTMs ("lstm", "lstmReverse") sharing the embedding, features concatenated (spec A2.5). */
  readonly bidirectional?: boolean
}

/** Parameter names; anything whose name starts with "embedding" is excluded from gradient clipping (spec A4.1). */
export const EMBEDDING = "embedding"
export type Params = Readonly<Record<string, tf.Tensor>>

/** Output units: one logit for binary classification, else one per class. */
export const outputUnits = (numClasses: number): number => (numClasses === 2 ? 1 : numClasses)

function uniform(shape: Array<number>, limit: number, random: Rng): Float32Array {
  const size = shape.reduce((a, b) => a * b, 1)
  const out = new Float32Array(size)
  for (let i = 0; i < size; i++) out[i] = (random.uniform() * 2 - 1) * limit
  return out
}

/** The embedding starts U(−limit, limit) (spec A2). */
export const EMBEDDING_INIT_LIMIT = 1

/**
 * Initial values (spec A2): embedding U(−1, 1); glorot-uniform kernels (the LSTM's over its fused [D+H, 4H]); zero biases.
 * A bidirectional model adds the reverse LSTM, and its head reads the 2H concatenated features.
 */
export function initialParams(shape: ModelShape, random: Rng): Record<string, tf.Tensor> {
  const { vocabSize: V, embeddingDim: D, lstmUnits: H, hiddenUnits: K } = shape
  const O = outputUnits(shape.numClasses)
  const glorot = (fanIn: number, fanOut: number) => Math.sqrt(6 / (fanIn + fanOut))
  const lstmLimit = glorot(D + H, 4 * H)
  const lstmParams = (prefix: string) => ({
    [`${prefix}/inputKernel`]: tf.tensor2d(uniform([D, 4 * H], lstmLimit, random), [D, 4 * H]),
    [`${prefix}/recurrentKernel`]: tf.tensor2d(uniform([H, 4 * H], lstmLimit, random), [H, 4 * H]),
    [`${prefix}/bias`]: tf.zeros([4 * H])
  })
  const F = shape.bidirectional === true ? 2 * H : H
  return {
    [EMBEDDING]: tf.tensor2d(uniform([V, D], EMBEDDING_INIT_LIMIT, random), [V, D]),
    ...lstmParams("lstm"),
    ...(shape.bidirectional === true ? lstmParams("lstmReverse") : {}),
    "head/hiddenKernel": tf.tensor2d(uniform([F, K], glorot(F, K), random), [F, K]),
    "head/hiddenBias": tf.zeros([K]),
    "head/outputKernel": tf.tensor2d(uniform([K, O], glorot(K, O), random), [K, O]),
    "head/outputBias": tf.zeros([O])
  }
}

/** Paper Eq. (1) (src/method/method.ts), computed by the CPU engine's fused op when `engine` is fused (same result). */
export function normalizeEmbeddings(engine: ModelEngine, embedding: tf.Tensor2D, frequencies: tf.Tensor1D): tf.Tensor2D {
  if (engine.fused !== undefined) return fusedNormalizeEmbeddings(embedding, frequencies)
  return frequencyNormalized(embedding, frequencies)
}

/**
 * Variational embedding dropout (spec A2.1): one keep/drop decision per example and embedding dimension, shared over
 * time steps, scaled by 1/keep (inverted dropout). Returns a [B, 1, D] multiplier, or undefined when keep = 1.
 */
export function embeddingDropoutMask(batch: number, dim: number, keepProb: number, random: Rng): tf.Tensor3D | undefined {
  if (keepProb >= 1) return undefined
  const mask = new Float32Array(batch * dim)
  for (let i = 0; i < mask.length; i++) mask[i] = random.uniform() < keepProb ? 1 / keepProb : 0
  return tf.tensor3d(mask, [batch, 1, dim])
}

/** Look up ids [B, T] in the (normalized) table and apply the dropout mask: the `e` that perturbations are added to. */
export function embed(table: tf.Tensor2D, ids: tf.Tensor2D, dropoutMask: tf.Tensor3D | undefined): tf.Tensor3D {
  const [B, T] = ids.shape
  const looked = tf.reshape(tf.gather(table, tf.reshape(ids, [-1])), [B, T, table.shape[1]]) as tf.Tensor3D
  return dropoutMask === undefined ? looked : tf.mul(looked, dropoutMask)
}

export interface LstmState {
  readonly c: tf.Tensor2D
  readonly h: tf.Tensor2D
}

/** [T, B, 1] float mask: 1 where t < length. */
export function timeMask(lengths: Int32Array, steps: number): tf.Tensor3D {
  const B = lengths.length
  const m = new Float32Array(steps * B)
  for (let t = 0; t < steps; t++) for (let b = 0; b < B; b++) m[t * B + b] = t < lengths[b] ? 1 : 0
  return tf.tensor3d(m, [steps, B, 1])
}

/**
 * A unidirectional LSTM (TF BasicLSTMCell, forget bias 0, gates i, j, f, o) over inputs [B, T, D]. Steps at or past a
 * sequence's length leave its state unchanged, so the returned state is the one at the last valid step (the EOS).
 * Runs the fused op (src/engine/fused-lstm.ts) when `engine` is fused, else `referenceLstm`. `gradients` says what the
 * caller will differentiate: "none" (prefixes, evaluation: the fused op keeps no activations), "inputs" (a perturbation's
 * direction: the fused op skips the weight-gradient GEMMs and reports zero weight gradients), or "all". With the fused
 * op only h carries a gradient (the classifier's feature); c is returned for "none". `prefix` names the parameter group
 * (`${prefix}/inputKernel`, …): "lstm", or e.g. "lstmReverse" for a bidirectional model's second LSTM.
 */
export type LstmGradients = "all" | "inputs" | "none"

export function lstm(
  engine: ModelEngine,
  params: Params,
  inputs: tf.Tensor3D,
  lengths: Int32Array,
  initial: LstmState | undefined,
  gradients: LstmGradients = "all",
  prefix = "lstm"
): LstmState {
  const blas = engine.fused
  if (blas === undefined) return referenceLstm(params, inputs, lengths, initial, prefix)
  const args = fusedArgs(params, inputs, lengths, initial, prefix)
  if (gradients === "none") return fusedLstmState(blas, args)
  const h = fusedLstmOutput(blas, args, gradients === "all")
  return { h, c: tf.zerosLike(h) as tf.Tensor2D }
}

/** An LSTM's per-step outputs and its final state. */
export interface LstmSequence {
  /** h after each step [B, T, H], 0 at steps t ≥ length; differentiable w.r.t. the inputs and the LSTM weights. */
  readonly outputs: tf.Tensor3D
  /** (c, h) at each sequence's last valid step, without gradient: the next window's (constant) initial state. */
  readonly final: LstmState
}

/**
 * The same LSTM, returning every step's output (language-model pretraining reads a prediction from each step) and the
 * final state. Gradients stop at the window boundary: none flows into `initial` or out of `final`.
 */
export function lstmSequence(
  engine: ModelEngine,
  params: Params,
  inputs: tf.Tensor3D,
  lengths: Int32Array,
  initial: LstmState | undefined,
  prefix = "lstm"
): LstmSequence {
  const blas = engine.fused
  if (blas === undefined) return referenceLstmSequence(params, inputs, lengths, initial, prefix)
  return fusedLstmSequence(blas, fusedArgs(params, inputs, lengths, initial, prefix))
}

const fusedArgs = (params: Params, inputs: tf.Tensor3D, lengths: Int32Array, initial: LstmState | undefined, prefix: string) => ({
  inputs,
  inputKernel: params[`${prefix}/inputKernel`] as tf.Tensor2D,
  recurrentKernel: params[`${prefix}/recurrentKernel`] as tf.Tensor2D,
  bias: params[`${prefix}/bias`] as tf.Tensor1D,
  lengths,
  initial
})

/** The same LSTM in plain tfjs ops: the reference the fused op is tested against, and the path for non-CPU backends. */
export function referenceLstm(params: Params, inputs: tf.Tensor3D, lengths: Int32Array, initial: LstmState | undefined, prefix = "lstm"): LstmState {
  return referenceSteps(params, inputs, lengths, initial, prefix, undefined)
}

/** `lstmSequence` in plain tfjs ops. */
export function referenceLstmSequence(params: Params, inputs: tf.Tensor3D, lengths: Int32Array, initial: LstmState | undefined, prefix = "lstm"): LstmSequence {
  const perStep: Array<tf.Tensor2D> = []
  const final = referenceSteps(params, inputs, lengths, initial, prefix, perStep)
  return { outputs: tf.stack(perStep, 1) as tf.Tensor3D, final: { c: stopGradient(final.c), h: stopGradient(final.h) } }
}

/** The reference loop; pushes each step's masked output h onto `outputs` when given. Returns the final state. */
function referenceSteps(
  params: Params,
  inputs: tf.Tensor3D,
  lengths: Int32Array,
  initial: LstmState | undefined,
  prefix: string,
  outputs: Array<tf.Tensor2D> | undefined
): LstmState {
  const [B, T, D] = inputs.shape
  const inputKernel = params[`${prefix}/inputKernel`] as tf.Tensor2D
  const recurrentKernel = params[`${prefix}/recurrentKernel`] as tf.Tensor2D
  const H = recurrentKernel.shape[0]
  // All input projections in one GEMM; only the recurrent product stays per step.
  const projected = tf.reshape(tf.matMul(tf.reshape(inputs, [B * T, D]), inputKernel), [B, T, 4 * H])
  const timeMajor = tf.add(tf.transpose(projected, [1, 0, 2]), params[`${prefix}/bias`])
  // tfjs's unstack gradient fails on an axis of size 1 (it gets a tensor, not a list): a one-step window is a reshape.
  const perStep = T === 1 ? [tf.reshape(timeMajor, [B, 4 * H])] : tf.unstack(timeMajor)
  const masks = tf.unstack(timeMask(lengths, T))
  let c = initial?.c ?? tf.zeros([B, H])
  let h = initial?.h ?? tf.zeros([B, H])
  for (let t = 0; t < T; t++) {
    const z = tf.add(perStep[t], tf.matMul(h, recurrentKernel))
    const [i, j, f, o] = tf.split(z, 4, 1)
    const cNext = tf.add(tf.mul(c, tf.sigmoid(f)), tf.mul(tf.sigmoid(i), tf.tanh(j)))
    const hNext = tf.mul(tf.tanh(cNext), tf.sigmoid(o))
    const m = masks[t] as tf.Tensor2D
    c = tf.add(c, tf.mul(m, tf.sub(cNext, c)))
    h = tf.add(h, tf.mul(m, tf.sub(hNext, h)))
    // The output is the new h where the step ran and 0 past the length (not the frozen state).
    outputs?.push(tf.mul(m, hNext) as tf.Tensor2D)
  }
  return { c: c as tf.Tensor2D, h: h as tf.Tensor2D }
}

/** Identity whose gradient is zero: tfjs has no stop_gradient, and `final` must not pass gradients back. */
const stopGradient = tf.customGrad(((x: tf.Tensor) => ({ value: tf.clone(x), gradFunc: (dy: tf.Tensor) => tf.zerosLike(dy) })) as unknown as Parameters<
  typeof tf.customGrad
>[0]) as (x: tf.Tensor2D) => tf.Tensor2D

export const isBidirectional = (params: Params): boolean => params["lstmReverse/bias"] !== undefined

/**
 * The head's input features from embedded rows e [R, T, D]: the LSTM's state at each row's last valid step. A
 * bidirectional model's rows come in pairs (row 2b: document b, row 2b + 1: it reversed; src/stages/batch.ts): each
 * LSTM reads its own rows and the two final h are concatenated along features (spec A2.5; not time, the #4649 bug).
 * `initial` has one row per input row.
 */
export function features(
  engine: ModelEngine,
  params: Params,
  e: tf.Tensor3D,
  lengths: Int32Array,
  initial: LstmState | undefined,
  gradients: LstmGradients = "all"
): tf.Tensor2D {
  if (!isBidirectional(params)) return lstm(engine, params, e, lengths, initial, gradients).h
  const [forward, reverse] = lstmPerDirection(engine, params, e, lengths, initial, gradients)
  return tf.concat([forward.h, reverse.h], 1) as tf.Tensor2D
}

/**
 * The final state of prefix rows [R, T, D] run without gradient from `initial` (zeros when undefined; windows of
 * longer documents start from it), in the same row layout; each direction's rows go through its own LSTM.
 */
export function prefixStateOf(engine: ModelEngine, params: Params, e: tf.Tensor3D, lengths: Int32Array, initial?: LstmState): LstmState {
  if (!isBidirectional(params)) return lstm(engine, params, e, lengths, initial, "none")
  const [f, r] = lstmPerDirection(engine, params, e, lengths, initial, "none")
  const interleave = (a: tf.Tensor2D, b: tf.Tensor2D) => tf.reshape(tf.stack([a, b], 1), [2 * a.shape[0], a.shape[1]]) as tf.Tensor2D
  return { c: interleave(f.c, r.c), h: interleave(f.h, r.h) }
}

/** The even (forward) and odd (reverse) rows of an interleaved tensor. */
const splitDirections = <T extends tf.Tensor>(t: T): [T, T] => tf.unstack(tf.reshape(t, [t.shape[0] / 2, 2, ...t.shape.slice(1)]), 1) as [T, T]

/** The forward LSTM over the even rows and the reverse LSTM over the odd rows of a bidirectional batch. */
function lstmPerDirection(
  engine: ModelEngine,
  params: Params,
  e: tf.Tensor3D,
  lengths: Int32Array,
  initial: LstmState | undefined,
  gradients: LstmGradients
): [LstmState, LstmState] {
  const inputs = splitDirections(e)
  const c = initial === undefined ? undefined : splitDirections(initial.c)
  const h = initial === undefined ? undefined : splitDirections(initial.h)
  const run = (k: 0 | 1, prefix: string) =>
    lstm(engine, params, inputs[k], lengths.filter((_, r) => r % 2 === k), c && h ? { c: c[k], h: h[k] } : undefined, gradients, prefix)
  return [run(0, "lstm"), run(1, "lstmReverse")]
}

export interface HeadOutput {
  readonly logits: tf.Tensor2D
  /** ReLU activations [B, K], for dead-unit monitoring. */
  readonly hidden: tf.Tensor2D
}

/**
 * `model.centeredHead` (not in the paper): a constant [F] the head subtracts from the features, fixed at the mean
 * initial feature over the training documents. Never trained (no gradient, so Adam and the EMA leave it as is).
 */
export const FEATURE_MEAN = "head/featureMean"

/** Classifier head (spec A2.3) on the LSTM output at the last valid step. */
export function head(params: Params, features: tf.Tensor2D): HeadOutput {
  const mean = params[FEATURE_MEAN]
  const input = mean === undefined ? features : (tf.sub(features, mean) as tf.Tensor2D)
  const hidden = tf.relu(tf.add(tf.matMul(input, params["head/hiddenKernel"] as tf.Tensor2D), params["head/hiddenBias"])) as tf.Tensor2D
  const logits = tf.add(tf.matMul(hidden, params["head/outputKernel"] as tf.Tensor2D), params["head/outputBias"]) as tf.Tensor2D
  return { logits, hidden }
}

/** z(e): logits from an embedded window e (after dropout, plus any perturbation) and its initial state. */
export function logitsFromEmbedded(engine: ModelEngine, params: Params, e: tf.Tensor3D, lengths: Int32Array, initial: LstmState | undefined): HeadOutput {
  return head(params, features(engine, params, e, lengths, initial))
}

/** Predicted class: logit > 0 for one logit (spec A2.3, after the #3269 fix), argmax otherwise. */
export function predict(logits: tf.Tensor2D): tf.Tensor1D {
  return tf.tidy(() =>
    logits.shape[1] === 1 ? (tf.cast(tf.greater(tf.reshape(logits, [-1]), 0), "int32") as tf.Tensor1D) : (tf.argMax(logits, 1) as tf.Tensor1D)
  )
}
