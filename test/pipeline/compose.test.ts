import { expect, test } from "bun:test"
import * as tf from "@tensorflow/tfjs-core"
import { Effect } from "effect"
import { existsSync } from "node:fs"
import { join } from "node:path"
import { composeExample } from "../../examples/compose.ts"
import { composeMethodExample } from "../../examples/compose-method.ts"
import { CHECKPOINT, readCheckpoint } from "../../src/model/checkpoint.ts"
import { silentProgress } from "../../src/pipeline/progress.ts"
import { progressLayer } from "../../src/pipeline/services.ts"
import { metricLines, tempDir, writeTinyDataset } from "./fixtures.ts"

test("the README's composed run (a bigram tokenizer layer) gets validation, checkpoints, metrics and resume from the library's run", async () => {
  const data = writeTinyDataset(tempDir())
  const runDir = join(tempDir(), "bigrams")
  const run = (steps: number, resume: boolean) =>
    Effect.runPromise(composeExample(join(data, "train.tsv"), join(data, "test.tsv"), runDir, steps, resume).pipe(Effect.provide(progressLayer(silentProgress))))
  const first = await run(40, false)
  expect(first.status).toBe("completed")
  expect(existsSync(join(runDir, CHECKPOINT))).toBe(true)
  // The vocabulary holds the plugged tokenizer's bigrams.
  const ckpt = readCheckpoint(join(runDir, CHECKPOINT))
  tf.dispose([...ckpt.tensors.values()])
  expect((ckpt.meta.vocabulary as Array<string>).some((w) => /^\w+_\w+$/.test(w) && !w.includes("__"))).toBe(true)
  const resumed = await run(80, true)
  if (resumed.status !== "completed") throw new Error("the resumed run did not complete")
  expect(resumed.summary.steps).toBe(80)
  expect(resumed.summary.testExamples).toBe(120)
  expect(resumed.summary.testAccuracy).toBeGreaterThan(0.9)
  const metrics = metricLines(runDir)
  expect(metrics.filter((m) => "validationError" in m && !("testError" in m)).map((m) => m.step)).toEqual([20, 40, 60, 80])
  expect(metrics.filter((m) => "loss" in m).map((m) => m.step)).toEqual(Array.from({ length: 80 }, (_, i) => i + 1))
}, 120_000)

test("the README's new method (one loss term) trains through the library's run, with validation, checkpoints, metrics and resume", async () => {
  const data = writeTinyDataset(tempDir())
  const runDir = join(tempDir(), "margin")
  const run = (steps: number, resume: boolean) =>
    Effect.runPromise(composeMethodExample(join(data, "train.tsv"), join(data, "test.tsv"), runDir, steps, resume).pipe(Effect.provide(progressLayer(silentProgress))))
  expect((await run(40, false)).status).toBe("completed")
  const resumed = await run(60, true)
  if (resumed.status !== "completed") throw new Error("the resumed run did not complete")
  expect(resumed.summary.method).toBe("adversarial-margin")
  expect(resumed.summary.testAccuracy).toBeGreaterThan(0.9)
  const steps = metricLines(runDir).filter((m) => "nll" in m) as Array<{ step: number; nll: number; perturbedLoss: number }>
  expect(steps.map((m) => m.step)).toEqual(Array.from({ length: 60 }, (_, i) => i + 1))
  // The term is a hinge on what the perturbation adds: never negative, and not always zero.
  expect(steps.every((m) => m.perturbedLoss >= 0)).toBe(true)
  expect(steps.some((m) => m.perturbedLoss > 0)).toBe(true)
  expect(metricLines(runDir).filter((m) => "validationError" in m && !("testError" in m)).map((m) => m.step)).toEqual([20, 40, 60])
}, 120_000)
