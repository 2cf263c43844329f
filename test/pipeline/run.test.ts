import { describe, expect, test } from "bun:test"
import { Effect, Result } from "effect"
import { readFileSync } from "node:fs"
import { join } from "node:path"
import { readCheckpoint } from "../../src/model/checkpoint.ts"
import { silentProgress } from "../../src/pipeline/progress.ts"
import { runPipeline, type RunOutcome, type StopSignal } from "../../src/pipeline/run.ts"
import type { Config } from "../../src/pipeline/config.ts"
import { metricLines, tempDir, tinyConfig, writeTinyDataset } from "./fixtures.ts"

const run = (config: Config, runDir: string, extra: { resume?: boolean; stop?: StopSignal; onStep?: (m: { step: number }) => void } = {}) =>
  Effect.runPromise(runPipeline(config, { runDir, progress: silentProgress, ...extra }))


describe("pipeline end to end", () => {
  const data = writeTinyDataset(tempDir())

  test("learns a separable task (> 95% test accuracy) and writes every run output", async () => {
    const runDir = join(tempDir(), "run")
    const outcome = await run(tinyConfig(data, { train: { steps: 80 } }), runDir)
    expect(outcome.status).toBe("completed")
    const summary = JSON.parse(readFileSync(join(runDir, "summary.json"), "utf8"))
    expect(summary.testAccuracy).toBeGreaterThan(0.95)
    expect(summary.testError).toBeCloseTo(1 - summary.testAccuracy, 10)
    expect(summary).toMatchObject({ method: "baseline", steps: 80, seed: 3, testExamples: 120 })
    expect(typeof summary.backend).toBe("string")
    expect(summary.wallSeconds).toBeGreaterThan(0)
    const config = JSON.parse(readFileSync(join(runDir, "config.json"), "utf8"))
    expect(config.train.steps).toBe(80)
    const metrics = metricLines(runDir)
    expect(metrics.filter((m) => "loss" in m)).toHaveLength(80)
    expect(metrics[0]).toMatchObject({ step: 1 })
    for (const key of ["loss", "nll", "learningRate", "gradNorm", "deadUnits"]) expect(metrics[0]).toHaveProperty(key)
    const ckpt = readCheckpoint(join(runDir, "checkpoint.ckpt"))
    expect(ckpt.step).toBe(80)
    expect((ckpt.meta.vocabulary as Array<string>).at(-1)).toBe("</s>")
    expect(ckpt.meta.classes).toEqual(["neg", "pos"])
    for (const t of ckpt.tensors.values()) t.dispose()
  })

  test("model.centeredHead: the run stores the mean initial feature as head/featureMean, a constant through training and resume, and still learns", async () => {
    const runDir = join(tempDir(), "centered")
    const config = tinyConfig(data, { model: { centeredHead: true }, train: { steps: 40 } })
    const lines: Array<string> = []
    const progress = { ...silentProgress, line: (l: string) => void lines.push(l) }
    expect((await Effect.runPromise(runPipeline(config, { runDir, progress }))).status).toBe("completed")
    expect(lines.some((l) => l.startsWith("centered head: features minus their initial mean over the "))).toBe(true)
    const ckpt = readCheckpoint(join(runDir, "checkpoint.ckpt"))
    const mean = Array.from(ckpt.tensors.get("params/head/featureMean")!.dataSync())
    expect(mean).toHaveLength(24)
    expect(Array.from(ckpt.tensors.get("ema/head/featureMean")!.dataSync())).toEqual(mean)
    expect(mean.some((x) => Math.abs(x) > 1e-4)).toBe(true)
    for (const t of ckpt.tensors.values()) t.dispose()
    expect(JSON.parse(readFileSync(join(runDir, "summary.json"), "utf8")).testAccuracy).toBeGreaterThan(0.9)
    expect((await run({ ...config, train: { ...config.train, steps: 45 } }, runDir, { resume: true })).status).toBe("completed")
    const resumed = readCheckpoint(join(runDir, "checkpoint.ckpt"))
    expect(Array.from(resumed.tensors.get("params/head/featureMean")!.dataSync())).toEqual(mean)
    for (const t of resumed.tensors.values()) t.dispose()
  })

  test("same seed, same numbers; a stop + --resume reaches the uninterrupted run's final numbers exactly", async () => {
    const config = tinyConfig(data, { train: { steps: 24, checkpointEvery: 5 } })
    const straight = join(tempDir(), "straight")
    const again = join(tempDir(), "again")
    const interrupted = join(tempDir(), "interrupted")
    const a = (await run(config, straight)) as Extract<RunOutcome, { status: "completed" }>
    const b = (await run(config, again)) as Extract<RunOutcome, { status: "completed" }>
    expect(b.summary.testLoss).toBe(a.summary.testLoss)

    const stop: StopSignal = { requested: false }
    const first = await run(config, interrupted, { stop, onStep: (m) => (m.step === 11 ? (stop.requested = true) : undefined) })
    expect(first).toEqual({ status: "interrupted", step: 11 })
    const resumed = (await run(config, interrupted, { resume: true })) as Extract<RunOutcome, { status: "completed" }>
    expect(resumed.status).toBe("completed")
    expect(resumed.summary.testLoss).toBe(a.summary.testLoss)
    expect(resumed.summary.testError).toBe(a.summary.testError)
    expect(metricLines(interrupted)).toEqual(metricLines(straight))
    const x = readCheckpoint(join(straight, "checkpoint.ckpt"))
    const y = readCheckpoint(join(interrupted, "checkpoint.ckpt"))
    expect([...y.tensors.keys()]).toEqual([...x.tensors.keys()])
    for (const [name, t] of x.tensors) expect(Array.from(y.tensors.get(name)!.dataSync())).toEqual(Array.from(t.dataSync()))
    for (const t of [...x.tensors.values(), ...y.tensors.values()]) t.dispose()
  })

  test("without BLAS (the pure-tfjs fallback: tfjs matmul, reference LSTM, JS gate-free path) the run still learns", async () => {
    const runDir = join(tempDir(), "fallback")
    const outcome = await run(tinyConfig(data, { blas: "off", train: { steps: 60 } }), runDir)
    expect(outcome.status).toBe("completed")
    const summary = JSON.parse(readFileSync(join(runDir, "summary.json"), "utf8"))
    expect(summary.testAccuracy).toBeGreaterThan(0.9)
  })

  test("every method trains end to end through the pipeline and logs its loss terms", async () => {
    for (const method of ["random", "random-unlabeled", "adversarial", "virtual", "adversarial+virtual"] as const) {
      const runDir = join(tempDir(), method)
      const outcome = await run(tinyConfig(data, { method, perturbation: { epsilon: 0.5, evalEpsilon: 1 }, train: { steps: 12, evalEvery: 6 } }), runDir)
      expect(outcome.status).toBe("completed")
      const metrics = metricLines(runDir)
      const step = metrics.find((m) => m.step === 1 && "loss" in m)!
      if (method === "random" || method.startsWith("adversarial")) expect(step).toHaveProperty("perturbedLoss")
      if (method !== "random" && method !== "adversarial") expect(step).toHaveProperty("virtualLoss")
      const summary = JSON.parse(readFileSync(join(runDir, "summary.json"), "utf8"))
      expect(summary.method).toBe(method)
      expect(summary.testAdversarialLoss).toBeGreaterThan(0)
      expect(summary.testVirtualAdversarialLoss).toBeGreaterThanOrEqual(0)
      expect(metrics.some((m) => "testAdversarialLoss" in m && m.step === 6)).toBe(true)
    }
  })

  test("refuses to overwrite a run and to resume a run that does not exist", async () => {
    const config = tinyConfig(data, { train: { steps: 2 } })
    const runDir = join(tempDir(), "run")
    await run(config, runDir)
    const again = await Effect.runPromise(Effect.result(runPipeline(config, { runDir, progress: silentProgress })))
    expect(Result.isFailure(again) && again.failure._tag).toBe("RunDirError")
    const missing = await Effect.runPromise(Effect.result(runPipeline(config, { runDir: join(tempDir(), "none"), progress: silentProgress, resume: true })))
    expect(Result.isFailure(missing) && missing.failure.message).toContain("no checkpoint.ckpt")
  })
})
