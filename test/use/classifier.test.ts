/** loadClassifier / openClassifier: the run's own numbers, tensors released, and clear errors for bad run dirs. */
import { beforeAll, describe, expect, test } from "bun:test"
import * as tf from "@tensorflow/tfjs-core"
import { Effect } from "effect"
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import type { ActiveBackend } from "../../src/engine/backend.ts"
import { REFERENCE_ENGINE } from "../../src/engine/model-engine.ts"
import { RunDirError } from "../../src/errors.ts"
import { readCheckpoint, trainStateFromCheckpoint, writeCheckpoint } from "../../src/model/checkpoint.ts"
import { disposeTrainState } from "../../src/model/optimizer.ts"
import { loadClassifier, openClassifier } from "../../src/use/classifier.ts"
import { score } from "../../src/use/scores.ts"
import { initBackend, maxAbsDiff } from "../helpers.ts"
import { tempDir } from "../pipeline/fixtures.ts"
import { trainTinyRun } from "./fixtures.ts"

const testDocs = (data: string) =>
  readFileSync(join(data, "test.tsv"), "utf8").trim().split("\n").map((l) => ({ label: l.split("\t")[0]!, text: l.split("\t")[1]! }))

describe("loadClassifier", () => {
  let run: { runDir: string; data: string }
  beforeAll(async () => {
    run = await trainTinyRun()
  })

  test("classifies the test split to the run's own test error and loss (EMA weights, prefix + window)", async () => {
    const summary = JSON.parse(readFileSync(join(run.runDir, "summary.json"), "utf8"))
    const classifier = await openClassifier(run.runDir)
    try {
      expect(classifier.classes).toEqual(["neg", "pos"])
      expect(classifier.step).toBe(40)
      const docs = testDocs(run.data)
      const predictions = classifier.classify(docs.map((d) => d.text))
      const scores = score(classifier.classes, docs.map((d) => classifier.classes.indexOf(d.label)), predictions)
      expect(scores.examples).toBe(summary.testExamples)
      expect(scores.error).toBeCloseTo(summary.testError, 12)
      expect(scores.loss).toBeCloseTo(summary.testLoss, 4)
      for (const p of predictions) {
        expect(p.probabilities[0]! + p.probabilities[1]!).toBeCloseTo(1, 6)
        expect(p.label).toBe(classifier.classes[p.probabilities[1]! > p.probabilities[0]! ? 1 : 0]!)
      }
      // classify sorts by length internally: results must come back in input order (batches differ, so the float
      // rounding may too, slightly).
      const reversed = classifier.classify(docs.map((d) => d.text).reverse())
      expect(maxAbsDiff(reversed.flatMap((p) => p.probabilities), [...predictions].reverse().flatMap((p) => p.probabilities))).toBeLessThan(1e-6)
    } finally {
      await classifier.close()
    }
  })

  test("a text with no known word is still classified (from EOS alone), with words 0", async () => {
    const classifier = await openClassifier(run.runDir)
    const [p] = classifier.classify(["zzz qqq !!!"])
    expect(p!.words).toBe(0)
    expect(p!.probabilities).toHaveLength(2)
    await classifier.close()
  })

  test("classify keeps tf.memory().numTensors flat, close releases every tensor, and later calls throw", async () => {
    const before = tf.memory().numTensors
    const classifier = await openClassifier(run.runDir)
    const loaded = tf.memory().numTensors
    expect(loaded).toBeGreaterThan(before)
    const texts = testDocs(run.data).map((d) => d.text)
    for (let k = 0; k < 3; k++) {
      classifier.classify(texts)
      expect(tf.memory().numTensors).toBe(loaded)
    }
    await classifier.close()
    expect(tf.memory().numTensors).toBe(before)
    expect(() => classifier.classify(["great film"])).toThrow("closed")
  })

  test("the Effect form releases its tensors when the scope closes", async () => {
    const before = tf.memory().numTensors
    const labels = await Effect.runPromise(
      Effect.scoped(
        Effect.gen(function* () {
          const classifier = yield* loadClassifier(run.runDir)
          expect(tf.memory().numTensors).toBeGreaterThan(before)
          return classifier.classify(["a great and moving film", "a dull and tedious mess"]).map((p) => p.label)
        })
      )
    )
    expect(labels).toEqual(["pos", "neg"])
    expect(tf.memory().numTensors).toBe(before)
  })

  test("a selected ActiveBackend is kept as it is, and the model runs on its engine (reference or fused: the same numbers)", async () => {
    const texts = testDocs(run.data).map((d) => d.text)
    const probabilitiesWith = async (backend: ActiveBackend) => {
      const classifier = await openClassifier(run.runDir, { backend })
      try {
        const out = classifier.classify(texts).flatMap((p) => p.probabilities)
        // Not re-selected: "auto" would have switched to wasm.
        expect(tf.getBackend()).toBe("cpu")
        return out
      } finally {
        await classifier.close()
      }
    }
    const reference = await initBackend("cpu", { fusedLstm: "off" })
    expect(reference.engine).toBe(REFERENCE_ENGINE)
    const fromReference = await probabilitiesWith(reference)
    const fromDefault = await probabilitiesWith(await initBackend("cpu"))
    expect(maxAbsDiff(fromReference, fromDefault)).toBeLessThan(1e-5)
  })

  describe("bad run directories get a RunDirError saying what is wrong", () => {
    const expectRunDirError = async (dir: string, needle: string) => {
      const error = await openClassifier(dir).then(
        () => undefined,
        (e: unknown) => e
      )
      expect(error).toBeInstanceOf(RunDirError)
      expect((error as RunDirError).message).toContain(needle)
    }
    const copyRun = (files: ReadonlyArray<string>) => {
      const dir = join(tempDir(), "copy")
      mkdirSync(dir)
      for (const f of files) copyFileSync(join(run.runDir, f), join(dir, f))
      return dir
    }

    test("missing folder, folder without config.json", async () => {
      await expectRunDirError(join(tempDir(), "nope"), "is not a directory")
      await expectRunDirError(tempDir(), "no config.json")
    })

    test("no checkpoint, a corrupt checkpoint, a truncated checkpoint", async () => {
      await expectRunDirError(copyRun(["config.json"]), "no checkpoint.ckpt")
      const corrupt = copyRun(["config.json"])
      writeFileSync(join(corrupt, "checkpoint.ckpt"), "not a checkpoint at all")
      await expectRunDirError(corrupt, "not an advtext checkpoint")
      const truncated = copyRun(["config.json", "checkpoint.ckpt"])
      const bytes = readFileSync(join(truncated, "checkpoint.ckpt"))
      writeFileSync(join(truncated, "checkpoint.ckpt"), bytes.subarray(0, bytes.length - 100))
      await expectRunDirError(truncated, "truncated")
    })

    test("classes that do not match the checkpoint's head", async () => {
      const dir = copyRun(["config.json"])
      const ckpt = readCheckpoint(join(run.runDir, "checkpoint.ckpt"))
      const state = trainStateFromCheckpoint(ckpt)
      writeCheckpoint(join(dir, "checkpoint.ckpt"), state, { ...ckpt.meta, classes: ["a", "b", "c"] })
      disposeTrainState(state)
      tf.dispose([...ckpt.tensors.values()])
      await expectRunDirError(dir, "its 3 classes do not match its head's 1 outputs")
    })

    test("a language-model pretraining run", async () => {
      const lm = copyRun(["config.json", "checkpoint.ckpt"])
      const config = JSON.parse(readFileSync(join(lm, "config.json"), "utf8"))
      writeFileSync(join(lm, "config.json"), JSON.stringify({ ...config, task: "language-model" }))
      await expectRunDirError(lm, "language-model pretraining run")
    })
  })
})
