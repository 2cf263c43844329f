/**
 * The classifier's training run: the loop driver (loop.ts) with the classifier task plugged in:
 *   model (fresh, pretrained or from checkpoint) → zipped labeled/unlabeled batch streams → train step →
 *   validation (with the Figure-2 losses) → final EMA evaluation on test → summary.json.
 *
 * Outputs in the run dir: config.json (resolved), metrics.jsonl, checkpoint.ckpt (atomic), summary.json.
 * A stop request (Ctrl-C in the CLI) ends the loop after the current step and writes a checkpoint; `resume` continues
 * from it to the same final numbers as an uninterrupted run (data order, dropout and init are functions of seed+step).
 */
import * as tf from "@tensorflow/tfjs-core"
import { Effect } from "effect"
import { join } from "node:path"
import { PretrainedMismatch, type UserError } from "../errors.ts"
import type { ModelEngine } from "../engine/model-engine.ts"
import { FEATURE_MEAN, initialParams, type ModelShape } from "../model/classifier.ts"
import type { TrainState } from "../model/optimizer.ts"
import { rng } from "../random.ts"
import { type Batch, evaluationBatches, type StepBatches, stepBatches, trainingBatches } from "../stages/batch.ts"
import { type Evaluation, evaluationSteps, meanFeature, type PerturbationEvaluation, perturbationLossSteps } from "../stages/evaluate.ts"
import { methodDefinition, type Method, type MethodDefinition, usesUnlabeled } from "../method/method.ts"
import { type StepMetrics, type StepOptions, trainStep } from "../stages/train.ts"
import type { Config } from "./config.ts"
import type { PreparedData } from "./data.ts"
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
import { pretrainedDir, restorePretrained } from "./restore.ts"

export { interruptible, type StopSignal } from "./loop.ts"

/** The classifier run's options: the loop's (run dir, data dirs, resume, progress, stop request, onStep). */
export interface RunOptions extends LoopOptions {
  /** A user-defined method (its loss terms), in place of the config's built-in `method`. */
  readonly method?: MethodDefinition
}

export interface RunSummary {
  readonly name: string
  readonly method: string
  readonly seed: number
  readonly steps: number
  readonly backend: string
  readonly testError: number
  readonly testAccuracy: number
  readonly testLoss: number
  readonly testExamples: number
  /** At ε = perturbation.evalEpsilon (paper Figure 2); null when disabled. */
  readonly testAdversarialLoss: number | null
  readonly testVirtualAdversarialLoss: number | null
  readonly validationError: number | null
  readonly trainExamples: number
  readonly unlabeledExamples: number
  readonly vocabularySize: number
  readonly classes: ReadonlyArray<string>
  readonly wallSeconds: number
}

export type RunOutcome = LoopOutcome<RunSummary>

/** The classifier's shape for a config and its prepared data. */
export const modelShapeOf = (config: Config, data: PreparedData): ModelShape => ({
  vocabSize: data.vocabulary.size,
  embeddingDim: config.model.embeddingDim,
  lstmUnits: config.model.lstmUnits,
  hiddenUnits: config.model.hiddenUnits,
  numClasses: data.classes.length,
  bidirectional: config.model.bidirectional
})

/** A fresh classifier from the seed: pretrained parts restored, and the centered head's feature mean measured. */
function freshClassifierState({ config, data, frequencies, progress, backend }: RunContext): TrainState {
  const initial = initialParams(modelShapeOf(config, data), rng(config.seed, "init"))
  if (config.pretrained !== "") {
    const from = pretrainedDir(config.pretrained, config.seed)
    try {
      const names = restorePretrained(initial, from, data.vocabulary.words, config.model.bidirectional, config.pretrainedParts, data.classes)
      progress.line(`restored pretrained ${names.join(", ")} from ${from} (raw weights; LM head, optimizer, EMA and step not restored)`)
    } catch (error) {
      tf.dispose(Object.values(initial))
      throw error
    }
  }
  if (config.model.centeredHead) {
    const batches = evaluationBatches(data.train, config.train.evalBatchSize, config.data.window, config.model.bidirectional)
    initial[FEATURE_MEAN] = meanFeature(initial, frequencies, batches, { engine: backend.engine, normalizeEmbeddings: config.model.normalizeEmbeddings })
    const rms = Math.sqrt(tf.mean(tf.square(initial[FEATURE_MEAN])).dataSync()[0])
    progress.line(`centered head: features minus their initial mean over the ${data.train.length} training documents (rms ${rms.toFixed(3)})`)
  }
  return trainStateFrom(initial)
}

/** The step options of a run: its config, its method and how its model runs (the run's `ActiveBackend.engine`). */
export const stepOptionsOf = (config: Config, engine: ModelEngine, method: Method | MethodDefinition = config.method): StepOptions => ({
  engine,
  seed: config.seed,
  embeddingKeepProb: config.model.embeddingKeepProb,
  normalizeEmbeddings: config.model.normalizeEmbeddings,
  optimizer: optimizerConfig(config),
  method,
  perturbation: config.perturbation
})

