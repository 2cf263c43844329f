/**
 * `bun run pipeline <config.ts> [--data-dir DIR] [--run-dir DIR] [--set key=value ...] [--resume RUN_DIR]`
 *
 * Exit codes: 0 done · 1 a data/run error (one paragraph, no stack trace) · 2 a bad config or flag · 130 stopped by
 * Ctrl-C (or SIGTERM), which interrupts the run at a step boundary; its finalizer writes the checkpoint (a second
 * Ctrl-C exits at once).
 */
import { Effect, Option } from "effect"
import { Argument, Command, Flag } from "effect/cli"
import { isInterruption, reportingUserErrors, runMain, signalStop } from "./main.ts"
import { existsSync, readFileSync } from "node:fs"
import { join, resolve } from "node:path"
import { ConfigError, RunDirError, type UserError } from "../errors.ts"
import { type Config, loadConfigFile, resolveConfig } from "./config.ts"
import { consoleProgress } from "./progress.ts"
import { type PretrainOutcome, runPretraining } from "./pretrain.ts"
import { type RunOptions, type RunOutcome, runPipeline } from "./run.ts"
import { runSkipGram, type SkipGramOutcome } from "./skip-gram.ts"

async function loadConfig(configPath: string | undefined, resumeDir: string | undefined, overrides: ReadonlyArray<string>): Promise<Config> {
  if (resumeDir !== undefined) {
    // A missing or unreadable run directory is a run-dir error (exit 1), not a config one.
    if (!existsSync(resumeDir)) throw new RunDirError({ message: `--resume ${resumeDir}: no such directory. Pass the run directory of the run to continue.` })
    const saved = join(resumeDir, "config.json")
    if (!existsSync(saved)) throw new RunDirError({ message: `--resume ${resumeDir}: no config.json there; is it a run directory?` })
    let json: unknown
    try {
      json = JSON.parse(readFileSync(saved, "utf8"))
    } catch (cause) {
      throw new RunDirError({ message: `--resume ${resumeDir}: cannot read its config.json (${(cause as Error).message}).` })
    }
    return resolveConfig(json, overrides, saved)
  }
  if (configPath === undefined) throw new ConfigError({ message: "missing the config file argument, e.g. bun run pipeline configs/rt-cpu.ts" })
  const absolute = resolve(configPath)
  if (!existsSync(absolute)) throw new ConfigError({ message: `config file ${configPath} does not exist.` })
  return loadConfigFile(absolute, overrides)
}

/** Each task's run. */
const TASK_RUNNERS: Record<Config["task"], (c: Config, o: RunOptions) => Effect.Effect<RunOutcome | PretrainOutcome | SkipGramOutcome, UserError>> = {
  classifier: runPipeline,
  "language-model": runPretraining,
  "skip-gram": runSkipGram
}

const defaultRunDir = (config: Config) => join("runs", `${config.name}-${config.task === "classifier" ? config.method : config.task === "language-model" ? "lm" : config.task}-seed${config.seed}-${new Date().toISOString().replace(/[:.]/g, "-")}`)

const pipeline = Command.make(
  "pipeline",
  {
    config: Argument.String("config").pipe(Argument.withDescription("experiment config (e.g. configs/rt-cpu.ts)"), Argument.optional),
    dataDir: Flag.String("data-dir").pipe(
      Flag.withDescription("folder holding the dataset archives (default: $ADVTEXT_DATA_DIR, then the download cache)"),
      Flag.optional
    ),
    runDir: Flag.String("run-dir").pipe(Flag.withDescription("where to write config, metrics, checkpoints and summary"), Flag.optional),
    set: Flag.String("set").pipe(Flag.withDescription("override a config field, e.g. --set train.steps=200 (repeatable)"), Flag.atLeast(0)),
    resume: Flag.String("resume").pipe(Flag.withDescription("continue the run in this directory from its checkpoint"), Flag.optional),
    cacheDir: Flag.String("cache-dir").pipe(Flag.withDescription("download cache (default $XDG_CACHE_HOME/advtext)"), Flag.optional)
  },
  (args) =>
    reportingUserErrors(
      Effect.scoped(
        Effect.gen(function* () {
          const resumeDir = Option.getOrUndefined(args.resume)
          const config = yield* Effect.tryPromise({ try: () => loadConfig(Option.getOrUndefined(args.config), resumeDir, args.set), catch: (e) => e })
          const runDir = resumeDir ?? Option.getOrUndefined(args.runDir) ?? defaultRunDir(config)
          const progress = consoleProgress()
          const options: RunOptions = { runDir, dataDir: Option.getOrUndefined(args.dataDir), cacheDir: Option.getOrUndefined(args.cacheDir), resume: resumeDir !== undefined, progress }
          const signals = yield* signalStop
          const exit = yield* signals.run<RunOutcome | PretrainOutcome | SkipGramOutcome, UserError, never>(TASK_RUNNERS[config.task](config, options))
          progress.done()
          if (isInterruption(exit)) {
            process.exitCode = 130
            return
          }
          const outcome = yield* exit
          if (outcome.status === "interrupted") process.exitCode = 130
          else process.stdout.write(JSON.stringify(outcome.summary) + "\n")
        })
      )
    )
)

if (import.meta.main) await runMain(pipeline)
