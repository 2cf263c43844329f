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
import { join } from "node:path"
import { BackendError, Diverged, InvalidDataset, NonFiniteLoss, type UserError } from "../errors.ts"
import { initialParams } from "../model/classifier.ts"
import { CHECKPOINT, extraOf, trainStateFromCheckpoint, writeCheckpoint } from "../model/checkpoint.ts"
import { createTrainState, disposeTrainState, type TrainState } from "../model/optimizer.ts"
import { permutation, rng } from "../random.ts"
import type { EncodedDoc } from "../stages/batch.ts"
import { LmSchedule, lmEvaluationBatchCount, lmEvaluationBatches } from "../stages/lm-batch.ts"
import { type CarriedState, directionsOf, languageModelEvaluationSteps, lmHeadParams, lmSamplerCounts, lmTrainStep, type LmStepOptions, zeroCarriedState } from "../stages/pretrain.ts"
import { UnigramSampler } from "../stages/sampled-softmax.ts"
import type { Config } from "./config.ts"
import { releaseAfterWasmExhaustion, withinWasmMemory } from "./memory-plan.ts"
import { formatDuration } from "./progress.ts"
import { divergenceAftermath, endOfLoop, interruptible, validationLogged, writeFileAtomic, metricsLog, optimizerConfig, readRunCheckpoint, type RunOptions, runDirError, runGuard, startRun } from "./run.ts"

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

export type PretrainOutcome = { readonly status: "completed"; readonly summary: PretrainSummary } | { readonly status: "interrupted"; readonly step: number }

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

