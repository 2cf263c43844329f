/**
 * `report` on a generated experiment (3 methods × 2 seeds, trained here by the experiment CLI) plus a tiny language
 * model: the plotted values are metrics.jsonl's, errors are one paragraph, and the page works in headless Chromium.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { Effect } from "effect"
import fc from "fast-check"
import { appendFileSync, cpSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { join, resolve } from "node:path"
import { pathToFileURL } from "node:url"
import type { Browser } from "puppeteer-core"
import { readMetrics } from "../../src/pipeline/inspect.ts"
import { runPretraining } from "../../src/pipeline/pretrain.ts"
import { silentProgress } from "../../src/pipeline/progress.ts"
import { buildReport, chartSpecs, type Point, reportData, thin } from "../../src/pipeline/report.ts"
import { CHROMIUM, launchChromium } from "../../scripts/chromium.ts"
import { useBackend } from "../helpers.ts"
import { tempDir, tinyConfig, writeTinyDataset } from "./fixtures.ts"

useBackend("cpu")

const ROOT = resolve(import.meta.dir, "../..")
const CONFIG_MODULE = join(ROOT, "src/pipeline/config.ts")
const bunRun = (script: string, args: ReadonlyArray<string>) => {
  const p = Bun.spawnSync(["bun", join(ROOT, script), ...args], { stdout: "pipe", stderr: "pipe" })
  return { code: p.exitCode, stdout: p.stdout.toString(), stderr: p.stderr.toString() }
}
const noStackTrace = (stderr: string) => expect(stderr).not.toMatch(/^\s+at .+:\d+/m)

const CHARTS = ["training-loss", "validation-error", "adversarial-loss", "virtual-adversarial-loss", "test-error-by-method", "lm-perplexity", "lm-loss"]

/** metrics.jsonl parsed independently of the code under test: [step, value] of every line holding `key`. */
const logged = (runDir: string, key: string) =>
  readFileSync(join(runDir, "metrics.jsonl"), "utf8")
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .filter((r) => r[key] !== undefined && r[key] !== null)
    .map((r) => [r.step as number, r[key]] as const)
/** The last value per step (the final record repeats the last evaluation's step). */
const lastPerStep = <V>(pairs: ReadonlyArray<readonly [number, V]>) => [...new Map(pairs)]

