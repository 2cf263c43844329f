/**
 * The training run as one Effect program:
 *   backend → data stages → model (fresh or from checkpoint) → zipped labeled/unlabeled batch streams → train step →
 *   metrics / checkpoints / validation → final EMA evaluation on test → summary.json.
 *
 * Outputs in the run dir: config.json (resolved), metrics.jsonl, checkpoint.ckpt (atomic), summary.json.
 * A stop request (Ctrl-C in the CLI) ends the loop after the current step and writes a checkpoint; `resume` continues
 * from it to the same final numbers as an uninterrupted run (data order, dropout and init are functions of seed+step).
 */
import * as tf from "@tensorflow/tfjs-core"
import { Effect, Stream } from "effect"
import { appendFileSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { selectBackend } from "../engine/backend.ts"
import { BackendError, ConfigError, Diverged, NonFiniteLoss, PretrainedMismatch, RunDirError, type UserError } from "../errors.ts"
import { FEATURE_MEAN, initialParams, type ModelShape } from "../model/classifier.ts"
import { CHECKPOINT, classesMismatch, type LoadedCheckpoint, readCheckpoint, trainStateFromCheckpoint, writeCheckpoint } from "../model/checkpoint.ts"
import { createTrainState, disposeTrainState, OPTIMIZER_FIELDS, type OptimizerConfig, type TrainState } from "../model/optimizer.ts"
import { rng } from "../random.ts"
import { type Batch, evaluationBatches, stepBatches, trainingBatches } from "../stages/batch.ts"
import { type Evaluation, type EvaluationSteps, evaluationSteps, meanFeature, perturbationLossSteps } from "../stages/evaluate.ts"
import { methodDefinition, type MethodDefinition, usesUnlabeled } from "../method/method.ts"
import { type StepOptions, trainStep } from "../stages/train.ts"
import { firstVocabularyDifference } from "../stages/vocabulary.ts"
import { type Config, RESUMABLE_FIELDS, resolveConfig, resumeChanges } from "./config.ts"
import { prepareData, type PreparedData } from "./data.ts"
import { DivergenceGuard, type GuardedMetrics, keepCheckpointBefore } from "./guard.ts"
import { memoryPlanProblems, releaseAfterWasmExhaustion, withinWasmMemory } from "./memory-plan.ts"
import { formatDuration, type Progress } from "./progress.ts"
import { pretrainedDir, restorePretrained } from "./restore.ts"

export interface StopSignal {
  requested: boolean
}

/**
 * Ctrl-C handling for long runs: the first SIGINT (or SIGTERM, as sent by `timeout` and job schedulers) asks the loop
 * to stop after the current step (it then writes a checkpoint); a second one exits at once with 130. Call `release`
 * when the run is over.
 */
export function stopOnSigint(): { readonly stop: StopSignal; release(): void } {
  const stop: StopSignal = { requested: false }
  const onSigint = () => {
    if (stop.requested) process.exit(130)
    stop.requested = true
    process.stderr.write("\nstopping after this step or evaluation batch (Ctrl-C again to quit without a checkpoint)…\n")
  }
  process.on("SIGINT", onSigint)
  process.on("SIGTERM", onSigint)
  return {
    stop,
    release: () => {
      process.off("SIGINT", onSigint)
      process.off("SIGTERM", onSigint)
    }
  }
}

export interface RunOptions {
  readonly runDir: string
  readonly dataDir?: string | undefined
  readonly cacheDir?: string | undefined
  /** Continue from the run dir's checkpoint instead of starting fresh. */
  readonly resume?: boolean
  readonly progress: Progress
  readonly stop?: StopSignal
  /** Called after every successful step (tests use it to simulate Ctrl-C). */
  readonly onStep?: (metrics: { readonly step: number }) => void
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

export type RunOutcome =
  | { readonly status: "completed"; readonly summary: RunSummary }
  | { readonly status: "interrupted"; readonly step: number }


export const runDirError = (message: string) => new RunDirError({ message })

/** Write a run-dir file so that a kill at any moment leaves the old content or the new, never a torn file. */
export function writeFileAtomic(path: string, text: string): void {
  writeFileSync(`${path}.tmp`, text)
  renameSync(`${path}.tmp`, path)
}

export function prepareRunDir(runDir: string, resume: boolean): Effect.Effect<void, RunDirError> {
  return Effect.try({
    try: () => {
      mkdirSync(runDir, { recursive: true })
      const probe = join(runDir, `.write-test-${process.pid}`)
      writeFileSync(probe, "")
      renameSync(probe, join(runDir, ".write-test"))
      rmSync(join(runDir, ".write-test"))
    },
    catch: (cause) =>
      runDirError(`cannot write to run directory ${runDir} (${(cause as Error).message}). Pass a writable folder with --run-dir DIR.`)
  }).pipe(
    Effect.flatMap(() => {
      const hasCheckpoint = existsSync(join(runDir, CHECKPOINT))
      if (resume && !hasCheckpoint) {
        return Effect.fail(runDirError(`cannot resume: ${runDir} has no ${CHECKPOINT}. Start a new run without --resume.`))
      }
      if (!resume && hasCheckpoint) {
        return Effect.fail(
          runDirError(`${runDir} already holds a run (${CHECKPOINT}). Continue it with --resume ${runDir}, or choose another --run-dir.`)
        )
      }
      return Effect.void
    })
  )
}

/**
 * The run dir's checkpoint, for `--resume`: refused (its tensors disposed) when its vocabulary is not the one the
 * data builds now, since every id would then mean another word, or (a classifier's) when the data's classes are not
 * the ones its head was trained on.
 */
export function readRunCheckpoint(runDir: string, vocabulary: ReadonlyArray<string>, classes?: ReadonlyArray<string>): LoadedCheckpoint {
  const ckpt = readCheckpoint(join(runDir, CHECKPOINT))
  const words = ckpt.meta.vocabulary as Array<string> | undefined
  const why =
    words === undefined || firstVocabularyDifference(words, vocabulary) >= 0
      ? "the vocabulary built from the data differs from the checkpoint's: the dataset or its config changed since the run started"
      : classes === undefined
        ? undefined
        : classesMismatch(ckpt, classes)?.concat(" (the dataset's labels changed since the run started; restore the data, or start a new run)")
  if (why !== undefined) {
    for (const t of ckpt.tensors.values()) t.dispose()
    throw new Error(why)
  }
  return ckpt
}

/**
 * `--resume`: the config must be the run's saved config.json up to RESUMABLE_FIELDS (a ConfigError naming every
 * other changed key); allowed changes are written back to config.json so it describes the run as it continues.
 */
export function checkResumedConfig(config: Config, runDir: string, log: (line: string) => void): Effect.Effect<void, ConfigError | RunDirError> {
  return Effect.gen(function* () {
    const path = join(runDir, "config.json")
    const saved = yield* Effect.try({
      try: () => resolveConfig(JSON.parse(readFileSync(path, "utf8")), [], path),
      catch: (cause) =>
        cause instanceof ConfigError
          ? runDirError(`cannot resume ${runDir}: its saved config is no longer valid: ${cause.message}`)
          : runDirError(`cannot resume ${runDir}: cannot read its config.json (${(cause as Error).message}); is it a run directory?`)
    })
    const { allowed, refused } = resumeChanges(saved, config)
    if (refused.length > 0) {
      return yield* new ConfigError({
        message:
          `cannot resume ${runDir} with a changed config: the checkpoint was trained with its config.json, and ` +
          `${refused.length === 1 ? "this change" : "these changes"} would not be honoured:\n` +
          refused.map((c) => `  - ${c}`).join("\n") +
          `\nOn --resume only ${RESUMABLE_FIELDS.join(", ")} (and --data-dir, --cache-dir) may change. ` +
          `Start a new run (another --run-dir) to train with the new settings.`
      })
    }
    if (allowed.length === 0) return
    yield* Effect.try({
      try: () => {
        writeFileAtomic(path, JSON.stringify(config, null, 2) + "\n")
      },
      catch: (cause) => runDirError(`cannot update ${path}: ${(cause as Error).message}`)
    })
    log(`resuming with ${allowed.join("; ")} (recorded in config.json)`)
  })
}

/**
 * The run's metrics.jsonl writer. On resume, lines written after the checkpoint (a crash between checkpoints) are
 * dropped first, so the log matches an uninterrupted run; so are a partial last line (a kill in mid-append) and a
 * final evaluation at the checkpoint's step (the resumed run evaluates again, or goes on past it). A fresh run starts
 * an empty log (a run killed before its first checkpoint is started again, not resumed).
 */
export function metricsLog(runDir: string, resume: boolean, startStep: number): Effect.Effect<(record: Record<string, unknown>) => void, RunDirError> {
  const path = join(runDir, "metrics.jsonl")
  return Effect.try({
    try: () => {
      if (resume && existsSync(path)) {
        const lines = readFileSync(path, "utf8").split("\n")
        const kept = lines.filter((l, i) => {
          if (l === "") return false
          let record: { step: number; testError?: number }
          try {
            record = JSON.parse(l)
          } catch {
            if (i === lines.length - 1) return false // the partial last line: no newline was written after it
            throw new Error(`line ${i + 1} is not valid JSON`)
          }
          return record.step < startStep || (record.step === startStep && !("testError" in record))
        })
        writeFileAtomic(path, kept.map((l) => l + "\n").join(""))
      } else if (!resume) {
        writeFileSync(path, "")
      }
      return (record: Record<string, unknown>) => appendFileSync(path, JSON.stringify(record) + "\n")
    },
    catch: (cause) => runDirError(`cannot continue ${path}: ${(cause as Error).message}. Repair or remove that line (the checkpoint is intact).`)
  })
}

/**
 * The divergence guard of a run, fed on resume with the steps already in metrics.jsonl (truncated to the checkpoint)
 * so that its window and dead-unit streak are those of an uninterrupted run.
 */
export function runGuard(config: Config, runDir: string, resume: boolean, chanceLoss: number, hiddenUnits: number, toGuarded: (record: Record<string, number>) => GuardedMetrics) {
  const guard = new DivergenceGuard(config.guard, chanceLoss, hiddenUnits)
  const path = join(runDir, "metrics.jsonl")
  if (resume && existsSync(path)) {
    for (const line of readFileSync(path, "utf8").split("\n")) {
      if (line === "") continue
      const record = JSON.parse(line) as Record<string, number>
      if ("loss" in record) guard.observe(toGuarded(record))
    }
  }
  return guard
}

/**
 * The message tail after a divergence or a NaN first seen in the loss of the weights after `firstBadWeights` updates:
 * what became of the checkpoint (always one from before those weights, see keepCheckpointBefore) and what to do.
 */
export function divergenceAftermath(runDir: string, firstBadWeights: number, learningRate: number): string {
  let kept: string
  try {
    kept = keepCheckpointBefore(runDir, firstBadWeights)
  } catch (cause) {
    kept = `the checkpoint in ${runDir} could not be checked (${(cause as Error).message}); do not resume it without looking`
  }
  return `${kept[0].toUpperCase()}${kept.slice(1)}. Start a new run with a lower train.learningRate (now ${learningRate}) or check the data; the guard section sets these limits.`
}

/**
 * One evaluation pass, a batch per event-loop turn: a Ctrl-C or SIGTERM gets through between batches (the result is
 * then undefined), and once it has taken a few seconds a status line shows its progress and ETA.
 */
export const interruptible = <A>(label: string, steps: EvaluationSteps<A>, total: number, stop: StopSignal, progress: Progress): Effect.Effect<A | undefined> =>
  Effect.promise(async () => {
    const started = performance.now()
    try {
      for (;;) {
        // Signal handlers run only when the event loop turns.
        await new Promise<void>((resolve) => setImmediate(resolve))
        if (stop.requested) return undefined
        const next = steps.next()
        if (next.done) return next.value
        const elapsed = (performance.now() - started) / 1000
        if (elapsed > 3) progress.status(`${label}: batch ${next.value}/${total}  ETA ${formatDuration((elapsed * (total - next.value)) / next.value)}`)
      }
    } finally {
      steps.return(undefined as never) // releases the pass's tensors when it was stopped early
    }
  })

/** Whether metrics.jsonl already holds an evaluation record of `step` (one with `key`). */
export function validationLogged(runDir: string, step: number, key = "validationError"): boolean {
  const path = join(runDir, "metrics.jsonl")
  if (!existsSync(path)) return false
  return readFileSync(path, "utf8")
    .split("\n")
    .some((l) => {
      if (l === "") return false
      const record = JSON.parse(l) as { step: number }
      return record.step === step && key in record
    })
}

export const optimizerConfig = (config: Config): OptimizerConfig =>
  Object.fromEntries(OPTIMIZER_FIELDS.map((k) => [k, config.train[k]])) as unknown as OptimizerConfig

/** The classifier's shape for a config and its prepared data. */
export const modelShapeOf = (config: Config, data: PreparedData): ModelShape => ({
  vocabSize: data.vocabulary.size,
  embeddingDim: config.model.embeddingDim,
  lstmUnits: config.model.lstmUnits,
  hiddenUnits: config.model.hiddenUnits,
  numClasses: data.classes.length,
  bidirectional: config.model.bidirectional
})

/** Model and optimizer state: fresh from the seed, or restored from the run dir's checkpoint. Released on scope close. */
function acquireState(config: Config, data: PreparedData, frequencies: tf.Tensor1D, runDir: string, resume: boolean, log: (line: string) => void) {
  return Effect.acquireRelease(
    Effect.try({
      try: (): { state: TrainState; priorWallSeconds: number } => {
        if (!resume) {
          const initial = initialParams(modelShapeOf(config, data), rng(config.seed, "init"))
          if (config.pretrained !== "") {
            const from = pretrainedDir(config.pretrained, config.seed)
            try {
              const names = restorePretrained(initial, from, data.vocabulary.words, config.model.bidirectional, config.pretrainedParts, data.classes)
              log(`restored pretrained ${names.join(", ")} from ${from} (raw weights; LM head, optimizer, EMA and step not restored)`)
            } catch (error) {
              tf.dispose(Object.values(initial))
              throw error
            }
          }
          if (config.model.centeredHead) {
            const batches = evaluationBatches(data.train, config.train.evalBatchSize, config.data.window, config.model.bidirectional)
            initial[FEATURE_MEAN] = meanFeature(initial, frequencies, batches, { normalizeEmbeddings: config.model.normalizeEmbeddings })
            const rms = Math.sqrt(tf.mean(tf.square(initial[FEATURE_MEAN])).dataSync()[0])
            log(`centered head: features minus their initial mean over the ${data.train.length} training documents (rms ${rms.toFixed(3)})`)
          }
          const state = createTrainState(initial)
          tf.dispose(Object.values(initial))
          return { state, priorWallSeconds: 0 }
        }
        const ckpt = readRunCheckpoint(runDir, data.vocabulary.words, data.classes)
        if (!ckpt.verified) log(`note: ${join(runDir, CHECKPOINT)} predates checkpoint checksums; it was loaded without verification`)
        return { state: trainStateFromCheckpoint(ckpt), priorWallSeconds: Number(ckpt.meta.wallSeconds ?? 0) }
      },
      catch: (cause) => (cause instanceof PretrainedMismatch ? cause : runDirError(`cannot restore ${join(runDir, CHECKPOINT)}: ${(cause as Error).message}.`))
    }),
    ({ state }) => Effect.sync(() => releaseAfterWasmExhaustion(() => disposeTrainState(state)))
  )
}

/**
 * What every run starts with (classifier and LM pretraining): the run dir and its config.json, the backend, the data
 * stages, and the unigram frequencies as a tensor released with the run's scope.
 */
export const startRun = (config: Config, options: RunOptions, headline: string) =>
  Effect.gen(function* () {
    const { runDir, progress } = options
    yield* prepareRunDir(runDir, options.resume === true)
    if (options.resume === true) yield* checkResumedConfig(config, runDir, (l) => progress.line(l))
    else writeFileAtomic(join(runDir, "config.json"), JSON.stringify(config, null, 2) + "\n")
    const backend = yield* selectBackend(config.backend, { blas: config.blas, fusedLstm: config.fusedLstm })
    const plan = backend.fusedLstm ? memoryPlanProblems(config) : []
    if (plan.length > 0) return yield* new ConfigError({ message: `this config cannot run with the fused LSTM:\n${plan.map((p) => `  - ${p}`).join("\n")}` })
    progress.line(`advtext: ${config.name} · ${headline} · seed ${config.seed} · backend ${backend.description}`)
    progress.line(`loading ${config.dataset.kind} data…`)
    const data = yield* prepareData(config, { dataDir: options.dataDir, cacheDir: options.cacheDir, download: config.dataset.download }, (l) => progress.line(l))
    const frequencies = yield* Effect.acquireRelease(
      Effect.sync(() => tf.tensor1d(data.vocabulary.frequencies())),
      (t) => Effect.sync(() => releaseAfterWasmExhaustion(() => t.dispose()))
    )
    return { backend, data, frequencies }
  })

/**
 * After a run's step loop: the final checkpoint, then the "interrupted" outcome when a stop request ended the loop
 * before the last step (undefined when the run is complete).
 */
export const endOfLoop = <E>(progress: Progress, saveCheckpoint: Effect.Effect<void, E>, stop: StopSignal, step: number, totalSteps: number, runDir: string) =>
  Effect.gen(function* () {
    progress.done()
    yield* saveCheckpoint
    if (!stop.requested || step >= totalSteps) return undefined
    progress.line(`stopped at step ${step}; checkpoint written. Continue with: bun run pipeline --resume ${runDir}`)
    return { status: "interrupted", step } as const
  })

export const runPipeline = (config: Config, options: RunOptions): Effect.Effect<RunOutcome, UserError> =>
  Effect.scoped(
    Effect.gen(function* () {
      const { runDir, progress } = options
      const resume = options.resume === true
      const stop = options.stop ?? { requested: false }
      const started = performance.now()
      const method = options.method ?? config.method
      const methodName = methodDefinition(method).name
      const { backend, data, frequencies } = yield* startRun(config, options, `method ${methodName}`)
      const skipped = Object.entries(data.skipped).map(([k, v]) => `${k} ${v}`).join(", ")
      progress.line(
        `data: ${data.train.length} train, ${data.validation.length} validation, ${data.test.length} test, ` +
          `${data.unlabeled.length} unlabeled; vocabulary ${data.vocabulary.size}; classes ${data.classes.join("/")}` +
          (skipped ? `; skipped (no in-vocabulary word): ${skipped}` : "")
      )
      const { state, priorWallSeconds } = yield* acquireState(config, data, frequencies, runDir, resume, (l) => progress.line(l))
      const startStep = state.step
      const totalSteps = config.train.steps
      const stepOptions: StepOptions = {
        seed: config.seed,
        embeddingKeepProb: config.model.embeddingKeepProb,
        normalizeEmbeddings: config.model.normalizeEmbeddings,
        optimizer: optimizerConfig(config),
        method,
        perturbation: config.perturbation
      }
      const bidirectional = config.model.bidirectional
      const testBatches = evaluationBatches(data.test, config.train.evalBatchSize, config.data.window, bidirectional)
      /** Evaluation passes stop between batches on Ctrl-C / SIGTERM (undefined then). */
      const evaluateOn = (label: string, batches: ReadonlyArray<Batch>) =>
        interruptible(label, evaluationSteps(state.ema, frequencies, batches, stepOptions), batches.length, stop, progress)
      /** Test-set L_adv and L_vadv at ε = evalEpsilon (paper Figure 2), logged with each evaluation; null when off. */
      const figure2 = () =>
        config.perturbation.evalEpsilon > 0
          ? interruptible(
              "test L_adv / L_vadv",
              perturbationLossSteps(state.ema, frequencies, testBatches, {
                normalizeEmbeddings: config.model.normalizeEmbeddings,
                epsilon: config.perturbation.evalEpsilon,
                xi: config.perturbation.xi,
                powerIterations: config.perturbation.powerIterations,
                seed: config.seed
              }),
              testBatches.length,
              stop,
              progress
            )
          : Effect.succeed(null)
      const writeMetrics = yield* metricsLog(runDir, resume, startStep)
      const guard = runGuard(config, runDir, resume, Math.log(data.classes.length), config.model.hiddenUnits, (m) => ({ step: m.step, loss: m.loss, nll: m.nll, deadUnits: m.deadUnits }))
      const wallSeconds = () => priorWallSeconds + (performance.now() - started) / 1000
      const saveCheckpoint = () =>
        Effect.try({
          try: () =>
            writeCheckpoint(
              join(runDir, CHECKPOINT),
              state,
              {
                vocabulary: data.vocabulary.words,
                counts: data.vocabulary.counts,
                classes: data.classes,
                method: methodName,
                seed: config.seed,
                wallSeconds: wallSeconds()
              },
              {},
              { keepPrevious: true }
            ),
          catch: (cause) => runDirError(`cannot write checkpoint in ${runDir}: ${(cause as Error).message}`)
        })

      const validationBatches = evaluationBatches(data.validation, config.train.evalBatchSize, config.data.window, bidirectional)
      let lastValidation: Evaluation | undefined
      /** The periodic validation of `step` (with the Figure-2 losses); false when a stop request cut it short. */
      const validate = (step: number) =>
        Effect.gen(function* () {
          const validation = yield* evaluateOn("validation", validationBatches)
          const perturbed = validation === undefined ? undefined : yield* figure2()
          if (validation === undefined || perturbed === undefined) return false
          lastValidation = validation
          writeMetrics({
            step,
            validationError: validation.error,
            validationLoss: validation.loss,
            ...(perturbed ? { testAdversarialLoss: perturbed.adversarialLoss, testVirtualAdversarialLoss: perturbed.virtualAdversarialLoss } : {})
          })
          progress.line(`step ${step}: validation error ${(validation.error * 100).toFixed(2)}% (loss ${validation.loss.toFixed(4)}, EMA weights)`)
          return true
        })
      const validationDue = (step: number) => config.train.evalEvery > 0 && step > 0 && step % config.train.evalEvery === 0 && validationBatches.length > 0
      // A stop during the validation of the checkpoint's step left it out of the log: run it now, as the
      // uninterrupted run did.
      if (resume && validationDue(startStep) && !validationLogged(runDir, startStep)) yield* validate(startStep)
      if (usesUnlabeled(method) && data.unlabeled.length === 0) {
        progress.line(`note: method ${methodName} has no unlabeled data configured; its KL term uses the labeled training documents only`)
      }
      const vatDocs = [...data.train.map((d) => ({ ids: d.ids, label: -1 })), ...data.unlabeled]
      const stream = stepBatches(
        trainingBatches(data.train, { batchSize: config.train.batchSize, seed: config.seed, stream: "labeled", window: config.data.window, startStep, bidirectional }),
        trainingBatches(vatDocs, { batchSize: config.train.unlabeledBatchSize, seed: config.seed, stream: "unlabeled", window: config.data.window, startStep, bidirectional }),
        startStep
      )

      if (startStep >= totalSteps) progress.line(`checkpoint is already at step ${startStep} of ${totalSteps}`)
      else progress.line(`training steps ${startStep + 1}…${totalSteps}`)
      const loopStart = performance.now()
      let stepsDone = 0
      let examplesDone = 0
      yield* stream.pipe(
        Stream.take(Math.max(0, totalSteps - startStep)),
        Stream.takeWhile(() => !stop.requested),
        Stream.runForEach((batches) =>
          Effect.gen(function* () {
            const result = withinWasmMemory(config, data.vocabulary.size, `training step ${state.step + 1}`, () => trainStep(state, batches, frequencies, stepOptions))
            if (result instanceof BackendError) return yield* result
            if (!result.ok) {
              return yield* new NonFiniteLoss({
                message: `the loss became ${result.loss} at step ${result.step + 1}; training stopped. ${divergenceAftermath(runDir, result.step, config.train.learningRate)}`
              })
            }
            const m = result.metrics
            stepsDone++
            examplesDone += m.examples
            const elapsed = (performance.now() - loopStart) / 1000
            const examplesPerSecond = examplesDone / elapsed
            const eta = ((totalSteps - m.step) * elapsed) / stepsDone
            writeMetrics({ ...m, examplesPerSecond: Number(examplesPerSecond.toFixed(1)) })
            const diverged = guard.observe(m)
            if (diverged !== undefined) {
              // This step's loss came from the weights after step m.step − 1: those are the first bad ones.
              return yield* new Diverged({
                message: `training diverged at step ${m.step}: ${diverged}. Training stopped. ${divergenceAftermath(runDir, m.step - 1, config.train.learningRate)}`
              })
            }
            options.onStep?.(m)
            const statusLine =
              `step ${m.step}/${totalSteps}  loss ${m.loss.toFixed(4)}` +
              (m.perturbedLoss !== undefined ? ` (nll ${m.nll.toFixed(4)} pert ${m.perturbedLoss.toFixed(4)}` : m.virtualLoss !== undefined ? ` (nll ${m.nll.toFixed(4)}` : "") +
              (m.virtualLoss !== undefined ? ` kl ${m.virtualLoss.toFixed(4)})` : m.perturbedLoss !== undefined ? ")" : "") +
              `  lr ${m.learningRate.toExponential(2)}  ` +
              `|g| ${m.gradNorm.toFixed(2)}  dead ${m.deadUnits}/${config.model.hiddenUnits}  ${examplesPerSecond.toFixed(0)} ex/s  ETA ${formatDuration(eta)}` +
              (lastValidation ? `  val err ${(lastValidation.error * 100).toFixed(2)}%` : "")
            progress.status(statusLine, m.step % config.train.logEvery === 0)
            if (validationDue(m.step)) yield* validate(m.step)
            if (m.step % config.train.checkpointEvery === 0) yield* saveCheckpoint()
          })
        )
      )
      const interrupted = yield* endOfLoop(progress, saveCheckpoint(), stop, state.step, totalSteps, runDir)
      if (interrupted !== undefined) return interrupted

      progress.line(`evaluating on ${data.test.length} test documents (EMA weights)…`)
      const test = yield* evaluateOn("test evaluation", testBatches)
      const perturbed = test === undefined ? undefined : yield* figure2()
      const validation = perturbed === undefined ? undefined : validationBatches.length > 0 ? yield* evaluateOn("final validation", validationBatches) : null
      if (test === undefined || perturbed === undefined || validation === undefined) {
        progress.done()
        progress.line(`stopped during the final evaluation; the checkpoint (step ${state.step}) is kept. Finish it with: bun run pipeline --resume ${runDir}`)
        return { status: "interrupted", step: state.step } as const
      }
      const summary: RunSummary = {
        name: config.name,
        method: methodName,
        seed: config.seed,
        steps: state.step,
        backend: backend.name,
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
      writeMetrics({
        step: state.step,
        testError: test.error,
        testLoss: test.loss,
        validationError: summary.validationError,
        ...(perturbed ? { testAdversarialLoss: perturbed.adversarialLoss, testVirtualAdversarialLoss: perturbed.virtualAdversarialLoss } : {})
      })
      writeFileAtomic(join(runDir, "summary.json"), JSON.stringify(summary, null, 2) + "\n")
      progress.line(
        `test error ${(test.error * 100).toFixed(2)}% (accuracy ${(test.accuracy * 100).toFixed(2)}%, ${test.examples} documents) · ` +
          `wall ${formatDuration(summary.wallSeconds)} · ${join(runDir, "summary.json")}`
      )
      return { status: "completed", summary } as const
    })
  )
