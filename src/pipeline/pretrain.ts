/**
 * The LM pretraining run (config `task: "language-model"`; paper §4.1, spec A1.5, A2.4, A4):
 *   backend → data stages (the classifier's, so the vocabulary is the one a classifier of the same config builds) →
 *   LM sequences from labeled-train + unlabeled documents (never validation or test text) → stateful windows →
 *   LM step (sampled softmax) → metrics / checkpoints / validation perplexity → summary.json.
 *
 * A classifier restores the embedding and LSTM weights from this run dir with `pretrained: <run dir>`
 * (src/pipeline/restore.ts). Checkpoints hold the carried LSTM state too, so `--resume` continues exactly.
 */
import * as tf from "@tensorflow/tfjs-core"
import { Effect, Stream } from "effect"
import { InvalidDataset, type UserError } from "../errors.ts"
import { initialParams } from "../model/classifier.ts"
import { extraOf } from "../model/checkpoint.ts"
import type { TrainState } from "../model/optimizer.ts"
import { permutation, rng } from "../random.ts"
import type { EncodedDoc } from "../stages/batch.ts"
import { type LmBatch, LmSchedule, lmEvaluationBatchCount, lmEvaluationBatches } from "../stages/lm-batch.ts"
import {
  type CarriedState,
  directionsOf,
  languageModelEvaluationSteps,
  lmHeadParams,
  lmSamplerCounts,
  type LmStepMetrics,
  type LmStepOptions,
  lmTrainStep,
  zeroCarriedState
} from "../stages/pretrain.ts"
import { UnigramSampler } from "../stages/sampled-softmax.ts"
import type { Config } from "./config.ts"
import {
  acquireTrainState,
  evaluationScheduled,
  type LoopOptions,
  type LoopOutcome,
  type LoopTask,
  optimizerConfig,
  type RunContext,
  runTrainingLoop,
  type TrainingTask,
  trainStateFrom
} from "./loop.ts"
import { formatDuration } from "./progress.ts"

export interface PretrainSummary {
  readonly name: string
  readonly task: "language-model"
  readonly seed: number
  readonly steps: number
  readonly backend: string
  readonly bidirectional: boolean
  readonly candidateSamples: number
  /** Full-softmax perplexity on a fixed sample of training documents (EMA weights), per direction. */
  readonly trainPerplexity: ReadonlyArray<number>
  /** Full-softmax perplexity on the validation documents (EMA weights), per direction; null without validation. */
  readonly validationPerplexity: ReadonlyArray<number> | null
  readonly trainDocuments: number
  readonly trainTokens: number
  readonly vocabularySize: number
  readonly wallSeconds: number
}

export type PretrainOutcome = LoopOutcome<PretrainSummary>

/** Fresh LM parameters: embedding and LSTM(s) as the classifier initializes them, plus the LM head(s). */
function initialLmParams(config: Config, vocabSize: number): Record<string, tf.Tensor> {
  const { embeddingDim, lstmUnits, bidirectional } = config.model
  const classifier = initialParams({ vocabSize, embeddingDim, lstmUnits, hiddenUnits: 1, numClasses: 2, bidirectional }, rng(config.seed, "init"))
  const params: Record<string, tf.Tensor> = {}
  for (const [name, t] of Object.entries(classifier)) {
    if (name.startsWith("head/")) t.dispose()
    else params[name] = t
  }
  for (const direction of directionsOf(bidirectional)) Object.assign(params, lmHeadParams(vocabSize, lstmUnits, rng(config.seed, "init", direction.head), direction.head))
  return params
}

const carriedName = (direction: number, part: "c" | "h") => `carried/${direction}/${part}`

const perplexityText = (p: ReadonlyArray<number>) => p.map((x) => x.toFixed(1)).join(" / ")

/** The LM's documents and what follows from them (spec A1.5: labeled-train + unlabeled text, never validation or test). */
function lmCorpus(ctx: RunContext) {
  const { config, data } = ctx
  const docs = [...data.train, ...data.unlabeled]
  const validationDocs = config.lm.validationDocs > 0 ? data.validation.slice(0, config.lm.validationDocs) : data.validation
  // A fixed sample of training documents, as many as validation ones (≤ 1,000 when there is no validation): its
  // full-softmax perplexity is the training curve (the sampled-softmax loss is not a perplexity).
  const trainSample = Array.from(permutation(docs.length, rng(config.seed, "lm-train-sample")).subarray(0, Math.min(docs.length, validationDocs.length || 1000)), (i) => docs[i])
  return {
    docs,
    validationDocs,
    trainSample,
    trainTokens: docs.reduce((a, d) => a + d.ids.length - 1, 0)
  }
}
type LmCorpus = ReturnType<typeof lmCorpus> & { readonly sampler: UnigramSampler }