describe("report", () => {
  const data = writeTinyDataset(tempDir(), { train: 200, test: 40 })
  const root = join(tempDir(), "grid")
  const lmDir = join(tempDir(), "lm")
  const configPath = join(tempDir(), "tiny.ts")
  const methods = ["baseline", "adversarial", "virtual"]

  beforeAll(async () => {
    const dataset = { kind: "custom", train: join(data, "train.tsv"), test: join(data, "test.tsv"), unlabeled: join(data, "unlabeled.txt") }
    writeFileSync(
      configPath,
      `import { defineConfig } from ${JSON.stringify(CONFIG_MODULE)}
export default defineConfig({
  name: "report-tiny",
  dataset: ${JSON.stringify(dataset)},
  unlabeled: { source: "custom" },
  model: { embeddingDim: 8, lstmUnits: 8, hiddenUnits: 4, embeddingKeepProb: 0.8 },
  perturbation: { epsilon: 0.5 },
  train: { steps: 12, batchSize: 16, unlabeledBatchSize: 16, learningRate: 0.01, logEvery: 1000, evalEvery: 4, checkpointEvery: 1000, evalBatchSize: 64 }
})
`
    )
    const grid = bunRun("src/pipeline/experiment.ts", [configPath, "--methods", methods.join(","), "--seeds", "2", "--root", root])
    if (grid.code !== 0) throw new Error(`the experiment failed:\n${grid.stderr}`)
    const lm = tinyConfig(data, { task: "language-model", lm: { candidateSamples: 8 }, model: { embeddingDim: 8, lstmUnits: 8 }, train: { steps: 9, batchSize: 8, evalEvery: 3 } })
    await Effect.runPromise(runPretraining(lm, { runDir: lmDir, progress: silentProgress }))
  })

  const runDir = (method: string, seed: number) => join(root, method, `seed${seed}`)
  const pointsOf = (points: ReadonlyArray<Point>, label: string) => points.filter((p) => p.run === label).map((p) => [p.step, p.value] as const)

  test("the plotted values are metrics.jsonl's: loss per step, validation error, test L_adv / L_vadv, LM perplexities", () => {
    const d = reportData([root, lmDir])
    expect(d.runs.map((r) => r.label)).toEqual([...methods.flatMap((m) => [`${m} · seed 0`, `${m} · seed 1`]), "language model · seed 3"])
    for (const method of methods) {
      for (const seed of [0, 1]) {
        const dir = runDir(method, seed)
        const label = `${method} · seed ${seed}`
        expect(pointsOf(d.trainingLoss, label)).toEqual(logged(dir, "loss") as Array<readonly [number, number]>)
        expect(pointsOf(d.trainingLoss, label)).toHaveLength(12)
        expect(pointsOf(d.validationError, label)).toEqual(lastPerStep(logged(dir, "validationError")) as Array<[number, number]>)
        expect(pointsOf(d.validationError, label).map(([s]) => s)).toEqual([4, 8, 12])
        expect(pointsOf(d.adversarialLoss, label)).toEqual(lastPerStep(logged(dir, "testAdversarialLoss")) as Array<[number, number]>)
        expect(pointsOf(d.virtualAdversarialLoss, label)).toEqual(lastPerStep(logged(dir, "testVirtualAdversarialLoss")) as Array<[number, number]>)
        expect(new Set(d.adversarialLoss.filter((p) => p.run === label).map((p) => p.method))).toEqual(new Set([method]))
      }
    }
    const lmLabel = "language model · seed 3"
    expect(pointsOf(d.lmLoss, lmLabel)).toEqual(logged(lmDir, "loss") as Array<readonly [number, number]>)
    const ppl = (key: string) => lastPerStep(logged(lmDir, key)).map(([s, v]) => [s, (v as Array<number>)[0]] as const)
    expect(d.perplexity.filter((p) => p.series === "validation").map((p) => [p.step, p.value])).toEqual(ppl("validationPerplexity").map((x) => [...x]))
    expect(d.perplexity.filter((p) => p.series === "train").map((p) => [p.step, p.value])).toEqual(ppl("trainPerplexity").map((x) => [...x]))
    expect(d.perplexity.length).toBeGreaterThanOrEqual(6)
    // Classifier metrics never mix with the LM's and vice versa.
    expect(d.trainingLoss.some((p) => p.run === lmLabel)).toBe(false)

    // The charts carry exactly these points (no thinning below 1,000 per run).
    const specs = new Map(chartSpecs(d).map((c) => [c.id, c.spec as { data: { values: Array<Point> } }]))
    expect([...specs.keys()].sort()).toEqual([...CHARTS].sort())
    expect(specs.get("training-loss")!.data.values).toEqual(d.trainingLoss.map((p) => ({ ...p })))
    expect(specs.get("adversarial-loss")!.data.values).toEqual(d.adversarialLoss.map((p) => ({ ...p })))
    expect(specs.get("lm-perplexity")!.data.values).toEqual(d.perplexity.map((p) => ({ ...p })))
  })

  test("the method table comes from results.json for grid cells and from summary.json for a run dir given alone", () => {
    const results = JSON.parse(readFileSync(join(root, "results.json"), "utf8")) as Array<{ method: string; seed: number; testError: number }>
    const d = reportData([root])
    expect(d.results.map((r) => [r.method, r.seed, r.testError]).sort()).toEqual(results.map((r) => [r.method, r.seed, r.testError]).sort())
    // results.json is what the experiment reported; a doctored copy shows that it, not summary.json, is read.
    const copy = join(tempDir(), "grid-copy")
    cpSync(root, copy, { recursive: true })
    writeFileSync(join(copy, "results.json"), JSON.stringify(results.map((r) => ({ ...r, testError: 0.5 }))))
    expect(reportData([copy]).results.every((r) => r.testError === 0.5)).toBe(true)
    const alone = reportData([join(copy, "virtual", "seed1")])
    const summary = JSON.parse(readFileSync(join(copy, "virtual", "seed1", "summary.json"), "utf8"))
    expect(alone.results).toMatchObject([{ method: "virtual", seed: 1, testError: summary.testError }])
    // Two roots: methods are told apart by the root's name.
    expect(new Set(reportData([root, copy]).results.map((r) => r.method))).toEqual(new Set(methods.flatMap((m) => [`grid · ${m}`, `grid-copy · ${m}`])))
  })

  test("thin: at most `max` points per run and series, each the mean of its bucket; untouched below the limit", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 300 }), fc.integer({ min: 1, max: 50 }), fc.integer({ min: 1, max: 3 }), (n, max, runs) => {
        const points = Array.from({ length: runs }, (_, r) => Array.from({ length: n }, (_, i) => ({ run: `r${r}`, method: "m", step: i + 1, value: (i * 7 + r) % 11 }))).flat()
        const { points: out, bucket } = thin(points, max)
        if (n <= max) {
          expect(bucket).toBe(1)
          expect(out).toEqual(points)
          return
        }
        expect(bucket).toBe(Math.ceil(n / max))
        for (let r = 0; r < runs; r++) {
          const mine = out.filter((p) => p.run === `r${r}`)
          expect(mine.length).toBeLessThanOrEqual(max)
          mine.forEach((p, i) => {
            const slice = points.filter((q) => q.run === `r${r}`).slice(i * bucket, (i + 1) * bucket)
            expect(p.step).toBe(slice.at(-1)!.step)
            expect(p.value).toBeCloseTo(slice.reduce((a, q) => a + q.value, 0) / slice.length, 12)
          })
        }
      })
    )
  })

  test("a torn last metrics line is left out (and noted); a corrupt earlier line, a missing file or a non-run path is a RunDirError", async () => {
    const copy = join(tempDir(), "run")
    cpSync(runDir("baseline", 0), copy, { recursive: true })
    const before = readMetrics(copy).records
    appendFileSync(join(copy, "metrics.jsonl"), '{"step":13,"loss":0.6')
    const torn = readMetrics(copy)
    expect(torn.partialLastLine).toBe(true)
    expect(torn.records).toEqual(before)
    const lines: Array<string> = []
    const html = await Effect.runPromise(buildReport([copy], { log: (l) => void lines.push(l) }))
    expect(lines.some((l) => l.includes("incomplete"))).toBe(true)
    expect(html).toContain("incomplete last metrics line")

    writeFileSync(join(copy, "metrics.jsonl"), '{"step":1,"loss":1}\nnot json\n{"step":3,"loss":1}\n')
    expect(() => readMetrics(copy)).toThrow("corrupt at line 2")
    rmSync(join(copy, "metrics.jsonl"))
    expect(() => reportData([copy])).toThrow("does not exist")
    const empty = tempDir()
    expect(() => reportData([empty])).toThrow("neither a run directory")
  })

  test("the CLI writes the report (progress on stderr) and refuses bad paths, missing metrics and --k 0 with one paragraph", () => {
    const out = join(tempDir(), "r.html")
    const ok = bunRun("src/pipeline/report.ts", [runDir("baseline", 0), "--out", out, "--words", "great,zyzzyva", "--k", "3"])
    expect(ok.code).toBe(0)
    expect(ok.stdout).toBe("")
    expect(ok.stderr).toContain("rendering training-loss")
    expect(ok.stderr).toContain(`wrote ${out}`)
    const html = readFileSync(out, "utf8")
    expect(html).toContain("zyzzyva")
    expect(html).toContain("not in this run's vocabulary")

    const noMetrics = join(tempDir(), "run")
    mkdirSync(noMetrics)
    writeFileSync(join(noMetrics, "config.json"), readFileSync(join(runDir("baseline", 0), "config.json")))
    for (const [path, needle] of [
      ["/nonexistent/path", "does not exist"],
      [tempDir(), "neither a run directory"],
      [noMetrics, "metrics.jsonl does not exist"]
    ] as const) {
      const r = bunRun("src/pipeline/report.ts", [path, "--out", join(tempDir(), "x.html")])
      expect(r.code).toBe(1)
      expect(r.stderr).toContain("RunDirError")
      expect(r.stderr).toContain(needle)
      noStackTrace(r.stderr)
    }
    const unwritable = bunRun("src/pipeline/report.ts", [runDir("baseline", 0), "--out", "/nonexistent/dir/r.html"])
    expect(unwritable.code).toBe(1)
    expect(unwritable.stderr).toContain("cannot write /nonexistent/dir/r.html")
    noStackTrace(unwritable.stderr)
    const k = bunRun("src/pipeline/report.ts", [root, "--k", "0"])
    expect(k.code).toBe(2)
    noStackTrace(k.stderr)
  })

  describe("in headless Chromium", () => {
    let browser: Browser | undefined
    let skipReason = ""
    beforeAll(async () => {
      const launched = await launchChromium()
      browser = launched.browser
      if (launched.browser === undefined) skipReason = launched.reason
    })
    afterAll(async () => {
      await browser?.close()
    })

    test.skipIf(!existsSync(CHROMIUM))("renders with no console error and no network request, one SVG per chart, every point drawn, the neighbour tables", async () => {
      if (browser === undefined) {
        console.warn(`skipping the browser check: ${skipReason}`)
        return
      }
      const out = join(tempDir(), "report.html")
      const r = bunRun("src/pipeline/report.ts", [root, lmDir, "--out", out])
      expect(r.code).toBe(0)
      const page = await browser.newPage()
      const problems: Array<string> = []
      const requests: Array<string> = []
      page.on("console", (m) => {
        if (m.type() === "error" || m.type() === "warn") problems.push(`${m.type()}: ${m.text()}`)
      })
      page.on("pageerror", (e) => problems.push(String(e)))
      page.on("request", (req) => void requests.push(req.url()))
      const url = pathToFileURL(out).href
      await page.goto(url, { waitUntil: "load" })
      expect(problems).toEqual([])
      expect(requests).toEqual([url])
      const charts = await page.$$eval("figure.chart", (figs) =>
        figs.map((f) => ({
          id: f.getAttribute("data-chart"),
          svgs: f.querySelectorAll("svg").length,
          width: f.querySelector("svg")?.getBoundingClientRect().width ?? 0,
          points: f.querySelectorAll("g.mark-symbol.role-mark path").length
        }))
      )
      expect(charts.map((c) => c.id).sort()).toEqual([...CHARTS].sort())
      for (const c of charts) {
        expect(c.svgs).toBe(1)
        expect(c.width).toBeGreaterThan(100)
      }
      // Each logged value is one drawn point (line charts mark their points below 400 values).
      const d = reportData([root, lmDir])
      const drawn = new Map(charts.map((c) => [c.id, c.points]))
      expect(drawn.get("training-loss")).toBe(d.trainingLoss.length)
      expect(drawn.get("validation-error")).toBe(d.validationError.length)
      expect(drawn.get("adversarial-loss")).toBe(d.adversarialLoss.length)
      expect(drawn.get("lm-perplexity")).toBe(d.perplexity.length)
      // A point per seed and a mean stroke per method.
      expect(drawn.get("test-error-by-method")).toBe(6 + 3)
      const tables = await page.$$eval(".neighbors", (divs) => divs.map((div) => ({ word: div.querySelector("h3")?.textContent, columns: div.querySelectorAll("thead th").length })))
      expect(tables.map((t) => t.word)).toEqual(["good", "bad", "great", "terrible", "excellent", "poor"])
      for (const t of tables) expect(t.columns).toBe(1 + 7)
      await page.close()
    })
  })
})
