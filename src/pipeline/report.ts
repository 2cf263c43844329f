/**
 * `bun run report <run dir | experiment root> ... [--out report.html] [--words a,b,...] [--k 10] [--weights ema|raw]`
 *
 * One self-contained HTML file (no script, no network: every chart is an SVG rendered by vega-lite + vega when the
 * report is built) showing, over the runs named: training loss and validation error over steps; the test set's L_adv
 * and L_vadv over steps, methods overlaid (the paper's Figure 2); test error by method with a point per seed; the
 * language models' perplexity curves; and the nearest neighbours of chosen words, one column per run (Table 3).
 * Progress goes to stderr. A path that is not a run dir or experiment root, or a run without a readable
 * metrics.jsonl, exits 1 with one paragraph (a torn last line, as a running job leaves it, is tolerated).
 */
import { Effect } from "effect"
import { Command, Argument, Flag } from "effect/cli"
import { existsSync, readFileSync, writeFileSync } from "node:fs"
import { basename, dirname, resolve } from "node:path"
import * as vega from "vega"
import * as vl from "vega-lite"
import { selectBackend } from "../engine/backend.ts"
import { ConfigError, RunDirError } from "../errors.ts"
import { attempt, DEFAULT_WORDS, readMetrics, resolveRuns, type RunInfo, runNeighbors, taskLabel, type Weights, type WordNeighbors } from "./inspect.ts"
import { reportingUserErrors, runMain } from "./main.ts"
import { formatDuration } from "./progress.ts"

/** One plotted value: a run's metric at a step (`series` tells curves of one run apart, e.g. train / validation). */
export interface Point {
  readonly run: string
  readonly method: string
  readonly step: number
  readonly value: number
  readonly series?: string
}

/** A run's final numbers, from its experiment's results.json or its own summary.json. */
export interface FinalResult {
  readonly run: string
  readonly method: string
  readonly seed: number
  readonly testError: number
  readonly validationError: number | null
  readonly testAdversarialLoss: number | null
  readonly testVirtualAdversarialLoss: number | null
  readonly steps: number
  readonly wallSeconds: number
}

export interface ReportData {
  readonly runs: ReadonlyArray<RunInfo>
  /** Classifier runs: `loss` of every step (the total loss, perturbation terms included). */
  readonly trainingLoss: ReadonlyArray<Point>
  /** Classifier runs: `validationError` (fraction) at each evaluation. */
  readonly validationError: ReadonlyArray<Point>
  /** Classifier runs: test-set L_adv and L_vadv at ε = perturbation.evalEpsilon (Figure 2). */
  readonly adversarialLoss: ReadonlyArray<Point>
  readonly virtualAdversarialLoss: ReadonlyArray<Point>
  /** Language-model runs: the per-step training loss (sampled softmax unless lm.candidateSamples is 0). */
  readonly lmLoss: ReadonlyArray<Point>
  /** Language-model runs: full-softmax perplexity at each evaluation, series "validation" / "train" (per direction). */
  readonly perplexity: ReadonlyArray<Point>
  readonly results: ReadonlyArray<FinalResult>
  /** Runs whose metrics.jsonl ended in a torn line (left out). */
  readonly partialRuns: ReadonlyArray<string>
}

/**
 * How runs are grouped into methods: by `method`, prefixed by the experiment root's name when runs come from more than
 * one root (e.g. "grid · baseline" vs "grid-pretrained · baseline").
 */
function methodKeys(runs: ReadonlyArray<RunInfo>): Map<RunInfo, string> {
  const rootOf = (run: RunInfo) => (isExperimentCell(run) ? dirname(dirname(resolve(run.dir))) : undefined)
  const roots = new Set(runs.filter((r) => r.config.task === "classifier").map(rootOf))
  return new Map(
    runs.map((r) => {
      const method = taskLabel(r.config)
      const root = rootOf(r)
      return [r, roots.size > 1 && root !== undefined ? `${basename(root)} · ${method}` : method]
    })
  )
}

