/**
 * The one training loop driver, shared by the classifier (run.ts) and LM pretraining (pretrain.ts):
 *   run dir + config.json → backend → data stages → the task's state (fresh or from the checkpoint) → step stream →
 *   NaN / divergence stop · metrics · progress and ETA · evaluate / checkpoint schedule → stop request → final
 *   evaluation → summary.json.
 *
 * A task plugs in what differs: how its state starts, its step, its metrics record and status line, its evaluation and
 * its summary. A stop request (Ctrl-C in the CLI) ends the loop after the current step and writes a checkpoint;
 * `resume` continues from it to the same final numbers as an uninterrupted run.
 */
import * as tf from "@tensorflow/tfjs-core"
import { Effect, type Scope, Stream } from "effect"
import { join } from "node:path"
import { type ActiveBackend, selectBackendScoped } from "../engine/backend.ts"
import { scopedWorkspacePool } from "../engine/gates.ts"
import { BackendError, ConfigError, Diverged, NonFiniteLoss, type UserError } from "../errors.ts"
import { CHECKPOINT, type LoadedCheckpoint, trainStateFromCheckpoint } from "../model/checkpoint.ts"
import { createTrainState, disposeTrainState, OPTIMIZER_FIELDS, type OptimizerConfig, type TrainState } from "../model/optimizer.ts"
import type { EvaluationSteps } from "../stages/evaluate.ts"
import type { Config } from "./config.ts"
import { prepareData, type PreparedData } from "./data.ts"
import type { DivergenceGuard, GuardedMetrics } from "./guard.ts"
import { memoryPlanProblems, releaseAfterWasmExhaustion, withinWasmMemory } from "./memory-plan.ts"
import { formatDuration, type Progress } from "./progress.ts"
import { divergenceAftermath, evaluationLogged, runDirError, runGuard, type RunStorageShape } from "./run-dir.ts"
import { DataSources, RunProgress, RunStorage, Tokenizer } from "./services.ts"

/**
 * A stop request from code embedding the run (the CLIs interrupt the run's fiber instead, see main.ts signalStop):
 * once `requested`, the loop stops after the current step or evaluation batch, writes a checkpoint and returns the
 * "interrupted" outcome.
 */
export interface StopSignal {
  requested: boolean
}

/** What every training run takes beside its config (the classifier's RunOptions extends it). */
export interface LoopOptions {
  readonly runDir: string
  readonly dataDir?: string | undefined
  readonly cacheDir?: string | undefined
  /** Continue from the run dir's checkpoint instead of starting fresh. */
  readonly resume?: boolean
  /** Where progress lines go; without it, the RunProgress service (default: the console). */
  readonly progress?: Progress
  readonly stop?: StopSignal
  /** Called after every successful step (tests use it to simulate Ctrl-C). */
  readonly onStep?: (metrics: { readonly step: number }) => void
}

export type LoopOutcome<S> = { readonly status: "completed"; readonly summary: S } | { readonly status: "interrupted"; readonly step: number }

/** One turn of the event loop, where signal handlers run; the fiber can be interrupted while it waits. */
export const eventLoopTurn = Effect.promise(() => new Promise<void>((resolve) => setImmediate(resolve)))

/**
 * One evaluation pass, a batch per event-loop turn: a stop request or an interruption (Ctrl-C or SIGTERM in the CLI)
 * gets through between batches (a stop request makes the result undefined), and once it has taken a few seconds a
 * status line shows its progress and ETA. The pass's tensors are released however it ends.
 */
export const interruptible = <A>(label: string, steps: EvaluationSteps<A>, total: number, stop: StopSignal, progress: Progress): Effect.Effect<A | undefined> =>
  Effect.suspend(() => {
    const started = performance.now()
    const batches = Effect.gen(function* () {
      for (;;) {
        yield* eventLoopTurn
        if (stop.requested) return undefined
        const next = steps.next()
        if (next.done) return next.value
        const elapsed = (performance.now() - started) / 1000
        if (elapsed > 3) progress.status(`${label}: batch ${next.value}/${total}  ETA ${formatDuration((elapsed * (total - next.value)) / next.value)}`)
      }
    })
    return Effect.ensuring(batches, Effect.sync(() => void steps.return(undefined as never)))
  })

