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
  const split = splitCorpus({ name: "imdb", classes: ["neg", "pos"], train: docs, test: [docs[0]] }, resolveConfig({ dataset: { kind: "imdb" }, data: { validationSplit: "imdb-author" } }))
  expect(split.validation.map((d) => `${d.label}:${d.id}`).sort()).toEqual(["0:10625", "1:10621", "1:10624", "1:10625"])
  expect(split.train).toHaveLength(4)
})

describe("config schema follows the code", () => {
  test("one message lists field errors, unknown keys and cross-field problems together", () => {
    const message = messageOf(() =>
      resolveConfig({ seed: -1, backend: "gpu", dataset: { kind: "rt", train: "x.tsv" }, data: { validationSplit: "imdb-author" }, unlabeled: { source: "custom" }, bogus: 1 })
    )
    expect(message).toContain("6 problems")
    for (const part of ["seed", "backend", "bogus", "dataset.train only applies", "dataset.unlabeled", 'needs dataset.kind "imdb"']) expect(message).toContain(part)
  })

  test("every string union accepts exactly its owning module's constant list", async () => {
    const { METHODS } = await import("../../src/method/method.ts")
    const { BACKENDS, ENGINE_CHOICES } = await import("../../src/engine/backend.ts")
    const { TOKENIZERS } = await import("../../src/stages/tokenize.ts")
    const { PRETRAINED_PARTS } = await import("../../src/pipeline/restore.ts")
    const { DATASET_KINDS, UNLABELED_SOURCES, VALIDATION_SPLITS } = await import("../../src/pipeline/data.ts")
    const { CUSTOM_FORMATS } = await import("../../src/data/sources.ts")
    const { TASKS } = await import("../../src/pipeline/config.ts")
    const fields: Array<[string, ReadonlyArray<string>, (v: string) => unknown]> = [
      ["task", TASKS, (v) => ({ task: v })],
      ["method", METHODS, (v) => ({ method: v })],
      ["backend", BACKENDS, (v) => ({ backend: v })],
      ["blas", ENGINE_CHOICES, (v) => ({ blas: v })],
      ["fusedLstm", ENGINE_CHOICES, (v) => ({ fusedLstm: v })],
      ["pretrainedParts", PRETRAINED_PARTS, (v) => ({ pretrainedParts: v })],
      ["data.tokenizer", TOKENIZERS, (v) => ({ data: { tokenizer: v } })],
      ["data.validationSplit", VALIDATION_SPLITS, (v) => ({ dataset: { kind: "imdb" }, data: { validationSplit: v } })],
      ["dataset.kind", DATASET_KINDS, (v) => ({ dataset: { kind: v, ...(v === "custom" ? { train: "t.tsv" } : {}) } })],
      ["dataset.format", CUSTOM_FORMATS, (v) => ({ dataset: { kind: "custom", train: "t.tsv", format: v } })],
      ["unlabeled.source", UNLABELED_SOURCES, (v) => ({ dataset: { kind: "custom", train: "t.tsv", unlabeled: "u.txt" }, unlabeled: { source: v } })]
    ]
    for (const [field, values, input] of fields) {
      expect(values.length).toBeGreaterThan(1)
      for (const v of values) expect(() => resolveConfig(input(v))).not.toThrow()
      const message = messageOf(() => resolveConfig(input("not-a-choice")))
      expect(message).toContain(field)
      for (const v of values) expect(message).toContain(JSON.stringify(v))
    }
  })

  test("defaults come from the owning modules' constants, in the declared key order", async () => {
    const { OPTIMIZER_DEFAULTS } = await import("../../src/model/optimizer.ts")
    const { DEFAULT_PERTURBATION } = await import("../../src/method/method.ts")
    const { optimizerConfig } = await import("../../src/pipeline/loop.ts")
    expect(DEFAULTS.train).toMatchObject(OPTIMIZER_DEFAULTS)
    expect(DEFAULTS.perturbation).toMatchObject(DEFAULT_PERTURBATION)
    expect(optimizerConfig(resolveConfig({ train: { adamEpsilon: 1e-6 } }))).toEqual({ ...OPTIMIZER_DEFAULTS, adamEpsilon: 1e-6 })
    expect(Object.keys(resolveConfig({ train: { steps: 3 }, seed: 2 })).slice(0, 3)).toEqual(["name", "task", "seed"])
  })
})