/** A classifier grid cell: <root>/<method>/seed<k>. */
const isExperimentCell = (run: RunInfo) => run.config.task === "classifier" && basename(dirname(resolve(run.dir))) === run.config.method && /^seed\d+$/.test(basename(run.dir))

/** The value of `key` at each step that logs it as a finite number (the last record wins when a step repeats it). */
function series(records: ReadonlyArray<Record<string, unknown>>, key: string): Array<{ step: number; value: number }> {
  const byStep = new Map<number, number>()
  for (const r of records) {
    const v = r[key]
    if (typeof v === "number" && Number.isFinite(v)) byStep.set(r.step as number, v)
  }
  return [...byStep].sort(([a], [b]) => a - b).map(([step, value]) => ({ step, value }))
}

/** Per-direction arrays (LM perplexities): one series per direction, named "<name>" or "<name> (forward|reverse)". */
function arraySeries(records: ReadonlyArray<Record<string, unknown>>, key: string, name: string): Array<{ step: number; value: number; series: string }> {
  const byStep = new Map<string, { step: number; value: number; series: string }>()
  for (const r of records) {
    const v = r[key]
    if (!Array.isArray(v)) continue
    v.forEach((x, d) => {
      if (typeof x !== "number" || !Number.isFinite(x)) return
      const label = v.length === 1 ? name : `${name} (${d === 0 ? "forward" : "reverse"})`
      byStep.set(`${label}\u0000${r.step}`, { step: r.step as number, value: x, series: label })
    })
  }
  return [...byStep.values()].sort((a, b) => a.series.localeCompare(b.series) || a.step - b.step)
}

/** Final results of the runs: results.json of their experiment root when it lists the cell, else summary.json. */
function finalResults(runs: ReadonlyArray<RunInfo>, keys: Map<RunInfo, string>): Array<FinalResult> {
  const resultsJson = new Map<string, ReadonlyArray<Record<string, unknown>>>()
  const fromRoot = (run: RunInfo): Record<string, unknown> | undefined => {
    if (!isExperimentCell(run)) return undefined
    const path = resolve(run.dir, "..", "..", "results.json")
    if (!resultsJson.has(path)) {
      let rows: ReadonlyArray<Record<string, unknown>> = []
      try {
        if (existsSync(path)) rows = JSON.parse(readFileSync(path, "utf8"))
      } catch {
        throw new RunDirError({ message: `${path} is not valid JSON; re-run the experiment command to rewrite it, or delete it to use each run's summary.json.` })
      }
      resultsJson.set(path, Array.isArray(rows) ? rows : [])
    }
    return resultsJson.get(path)!.find((row) => row.method === run.config.method && row.seed === run.config.seed)
  }
  const fromSummary = (run: RunInfo): Record<string, unknown> | undefined => {
    const path = resolve(run.dir, "summary.json")
    if (!existsSync(path)) return undefined
    try {
      return JSON.parse(readFileSync(path, "utf8"))
    } catch {
      throw new RunDirError({ message: `${path} is not valid JSON (was the run killed while writing it?).` })
    }
  }
  const num = (x: unknown) => (typeof x === "number" && Number.isFinite(x) ? x : null)
  return runs.flatMap((run) => {
    if (run.config.task !== "classifier") return []
    const s = fromRoot(run) ?? fromSummary(run)
    if (s === undefined || num(s.testError) === null) return []
    return [
      {
        run: run.label,
        method: keys.get(run)!,
        seed: run.config.seed,
        testError: s.testError as number,
        validationError: num(s.validationError),
        testAdversarialLoss: num(s.testAdversarialLoss),
        testVirtualAdversarialLoss: num(s.testVirtualAdversarialLoss),
        steps: num(s.steps) ?? 0,
        wallSeconds: num(s.wallSeconds) ?? 0
      }
    ]
  })
}