export const optimizerConfig = (config: Config): OptimizerConfig =>
  Object.fromEntries(OPTIMIZER_FIELDS.map((k) => [k, config.train[k]])) as unknown as OptimizerConfig

/** What a task starts from: the run's config and options, its backend, prepared data and unigram frequencies. */
export interface RunContext {
  readonly config: Config
  readonly options: LoopOptions
  readonly runDir: string
  readonly resume: boolean
  readonly stop: StopSignal
  readonly progress: Progress
  /** Where the run's config, metrics, checkpoints and summary go (the RunStorage service). */
  readonly storage: RunStorageShape
  /** Whether the metrics log holds an evaluation record of `step` (one with `key`). */
  readonly evaluationLogged: (step: number, key: string) => boolean
  readonly backend: ActiveBackend
  readonly data: PreparedData
  /** Unigram frequencies as a tensor, released with the run's scope. */
  readonly frequencies: tf.Tensor1D
  /** An evaluation pass, batch by batch: a stop request ends it (undefined then), an interruption lands between batches. */
  readonly evaluationPass: <A>(label: string, steps: EvaluationSteps<A>, total: number) => Effect.Effect<A | undefined>
}

/**
 * What every run starts with (classifier and LM pretraining): the run dir and its config.json, the backend, the data
 * stages, and the unigram frequencies as a tensor released with the run's scope.
 */
export const startRun = (config: Config, options: LoopOptions, headline: string): Effect.Effect<RunContext, UserError, Scope.Scope> =>
  Effect.gen(function* () {
    const { runDir } = options
    const progress = options.progress ?? (yield* RunProgress)
    const tokenizer = yield* Tokenizer
    const sources = yield* DataSources
    const storage = yield* RunStorage
    const resume = options.resume === true
    const stop = options.stop ?? { requested: false }
    yield* storage.open(runDir, config, resume, (l) => progress.line(l))
    const backend = yield* selectBackendScoped(config.backend, { blas: config.blas, fusedLstm: config.fusedLstm })
    yield* scopedWorkspacePool
    const plan = backend.fusedLstm ? memoryPlanProblems(config) : []
    if (plan.length > 0) return yield* new ConfigError({ message: `this config cannot run with the fused LSTM:\n${plan.map((p) => `  - ${p}`).join("\n")}` })
    progress.line(`advtext: ${config.name} · ${headline} · seed ${config.seed} · backend ${backend.description}`)
    progress.line(`loading ${config.dataset.kind} data…`)
    const location = { dataDir: options.dataDir, cacheDir: options.cacheDir, download: config.dataset.download }
    const data = yield* prepareData(config, location, (l) => progress.line(l), { tokenize: tokenizer.tokenize, loadSources: sources.load })
    const frequencies = yield* Effect.acquireRelease(
      Effect.sync(() => tf.tensor1d(data.vocabulary.frequencies())),
      (t) => Effect.sync(() => releaseAfterWasmExhaustion(() => t.dispose()))
    )
    const evaluationPass = <A>(label: string, steps: EvaluationSteps<A>, total: number) => interruptible(label, steps, total, stop, progress)
    const logged = (step: number, key: string) => evaluationLogged(storage.loggedMetrics(runDir), step, key)
    return { config, options, runDir, resume, stop, progress, storage, evaluationLogged: logged, backend, data, frequencies, evaluationPass }
  })

/** A fresh train state (Adam slots, EMA shadows, step 0) from initial parameters, which it takes over. */
export function trainStateFrom(initial: Record<string, tf.Tensor>): TrainState {
  const state = createTrainState(initial)
  tf.dispose(Object.values(initial))
  return state
}

