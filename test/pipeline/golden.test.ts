/**
 * Golden runs: the full metrics.jsonl and summary.json of tiny runs — every method, LM pretraining, and a classifier
 * restored from that LM — pinned in test/golden/, so a restructuring that should change nothing can show it changed
 * nothing. Numbers are compared to 1e-4 relative (BLAS kernels may round differently on another CPU); everything else
 * exactly. Wall-clock fields are left out. After a deliberate change of behaviour, regenerate with
 *   ADVTEXT_UPDATE_GOLDEN=1 bun test test/pipeline/golden.test.ts
 * and say in the commit what changed and why.
 */
import { describe, expect, test } from "bun:test"
import { Effect } from "effect"
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs"
import { join, resolve } from "node:path"
import { deepMerge, type ConfigInput } from "../../src/pipeline/config.ts"
import { runPretraining } from "../../src/pipeline/pretrain.ts"
import { silentProgress } from "../../src/pipeline/progress.ts"
import { runPipeline } from "../../src/pipeline/run.ts"
import { METHODS } from "../../src/method/method.ts"
import { metricLines, tempDir, tinyConfig, writeTinyDataset } from "./fixtures.ts"

const GOLDEN = resolve(import.meta.dir, "../golden")
const update = process.env.ADVTEXT_UPDATE_GOLDEN === "1"
const data = writeTinyDataset(tempDir(), { train: 160, test: 60 })
const classifier = (overrides: ConfigInput) =>
  tinyConfig(data, deepMerge({ train: { steps: 10, evalEvery: 5, logEvery: 1 }, perturbation: { epsilon: 1, evalEpsilon: 1 } }, overrides) as ConfigInput)

/** What a run wrote that must be reproducible: its metrics records and summary, without wall-clock fields. */
function record(runDir: string): unknown {
  const { wallSeconds: _w, ...summary } = JSON.parse(readFileSync(join(runDir, "summary.json"), "utf8")) as Record<string, unknown>
  return { metrics: metricLines(runDir), summary }
}

/** Differences between two JSON values: numbers within 1e-4 relative (or 1e-7 absolute), the rest equal. */
function differences(got: unknown, want: unknown, path = "$"): Array<string> {
  if (typeof got === "number" && typeof want === "number") {
    return Math.abs(got - want) <= Math.max(1e-7, 1e-4 * Math.abs(want)) || (Number.isNaN(got) && Number.isNaN(want)) ? [] : [`${path}: ${got} ≠ ${want}`]
  }
  if (Array.isArray(got) && Array.isArray(want)) {
    if (got.length !== want.length) return [`${path}: length ${got.length} ≠ ${want.length}`]
    return got.flatMap((g, i) => differences(g, want[i], `${path}[${i}]`))
  }
  if (got !== null && want !== null && typeof got === "object" && typeof want === "object") {
    const keys = [...new Set([...Object.keys(got), ...Object.keys(want)])].sort()
    return keys.flatMap((k) => differences((got as Record<string, unknown>)[k], (want as Record<string, unknown>)[k], `${path}.${k}`))
  }
  return got === want ? [] : [`${path}: ${JSON.stringify(got)} ≠ ${JSON.stringify(want)}`]
}

function expectGolden(name: string, runDir: string): void {
  const file = join(GOLDEN, `${name}.json`)
  const got = record(runDir)
  if (update) {
    mkdirSync(GOLDEN, { recursive: true })
    writeFileSync(file, JSON.stringify(got, null, 1) + "\n")
    return
  }
  if (!existsSync(file)) throw new Error(`${file} is missing: generate it with ADVTEXT_UPDATE_GOLDEN=1 bun test test/pipeline/golden.test.ts`)
  const diffs = differences(got, JSON.parse(readFileSync(file, "utf8")))
  expect(diffs.slice(0, 10)).toEqual([])
}

describe("golden runs (metrics.jsonl and summary.json pinned in test/golden/)", () => {
  for (const method of METHODS) {
    test(`classifier, method ${method}`, async () => {
      const runDir = join(tempDir(), method)
      await Effect.runPromise(runPipeline(classifier({ method }), { runDir, progress: silentProgress }))
      expectGolden(`classifier-${method.replace("+", "-and-")}`, runDir)
    })
  }

  test("LM pretraining, then a classifier restored from it", async () => {
    const lmDir = join(tempDir(), "lm")
    const lm = tinyConfig(data, {
      task: "language-model",
      data: { window: 4 },
      lm: { candidateSamples: 8, validationDocs: 20 },
      train: { steps: 8, batchSize: 16, evalEvery: 4, checkpointEvery: 4, logEvery: 1, learningRate: 0.01 }
    })
    await Effect.runPromise(runPretraining(lm, { runDir: lmDir, progress: silentProgress }))
    expectGolden("language-model", lmDir)
    const restoredDir = join(tempDir(), "restored")
    await Effect.runPromise(runPipeline(classifier({ pretrained: lmDir, method: "adversarial" }), { runDir: restoredDir, progress: silentProgress }))
    expectGolden("restored-adversarial", restoredDir)
  })
})