/** Everything the report plots, read from the runs' metrics.jsonl and summaries. Throws RunDirError. */
export function reportData(paths: ReadonlyArray<string>): ReportData {
  const runs = resolveRuns(paths)
  const keys = methodKeys(runs)
  const out = {
    trainingLoss: [] as Array<Point>,
    validationError: [] as Array<Point>,
    adversarialLoss: [] as Array<Point>,
    virtualAdversarialLoss: [] as Array<Point>,
    lmLoss: [] as Array<Point>,
    perplexity: [] as Array<Point>
  }
  const partialRuns: Array<string> = []
  for (const run of runs) {
    const { records, partialLastLine } = readMetrics(run.dir)
    if (partialLastLine) partialRuns.push(run.label)
    const tag = (p: { step: number; value: number; series?: string }): Point => ({ run: run.label, method: keys.get(run)!, ...p })
    if (run.config.task === "language-model") {
      out.lmLoss.push(...series(records, "loss").map(tag))
      out.perplexity.push(...arraySeries(records, "validationPerplexity", "validation").map(tag), ...arraySeries(records, "trainPerplexity", "train").map(tag))
    } else {
      out.trainingLoss.push(...series(records, "loss").map(tag))
      out.validationError.push(...series(records, "validationError").map(tag))
      out.adversarialLoss.push(...series(records, "testAdversarialLoss").map(tag))
      out.virtualAdversarialLoss.push(...series(records, "testVirtualAdversarialLoss").map(tag))
    }
  }
  return { runs, ...out, results: finalResults(runs, keys), partialRuns }
}

/**
 * At most `max` points per run and series: consecutive steps averaged in equal buckets (a 10,000-step run's per-step
 * loss would make a multi-megabyte SVG and a noisy line). Returns the points unchanged when none needs it, and the
 * bucket size used (1 = none).
 */
export function thin(points: ReadonlyArray<Point>, max: number): { points: Array<Point>; bucket: number } {
  const groups = new Map<string, Array<Point>>()
  for (const p of points) {
    const key = `${p.run}\u0000${p.series ?? ""}`
    const group = groups.get(key)
    if (group === undefined) groups.set(key, [p])
    else group.push(p)
  }
  const longest = Math.max(0, ...[...groups.values()].map((g) => g.length))
  if (longest <= max) return { points: [...points], bucket: 1 }
  const bucket = Math.ceil(longest / max)
  const thinned = [...groups.values()].flatMap((g) =>
    Array.from({ length: Math.ceil(g.length / bucket) }, (_, i) => {
      const slice = g.slice(i * bucket, (i + 1) * bucket)
      return { ...slice.at(-1)!, value: slice.reduce((a, p) => a + p.value, 0) / slice.length }
    })
  )
  return { points: thinned, bucket }
}

/** One chart of the report: its id (the figure's data-chart), title, caption and Vega-Lite spec. */
export interface ChartSpec {
  readonly id: string
  readonly title: string
  readonly caption: string
  readonly spec: vl.TopLevelSpec
}

const MAX_POINTS = 1000
const WIDTH = 430
const HEIGHT = 220

const lineChart = (values: ReadonlyArray<Point>, y: { title: string; format?: string }, color: "run" | "method", extra: object = {}): vl.TopLevelSpec =>
  ({
    $schema: "https://vega.github.io/schema/vega-lite/v6.json",
    width: WIDTH,
    height: HEIGHT,
    data: { values: values.map((p) => ({ ...p })) },
    mark: { type: "line", point: values.length <= 400, strokeWidth: 1.5 },
    encoding: {
      x: { field: "step", type: "quantitative", title: "step" },
      y: { field: "value", type: "quantitative", title: y.title, ...(y.format ? { axis: { format: y.format } } : {}), scale: { zero: false } },
      // Legend and colours in the runs' order (methods as in METHODS, then seeds), not alphabetical.
      color: { field: color, type: "nominal", sort: [...new Set(values.map((p) => p[color]))], title: color === "run" ? "run" : "method", legend: { orient: "bottom", columns: 2, labelLimit: 180 } },
      detail: { field: "run", type: "nominal" },
      ...extra
    }
  }) as vl.TopLevelSpec