/**
 * A task's train state, released with the run's scope: fresh (`fresh`, with whatever else the task keeps beside it) or,
 * on resume, the run dir's checkpoint (checked against the data's vocabulary and, for a classifier, its classes).
 */
export const acquireTrainState = <X>(
  ctx: RunContext,
  options: {
    readonly classes?: ReadonlyArray<string>
    readonly fresh: () => { readonly state: TrainState; readonly extra: X }
    readonly restored: (ckpt: LoadedCheckpoint) => X
    readonly mapError?: (cause: unknown) => UserError | undefined
  }
) =>
  Effect.acquireRelease(
    Effect.try({
      try: (): { state: TrainState; extra: X; priorWallSeconds: number } => {
        if (!ctx.resume) return { ...options.fresh(), priorWallSeconds: 0 }
        const ckpt = ctx.storage.readCheckpoint(ctx.runDir, ctx.data.vocabulary.words, options.classes)
        if (!ckpt.verified) ctx.progress.line(`note: ${join(ctx.runDir, CHECKPOINT)} predates checkpoint checksums; it was loaded without verification`)
        const extra = options.restored(ckpt)
        return { state: trainStateFromCheckpoint(ckpt), extra, priorWallSeconds: Number(ckpt.meta.wallSeconds ?? 0) }
      },
      catch: (cause) => options.mapError?.(cause) ?? runDirError(`cannot restore ${join(ctx.runDir, CHECKPOINT)}: ${(cause as Error).message}.`)
    }),
    ({ state }) => Effect.sync(() => releaseAfterWasmExhaustion(() => disposeTrainState(state)))
  )

/** What a task's step returns: its metrics, or the non-finite loss it stopped at (no update was applied). */
export type TaskStepResult<M> = { readonly ok: true; readonly metrics: M } | { readonly ok: false; readonly loss: number; readonly step: number }

/** The metrics every task's step reports. */
export interface LoopMetrics {
  readonly step: number
}

/** A task plugged into the loop, once its state is loaded and its metrics log open. */
export interface LoopTask<B, M extends LoopMetrics, S> {
  /** "training" or "pretraining", as the loop's messages say it. */
  readonly noun: string
  readonly state: TrainState
  /** The step batches from the state's step on (a function of seed and step, so a resume continues them exactly). */
  readonly batches: Stream.Stream<B>
  readonly trainStep: (batch: B) => TaskStepResult<M>
  /** Examples or tokens a step went through, for the throughput and ETA. */
  readonly work: (metrics: M) => number
  /** The metrics.jsonl record of a step. */
  readonly record: (metrics: M, perSecond: number) => Record<string, unknown>
  readonly statusLine: (metrics: M, perSecond: number, etaSeconds: number) => string
  readonly evaluationDue: (step: number) => boolean
  /** The periodic evaluation of `step`: logged, or left out when a stop request cut it short. */
  readonly evaluate: (step: number) => Effect.Effect<void>
  /** On resume: the evaluation of the checkpoint's step is due but missing from the log (a stop cut it short). */
  readonly evaluationMissing: (startStep: number) => boolean
  /** What the checkpoint holds beside the state: its metadata and extra arrays. */
  readonly checkpoint: (wallSeconds: number) => { readonly meta: Readonly<Record<string, unknown>>; readonly extras?: Readonly<Record<string, { readonly shape: ReadonlyArray<number>; readonly data: Float32Array }>> }
  /** The final evaluation, its record logged: the summary and its closing line; undefined when a stop cut it short. */
  readonly finish: () => Effect.Effect<{ readonly summary: S; readonly line: string } | undefined>
}

