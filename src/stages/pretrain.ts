/**
 * Recurrent language-model pretraining (paper §4.1, spec A2.4, A1.6): the classifier's embedding (Eq. 1 normalized,
 * dropout) and LSTM, plus a softmax head over the vocabulary trained to predict each next token. With
 * `candidateSamples` K > 0 the head is a sampled softmax over K unique unigram-sampled negatives drawn once per step;
 * K = 0 is the full softmax. Bidirectional pretraining adds a reverse LSTM and head over the reversed documents
 * (sharing the embedding); the loss is the sum of the two directions' mean cross-entropies.
 *
 * Windows are stateful (src/stages/lm-batch.ts): each slot's final (c, h) is carried into its next window as a
 * constant, so no gradient crosses a window boundary.
 */
import * as tf from "@tensorflow/tfjs-core"
import type { ModelEngine } from "../engine/model-engine.ts"
import { tidy } from "../engine/tidy.ts"
import { EMBEDDING, embed, embeddingDropoutMask, lstmSequence, type LstmState, type Params } from "../model/classifier.ts"
import { clipAndApply, type OptimizerConfig, type TrainState } from "../model/optimizer.ts"
import { rng, type Rng } from "../random.ts"
import type { LmBatch } from "./lm-batch.ts"
import { fusedSampledSoftmaxLoss } from "../engine/sampled-softmax-op.ts"
import { fullSoftmaxLoss, sampledSoftmaxLoss, UnigramSampler } from "./sampled-softmax.ts"
import { embeddingTable } from "./train.ts"
import { type EvaluationOptions, type EvaluationSteps, runToEnd } from "./evaluate.ts"

/** The two directions: LSTM parameter group and LM head parameter group. */
export const DIRECTIONS = [
  { lstm: "lstm", head: "lm" },
  { lstm: "lstmReverse", head: "lmReverse" }
] as const

export const directionsOf = (bidirectional: boolean) => (bidirectional ? DIRECTIONS : DIRECTIONS.slice(0, 1))

/**
 * LM head weights [V, H] (one row per word, so sampled rows are a gather) and bias [V], both glorot-uniform as in the
 * reference (spec A2.4: "the bias init is unusual but real"; a 1-D glorot has fan-in = fan-out = V).
 */
export function lmHeadParams(vocabSize: number, units: number, random: Rng, prefix = "lm"): Record<string, tf.Tensor> {
  const w = new Float32Array(vocabSize * units)
  const limitW = Math.sqrt(6 / (units + vocabSize))
  for (let i = 0; i < w.length; i++) w[i] = (random.uniform() * 2 - 1) * limitW
  const b = new Float32Array(vocabSize)
  const limitB = Math.sqrt(3 / vocabSize)
  for (let i = 0; i < b.length; i++) b[i] = (random.uniform() * 2 - 1) * limitB
  return { [`${prefix}/weights`]: tf.tensor2d(w, [vocabSize, units]), [`${prefix}/bias`]: tf.tensor1d(b) }
}

/**
 * The unigram counts the LM's candidate sampler draws from: the vocabulary counts, except EOS, which counts once per
 * LM document (it is the target at every document's end). The reference's vocab_freq gives EOS a count of 1, which
 * Eq. (1) keeps; in the sampler that count means EOS is never a negative, so nothing ever pushes its logit down while
 * every document end pushes it up. On RT + IMDB sentences (EOS ≈ 7.6% of targets) that was measured to end, after
 * 2,500 steps, with p(EOS) = 0.56 on average at positions whose target is another word, and a validation perplexity
 * (825) barely below the unigram model's (1,021). On long documents (IMDB reviews) EOS is rare and the two agree.
 */
export function lmSamplerCounts(counts: ReadonlyArray<number>, documents: number): Array<number> {
  const out = [...counts]
  out[out.length - 1] = Math.max(1, documents)
  return out
}

/** Per-slot LSTM state carried between windows, one entry per direction: [B × H] floats each for c and h. */
export type CarriedState = Array<{ c: Float32Array; h: Float32Array }>

export const zeroCarriedState = (batch: number, units: number, directions: number): CarriedState =>
  Array.from({ length: directions }, () => ({ c: new Float32Array(batch * units), h: new Float32Array(batch * units) }))

/** Initial state of a window: the carried state where the slot continues its document, zeros elsewhere. */
function initialState(carried: { c: Float32Array; h: Float32Array }, continues: Uint8Array, units: number): LstmState | undefined {
  if (!continues.some((x) => x === 1)) return undefined
  const c = carried.c.slice()
  const h = carried.h.slice()
  for (let b = 0; b < continues.length; b++) {
    if (continues[b] === 1) continue
    c.fill(0, b * units, (b + 1) * units)
    h.fill(0, b * units, (b + 1) * units)
  }
  const B = continues.length
  return { c: tf.tensor2d(c, [B, units]), h: tf.tensor2d(h, [B, units]) }
}