export const runPretraining = (config: Config, options: RunOptions): Effect.Effect<PretrainOutcome, UserError> =>
  Effect.scoped(
    Effect.gen(function* () {
      const { runDir, progress } = options
      const resume = options.resume === true
      const stop = options.stop ?? { requested: false }
      const started = performance.now()
      const bidirectional = config.model.bidirectional
      const { backend, data, frequencies } = yield* startRun(config, options, `language-model pretraining${bidirectional ? " (bidirectional)" : ""}`)
      // Spec A1.5: the LM reads labeled-train + unlabeled documents, never validation or test text.
      const docs = [...data.train, ...data.unlabeled]
      const trainTokens = docs.reduce((a, d) => a + d.ids.length - 1, 0)
      if (trainTokens === 0) return yield* new InvalidDataset({ message: "the language model has no training text (no labeled-train or unlabeled documents)." })
      const validationDocs = config.lm.validationDocs > 0 ? data.validation.slice(0, config.lm.validationDocs) : data.validation
      const V = data.vocabulary.size
      const K = config.lm.candidateSamples
      const sampler = new UnigramSampler(lmSamplerCounts(data.vocabulary.counts, docs.length))
      const softmaxNote = K === 0 || K >= sampler.support ? "full softmax" : `sampled softmax, ${K} unique negatives per step`
      progress.line(
        `data: ${docs.length.toLocaleString()} LM documents (${data.train.length} labeled-train + ${data.unlabeled.length} unlabeled), ` +
          `${trainTokens.toLocaleString()} tokens; ${validationDocs.length} validation documents; vocabulary ${V}; ${softmaxNote}`
      )

      const B = config.train.batchSize
      const H = config.model.lstmUnits
      const directions = directionsOf(bidirectional).length
      const { state, carried: restoredCarried, priorWallSeconds } = yield* Effect.acquireRelease(
        Effect.try({
          try: (): { state: TrainState; carried: CarriedState; priorWallSeconds: number } => {
            if (!resume) {
              const initial = initialLmParams(config, V)
              const state = createTrainState(initial)
              tf.dispose(Object.values(initial))
              return { state, carried: zeroCarriedState(B, H, directions), priorWallSeconds: 0 }
            }
            const ckpt = readRunCheckpoint(runDir, data.vocabulary.words)
            const carried = Array.from({ length: directions }, (_, i) => ({
              c: extraOf(ckpt, carriedName(i, "c")) ?? new Float32Array(B * H),
              h: extraOf(ckpt, carriedName(i, "h")) ?? new Float32Array(B * H)
            }))
            return { state: trainStateFromCheckpoint(ckpt), carried, priorWallSeconds: Number(ckpt.meta.wallSeconds ?? 0) }
          },
          catch: (cause) => runDirError(`cannot restore ${join(runDir, CHECKPOINT)}: ${(cause as Error).message}.`)
        }),
        ({ state }) => Effect.sync(() => releaseAfterWasmExhaustion(() => disposeTrainState(state)))
      )
      let carried = restoredCarried
      const startStep = state.step
      const totalSteps = config.train.steps
      const stepOptions: LmStepOptions = {
        seed: config.seed,
        embeddingKeepProb: config.model.embeddingKeepProb,
        normalizeEmbeddings: config.model.normalizeEmbeddings,
        optimizer: optimizerConfig(config),
        candidateSamples: K,
        bidirectional
      }
      const schedule = LmSchedule.at(docs, { batchSize: B, window: config.data.window, seed: config.seed, bidirectional }, startStep)
      const writeMetrics = yield* metricsLog(runDir, resume, startStep)
      // An LM's chance loss is ln V per direction; it has no hidden layer to die.
      const guard = runGuard(config, runDir, resume, directions * Math.log(V), 0, (m) => ({ step: m.step, loss: m.loss, nll: m.loss }))
      const wallSeconds = () => priorWallSeconds + (performance.now() - started) / 1000
      const saveCheckpoint = () =>
        Effect.try({
          try: () =>
            writeCheckpoint(
              join(runDir, CHECKPOINT),
              state,
              { task: "language-model", vocabulary: data.vocabulary.words, counts: data.vocabulary.counts, seed: config.seed, bidirectional, wallSeconds: wallSeconds() },
              Object.fromEntries(carried.flatMap((s, i) => [[carriedName(i, "c"), { shape: [B, H], data: s.c }], [carriedName(i, "h"), { shape: [B, H], data: s.h }]])),
              { keepPrevious: true }
            ),
          catch: (cause) => runDirError(`cannot write checkpoint in ${runDir}: ${(cause as Error).message}`)
        })
      /** Full-softmax perplexity of the documents, stopping between batches on Ctrl-C / SIGTERM (undefined then). */
      const perplexityOf = (label: string, evalDocs: ReadonlyArray<EncodedDoc>) =>
        evalDocs.length === 0
          ? Effect.succeed(null)
          : interruptible(
              label,
              languageModelEvaluationSteps(state.ema, frequencies, lmEvaluationBatches(evalDocs, config.train.evalBatchSize, config.data.window, bidirectional), {
                normalizeEmbeddings: config.model.normalizeEmbeddings,
                bidirectional
              }),
              lmEvaluationBatchCount(evalDocs, config.train.evalBatchSize, config.data.window),
              stop,
              progress
            )
      // A fixed sample of training documents, as many as validation ones (≤ 1,000 when there is no validation): its
      // full-softmax perplexity is the training curve (the sampled-softmax loss is not a perplexity).
      const trainSample = Array.from(permutation(docs.length, rng(config.seed, "lm-train-sample")).subarray(0, Math.min(docs.length, validationDocs.length || 1000)), (i) => docs[i])
      /** Validation and training-sample perplexities; undefined when a stop request cut them short. */
      const validate = () =>
        Effect.gen(function* () {
          const validation = yield* perplexityOf("validation perplexity", validationDocs)
          const train = validation === undefined ? undefined : yield* perplexityOf("training-sample perplexity", trainSample)
          if (validation === undefined || train === undefined || train === null) return undefined
          return {
            validation: validation ?? undefined,
            record: {
              trainPerplexity: train.perplexity,
              ...(validation ? { validationLoss: validation.loss, validationPerplexity: validation.perplexity, validationTokens: validation.tokens } : {})
            }
          }
        })
      const evaluationDue = (step: number) => config.train.evalEvery > 0 && step > 0 && step % config.train.evalEvery === 0
      /** The periodic evaluation of `step`: logged, or left out when a stop request cut it short. */
      const periodicEvaluation = (step: number) =>
        Effect.gen(function* () {
          const result = yield* validate()
          if (result === undefined) return
          const { validation, record } = result
          writeMetrics({ step, ...record })
          if (validation !== undefined) lastPerplexity = validation.perplexity
          progress.line(
            `step ${step}: perplexity train ${perplexityText(record.trainPerplexity)}` +
              (validation ? `, validation ${perplexityText(validation.perplexity)}` : "") +
              ` (full softmax, EMA weights)`
          )
        })
      const perplexityText = (p: ReadonlyArray<number>) => p.map((x) => x.toFixed(1)).join(" / ")
      let lastPerplexity: ReadonlyArray<number> | undefined
      // A stop during the evaluation of the checkpoint's step left it out of the log: run it now, as the uninterrupted
      // run did (at the last step the final evaluation below logs it).
      if (resume && startStep < totalSteps && evaluationDue(startStep) && !validationLogged(runDir, startStep, "trainPerplexity")) yield* periodicEvaluation(startStep)

      if (startStep >= totalSteps) progress.line(`checkpoint is already at step ${startStep} of ${totalSteps}`)
      else progress.line(`training steps ${startStep + 1}…${totalSteps}`)
      const loopStart = performance.now()
      let stepsDone = 0
      let tokensDone = 0
      const batches = Stream.fromIterable({
        *[Symbol.iterator]() {
          for (;;) yield schedule.nextBatch()
        }
      }, { chunkSize: 1 })
      yield* batches.pipe(
        Stream.take(Math.max(0, totalSteps - startStep)),
        Stream.takeWhile(() => !stop.requested),
        Stream.runForEach((batch) =>
          Effect.gen(function* () {
            const result = withinWasmMemory(config, V, `pretraining step ${state.step + 1}`, () => lmTrainStep(state, batch, carried, frequencies, sampler, stepOptions))
            if (result instanceof BackendError) return yield* result
            if (!result.ok) {
              return yield* new NonFiniteLoss({
                message: `the loss became ${result.loss} at step ${result.step + 1}; pretraining stopped. ${divergenceAftermath(runDir, result.step, config.train.learningRate)}`
              })
            }
            carried = result.carried
            const m = result.metrics
            options.onStep?.(m)
            stepsDone++
            tokensDone += m.tokens
            const elapsed = (performance.now() - loopStart) / 1000
            const tokensPerSecond = tokensDone / elapsed
            const eta = ((totalSteps - m.step) * elapsed) / stepsDone
            // With a sampled softmax the training loss is not a perplexity; the full-softmax one is logged at validation.
            writeMetrics({
              ...m,
              ...(K === 0 ? { batchPerplexity: Number(Math.exp(m.loss / directions).toFixed(3)) } : {}),
              epoch: Number(schedule.epochs.toFixed(4)),
              tokensPerSecond: Math.round(tokensPerSecond)
            })
            const diverged = guard.observe({ step: m.step, loss: m.loss, nll: m.loss })
            if (diverged !== undefined) {
              return yield* new Diverged({
                message: `pretraining diverged at step ${m.step}: ${diverged}. Pretraining stopped. ${divergenceAftermath(runDir, m.step - 1, config.train.learningRate)}`
              })
            }
            progress.status(
              `step ${m.step}/${totalSteps}  loss ${m.loss.toFixed(4)}${K > 0 ? " (sampled)" : ""}  lr ${m.learningRate.toExponential(2)}  |g| ${m.gradNorm.toFixed(2)}  ` +
                `epoch ${schedule.epochs.toFixed(2)}  ${Math.round(tokensPerSecond)} tok/s  ETA ${formatDuration(eta)}` +
                (lastPerplexity ? `  val ppl ${perplexityText(lastPerplexity)}` : ""),
              m.step % config.train.logEvery === 0
            )
            if (evaluationDue(m.step)) yield* periodicEvaluation(m.step)
            if (m.step % config.train.checkpointEvery === 0) yield* saveCheckpoint()
          })
        )
      )
      const interrupted = yield* endOfLoop(progress, saveCheckpoint(), stop, state.step, totalSteps, runDir)
      if (interrupted !== undefined) return interrupted
      // The periodic evaluation may have logged this step already (in this process or before a resume): not twice.
      const evaluatedNow = validationLogged(runDir, state.step, "trainPerplexity")
      const final = yield* validate()
      if (final === undefined) {
        progress.done()
        progress.line(`stopped during the final evaluation; the checkpoint (step ${state.step}) is kept. Finish it with: bun run pipeline --resume ${runDir}`)
        return { status: "interrupted", step: state.step } as const
      }
      const evaluation = final.validation
      if (!evaluatedNow) writeMetrics({ step: state.step, ...final.record })
      const summary: PretrainSummary = {
        name: config.name,
        task: "language-model",
        seed: config.seed,
        steps: state.step,
        backend: backend.name,
        bidirectional,
        candidateSamples: K,
        trainPerplexity: final.record.trainPerplexity,
        validationPerplexity: evaluation?.perplexity ?? null,
        trainDocuments: docs.length,
        trainTokens,
        vocabularySize: V,
        wallSeconds: Number(wallSeconds().toFixed(1))
      }
      writeFileAtomic(join(runDir, "summary.json"), JSON.stringify(summary, null, 2) + "\n")
      progress.line(
        `pretraining done: ${state.step} steps` +
          (evaluation ? ` · validation perplexity ${perplexityText(evaluation.perplexity)}` : "") +
          ` · wall ${formatDuration(summary.wallSeconds)} · restore it with pretrained: "${runDir}"`
      )
      return { status: "completed", summary } as const
    })
  )