/** What a task's start gives the loop: its state, the guard's scale, and how to plug in once the log is open. */
export interface TaskStart<B, M extends LoopMetrics, S> {
  readonly state: TrainState
  readonly priorWallSeconds: number
  /** The clean loss of a uniform prediction and the hidden units (0: none), the divergence guard's scales. */
  readonly chanceLoss: number
  readonly hiddenUnits: number
  /** A step's metrics (or a logged record of one) as the guard reads them. */
  readonly guarded: (metrics: Record<string, number>) => GuardedMetrics
  readonly plug: (io: { readonly writeMetrics: (record: Record<string, unknown>) => void; readonly wallSeconds: () => number }) => LoopTask<B, M, S>
}

/** A training task: the classifier (run.ts) or the language model (pretrain.ts). */
export interface TrainingTask<B, M extends LoopMetrics, S> {
  /** After "advtext: <name> ·" in the first line. */
  readonly headline: string
  readonly start: (ctx: RunContext) => Effect.Effect<TaskStart<B, M, S>, UserError, Scope.Scope>
}

/** Whether the periodic evaluation (train.evalEvery) falls on `step`. */
export const evaluationScheduled = (config: Config, step: number): boolean => config.train.evalEvery > 0 && step > 0 && step % config.train.evalEvery === 0

const capitalized = (text: string) => text[0].toUpperCase() + text.slice(1)

/** The step stream: each step, its metrics and status, the guard, and the evaluate / checkpoint schedule. */
const stepLoop = <B, M extends LoopMetrics, S>(
  ctx: RunContext,
  task: LoopTask<B, M, S>,
  guard: DivergenceGuard,
  guarded: (metrics: Record<string, number>) => GuardedMetrics,
  writeMetrics: (record: Record<string, unknown>) => void,
  saveCheckpoint: Effect.Effect<void, UserError>
) => {
  const { config, runDir, stop, progress } = ctx
  const { state, noun } = task
  const startStep = state.step
  const totalSteps = config.train.steps
  const aftermath = (firstBadWeights: number) => divergenceAftermath(ctx.storage, runDir, firstBadWeights, config.train.learningRate)
  const loopStart = performance.now()
  let stepsDone = 0
  let workDone = 0
  return task.batches.pipe(
    Stream.take(Math.max(0, totalSteps - startStep)),
    Stream.takeWhile(() => !stop.requested),
    Stream.runForEach((batch) =>
      Effect.gen(function* () {
        // Signal handlers run here, so a Ctrl-C interrupts the run at this step boundary rather than steps later.
        yield* eventLoopTurn
        const result = withinWasmMemory(config, ctx.data.vocabulary.size, `${noun} step ${state.step + 1}`, () => task.trainStep(batch))
        if (result instanceof BackendError) return yield* result
        if (!result.ok) {
          return yield* new NonFiniteLoss({ message: `the loss became ${result.loss} at step ${result.step + 1}; ${noun} stopped. ${aftermath(result.step)}` })
        }
        const m = result.metrics
        stepsDone++
        workDone += task.work(m)
        const elapsed = (performance.now() - loopStart) / 1000
        const perSecond = workDone / elapsed
        const eta = ((totalSteps - m.step) * elapsed) / stepsDone
        writeMetrics(task.record(m, perSecond))
        const diverged = guard.observe(guarded(m as unknown as Record<string, number>))
        if (diverged !== undefined) {
          // This step's loss came from the weights after step m.step − 1: those are the first bad ones.
          return yield* new Diverged({ message: `${noun} diverged at step ${m.step}: ${diverged}. ${capitalized(noun)} stopped. ${aftermath(m.step - 1)}` })
        }
        ctx.options.onStep?.(m)
        progress.status(task.statusLine(m, perSecond, eta), m.step % config.train.logEvery === 0)
        if (task.evaluationDue(m.step)) yield* task.evaluate(m.step)
        if (m.step % config.train.checkpointEvery === 0) yield* saveCheckpoint
      })
    )
  )
}

