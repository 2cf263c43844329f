/**
 * `bun run experiment <config.ts> [--methods a,b,...] [--seeds N] [--first-seed S] [--root DIR] [--data-dir DIR] [--set k=v ...]`
 *
 * Runs the methods × seeds grid (each seed is a different random split for RT, as in the paper), one run dir per
 * cell (<root>/<method>/seed<k>), and prints a markdown table of test error (mean ± sample std over seeds, and the
 * paired difference to the baseline on the same splits), also saved as <root>/results.md and results.json.
 * A pretraining config (`task: "language-model"`) runs one LM per seed instead (<root>/seed<k>).
 * Re-running the same command skips finished cells and resumes interrupted ones.
 */
import { Effect, Option } from "effect"
import { Argument, Command, Flag } from "effect/cli"
import { isInterruption, reportingUserErrors, runMain, type SignalStop, signalStop } from "./main.ts"
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs"
import { join, resolve } from "node:path"
import { ConfigError, type UserError } from "../errors.ts"
import { METHODS, type Method } from "../method/method.ts"
import { type Config, loadConfigFile } from "./config.ts"
import { type PretrainSummary, runPretraining } from "./pretrain.ts"
import { taskLabel } from "./inspect.ts"
import { consoleProgress, type Progress } from "./progress.ts"
import type { LoopOutcome } from "./loop.ts"
import { runPipeline, type RunSummary } from "./run.ts"
import { runSkipGram, type SkipGramSummary } from "./skip-gram.ts"

export interface Cell {
  readonly method: Method
  readonly seed: number
  readonly summary: RunSummary
}

export const mean = (xs: ReadonlyArray<number>) => xs.reduce((a, b) => a + b, 0) / xs.length
/** Sample standard deviation (0 for fewer than two values). */
export const std = (xs: ReadonlyArray<number>) => (xs.length < 2 ? 0 : Math.sqrt(xs.reduce((a, x) => a + (x - mean(xs)) ** 2, 0) / (xs.length - 1)))
const pct = (x: number) => (100 * x).toFixed(2)

/** The markdown results table: mean ± std test error per method, and the paired difference to the baseline. */
export function resultsTable(cells: ReadonlyArray<Cell>, methods: ReadonlyArray<Method>): string {
  const bySeed = (m: Method) => new Map(cells.filter((c) => c.method === m).map((c) => [c.seed, c.summary.testError]))
  const baseline = bySeed("baseline")
  const lines = [
    "| method | test error % (mean ± std) | seeds | Δ vs baseline, paired (pt) | per seed |",
    "|---|---|---|---|---|"
  ]
  for (const m of methods) {
    const errors = bySeed(m)
    if (errors.size === 0) continue
    const values = [...errors.values()]
    const paired = [...errors].filter(([s]) => baseline.has(s)).map(([s, e]) => 100 * (e - baseline.get(s)!))
    const delta = m === "baseline" || paired.length === 0 ? "—" : `${mean(paired) >= 0 ? "+" : ""}${mean(paired).toFixed(2)} ± ${std(paired).toFixed(2)}`
    const perSeed = [...errors].sort(([a], [b]) => a - b).map(([s, e]) => `${s}: ${pct(e)}`).join(", ")
    lines.push(`| ${m} | ${pct(mean(values))} ± ${pct(std(values))} | ${values.length} | ${delta} | ${perSeed} |`)
  }
  return lines.join("\n")
}

/** One cell of a grid: skipped when done earlier, resumed when interrupted earlier; undefined when a signal stopped it. */
const gridCell = <S>(signals: SignalStop, runDir: string, run: (resume: boolean) => Effect.Effect<LoopOutcome<S>, UserError>) =>
  Effect.gen(function* () {
    const exit = yield* signals.run(run(existsSync(join(runDir, "checkpoint.ckpt"))))
    if (isInterruption(exit)) return undefined
    const outcome = yield* exit
    return outcome.status === "completed" ? outcome.summary : undefined
  })

/**
 * Pretraining configs: one LM or skip-gram run per seed (<root>/seed<k>, the per-split run a classifier names with
 * "{seed}"). Skip-gram keeps no resumable state, so an interrupted one starts over.
 */
const pretrainingGrid = (base: Config, seeds: ReadonlyArray<number>, root: string, dataDir: string | undefined, signals: SignalStop, progress: Progress) =>
  Effect.gen(function* () {
    const rows: Array<PretrainSummary | SkipGramSummary> = []
    const what = taskLabel(base)
    for (const seed of seeds) {
      if (signals.signalled()) break
      const runDir = join(root, `seed${seed}`)
      const summaryPath = join(runDir, "summary.json")
      if (existsSync(summaryPath)) {
        rows.push(JSON.parse(readFileSync(summaryPath, "utf8")))
        progress.line(`[${what} seed ${seed}] done earlier`)
        continue
      }
      progress.line(`\n[${what} seed ${seed}] ${runDir}`)
      const config = { ...base, seed }
      const summary =
        base.task === "skip-gram"
          ? yield* gridCell(signals, runDir, () => runSkipGram(config, { runDir, dataDir, progress }))
          : yield* gridCell(signals, runDir, (resume) => runPretraining(config, { runDir, dataDir, resume, progress }))
      if (summary !== undefined) rows.push(summary)
    }
    const table = [
      "| seed | steps / epochs | validation perplexity / final skip-gram loss | wall |",
      "|---|---|---|---|",
      ...rows.map((r) =>
        r.task === "skip-gram"
          ? `| ${r.seed} | ${r.epochs} epochs | ${r.finalLoss.toFixed(4)} | ${(r.wallSeconds / 60).toFixed(1)} min |`
          : `| ${r.seed} | ${r.steps} | ${r.validationPerplexity?.map((p) => p.toFixed(1)).join(" / ") ?? "—"} | ${(r.wallSeconds / 60).toFixed(1)} min |`
      )
    ].join("\n")
    writeFileSync(join(root, "results.md"), `# ${base.name}: ${what} pretraining\n\n${table}\n`)
    process.stdout.write(table + "\n")
  })

