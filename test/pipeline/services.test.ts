/** The run's plug points (src/pipeline/services.ts): each default is the library's behaviour; a layer replaces one. */
import { expect, test } from "bun:test"
import * as tf from "@tensorflow/tfjs-core"
import { Cause, Effect, Exit, Fiber, Layer, Stream } from "effect"
import { existsSync, readFileSync, writeFileSync } from "node:fs"
import { join, resolve } from "node:path"
import { openBlas } from "../../src/engine/blas.ts"
import { pooledWorkspaceBytes } from "../../src/engine/gates.ts"
import { CHECKPOINT, readCheckpoint } from "../../src/model/checkpoint.ts"
import { type Progress, silentProgress } from "../../src/pipeline/progress.ts"
import { fileRunStorage, type RunStorageShape } from "../../src/pipeline/run-dir.ts"
import { runPipeline } from "../../src/pipeline/run.ts"
import { dataSourcesLayer, progressLayer, runStorageLayer } from "../../src/pipeline/services.ts"
import { rng } from "../../src/random.ts"
import { metricLines, sentence, tempDir, tinyConfig, writeTinyDataset } from "./fixtures.ts"

test("data sources, progress and run storage layers replace the defaults; the run's schedule goes through them", async () => {
  const random = rng(11, "services-test")
  const docs = (n: number) => Array.from({ length: n }, () => (random.uniform() < 0.5 ? 0 : 1)).map((label) => ({ text: sentence(label === 0 ? "neg" : "pos", random), label }))
  // An in-memory corpus: the config's dataset files are never read (they do not exist).
  const corpus = { name: "in-memory", classes: ["neg", "pos"], train: docs(160), test: docs(40) }
  const unlabeled = () => Stream.fromIterable(docs(50).map((d) => d.text))
  const lines: Array<string> = []
  const progress: Progress = { line: (text) => void lines.push(text), status() {}, done() {} }
  const checkpointSteps: Array<number> = []
  const summaries: Array<unknown> = []
  const storage: RunStorageShape = {
    ...fileRunStorage,
    writeCheckpoint: (runDir, state, meta, extras) => {
      checkpointSteps.push(state.step)
      fileRunStorage.writeCheckpoint(runDir, state, meta, extras)
    },
    writeSummary: (runDir, summary) => {
      summaries.push(summary)
      fileRunStorage.writeSummary(runDir, summary)
    }
  }
  const config = tinyConfig(join(tempDir(), "missing"), { train: { steps: 10, checkpointEvery: 4 } })
  const runDir = join(tempDir(), "run")
  const layers = Layer.mergeAll(dataSourcesLayer(() => Effect.succeed({ corpus, unlabeled })), progressLayer(progress), runStorageLayer(storage))
  const outcome = await Effect.runPromise(runPipeline(config, { runDir }).pipe(Effect.provide(layers)))
  if (outcome.status !== "completed") throw new Error("the run did not complete")
  expect(outcome.summary.trainExamples + Math.round(160 * config.data.validationFraction)).toBe(160)
  expect(outcome.summary.unlabeledExamples).toBe(50)
  expect(outcome.summary.testExamples).toBe(40)
  expect(checkpointSteps).toEqual([4, 8, 10])
  expect(summaries).toEqual([outcome.summary])
  expect(JSON.parse(readFileSync(join(runDir, "summary.json"), "utf8"))).toEqual(outcome.summary)
  expect(existsSync(join(runDir, CHECKPOINT))).toBe(true)
  expect(lines[0]).toStartWith("advtext: tiny · method baseline")
  expect(lines.at(-1)).toContain("test error")
}, 120_000)

test("a run's scope owns the workspace pool: workspaces are reused during the run and let go when it ends", async () => {
  const config = tinyConfig(writeTinyDataset(tempDir(), { train: 80, test: 20 }), { train: { steps: 3 } })
  const pooledDuringRun: Array<number> = []
  const outcome = await Effect.runPromise(
    runPipeline(config, { runDir: join(tempDir(), "run"), progress: silentProgress, onStep: () => void pooledDuringRun.push(pooledWorkspaceBytes()) })
  )
  expect(outcome.status).toBe("completed")
  // Workspaces exist only with the fused LSTM (a BLAS loaded, not tfjs-node); without it the pool is never used.
  const blasHere = openBlas()
  blasHere?.close()
  if (blasHere !== undefined && outcome.status === "completed" && outcome.summary.backend !== "tensorflow") expect(Math.max(...pooledDuringRun)).toBeGreaterThan(0)
  expect(pooledWorkspaceBytes()).toBe(0)
})

// At step 8 the interruption lands in the step's validation, which the log then leaves out and --resume runs first.
test.each([6, 8])("interrupting a run's fiber after step %i checkpoints that step; --resume then reaches the uninterrupted run's log", async (at) => {
  const config = tinyConfig(writeTinyDataset(tempDir(), { train: 120, test: 40 }), { train: { steps: 10, evalEvery: 4, checkpointEvery: 1000 } })
  const straight = join(tempDir(), "straight")
  expect((await Effect.runPromise(runPipeline(config, { runDir: straight, progress: silentProgress }))).status).toBe("completed")
  const runDir = join(tempDir(), "interrupted")
  const lines: Array<string> = []
  const progress: Progress = { line: (text) => void lines.push(text), status() {}, done() {} }
  let fiber: Fiber.Fiber<unknown, unknown> | undefined
  const exit = await Effect.runPromise(
    Effect.gen(function* () {
      fiber = yield* Effect.forkChild(runPipeline(config, { runDir, progress, onStep: (m) => void (m.step === at && fiber?.interruptUnsafe()) }))
      return yield* Fiber.await(fiber)
    })
  )
  expect(Exit.isFailure(exit) && Cause.hasInterruptsOnly(exit.cause)).toBe(true)
  const ckpt = readCheckpoint(join(runDir, CHECKPOINT))
  tf.dispose([...ckpt.tensors.values()])
  expect(ckpt.step).toBe(at)
  expect(lines.at(-1)).toStartWith(`stopped at step ${at}; checkpoint written`)
  expect(existsSync(join(runDir, "summary.json"))).toBe(false)
  expect((await Effect.runPromise(runPipeline(config, { runDir, progress: silentProgress, resume: true }))).status).toBe("completed")
  expect(metricLines(runDir)).toEqual(metricLines(straight))
})

test("a run's scope holds the BLAS library: kernels routed through it during the run, put back and the handle closed after", () => {
  const config = tinyConfig(writeTinyDataset(tempDir(), { train: 80, test: 20 }), { train: { steps: 2 } })
  const path = join(tempDir(), "config.json")
  writeFileSync(path, JSON.stringify(config))
  const child = Bun.spawnSync(["bun", resolve(import.meta.dir, "scoped-engine.ts"), path, join(tempDir(), "run")], { stdout: "pipe", stderr: "pipe" })
  expect(child.exitCode).toBe(0)
  const report = JSON.parse(child.stdout.toString().trim())
  expect(report.status).toBe("completed")
  // Without a BLAS on this machine the run never routes anything through one; with one, it did during the run.
  const blasHere = openBlas()
  blasHere?.close()
  if (blasHere !== undefined && report.backend !== "tensorflow") expect(report.during).toEqual([{ matmul: true, lstm: true }, { matmul: true, lstm: true }])
  expect(report.after).toEqual({ matmul: false, lstm: false, processHeld: false })
  expect(report.product).toEqual([11])
})