/** The report's charts for its data; a chart whose data are absent (e.g. no LM run) is left out. */
export function chartSpecs(data: ReportData): Array<ChartSpec> {
  const charts: Array<ChartSpec> = []
  if (data.trainingLoss.length > 0) {
    const { points, bucket } = thin(data.trainingLoss, MAX_POINTS)
    charts.push({
      id: "training-loss",
      title: "Training loss",
      caption: `The total loss of each step (perturbation terms included)${bucket > 1 ? `, averaged over ${bucket} consecutive steps` : ""}.`,
      spec: lineChart(points, { title: "loss" }, "run")
    })
  }
  if (data.validationError.length > 0) {
    charts.push({
      id: "validation-error",
      title: "Validation error",
      caption: "Error on the validation documents at each evaluation (EMA weights).",
      spec: lineChart(data.validationError, { title: "validation error", format: ".1%" }, "run")
    })
  }
  const figure2 = (id: string, points: ReadonlyArray<Point>, what: string, symbol: string) => {
    if (points.length === 0) return
    charts.push({
      id,
      title: `Test ${symbol} over training (Figure 2)`,
      caption: `${what} on the test set at ε = perturbation.evalEpsilon, logged with each evaluation; one line per run, coloured by method.`,
      spec: lineChart(points, { title: symbol }, "method")
    })
  }
  figure2("adversarial-loss", data.adversarialLoss, "The negative log-likelihood under the adversarial perturbation", "L_adv")
  figure2("virtual-adversarial-loss", data.virtualAdversarialLoss, "The KL divergence under the virtual adversarial perturbation", "L_vadv")
  if (data.results.length > 0) {
    const methods = [...new Set(data.results.map((r) => r.method))]
    charts.push({
      id: "test-error-by-method",
      title: "Test error by method",
      caption: "One point per run (seed); the black stroke is the mean over seeds.",
      spec: {
        $schema: "https://vega.github.io/schema/vega-lite/v6.json",
        width: WIDTH,
        height: { step: 28 },
        data: { values: data.results.map((r) => ({ ...r })) },
        encoding: {
          y: { field: "method", type: "nominal", sort: methods, title: null },
          x: { field: "testError", type: "quantitative", title: "test error", axis: { format: ".2%" }, scale: { zero: false } }
        },
        layer: [
          { mark: { type: "point", filled: true, size: 60, opacity: 0.8 }, encoding: { color: { field: "method", type: "nominal", sort: methods, legend: null } } },
          // The mean as a vertical stroke on the same point scale as the seeds (a tick would sit on a band scale).
          { mark: { type: "point", shape: "stroke", angle: 90, size: 250, strokeWidth: 2, color: "black" }, encoding: { x: { aggregate: "mean", field: "testError", type: "quantitative" } } }
        ]
      } as vl.TopLevelSpec
    })
  }
  if (data.perplexity.length > 0) {
    charts.push({
      id: "lm-perplexity",
      title: "Language model perplexity",
      caption: "Full-softmax perplexity (EMA weights) of the validation documents and of a fixed sample of training documents.",
      spec: lineChart(data.perplexity, { title: "perplexity" }, "run", { strokeDash: { field: "series", type: "nominal", title: "documents", legend: { symbolType: "stroke", symbolStrokeWidth: 2 } } })
    })
  }
  if (data.lmLoss.length > 0) {
    const { points, bucket } = thin(data.lmLoss, MAX_POINTS)
    charts.push({
      id: "lm-loss",
      title: "Language model training loss",
      caption: `The per-step training loss (sampled softmax unless lm.candidateSamples is 0, so not a perplexity)${bucket > 1 ? `, averaged over ${bucket} consecutive steps` : ""}.`,
      spec: lineChart(points, { title: "loss" }, "run")
    })
  }
  return charts
}

