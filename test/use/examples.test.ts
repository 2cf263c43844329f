/** The README's "Using a trained model" code: both examples, in process and as scripts. */
import { beforeAll, expect, test } from "bun:test"
import * as tf from "@tensorflow/tfjs-core"
import { Effect } from "effect"
import { readFileSync } from "node:fs"
import { resolve } from "node:path"
import { classifyEffect } from "../../examples/classify-effect.ts"
import { classifyPromise } from "../../examples/classify-promise.ts"
import { trainTinyRun } from "./fixtures.ts"

let runDir: string
beforeAll(async () => {
  runDir = (await trainTinyRun()).runDir
})

const texts = ["a great and wonderful film", "a dull, tedious mess"]

test("the Effect and Promise examples classify alike and release every tensor", async () => {
  const before = tf.memory().numTensors
  const viaEffect = await Effect.runPromise(classifyEffect(runDir, texts))
  const viaPromise = await classifyPromise(runDir, texts)
  expect(tf.memory().numTensors).toBe(before)
  expect(viaEffect.map((r) => r.label)).toEqual(["pos", "neg"])
  expect(viaPromise).toEqual(viaEffect)
})

test("the examples run as scripts", () => {
  for (const example of ["classify-effect.ts", "classify-promise.ts"]) {
    const p = Bun.spawnSync(["bun", resolve(import.meta.dir, "../../examples", example), runDir, ...texts], { stdout: "pipe", stderr: "pipe" })
    expect(p.exitCode).toBe(0)
    expect(p.stdout.toString().split("\n").filter(Boolean).map((l) => l.split("\t")[0])).toEqual(["pos", "neg"])
  }
})

test("examples/write-split.ts writes a run's own test split: evaluate on it gives the run's test error", async () => {
  const { runDir: dir, data } = await trainTinyRun()
  const out = resolve(data, "split.tsv")
  const written = Bun.spawnSync(["bun", resolve(import.meta.dir, "../../examples/write-split.ts"), dir, "test", out], { stdout: "pipe", stderr: "pipe" })
  expect(written.exitCode).toBe(0)
  const scored = Bun.spawnSync(["bun", resolve(import.meta.dir, "../../src/use/cli.ts"), "evaluate", dir, out, "--json"], { stdout: "pipe", stderr: "pipe" })
  expect(scored.exitCode).toBe(0)
  const summary = JSON.parse(readFileSync(resolve(dir, "summary.json"), "utf8"))
  const scores = JSON.parse(scored.stdout.toString())
  expect(scores.examples).toBe(summary.testExamples)
  expect(scores.error).toBeCloseTo(summary.testError, 12)
})
