/**
 * The run directory of a training run (classifier or LM): its layout, atomic writes, the checks before a run starts or
 * resumes, the metrics log, the divergence guard fed from that log, and what a divergence leaves behind.
 *
 *   config.json (resolved) · metrics.jsonl (one JSON record per line) · checkpoint.ckpt (+ the previous one) · summary.json
 */
import { appendFileSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { Effect } from "effect"
import { ConfigError, RunDirError } from "../errors.ts"
import { CHECKPOINT, classesMismatch, type LoadedCheckpoint, readCheckpoint, writeCheckpoint } from "../model/checkpoint.ts"
import type { TrainState } from "../model/optimizer.ts"
import { firstVocabularyDifference } from "../stages/vocabulary.ts"
import { type Config, RESUMABLE_FIELDS, resolveConfig, resumeChanges } from "./config.ts"
import { DivergenceGuard, type GuardedMetrics, keepCheckpointBefore } from "./guard.ts"

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
export function runGuard(config: Config, logged: ReadonlyArray<Record<string, number>>, chanceLoss: number, hiddenUnits: number, toGuarded: (record: Record<string, number>) => GuardedMetrics) {
  const guard = new DivergenceGuard(config.guard, chanceLoss, hiddenUnits)
  for (const record of logged) if ("loss" in record) guard.observe(toGuarded(record))
  return guard
}

/**
 * The message tail after a divergence or a NaN first seen in the loss of the weights after `firstBadWeights` updates:
 * what became of the checkpoint (always one from before those weights, see keepCheckpointBefore) and what to do.
 */
export function divergenceAftermath(storage: RunStorageShape, runDir: string, firstBadWeights: number, learningRate: number): string {
  let kept: string
  try {
    kept = storage.keepCheckpointBefore(runDir, firstBadWeights)
  } catch (cause) {
    kept = `the checkpoint in ${runDir} could not be checked (${(cause as Error).message}); do not resume it without looking`
  }
  return `${kept[0].toUpperCase()}${kept.slice(1)}. Start a new run with a lower train.learningRate (now ${learningRate}) or check the data; the guard section sets these limits.`
}

/** The records of metrics.jsonl (none when there is none yet). */
export function loggedMetrics(runDir: string): Array<Record<string, number>> {
  const path = join(runDir, "metrics.jsonl")
  if (!existsSync(path)) return []
  return readFileSync(path, "utf8")
    .split("\n")
    .filter((l) => l !== "")
    .map((l) => JSON.parse(l) as Record<string, number>)
}

/** Whether the metrics log already holds an evaluation record of `step` (one with `key`). */
export const evaluationLogged = (logged: ReadonlyArray<Record<string, number>>, step: number, key: string): boolean =>
  logged.some((record) => record.step === step && key in record)

type CheckpointExtras = Readonly<Record<string, { readonly shape: ReadonlyArray<number>; readonly data: Float32Array }>>

/**
 * Where a run keeps what it writes (the RunStorage service, src/pipeline/services.ts). The default, fileRunStorage,
 * is the run directory on disk; another storage must keep its guarantees: a write either lands whole or not at all,
 * and the metrics log on resume holds nothing past the checkpoint.
 */
export interface RunStorageShape {
  /** A fresh run: a writable run dir without a checkpoint, and its config recorded; a resume: a checkpoint and the config check. */
  readonly open: (runDir: string, config: Config, resume: boolean, log: (line: string) => void) => Effect.Effect<void, RunDirError | ConfigError>
  /** The metrics log's writer (on resume, first cut back to the checkpoint's step; see metricsLog). */
  readonly metricsLog: (runDir: string, resume: boolean, startStep: number) => Effect.Effect<(record: Record<string, unknown>) => void, RunDirError>
  readonly loggedMetrics: (runDir: string) => ReadonlyArray<Record<string, number>>
  /** The checkpoint to resume from, checked against the data's vocabulary (and classes); throws when refused. */
  readonly readCheckpoint: (runDir: string, vocabulary: ReadonlyArray<string>, classes?: ReadonlyArray<string>) => LoadedCheckpoint
  /** Writes the checkpoint, keeping the previous one (throws on failure). */
  readonly writeCheckpoint: (runDir: string, state: TrainState, meta: Readonly<Record<string, unknown>>, extras: CheckpointExtras) => void
  readonly writeSummary: (runDir: string, summary: unknown) => void
  /** After a divergence: leaves a checkpoint from before `firstBadWeights` updates; says what became of it. */
  readonly keepCheckpointBefore: (runDir: string, firstBadWeights: number) => string
}

/** Opens a run dir on disk: see RunStorageShape.open. */
const openRunDir = (runDir: string, config: Config, resume: boolean, log: (line: string) => void) =>
  Effect.gen(function* () {
    yield* prepareRunDir(runDir, resume)
    if (resume) return yield* checkResumedConfig(config, runDir, log)
    yield* Effect.try({
      try: () => writeFileAtomic(join(runDir, "config.json"), JSON.stringify(config, null, 2) + "\n"),
      catch: (cause) => runDirError(`cannot write ${join(runDir, "config.json")}: ${(cause as Error).message}`)
    })
  })

/** The run directory on disk (config.json, metrics.jsonl, checkpoint.ckpt and its predecessor, summary.json). */
export const fileRunStorage: RunStorageShape = {
  open: openRunDir,
  metricsLog,
  loggedMetrics,
  readCheckpoint: readRunCheckpoint,
  writeCheckpoint: (runDir, state, meta, extras) => writeCheckpoint(join(runDir, CHECKPOINT), state, meta, extras, { keepPrevious: true }),
  writeSummary: (runDir, summary) => writeFileAtomic(join(runDir, "summary.json"), JSON.stringify(summary, null, 2) + "\n"),
  keepCheckpointBefore
}