/** Flat indices b·T + t of the valid positions, and their targets. */
function validPositions(batch: LmBatch, targets: Int32Array): { readonly index: Int32Array; readonly targets: Int32Array } {
  const index = new Int32Array(batch.tokens)
  const picked = new Int32Array(batch.tokens)
  let n = 0
  for (let b = 0; b < batch.size; b++) {
    for (let t = 0; t < batch.lengths[b]; t++) {
      index[n] = b * batch.steps + t
      picked[n++] = targets[b * batch.steps + t]
    }
  }
  return { index, targets: picked }
}

export interface LmLossOptions {
  /** How the model (and the sampled softmax) runs: the selected backend's `ActiveBackend.engine`, or REFERENCE_ENGINE. */
  readonly engine: ModelEngine
  readonly normalizeEmbeddings: boolean
  readonly embeddingKeepProb: number
  /** K negatives per step (0: full softmax). */
  readonly candidateSamples: number
}

/** Cross-entropy of one direction's window, summed over its valid positions (so callers can average any way). */
function directionLossSum(
  engine: ModelEngine,
  params: Params,
  table: tf.Tensor2D,
  batch: LmBatch,
  inputs: Int32Array,
  targets: Int32Array,
  initial: LstmState | undefined,
  direction: (typeof DIRECTIONS)[number],
  dropout: tf.Tensor3D | undefined,
  softmax: (hidden: tf.Tensor2D, targets: Int32Array, weights: tf.Tensor2D, bias: tf.Tensor1D) => tf.Tensor1D,
  onFinal: (state: LstmState) => void
): tf.Scalar {
  const ids = tf.tensor2d(inputs, [batch.size, batch.steps], "int32")
  const { outputs, final } = lstmSequence(engine, params, embed(table, ids, dropout), batch.lengths, initial, direction.lstm)
  onFinal(final)
  const H = outputs.shape[2]
  const valid = validPositions(batch, targets)
  const hidden = tf.gather(tf.reshape(outputs, [-1, H]), tf.tensor1d(valid.index, "int32")) as tf.Tensor2D
  return tf.sum(softmax(hidden, valid.targets, params[`${direction.head}/weights`] as tf.Tensor2D, params[`${direction.head}/bias`] as tf.Tensor1D))
}

const copyState = (s: LstmState) => ({ c: s.c.dataSync().slice() as Float32Array, h: s.h.dataSync().slice() as Float32Array })

export interface LmStepMetrics {
  readonly step: number
  /** Mean cross-entropy per position (sampled softmax when K > 0), summed over directions. */
  readonly loss: number
  readonly gradNorm: number
  readonly learningRate: number
  readonly tokens: number
}

export interface LmStepOptions extends LmLossOptions {
  readonly seed: number
  readonly optimizer: OptimizerConfig
  readonly bidirectional: boolean
}

export type LmStepResult = { readonly ok: true; readonly metrics: LmStepMetrics; readonly carried: CarriedState } | { readonly ok: false; readonly loss: number; readonly step: number }

/**
 * One LM optimizer step on `batch`, starting each continuing slot from `carried`. Returns the new carried state.
 * Deterministic given (seed, step): dropout masks and the sampled candidates come from seeded generators.
 */
export function lmTrainStep(
  state: TrainState,
  batch: LmBatch,
  carried: CarriedState,
  frequencies: tf.Tensor1D,
  sampler: UnigramSampler,
  options: LmStepOptions
): LmStepResult {
  const step = state.step
  return tidy((): LmStepResult => {
    const random = rng(options.seed, "lm-step", step)
    const vocabSize = frequencies.shape[0]
    const softmax = softmaxFor(options.engine, options.candidateSamples, vocabSize, sampler, random)
    const directions = directionsOf(options.bidirectional)
    const names = Object.keys(state.params)
    const nextCarried: CarriedState = []
    const D = state.params[EMBEDDING].shape[1]!
    const H = state.params["lstm/recurrentKernel"].shape[0]!
    const dropouts = directions.map(() => embeddingDropoutMask(batch.size, D, options.embeddingKeepProb, random))
    const initials = directions.map((_, i) => initialState(carried[i], batch.continues, H))
    const f = (...values: Array<tf.Tensor>): tf.Scalar => {
      const params: Params = Object.fromEntries(names.map((n, i) => [n, values[i]]))
      const table = embeddingTable(options.engine, params, frequencies, options.normalizeEmbeddings)
      const losses = directions.map((direction, i) => {
        const ids = i === 0 ? batch : batch.reverse!
        return directionLossSum(options.engine, params, table, batch, ids.inputs, ids.targets, initials[i], direction, dropouts[i], softmax, (s) => (nextCarried[i] = copyState(s)))
      })
      return tf.div(tf.addN(losses), batch.tokens) as tf.Scalar
    }
    const { value, grads } = tf.valueAndGrads(f)(names.map((n) => state.params[n]))
    const loss = value.dataSync()[0]
    if (!Number.isFinite(loss)) return { ok: false, loss, step }
    const update = clipAndApply(state, Object.fromEntries(names.map((n, i) => [n, grads[i]])), options.optimizer)
    if (!update.ok) return { ok: false, loss: update.value, step }
    const { gradNorm, learningRate } = update
    return { ok: true, metrics: { step: step + 1, loss, gradNorm, learningRate, tokens: batch.tokens }, carried: nextCarried }
  })
}

