import { describe, expect, test } from "bun:test"
import { readdirSync } from "node:fs"
import { join } from "node:path"
import { applyOverrides, DEFAULTS, loadConfigFile, resolveConfig } from "../../src/pipeline/config.ts"
import rt from "../../configs/rt.ts"
import rtCpu from "../../configs/rt-cpu.ts"

const messageOf = (f: () => unknown): string => {
  try {
    f()
  } catch (e) {
    return (e as { message: string }).message
  }
  throw new Error("expected a ConfigError")
}

describe("config", () => {
  test("every shipped config in configs/ loads and validates", async () => {
    const dir = join(import.meta.dir, "../../configs")
    const files = readdirSync(dir).filter((f) => f.endsWith(".ts"))
    expect(files.length).toBeGreaterThan(5)
    for (const file of files) {
      const config = await loadConfigFile(join(dir, file), [])
      expect(config.name.length).toBeGreaterThan(0)
    }
  })

  test("defaults fill what a config leaves out", () => {
    const c = resolveConfig({ seed: 4 })
    expect(c.seed).toBe(4)
    expect(c.train).toEqual(DEFAULTS.train)
  })

  test("the RT config carries the paper's settings (spec A4.2)", () => {
    const c = resolveConfig(rt)
    expect(c.model).toMatchObject({ embeddingDim: 512, lstmUnits: 1024, hiddenUnits: 30, embeddingKeepProb: 0.5 })
    expect(c.train).toMatchObject({ steps: 10_000, batchSize: 64, unlabeledBatchSize: 512, learningRate: 5e-4, learningRateDecay: 0.9998, maxGradNorm: 1 })
    expect(c.data).toMatchObject({ lowercase: true, window: 400, testFraction: 0.1 })
    expect(c.unlabeled).toMatchObject({ source: "imdb-sentences", maxTokens: 25 })
    expect(resolveConfig(rtCpu).name).toBe("rt-cpu")
  })

  test("--set overrides parse JSON values and nest by dots", () => {
    const c = resolveConfig({}, ["train.steps=12", "backend=cpu", "model.normalizeEmbeddings=false", 'name="x y"'])
    expect(c.train.steps).toBe(12)
    expect(c.backend).toBe("cpu")
    expect(c.model.normalizeEmbeddings).toBe(false)
    expect(c.name).toBe("x y")
    expect(() => applyOverrides({}, ["oops"])).toThrow("key=value")
  })

  test("every invalid or unknown field is listed in one message", () => {
    const message = messageOf(() => resolveConfig({ seed: 1.5, method: "nope", train: { batchSize: 0, bogus: 1 }, extra: true }))
    for (const field of ["seed", "method", "train.batchSize", "train.bogus", "extra"]) expect(message).toContain(field)
    expect(message).toContain("5 problems")
    expect(message).toContain("unknown key")
  })

  test("a custom dataset needs its train file; a custom unlabeled source needs its file", () => {
    expect(messageOf(() => resolveConfig({ dataset: { kind: "custom" } }))).toContain("dataset.train")
    expect(messageOf(() => resolveConfig({ dataset: { kind: "custom", train: "x.tsv" }, unlabeled: { source: "custom" } }))).toContain("dataset.unlabeled")
    expect(messageOf(() => resolveConfig(42))).toContain("expected an object")
  })
})

test("the IMDB author validation split takes pos ids ≥ 10621 and neg ids ≥ 10625", async () => {
  const { splitCorpus } = await import("../../src/pipeline/data.ts")
  const docs = [10620, 10621, 10624, 10625].flatMap((id) => [
    { text: "a", label: 1, id },
    { text: "b", label: 0, id }
  ])
  const split = splitCorpus({ name: "imdb", classes: ["neg", "pos"], train: docs, test: [docs[0]] }, resolveConfig({ data: { validationSplit: "imdb-author" } }))
  expect(split.validation.map((d) => `${d.label}:${d.id}`).sort()).toEqual(["0:10625", "1:10621", "1:10624", "1:10625"])
  expect(split.train).toHaveLength(4)
})