/** A Vega-Lite spec as a standalone SVG string, headless (no DOM). `idPrefix` keeps ids unique within one page. */
export async function renderSvg(spec: vl.TopLevelSpec, idPrefix: string): Promise<string> {
  const view = new vega.View(vega.parse(vl.compile(spec).spec), { renderer: "none" })
  try {
    const svg = await view.toSVG()
    // Vega numbers clip paths and gradients from 1 in each SVG; inlined side by side they would collide.
    return svg.replace(/\bid="([^"]+)"/g, `id="${idPrefix}-$1"`).replace(/url\(#([^)]+)\)/g, `url(#${idPrefix}-$1)`)
  } finally {
    view.finalize()
  }
}

const escape = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;")
const pct = (x: number | null) => (x === null ? "—" : `${(100 * x).toFixed(2)}%`)
const fixed = (x: number | null, digits = 3) => (x === null ? "—" : x.toFixed(digits))
const mean = (xs: ReadonlyArray<number>) => xs.reduce((a, b) => a + b, 0) / xs.length
const std = (xs: ReadonlyArray<number>) => (xs.length < 2 ? 0 : Math.sqrt(xs.reduce((a, x) => a + (x - mean(xs)) ** 2, 0) / (xs.length - 1)))

function methodTable(results: ReadonlyArray<FinalResult>): string {
  const methods = [...new Set(results.map((r) => r.method))]
  const meanOf = (rs: ReadonlyArray<FinalResult>, f: (r: FinalResult) => number | null) => {
    const xs = rs.map(f).filter((x): x is number => x !== null)
    return xs.length === 0 ? null : mean(xs)
  }
  const rows = methods.map((m) => {
    const rs = results.filter((r) => r.method === m).sort((a, b) => a.seed - b.seed)
    const errors = rs.map((r) => r.testError)
    return (
      `<tr><td>${escape(m)}</td><td class="num">${pct(mean(errors))} ± ${(100 * std(errors)).toFixed(2)}</td><td class="num">${rs.length}</td>` +
      `<td>${rs.map((r) => `${r.seed}: ${(100 * r.testError).toFixed(2)}`).join(", ")}</td>` +
      `<td class="num">${pct(meanOf(rs, (r) => r.validationError))}</td><td class="num">${fixed(meanOf(rs, (r) => r.testAdversarialLoss))}</td>` +
      `<td class="num">${fixed(meanOf(rs, (r) => r.testVirtualAdversarialLoss))}</td></tr>`
    )
  })
  return (
    `<table><thead><tr><th>method</th><th>test error (mean ± std, pt)</th><th>seeds</th><th>per seed (%)</th><th>validation error (mean)</th>` +
    `<th>L_adv (mean)</th><th>L_vadv (mean)</th></tr></thead><tbody>${rows.join("")}</tbody></table>`
  )
}

function neighborTables(runs: ReadonlyArray<RunInfo>, results: ReadonlyArray<ReadonlyArray<WordNeighbors> | string>, words: ReadonlyArray<string>): string {
  return words
    .map((word, w) => {
      const header = `<tr><th>#</th>${runs.map((r) => `<th>${escape(r.label)}</th>`).join("")}</tr>`
      const cell = (r: number, rank: number) => {
        const res = results[r]
        if (typeof res === "string") return rank === 0 ? `<td class="note">${escape(res)}</td>` : "<td></td>"
        const one = res[w]
        if ("note" in one) return rank === 0 ? `<td class="note">${escape(one.note)}</td>` : "<td></td>"
        const n = one.neighbors[rank]
        return n === undefined ? "<td></td>" : `<td>${escape(n.word)} <span class="sim">${n.similarity.toFixed(3)}</span></td>`
      }
      // As many rows as the longest column: a word no run knows takes one row (its notes), not k empty ones.
      const rows = Math.max(1, ...results.map((res) => (typeof res === "string" || "note" in res[w] ? 1 : res[w].neighbors.length)))
      const body = Array.from({ length: rows }, (_, rank) => `<tr><td class="num">${rank + 1}</td>${runs.map((_, r) => cell(r, rank)).join("")}</tr>`)
      return `<div class="neighbors"><h3>${escape(word)}</h3><table><thead>${header}</thead><tbody>${body.join("")}</tbody></table></div>`
    })
    .join("\n")
}

