/** A tiny generated sentiment-like dataset: the class is decided by which cue words a sentence contains. */
import { expect } from "bun:test"
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join, resolve } from "node:path"
import { rng } from "../../src/random.ts"
import { resolveConfig, type Config, type ConfigInput } from "../../src/pipeline/config.ts"
import { deepMerge } from "../../src/pipeline/config.ts"

const CUES: Record<string, ReadonlyArray<string>> = {
  pos: ["great", "wonderful", "superb", "moving", "brilliant", "delight"],
  neg: ["awful", "boring", "dull", "terrible", "mess", "tedious"]
}
const FILLER = ["the", "film", "a", "story", "of", "and", "it", "was", "this", "movie", "plot", "actors", "with", "its"]

export function sentence(label: string, random: ReturnType<typeof rng>): string {
  const words = Array.from({ length: 4 + random.int(10) }, () => FILLER[random.int(FILLER.length)])
  const cues = CUES[label]
  for (let k = 0; k < 1 + random.int(2); k++) words.splice(random.int(words.length + 1), 0, cues[random.int(cues.length)])
  return words.join(" ")
}

export function tempDir(prefix = "advtext-test-"): string {
  return mkdtempSync(join(tmpdir(), prefix))
}

/** Writes train.tsv / test.tsv (label<TAB>text) and unlabeled.txt; returns their folder. */
export function writeTinyDataset(dir: string, options: { train?: number; test?: number; seed?: number } = {}): string {
  const random = rng(options.seed ?? 7, "fixture")
  const lines = (n: number) =>
    Array.from({ length: n }, () => {
      const label = random.uniform() < 0.5 ? "pos" : "neg"
      return `${label}\t${sentence(label, random)}\n`
    }).join("")
  writeFileSync(join(dir, "train.tsv"), lines(options.train ?? 400))
  writeFileSync(join(dir, "test.tsv"), lines(options.test ?? 120))
  writeFileSync(join(dir, "unlabeled.txt"), Array.from({ length: 200 }, () => sentence(random.uniform() < 0.5 ? "pos" : "neg", random) + "\n").join(""))
  return dir
}

/** A small, fast config on the tiny dataset. */
export function tinyConfig(dataDir: string, overrides: ConfigInput = {}): Config {
  const base: ConfigInput = {
    name: "tiny",
    seed: 3,
    dataset: { kind: "custom", train: join(dataDir, "train.tsv"), test: join(dataDir, "test.tsv"), unlabeled: join(dataDir, "unlabeled.txt") },
    unlabeled: { source: "custom" },
    model: { embeddingDim: 16, lstmUnits: 24, hiddenUnits: 8, embeddingKeepProb: 0.8 },
    train: {
      steps: 60,
      batchSize: 32,
      unlabeledBatchSize: 48,
      learningRate: 0.01,
      learningRateDecay: 0.999,
      logEvery: 1000,
      evalEvery: 0,
      checkpointEvery: 1000,
      evalBatchSize: 64
    }
  }
  return resolveConfig(deepMerge(base, overrides))
}

/** A run's metrics.jsonl records without their wall-clock throughput fields (the rest must be reproducible). */
export function metricLines(runDir: string): Array<Record<string, unknown>> {
  return readFileSync(join(runDir, "metrics.jsonl"), "utf8")
    .trim()
    .split("\n")
    .map((l) => {
      const { tokensPerSecond: _t, examplesPerSecond: _e, ...rest } = JSON.parse(l) as Record<string, unknown>
      return rest
    })
}

export const CLI = resolve(import.meta.dir, "../../src/pipeline/cli.ts")
const CONFIG_MODULE = resolve(import.meta.dir, "../../src/pipeline/config.ts")

/** The CLI in a child process: exit code, stdout, stderr. */
export function cli(args: ReadonlyArray<string>, env: Record<string, string> = {}) {
  const p = Bun.spawnSync(["bun", CLI, ...args], { env: { ...process.env, ...env }, stdout: "pipe", stderr: "pipe" })
  const stderr = p.stderr.toString()
  return { code: p.exitCode, stdout: p.stdout.toString(), stderr }
}

/** A config file for the tiny dataset, with `extra` spliced into the object literal. */
export function configFile(dir: string, dataset: string, extra = ""): string {
  const path = join(dir, "config.ts")
  writeFileSync(
    path,
    `import { defineConfig } from ${JSON.stringify(CONFIG_MODULE)}
export default defineConfig({
  name: "cli-tiny",
  dataset: ${dataset},
  model: { embeddingDim: 8, lstmUnits: 8, hiddenUnits: 4 },
  train: { steps: 3, batchSize: 16, unlabeledBatchSize: 16, logEvery: 1, evalEvery: 0 },
  ${extra}
})
`
  )
  return path
}

export const noStackTrace = (stderr: string) => expect(stderr).not.toMatch(/^\s+at .+:\d+/m)
