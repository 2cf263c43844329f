/**
 * Skip-gram embedding pretraining end to end (config `task: "skip-gram"`): its run dir, the vectors' scale, and a
 * classifier restoring the embedding from it with `pretrainedParts: "embedding"` (and refusing the LSTM it lacks).
 */
import { describe, expect, test } from "bun:test"
import { Effect, Result } from "effect"
import { existsSync, readFileSync } from "node:fs"
import { join } from "node:path"
import { CHECKPOINT, readCheckpoint } from "../../src/model/checkpoint.ts"
import { deepMerge, type Config, type ConfigInput } from "../../src/pipeline/config.ts"
import { silentProgress, type Progress } from "../../src/pipeline/progress.ts"
import { runPipeline } from "../../src/pipeline/run.ts"
import { runSkipGram } from "../../src/pipeline/skip-gram.ts"
import { useBackend } from "../helpers.ts"
import { metricLines, tempDir, tinyConfig, writeTinyDataset } from "./fixtures.ts"

useBackend("cpu")

const data = writeTinyDataset(tempDir())
const config = (overrides: ConfigInput = {}): Config =>
  tinyConfig(data, deepMerge({ task: "skip-gram", backend: "cpu", skipGram: { epochs: 2, window: 3, negatives: 3, subsample: 0 } }, overrides) as ConfigInput)

describe("runSkipGram", () => {
  const runDir = join(tempDir(), "sg")
  test("writes the embedding, vocabulary, metrics and summary", async () => {
    const outcome = await Effect.runPromise(runSkipGram(config(), { runDir, progress: silentProgress }))
    expect(outcome.status).toBe("completed")
    const ckpt = readCheckpoint(join(runDir, CHECKPOINT))
    const words = ckpt.meta.vocabulary as Array<string>
    expect([...ckpt.tensors.keys()].filter((k) => k.startsWith("params/"))).toEqual(["params/embedding"])
    const embedding = ckpt.tensors.get("params/embedding")!
    expect(embedding.shape).toEqual([words.length, 16])
    const v = Array.from(embedding.dataSync() as Float32Array)
    const mean = v.reduce((a, x) => a + x, 0) / v.length
    expect(Math.sqrt(v.reduce((a, x) => a + (x - mean) ** 2, 0) / v.length)).toBeCloseTo(1 / Math.sqrt(3), 3)
    const summary = JSON.parse(readFileSync(join(runDir, "summary.json"), "utf8"))
    expect(summary).toMatchObject({ task: "skip-gram", epochs: 2, vocabularySize: words.length })
    expect(metricLines(runDir).length).toBeGreaterThan(0)
    for (const t of ckpt.tensors.values()) t.dispose()
  })

  test("a classifier restores its embedding (pretrainedParts embedding), not an LSTM it does not have", async () => {
    const lines: Array<string> = []
    const progress: Progress = { ...silentProgress, line: (l) => void lines.push(l) }
    const classifier = tinyConfig(data, { backend: "cpu", pretrained: runDir, pretrainedParts: "embedding", train: { steps: 3 } })
    const outcome = await Effect.runPromise(runPipeline(classifier, { runDir: join(tempDir(), "c"), progress }))
    expect(outcome.status).toBe("completed")
    expect(lines.some((l) => l.includes(`restored pretrained embedding from ${runDir}`))).toBe(true)
    const full = await Effect.runPromise(runPipeline({ ...classifier, pretrainedParts: "embedding+lstm" }, { runDir: join(tempDir(), "d"), progress: silentProgress }).pipe(Effect.result))
    expect(Result.isFailure(full) && full.failure.message).toContain("it has no lstm/inputKernel")
  })

  test("a stop request ends it without writing a checkpoint", async () => {
    const dir = join(tempDir(), "stopped")
    const stop = { requested: true }
    const outcome = await Effect.runPromise(runSkipGram(config({ skipGram: { epochs: 50 } }), { runDir: dir, progress: silentProgress, stop }))
    expect(outcome.status).toBe("interrupted")
    expect(existsSync(join(dir, CHECKPOINT))).toBe(false)
  })
})

test("interrupting the skip-gram fiber mid-training stops it between reports, writes nothing and says so", async () => {
  const { Fiber } = await import("effect")
  const dir = join(tempDir(), "interrupted")
  const lines: Array<string> = []
  const progress: Progress = { ...silentProgress, line: (l) => void lines.push(l), status: () => void 0 }
  const fiber = Effect.runFork(runSkipGram(config({ skipGram: { epochs: 400 } }), { runDir: dir, progress }))
  // Wait until training has produced progress (metrics appear), then interrupt.
  while (!existsSync(join(dir, "metrics.jsonl")) || readFileSync(join(dir, "metrics.jsonl"), "utf8").length === 0) await Bun.sleep(20)
  await Effect.runPromise(Fiber.interrupt(fiber))
  expect(existsSync(join(dir, CHECKPOINT))).toBe(false)
  expect(lines.at(-1)).toContain("stopped; nothing written")
}, 60_000)