/** The zipped labeled (NLL / AT) and unlabeled (VAT: unlabeled + labeled-train documents) batch streams from `startStep`. */
function classifierBatches(config: Config, data: PreparedData, startStep: number) {
  const { window, bidirectional } = { window: config.data.window, bidirectional: config.model.bidirectional }
  const vatDocs = [...data.train.map((d) => ({ ids: d.ids, label: -1 })), ...data.unlabeled]
  return stepBatches(
    trainingBatches(data.train, { batchSize: config.train.batchSize, seed: config.seed, stream: "labeled", window, startStep, bidirectional }),
    trainingBatches(vatDocs, { batchSize: config.train.unlabeledBatchSize, seed: config.seed, stream: "unlabeled", window, startStep, bidirectional }),
    startStep
  )
}

const statusLine = (config: Config, m: StepMetrics, examplesPerSecond: number, eta: number, lastValidation: Evaluation | undefined) =>
  `step ${m.step}/${config.train.steps}  loss ${m.loss.toFixed(4)}` +
  (m.perturbedLoss !== undefined ? ` (nll ${m.nll.toFixed(4)} pert ${m.perturbedLoss.toFixed(4)}` : m.virtualLoss !== undefined ? ` (nll ${m.nll.toFixed(4)}` : "") +
  (m.virtualLoss !== undefined ? ` kl ${m.virtualLoss.toFixed(4)})` : m.perturbedLoss !== undefined ? ")" : "") +
  `  lr ${m.learningRate.toExponential(2)}  ` +
  `|g| ${m.gradNorm.toFixed(2)}  dead ${m.deadUnits}/${config.model.hiddenUnits}  ${examplesPerSecond.toFixed(0)} ex/s  ETA ${formatDuration(eta)}` +
  (lastValidation ? `  val err ${(lastValidation.error * 100).toFixed(2)}%` : "")

/** The Figure-2 losses as metrics fields (none when disabled). */
const perturbedFields = (perturbed: PerturbationEvaluation | null) =>
  perturbed ? { testAdversarialLoss: perturbed.adversarialLoss, testVirtualAdversarialLoss: perturbed.virtualAdversarialLoss } : {}

/** The classifier's evaluation passes (EMA weights) on validation and test, each stopping between batches. */
function classifierEvaluations(ctx: RunContext, state: TrainState, stepOptions: StepOptions) {
  const { config, data, frequencies, evaluationPass } = ctx
  const bidirectional = config.model.bidirectional
  const testBatches = evaluationBatches(data.test, config.train.evalBatchSize, config.data.window, bidirectional)
  const validationBatches = evaluationBatches(data.validation, config.train.evalBatchSize, config.data.window, bidirectional)
  const on = (label: string, batches: ReadonlyArray<Batch>) => evaluationPass(label, evaluationSteps(state.ema, frequencies, batches, stepOptions), batches.length)
  /** Test-set L_adv and L_vadv at ε = evalEpsilon (paper Figure 2), logged with each evaluation; null when off. */
  const figure2 = () =>
    config.perturbation.evalEpsilon > 0
      ? evaluationPass(
          "test L_adv / L_vadv",
          perturbationLossSteps(state.ema, frequencies, testBatches, {
            engine: stepOptions.engine,
            normalizeEmbeddings: config.model.normalizeEmbeddings,
            epsilon: config.perturbation.evalEpsilon,
            xi: config.perturbation.xi,
            powerIterations: config.perturbation.powerIterations,
            seed: config.seed
          }),
          testBatches.length
        )
      : Effect.succeed(null)
  return {
    hasValidation: validationBatches.length > 0,
    validation: (label = "validation") => on(label, validationBatches),
    test: () => on("test evaluation", testBatches),
    figure2
  }
}

/** The final evaluation: test, Figure-2 losses and validation, logged; undefined when a stop request cut it short. */
/** The loop's context plus the method this classifier trains with (the config's, or a user's term list). */
type ClassifierContext = RunContext & { readonly method: Method | MethodDefinition }

const finalEvaluation = (ctx: ClassifierContext, state: TrainState, evaluations: ReturnType<typeof classifierEvaluations>, writeMetrics: (r: Record<string, unknown>) => void, wallSeconds: () => number) =>
  Effect.gen(function* () {
    const { config, data, progress } = ctx
    progress.line(`evaluating on ${data.test.length} test documents (EMA weights)…`)
    const test = yield* evaluations.test()
    const perturbed = test === undefined ? undefined : yield* evaluations.figure2()
    const validation = perturbed === undefined ? undefined : evaluations.hasValidation ? yield* evaluations.validation("final validation") : null
    if (test === undefined || perturbed === undefined || validation === undefined) return undefined
    const summary: RunSummary = {
      name: config.name,
      method: methodDefinition(ctx.method).name,
      seed: config.seed,
      steps: state.step,
      backend: ctx.backend.name,
      testError: test.error,
      testAccuracy: test.accuracy,
      testLoss: test.loss,
      testExamples: test.examples,
      testAdversarialLoss: perturbed?.adversarialLoss ?? null,
      testVirtualAdversarialLoss: perturbed?.virtualAdversarialLoss ?? null,
      validationError: validation?.error ?? null,
      trainExamples: data.train.length,
      unlabeledExamples: data.unlabeled.length,
      vocabularySize: data.vocabulary.size,
      classes: data.classes,
      wallSeconds: Number(wallSeconds().toFixed(1))
    }
    writeMetrics({ step: state.step, testError: test.error, testLoss: test.loss, validationError: summary.validationError, ...perturbedFields(perturbed) })
    const line =
      `test error ${(test.error * 100).toFixed(2)}% (accuracy ${(test.accuracy * 100).toFixed(2)}%, ${test.examples} documents) · ` +
      `wall ${formatDuration(summary.wallSeconds)} · ${join(ctx.runDir, "summary.json")}`
    return { summary, line }
  })