function runsTable(data: ReportData): string {
  const byRun = new Map(data.results.map((r) => [r.run, r]))
  const rows = data.runs.map((run) => {
    const r = byRun.get(run.label)
    const task = taskLabel(run.config)
    return (
      `<tr><td>${escape(run.label)}</td><td><code>${escape(run.dir)}</code></td><td>${escape(task)}</td><td class="num">${run.config.seed}</td>` +
      `<td class="num">${run.config.train.steps}</td><td class="num">${r ? pct(r.testError) : "—"}</td>` +
      `<td class="num">${r ? pct(r.validationError) : "—"}</td><td class="num">${r ? formatDuration(r.wallSeconds) : "—"}</td></tr>`
    )
  })
  return (
    `<table><thead><tr><th>run</th><th>directory</th><th>method</th><th>seed</th><th>steps (config)</th><th>test error</th>` +
    `<th>validation error</th><th>wall</th></tr></thead><tbody>${rows.join("")}</tbody></table>`
  )
}

const STYLE = `
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 1320px; padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { margin-top: 1.8em; border-bottom: 1px solid #ddd; } h3 { margin: 0.6em 0 0.3em; }
table { border-collapse: collapse; margin: 0.5em 0; } th, td { padding: 0.2em 0.7em; border-bottom: 1px solid #eee; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; } .sim { color: #888; font-variant-numeric: tabular-nums; }
.note { color: #a33; } figure { margin: 1em 0; max-width: 620px; } figcaption { color: #555; max-width: 52em; } .charts { display: flex; flex-wrap: wrap; gap: 1em 2em; }
.neighbors { overflow-x: auto; } .meta { color: #666; } code { font-size: 0.9em; }
`