/** Classifier configs: every method × seed cell (<root>/<method>/seed<k>), then the results table. */
const classifierGrid = (base: Config, methods: ReadonlyArray<Method>, seeds: ReadonlyArray<number>, root: string, dataDir: string | undefined, signals: SignalStop, progress: Progress) =>
  Effect.gen(function* () {
    const cells: Array<Cell> = []
    for (const seed of seeds) {
      for (const method of methods) {
        if (signals.signalled()) break
        const runDir = join(root, method, `seed${seed}`)
        const summaryPath = join(runDir, "summary.json")
        if (existsSync(summaryPath)) {
          cells.push({ method, seed, summary: JSON.parse(readFileSync(summaryPath, "utf8")) })
          progress.line(`[${method} seed ${seed}] done earlier: test error ${pct(cells.at(-1)!.summary.testError)}%`)
          continue
        }
        progress.line(`\n[${method} seed ${seed}] ${runDir}`)
        const summary = yield* gridCell(signals, runDir, (resume) => runPipeline({ ...base, method, seed }, { runDir, dataDir, resume, progress }))
        if (summary !== undefined) cells.push({ method, seed, summary })
      }
    }
    return cells
  })

const experiment = Command.make(
  "experiment",
  {
    config: Argument.String("config").pipe(Argument.withDescription("experiment config (e.g. configs/rt-cpu.ts)")),
    methods: Flag.String("methods").pipe(Flag.withDescription(`comma-separated, from ${METHODS.join(", ")}`), Flag.withDefault("baseline,adversarial,virtual,adversarial+virtual")),
    seeds: Flag.Int("seeds").pipe(Flag.withDescription("number of seeds (0 … N−1; for RT each is a different 90/10 split)"), Flag.withDefault(3)),
    firstSeed: Flag.Int("first-seed").pipe(Flag.withDescription("start the seeds here (S … S+N−1), e.g. to split a grid over processes"), Flag.withDefault(0)),
    root: Flag.String("root").pipe(Flag.withDescription("folder for the grid's run dirs and results"), Flag.optional),
    dataDir: Flag.String("data-dir").pipe(Flag.withDescription("folder holding the dataset archives"), Flag.optional),
    set: Flag.String("set").pipe(Flag.withDescription("override a config field for every cell (repeatable)"), Flag.atLeast(0))
  },
  (args) =>
    reportingUserErrors(
      Effect.scoped(
        Effect.gen(function* () {
          const methods = args.methods.split(",").map((m) => m.trim()) as Array<Method>
          const unknown = methods.filter((m) => !(METHODS as ReadonlyArray<string>).includes(m))
          if (unknown.length > 0 || args.seeds < 1) {
            return yield* new ConfigError({ message: unknown.length > 0 ? `unknown method(s) ${unknown.join(", ")}; choose from ${METHODS.join(", ")}` : "--seeds must be at least 1" })
          }
          const base = yield* Effect.tryPromise({ try: () => loadConfigFile(resolve(args.config), args.set), catch: (e) => e })
          const root = Option.getOrElse(args.root, () => join("runs", `${base.name}-grid`))
          mkdirSync(root, { recursive: true })
          const signals = yield* signalStop
          const progress = consoleProgress()
          const started = performance.now()
          const seeds = Array.from({ length: args.seeds }, (_, i) => args.firstSeed + i)
          const dataDir = Option.getOrUndefined(args.dataDir)
          if (base.task !== "classifier") {
            yield* pretrainingGrid(base, seeds, root, dataDir, signals, progress)
            if (signals.signalled()) process.exitCode = 130
            return
          }
          const cells = yield* classifierGrid(base, methods, seeds, root, dataDir, signals, progress)
          const table = resultsTable(cells, methods)
          const header =
            `# ${base.name}: test error by method\n\nConfig: ${args.config}${args.set.length ? ` (${args.set.join(" ")})` : ""} · model D ${base.model.embeddingDim}, ` +
            `LSTM ${base.model.lstmUnits}, hidden ${base.model.hiddenUnits} · ${base.train.steps} steps, batch ${base.train.batchSize} labeled / ` +
            `${base.train.unlabeledBatchSize} unlabeled · ε ${base.perturbation.epsilon} · seeds ${seeds[0]}…${seeds.at(-1)} · wall ${((performance.now() - started) / 60000).toFixed(1)} min this invocation\n\n`
          writeFileSync(join(root, "results.md"), header + table + "\n")
          writeFileSync(join(root, "results.json"), JSON.stringify(cells.map((c) => c.summary), null, 2) + "\n")
          process.stdout.write(table + "\n")
          if (signals.signalled()) process.exitCode = 130
        })
      )
    )
)

if (import.meta.main) await runMain(experiment)
