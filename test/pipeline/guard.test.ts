/** The divergence guard (issue 13, case 5): its three rules, and the checkpoint it leaves behind. */
import { describe, expect, test } from "bun:test"
import { Effect, Result } from "effect"
import { existsSync, readFileSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { CHECKPOINT, readCheckpointHeader } from "../../src/model/checkpoint.ts"
import { DEFAULTS } from "../../src/pipeline/config.ts"
import { DivergenceGuard } from "../../src/pipeline/guard.ts"
import { silentProgress } from "../../src/pipeline/progress.ts"
import { runPipeline } from "../../src/pipeline/run.ts"
import { cli, configFile, metricLines, noStackTrace, tempDir, tinyConfig, writeTinyDataset } from "./fixtures.ts"

const chance = Math.log(2)
const feed = (guard: DivergenceGuard, losses: ReadonlyArray<number>, dead = 0) =>
  losses.map((loss, i) => guard.observe({ step: i + 1, loss, nll: loss, deadUnits: dead })).findIndex((r) => r !== undefined) + 1

describe("DivergenceGuard", () => {
  const config = { lossFactor: 20, spikeFactor: 10, warmup: 5, window: 4, deadSteps: 3 }

  test("a loss above lossFactor × chance trips at once, even in the warm-up", () => {
    expect(feed(new DivergenceGuard(config, chance, 8), [0.7, 0.69, 14])).toBe(3)
    expect(feed(new DivergenceGuard(config, chance, 8), [0.7, 0.69, 13])).toBe(0)
    expect(new DivergenceGuard(config, chance, 8).observe({ step: 1, loss: 1e14, nll: 1e14 })).toContain("above guard.lossFactor × chance loss = 20 × 0.6931")
  })

  test("a spike above spikeFactor × the window's median trips after the warm-up, but not below twice the chance loss", () => {
    const steady = [1, 1, 1, 1, 1, 1]
    expect(feed(new DivergenceGuard({ ...config, lossFactor: 0 }, chance, 8), [...steady, 10.5])).toBe(7)
    expect(feed(new DivergenceGuard({ ...config, lossFactor: 0 }, chance, 8), [...steady, 9.5])).toBe(0)
    // A well-fit model (median 0.01) with one noisy batch at 1.3 (< 2 × ln 2) is not diverging.
    expect(feed(new DivergenceGuard(config, chance, 8), [0.01, 0.01, 0.01, 0.01, 0.01, 0.01, 1.3])).toBe(0)
    // Within the warm-up the spike rule is off.
    expect(feed(new DivergenceGuard({ ...config, lossFactor: 0, warmup: 10 }, chance, 8), [...steady, 10.5])).toBe(0)
  })

  test("every hidden unit dead for deadSteps consecutive steps trips; a live step resets the count", () => {
    expect(feed(new DivergenceGuard(config, chance, 8), [0.7, 0.7, 0.7], 8)).toBe(3)
    const guard = new DivergenceGuard(config, chance, 8)
    const steps = [8, 8, 7, 8, 8].map((dead, i) => guard.observe({ step: i + 1, loss: 0.7, nll: 0.7, deadUnits: dead }))
    expect(steps.every((r) => r === undefined)).toBe(true)
    expect(guard.observe({ step: 6, loss: 0.7, nll: 0.7, deadUnits: 8 })).toContain("all 8 hidden units have been dead")
  })

  test("0 disables each rule", () => {
    const off = { lossFactor: 0, spikeFactor: 0, warmup: 0, window: 4, deadSteps: 0 }
    expect(feed(new DivergenceGuard(off, chance, 8), [1, 1, 1, 1, 1e30, 1e30], 8)).toBe(0)
  })

  test("the defaults are on", () => {
    expect(DEFAULTS.guard).toEqual({ lossFactor: 20, spikeFactor: 10, warmup: 100, window: 100, deadSteps: 100 })
  })
})

describe("a diverging run stops with a pre-divergence checkpoint", () => {
  const data = writeTinyDataset(tempDir(), { train: 60, test: 20 })

  test("learning rates of 1e6 and 1e15 stop at step 2 (exit 1, one paragraph) instead of printing a normal summary (case 5)", () => {
    const dataset = `{ kind: "custom", train: ${JSON.stringify(join(data, "train.tsv"))}, test: ${JSON.stringify(join(data, "test.tsv"))} }`
    for (const lr of ["1e6", "1e15"]) {
      const runDir = join(tempDir(), "r")
      const r = cli([configFile(tempDir(), dataset), "--run-dir", runDir, "--set", `train.learningRate=${lr}`, "--set", "train.steps=20"])
      expect(r.code).toBe(1)
      expect(r.stderr).toContain("error (Diverged): training diverged at step 2: the loss")
      expect(r.stderr).toContain("No checkpoint had been written yet.")
      expect(r.stdout).toBe("")
      expect(existsSync(join(runDir, "summary.json"))).toBe(false)
      noStackTrace(r.stderr)
    }
  })

  test("a checkpoint written from diverged weights is replaced by the previous one; --resume from it works and re-trips at the same step", async () => {
    const runDir = join(tempDir(), "run")
    const config = tinyConfig(data, { train: { steps: 5, checkpointEvery: 1 } })
    const run = (resume: boolean) => Effect.runPromise(Effect.result(runPipeline(config, { runDir, progress: silentProgress, resume })))
    expect(Result.isSuccess(await run(false))).toBe(true)
    // From step 5 on, an absurd learning rate (written into the saved config, as if the run had been started with it).
    const saved = JSON.parse(readFileSync(join(runDir, "config.json"), "utf8"))
    saved.train.learningRate = 1e6
    saved.train.steps = 20
    writeFileSync(join(runDir, "config.json"), JSON.stringify(saved))
    Object.assign(config, { train: { ...config.train, learningRate: 1e6, steps: 20 } })

    const first = await run(true)
    expect(Result.isFailure(first) && first.failure._tag).toBe("Diverged")
    const message = Result.isFailure(first) ? first.failure.message : ""
    const badStep = Number(/diverged at step (\d+)/.exec(message)![1])
    // The loss of step n comes from the weights after n − 1 updates: the checkpoint of step n − 1 is diverged.
    expect(badStep).toBeGreaterThan(5)
    const kept = readCheckpointHeader(join(runDir, CHECKPOINT)).step
    expect(kept).toBeLessThan(badStep - 1)
    expect(readCheckpointHeader(join(runDir, "checkpoint.diverged.ckpt")).step).toBe(badStep - 1)
    expect(message).toContain(`the one of step ${kept} is back as`)

    const again = await run(true)
    expect(Result.isFailure(again) && again.failure.message).toContain(`training diverged at step ${badStep}:`)
    // Resuming truncated the log to the kept checkpoint and re-ran the same steps.
    expect(metricLines(runDir).filter((m) => "loss" in m).map((m) => m.step)).toEqual(Array.from({ length: badStep }, (_, i) => i + 1))
    expect(readCheckpointHeader(join(runDir, CHECKPOINT)).step).toBe(kept)
  })
})