/** Validation and training-sample perplexities (full softmax, EMA weights); undefined when a stop request cut them short. */
const lmEvaluation = (ctx: RunContext, state: TrainState, corpus: LmCorpus) => {
  const { config, frequencies, backend } = ctx
  const bidirectional = config.model.bidirectional
  const perplexityOf = (label: string, evalDocs: ReadonlyArray<EncodedDoc>) =>
    evalDocs.length === 0
      ? Effect.succeed(null)
      : ctx.evaluationPass(
          label,
          languageModelEvaluationSteps(state.ema, frequencies, lmEvaluationBatches(evalDocs, config.train.evalBatchSize, config.data.window, bidirectional), {
            engine: backend.engine,
            normalizeEmbeddings: config.model.normalizeEmbeddings,
            bidirectional
          }),
          lmEvaluationBatchCount(evalDocs, config.train.evalBatchSize, config.data.window)
        )
  return Effect.gen(function* () {
    const validation = yield* perplexityOf("validation perplexity", corpus.validationDocs)
    const train = validation === undefined ? undefined : yield* perplexityOf("training-sample perplexity", corpus.trainSample)
    if (validation === undefined || train === undefined || train === null) return undefined
    return {
      validation: validation ?? undefined,
      record: {
        trainPerplexity: train.perplexity,
        ...(validation ? { validationLoss: validation.loss, validationPerplexity: validation.perplexity, validationTokens: validation.tokens } : {})
      }
    }
  })
}

/** The final evaluation, logged unless the periodic one already logged this step; undefined when a stop cut it short. */
const finalLmEvaluation = (ctx: RunContext, state: TrainState, corpus: LmCorpus, writeMetrics: (r: Record<string, unknown>) => void, wallSeconds: () => number) =>
  Effect.gen(function* () {
    const { config, data, runDir } = ctx
    // The periodic evaluation may have logged this step already (in this process or before a resume): not twice.
    const evaluatedNow = ctx.evaluationLogged(state.step, "trainPerplexity")
    const final = yield* lmEvaluation(ctx, state, corpus)
    if (final === undefined) return undefined
    const evaluation = final.validation
    if (!evaluatedNow) writeMetrics({ step: state.step, ...final.record })
    const summary: PretrainSummary = {
      name: config.name,
      task: "language-model",
      seed: config.seed,
      steps: state.step,
      backend: ctx.backend.name,
      bidirectional: config.model.bidirectional,
      candidateSamples: config.lm.candidateSamples,
      trainPerplexity: final.record.trainPerplexity,
      validationPerplexity: evaluation?.perplexity ?? null,
      trainDocuments: corpus.docs.length,
      trainTokens: corpus.trainTokens,
      vocabularySize: data.vocabulary.size,
      wallSeconds: Number(wallSeconds().toFixed(1))
    }
    const line =
      `pretraining done: ${state.step} steps` +
      (evaluation ? ` · validation perplexity ${perplexityText(evaluation.perplexity)}` : "") +
      ` · wall ${formatDuration(summary.wallSeconds)} · restore it with pretrained: "${runDir}"`
    return { summary, line }
  })

interface LmPlug {
  readonly state: TrainState
  readonly carried: CarriedState
  readonly corpus: LmCorpus
  readonly writeMetrics: (record: Record<string, unknown>) => void
  readonly wallSeconds: () => number
}