/** The classifier plugged into the loop, once its state is loaded. */
function classifierLoopTask(ctx: ClassifierContext, state: TrainState, writeMetrics: (r: Record<string, unknown>) => void, wallSeconds: () => number): LoopTask<StepBatches, StepMetrics, RunSummary> {
  const { config, data, frequencies, progress } = ctx
  const stepOptions = stepOptionsOf(config, ctx.backend.engine, ctx.method)
  const evaluations = classifierEvaluations(ctx, state, stepOptions)
  let lastValidation: Evaluation | undefined
  const validationDue = (step: number) => evaluationScheduled(config, step) && evaluations.hasValidation
  return {
    noun: "training",
    state,
    batches: classifierBatches(config, data, state.step),
    trainStep: (batches) => trainStep(state, batches, frequencies, stepOptions),
    work: (m) => m.examples,
    record: (m, perSecond) => ({ ...m, examplesPerSecond: Number(perSecond.toFixed(1)) }),
    statusLine: (m, perSecond, eta) => statusLine(config, m, perSecond, eta, lastValidation),
    evaluationDue: validationDue,
    evaluate: (step) =>
      Effect.gen(function* () {
        const validation = yield* evaluations.validation()
        const perturbed = validation === undefined ? undefined : yield* evaluations.figure2()
        if (validation === undefined || perturbed === undefined) return
        lastValidation = validation
        writeMetrics({ step, validationError: validation.error, validationLoss: validation.loss, ...perturbedFields(perturbed) })
        progress.line(`step ${step}: validation error ${(validation.error * 100).toFixed(2)}% (loss ${validation.loss.toFixed(4)}, EMA weights)`)
      }),
    evaluationMissing: (startStep) => validationDue(startStep) && !ctx.evaluationLogged(startStep, "validationError"),
    checkpoint: (wall) => ({
      meta: { vocabulary: data.vocabulary.words, counts: data.vocabulary.counts, classes: data.classes, method: methodDefinition(ctx.method).name, seed: config.seed, wallSeconds: wall }
    }),
    finish: () => finalEvaluation(ctx, state, evaluations, writeMetrics, wallSeconds)
  }
}

/** The classifier as a task of the training loop. */
export const classifierTask = (config: Config, method: Method | MethodDefinition = config.method): TrainingTask<StepBatches, StepMetrics, RunSummary> => ({
  headline: `method ${methodDefinition(method).name}`,
  start: (ctx) =>
    Effect.gen(function* () {
      const { data, progress } = ctx
      const skipped = Object.entries(data.skipped).map(([k, v]) => `${k} ${v}`).join(", ")
      progress.line(
        `data: ${data.train.length} train, ${data.validation.length} validation, ${data.test.length} test, ` +
          `${data.unlabeled.length} unlabeled; vocabulary ${data.vocabulary.size}; classes ${data.classes.join("/")}` +
          (skipped ? `; skipped (no in-vocabulary word): ${skipped}` : "")
      )
      const { state, priorWallSeconds } = yield* acquireTrainState(ctx, {
        classes: data.classes,
        fresh: () => ({ state: freshClassifierState(ctx), extra: undefined }),
        restored: () => undefined,
        mapError: (cause) => (cause instanceof PretrainedMismatch ? cause : undefined)
      })
      if (usesUnlabeled(method) && data.unlabeled.length === 0) {
        progress.line(`note: method ${methodDefinition(method).name} has no unlabeled data configured; its KL term uses the labeled training documents only`)
      }
      return {
        state,
        priorWallSeconds,
        chanceLoss: Math.log(data.classes.length),
        hiddenUnits: config.model.hiddenUnits,
        guarded: (m: Record<string, number>) => ({ step: m.step, loss: m.loss, nll: m.nll, deadUnits: m.deadUnits }),
        plug: ({ writeMetrics, wallSeconds }) => classifierLoopTask({ ...ctx, method }, state, writeMetrics, wallSeconds)
      }
    })
})

export const runPipeline = (config: Config, options: RunOptions): Effect.Effect<RunOutcome, UserError> =>
  runTrainingLoop(config, options, classifierTask(config, options.method))