/** After the last step: the final evaluation and summary, or the "interrupted" outcome when a stop cut it short. */
const finishRun = <B, M extends LoopMetrics, S>(ctx: RunContext, task: LoopTask<B, M, S>): Effect.Effect<LoopOutcome<S>, UserError> =>
  Effect.gen(function* () {
    const { progress, runDir } = ctx
    const step = task.state.step
    const finalStopped = () => {
      progress.done()
      progress.line(`stopped during the final evaluation; the checkpoint (step ${step}) is kept. Finish it with: bun run pipeline --resume ${runDir}`)
    }
    const final = yield* Effect.onInterrupt(task.finish(), () => Effect.sync(finalStopped))
    if (final === undefined) {
      finalStopped()
      return { status: "interrupted", step } as const
    }
    yield* Effect.try({
      try: () => ctx.storage.writeSummary(runDir, final.summary),
      catch: (cause) => runDirError(`cannot write the summary in ${runDir}: ${(cause as Error).message}`)
    })
    progress.line(final.line)
    return { status: "completed", summary: final.summary } as const
  })

/** Runs a training task to its summary, or to a checkpoint when a stop request comes first. */
export const runTrainingLoop = <B, M extends LoopMetrics, S>(config: Config, options: LoopOptions, training: TrainingTask<B, M, S>): Effect.Effect<LoopOutcome<S>, UserError> =>
  Effect.scoped(
    Effect.gen(function* () {
      const started = performance.now()
      const ctx = yield* startRun(config, options, training.headline)
      const { runDir, resume, progress, stop } = ctx
      const start = yield* training.start(ctx)
      const startStep = start.state.step
      const totalSteps = config.train.steps
      const writeMetrics = yield* ctx.storage.metricsLog(runDir, resume, startStep)
      const guard = runGuard(config, resume ? ctx.storage.loggedMetrics(runDir) : [], start.chanceLoss, start.hiddenUnits, start.guarded)
      const wallSeconds = () => start.priorWallSeconds + (performance.now() - started) / 1000
      const task = start.plug({ writeMetrics, wallSeconds })
      const saveCheckpoint = Effect.try({
        try: () => {
          const { meta, extras } = task.checkpoint(wallSeconds())
          ctx.storage.writeCheckpoint(runDir, task.state, meta, extras ?? {})
        },
        catch: (cause) => runDirError(`cannot write checkpoint in ${runDir}: ${(cause as Error).message}`)
      })
      // A stop during the evaluation of the checkpoint's step left it out of the log: run it now, as the
      // uninterrupted run did.
      if (resume && task.evaluationMissing(startStep)) {
        const unchanged = () => progress.line(`stopped at step ${startStep}; the checkpoint is unchanged. Continue with: bun run pipeline --resume ${runDir}`)
        yield* Effect.onInterrupt(task.evaluate(startStep), () => Effect.sync(unchanged))
      }
      if (startStep >= totalSteps) progress.line(`checkpoint is already at step ${startStep} of ${totalSteps}`)
      else progress.line(`training steps ${startStep + 1}…${totalSteps}`)
      const stoppedAt = (step: number) => progress.line(`stopped at step ${step}; checkpoint written. Continue with: bun run pipeline --resume ${runDir}`)
      // Interrupted (Ctrl-C in the CLI) between steps or during an evaluation: the state is that of a finished step,
      // so the finalizer checkpoints it, as a stop request does below.
      const checkpointOnInterrupt = Effect.gen(function* () {
        progress.done()
        const saved = yield* Effect.result(saveCheckpoint)
        if (saved._tag === "Failure") progress.line(`stopped at step ${task.state.step}, but ${saved.failure.message}`)
        else stoppedAt(task.state.step)
      })
      yield* Effect.onInterrupt(stepLoop(ctx, task, guard, start.guarded, writeMetrics, saveCheckpoint), () => checkpointOnInterrupt)
      progress.done()
      yield* saveCheckpoint
      const step = task.state.step
      if (stop.requested && step < totalSteps) {
        stoppedAt(step)
        return { status: "interrupted", step } as const
      }
      return yield* finishRun(ctx, task)
    })
  )