/** The language model plugged into the loop, once its state (and the LSTM state carried across windows) is loaded. */
function lmLoopTask(ctx: RunContext, plug: LmPlug): LoopTask<LmBatch, LmStepMetrics, PretrainSummary> {
  const { config, data, frequencies, progress } = ctx
  const { state, corpus, writeMetrics } = plug
  const bidirectional = config.model.bidirectional
  const [B, H, K] = [config.train.batchSize, config.model.lstmUnits, config.lm.candidateSamples]
  const directions = directionsOf(bidirectional).length
  const stepOptions: LmStepOptions = {
    engine: ctx.backend.engine,
    seed: config.seed,
    embeddingKeepProb: config.model.embeddingKeepProb,
    normalizeEmbeddings: config.model.normalizeEmbeddings,
    optimizer: optimizerConfig(config),
    candidateSamples: K,
    bidirectional
  }
  const schedule = LmSchedule.at(corpus.docs, { batchSize: B, window: config.data.window, seed: config.seed, bidirectional }, state.step)
  let carried = plug.carried
  let lastPerplexity: ReadonlyArray<number> | undefined
  const evaluationDue = (step: number) => evaluationScheduled(config, step)
  return {
    noun: "pretraining",
    state,
    batches: Stream.fromIterable({ *[Symbol.iterator]() { for (;;) yield schedule.nextBatch() } }, { chunkSize: 1 }),
    trainStep: (batch) => {
      const result = lmTrainStep(state, batch, carried, frequencies, corpus.sampler, stepOptions)
      if (result.ok) carried = result.carried
      return result
    },
    work: (m) => m.tokens,
    // With a sampled softmax the training loss is not a perplexity; the full-softmax one is logged at validation.
    record: (m, perSecond) => ({ ...m, ...(K === 0 ? { batchPerplexity: Number(Math.exp(m.loss / directions).toFixed(3)) } : {}), epoch: Number(schedule.epochs.toFixed(4)), tokensPerSecond: Math.round(perSecond) }),
    statusLine: (m, perSecond, eta) =>
      `step ${m.step}/${config.train.steps}  loss ${m.loss.toFixed(4)}${K > 0 ? " (sampled)" : ""}  lr ${m.learningRate.toExponential(2)}  |g| ${m.gradNorm.toFixed(2)}  ` +
      `epoch ${schedule.epochs.toFixed(2)}  ${Math.round(perSecond)} tok/s  ETA ${formatDuration(eta)}` +
      (lastPerplexity ? `  val ppl ${perplexityText(lastPerplexity)}` : ""),
    evaluationDue,
    evaluate: (step) =>
      Effect.gen(function* () {
        const result = yield* lmEvaluation(ctx, state, corpus)
        if (result === undefined) return
        const { validation, record } = result
        writeMetrics({ step, ...record })
        if (validation !== undefined) lastPerplexity = validation.perplexity
        progress.line(`step ${step}: perplexity train ${perplexityText(record.trainPerplexity)}` + (validation ? `, validation ${perplexityText(validation.perplexity)}` : "") + ` (full softmax, EMA weights)`)
      }),
    // At the last step the final evaluation logs it.
    evaluationMissing: (startStep) => startStep < config.train.steps && evaluationDue(startStep) && !ctx.evaluationLogged(startStep, "trainPerplexity"),
    checkpoint: (wall) => ({
      meta: { task: "language-model", vocabulary: data.vocabulary.words, counts: data.vocabulary.counts, seed: config.seed, bidirectional, wallSeconds: wall },
      extras: Object.fromEntries(carried.flatMap((s, i) => [[carriedName(i, "c"), { shape: [B, H], data: s.c }], [carriedName(i, "h"), { shape: [B, H], data: s.h }]]))
    }),
    finish: () => finalLmEvaluation(ctx, state, corpus, writeMetrics, plug.wallSeconds)
  }
}

/** LM pretraining as a task of the training loop. */
export const languageModelTask = (config: Config): TrainingTask<LmBatch, LmStepMetrics, PretrainSummary> => ({
  headline: `language-model pretraining${config.model.bidirectional ? " (bidirectional)" : ""}`,
  start: (ctx) =>
    Effect.gen(function* () {
      const { data, progress } = ctx
      const texts = lmCorpus(ctx)
      if (texts.trainTokens === 0) return yield* new InvalidDataset({ message: "the language model has no training text (no labeled-train or unlabeled documents)." })
      const corpus: LmCorpus = { ...texts, sampler: new UnigramSampler(lmSamplerCounts(data.vocabulary.counts, texts.docs.length)) }
      const V = data.vocabulary.size
      const K = config.lm.candidateSamples
      const softmaxNote = K === 0 || K >= corpus.sampler.support ? "full softmax" : `sampled softmax, ${K} unique negatives per step`
      progress.line(
        `data: ${corpus.docs.length.toLocaleString()} LM documents (${data.train.length} labeled-train + ${data.unlabeled.length} unlabeled), ` +
          `${corpus.trainTokens.toLocaleString()} tokens; ${corpus.validationDocs.length} validation documents; vocabulary ${V}; ${softmaxNote}`
      )
      const [B, H] = [config.train.batchSize, config.model.lstmUnits]
      const directions = directionsOf(config.model.bidirectional).length
      const { state, extra: carried, priorWallSeconds } = yield* acquireTrainState<CarriedState>(ctx, {
        fresh: () => {
          return { state: trainStateFrom(initialLmParams(config, V)), extra: zeroCarriedState(B, H, directions) }
        },
        restored: (ckpt) =>
          Array.from({ length: directions }, (_, i) => ({
            c: extraOf(ckpt, carriedName(i, "c")) ?? new Float32Array(B * H),
            h: extraOf(ckpt, carriedName(i, "h")) ?? new Float32Array(B * H)
          }))
      })
      return {
        state,
        priorWallSeconds,
        // An LM's chance loss is ln V per direction; it has no hidden layer to die.
        chanceLoss: directions * Math.log(V),
        hiddenUnits: 0,
        guarded: (m: Record<string, number>) => ({ step: m.step, loss: m.loss, nll: m.loss }),
        plug: ({ writeMetrics, wallSeconds }) => lmLoopTask(ctx, { state, carried, corpus, writeMetrics, wallSeconds })
      }
    })
})

export const runPretraining = (config: Config, options: LoopOptions): Effect.Effect<PretrainOutcome, UserError> => runTrainingLoop(config, options, languageModelTask(config))