/** Builds the report page: reads the runs, renders every chart to SVG and the neighbour tables. The backend must be selected. */
export const buildReport = (
  paths: ReadonlyArray<string>,
  options: { readonly words?: ReadonlyArray<string>; readonly k?: number; readonly weights?: Weights; readonly log?: (line: string) => void } = {}
): Effect.Effect<string, RunDirError> =>
  Effect.gen(function* () {
    const log = options.log ?? (() => {})
    const words = options.words ?? DEFAULT_WORDS
    const k = options.k ?? 10
    const weights = options.weights ?? "ema"
    const data = yield* attempt(() => reportData(paths))
    log(`read ${data.runs.length} run${data.runs.length === 1 ? "" : "s"}: ${data.runs.map((r) => r.label).join(", ")}`)
    for (const run of data.partialRuns) log(`note: ${run}: the last line of metrics.jsonl is incomplete (still being written?); left out`)
    const figures: Array<{ chart: ChartSpec; svg: string }> = []
    for (const chart of chartSpecs(data)) {
      log(`rendering ${chart.id}…`)
      figures.push({ chart, svg: yield* Effect.promise(() => renderSvg(chart.spec, chart.id)) })
    }
    log(`nearest neighbours of ${words.join(", ")}…`)
    // A run without a readable checkpoint (still before its first one) gets a note in its column, not a failed report.
    const neighbors = data.runs.map((run) => {
      try {
        return runNeighbors(run, words, k, weights)
      } catch (cause) {
        if (cause instanceof RunDirError) return cause.message
        throw cause
      }
    })
    const figure = (id: string) => {
      const f = figures.find((x) => x.chart.id === id)
      return f === undefined
        ? ""
        : `<figure class="chart" data-chart="${id}"><h3>${escape(f.chart.title)}</h3>${f.svg}<figcaption>${escape(f.chart.caption)}</figcaption></figure>`
    }
    const section = (title: string, ids: ReadonlyArray<string>, empty: string, extra = "") => {
      const body = ids.map(figure).join("\n")
      return `<section><h2>${title}</h2>${extra}${body === "" && extra === "" ? `<p class="meta">${empty}</p>` : `<div class="charts">${body}</div>`}</section>`
    }
    const classifierRuns = data.runs.some((r) => r.config.task !== "language-model")
    const lmRuns = data.runs.some((r) => r.config.task === "language-model")
    return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>advtext report</title><style>${STYLE}</style></head>
<body>
<h1>advtext report</h1>
<p class="meta">${escape(paths.join(", "))} · ${data.runs.length} run${data.runs.length === 1 ? "" : "s"}${data.partialRuns.length > 0 ? ` · incomplete last metrics line left out for ${escape(data.partialRuns.join(", "))}` : ""}</p>
<section><h2>Runs</h2>${runsTable(data)}</section>
${classifierRuns ? section("Training", ["training-loss", "validation-error"], "No step or validation metrics logged yet.") : ""}
${classifierRuns ? section("Loss under perturbation (Figure 2)", ["adversarial-loss", "virtual-adversarial-loss"], "No test L_adv / L_vadv logged (perturbation.evalEpsilon is 0, or no evaluation has run yet: train.evalEvery).") : ""}
${data.results.length > 0 ? section("Test error by method", ["test-error-by-method"], "", methodTable(data.results)) : classifierRuns ? `<section><h2>Test error by method</h2><p class="meta">No run has finished yet (no summary.json).</p></section>` : ""}
${lmRuns ? section("Language model", ["lm-perplexity", "lm-loss"], "No perplexity logged yet.") : ""}
<section><h2>Nearest neighbours (Table 3)</h2><p class="meta">Cosine similarity in the embedding the model reads (${weights === "ema" ? "EMA" : "raw trained"} weights, Eq. 1 normalized when the run normalizes); ${k} per word, one column per run.</p>
${neighborTables(data.runs, neighbors, words)}</section>
</body></html>
`
  })

const report = Command.make(
  "report",
  {
    paths: Argument.String("run-dir-or-experiment-root").pipe(Argument.withDescription("run directories and/or experiment roots"), Argument.atLeast(1)),
    out: Flag.String("out").pipe(Flag.withDescription("the HTML file to write"), Flag.withDefault("report.html")),
    words: Flag.String("words").pipe(Flag.withDescription(`comma-separated words for the neighbour tables`), Flag.withDefault(DEFAULT_WORDS.join(","))),
    k: Flag.Int("k").pipe(Flag.withDescription("neighbours per word"), Flag.withDefault(10)),
    weights: Flag.Literals("weights", ["ema", "raw"]).pipe(Flag.withDescription("neighbours in the EMA weights (what evaluation uses) or the raw trained ones"), Flag.withDefault("ema"))
  },
  (args) =>
    reportingUserErrors(
      Effect.gen(function* () {
        const words = args.words.split(",").map((w) => w.trim()).filter((w) => w !== "")
        if (args.k < 1 || words.length === 0) {
          return yield* new ConfigError({ message: args.k < 1 ? `--k must be at least 1 (got ${args.k}).` : "--words names no word." })
        }
        const log = (line: string) => process.stderr.write(line + "\n")
        yield* selectBackend("cpu")
        const html = yield* buildReport(args.paths, { words, k: args.k, weights: args.weights, log })
        yield* Effect.try({
          try: () => writeFileSync(args.out, html),
          catch: (cause) => new RunDirError({ message: `cannot write ${args.out}: ${(cause as Error).message}. Pass a writable path with --out FILE.` })
        })
        log(`wrote ${args.out} (${Math.round(html.length / 1024)} KB)`)
      })
    )
)

if (import.meta.main) await runMain(report)