/** The head's loss for this step: sampled softmax with candidates drawn once (shared by all positions), or full. */
function softmaxFor(engine: ModelEngine, candidateSamples: number, vocabSize: number, sampler: UnigramSampler, random: Rng) {
  if (candidateSamples === 0 || candidateSamples >= sampler.support) {
    return (hidden: tf.Tensor2D, targets: Int32Array, weights: tf.Tensor2D, bias: tf.Tensor1D) =>
      fullSoftmaxLoss(hidden, tf.tensor1d(targets, "int32"), weights, bias)
  }
  const drawn = sampler.sample(Math.min(candidateSamples, vocabSize), random)
  const logExpectedTrue = (targets: Int32Array) => sampler.logExpectedCount(targets, drawn.tries, drawn.ids.length)
  const blas = engine.fused
  if (blas !== undefined) {
    return (hidden: tf.Tensor2D, targets: Int32Array, weights: tf.Tensor2D, bias: tf.Tensor1D) =>
      fusedSampledSoftmaxLoss(blas, hidden, targets, weights, bias, drawn, logExpectedTrue(targets))
  }
  const candidates = { ids: tf.tensor1d(drawn.ids, "int32"), logExpectedSampled: tf.tensor1d(drawn.logExpectedSampled) }
  return (hidden: tf.Tensor2D, targets: Int32Array, weights: tf.Tensor2D, bias: tf.Tensor1D) =>
    sampledSoftmaxLoss(hidden, tf.tensor1d(targets, "int32"), weights, bias, candidates, tf.tensor1d(logExpectedTrue(targets)))
}

/** Full softmax over row chunks, so the [N, V] logits of a long evaluation window never exist at once. */
function chunkedFullSoftmax(hidden: tf.Tensor2D, targets: Int32Array, weights: tf.Tensor2D, bias: tf.Tensor1D): tf.Tensor1D {
  const rows = Math.max(1, Math.floor(EVAL_LOGITS / weights.shape[0]))
  const parts: Array<tf.Tensor1D> = []
  for (let start = 0; start < targets.length; start += rows) {
    const n = Math.min(rows, targets.length - start)
    parts.push(tf.tidy(() => fullSoftmaxLoss(tf.slice(hidden, [start, 0], [n, -1]), tf.tensor1d(targets.subarray(start, start + n), "int32"), weights, bias)))
  }
  return parts.length === 1 ? parts[0] : (tf.concat(parts) as tf.Tensor1D)
}
const EVAL_LOGITS = 8_000_000

export interface LmEvaluation {
  /** Mean full-softmax cross-entropy per position, per direction (forward first). */
  readonly loss: ReadonlyArray<number>
  readonly perplexity: ReadonlyArray<number>
  readonly tokens: number
}

/** Full-softmax cross-entropy and perplexity (no dropout) over evaluation windows, state carried within each document. */
export interface LmEvaluationOptions extends EvaluationOptions {
  readonly bidirectional: boolean
}

export function evaluateLanguageModel(params: Params, frequencies: tf.Tensor1D, batches: Iterable<LmBatch>, options: LmEvaluationOptions): LmEvaluation {
  return runToEnd(languageModelEvaluationSteps(params, frequencies, batches, options))
}

/** `evaluateLanguageModel`, one batch per step (see EvaluationSteps). */
export function* languageModelEvaluationSteps(
  params: Params,
  frequencies: tf.Tensor1D,
  batches: Iterable<LmBatch>,
  options: LmEvaluationOptions
): EvaluationSteps<LmEvaluation> {
  const directions = directionsOf(options.bidirectional)
  const sums = directions.map(() => 0)
  let tokens = 0
  const table = tf.keep(tf.tidy(() => embeddingTable(options.engine, params, frequencies, options.normalizeEmbeddings)))
  const H = params["lstm/recurrentKernel"].shape[0]!
  let carried: CarriedState = []
  let done = 0
  try {
    for (const batch of batches) {
      if (batch.continues.every((x) => x === 0)) carried = zeroCarriedState(batch.size, H, directions.length)
      tf.tidy(() => {
        directions.forEach((direction, i) => {
          const ids = i === 0 ? batch : batch.reverse!
          const initial = initialState(carried[i], batch.continues, H)
          const sum = directionLossSum(options.engine, params, table, batch, ids.inputs, ids.targets, initial, direction, undefined, chunkedFullSoftmax, (s) => (carried[i] = copyState(s)))
          sums[i] += sum.dataSync()[0]
        })
      })
      tokens += batch.tokens
      yield ++done
    }
  } finally {
    if (table !== params[EMBEDDING]) table.dispose()
  }
  const loss = sums.map((s) => (tokens === 0 ? 0 : s / tokens))
  return { loss, perplexity: loss.map(Math.exp), tokens }
}
