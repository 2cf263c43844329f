/**
 * LM pretraining end to end (config `task: "language-model"`, spec A1.5, A2.4, A2.6) and the classifier's restore of
 * its weights (`pretrained: <run dir>`), on the generated tiny dataset: run outputs, stop + resume, exactly which
 * tensors a classifier takes over, "{seed}" templates, and the PretrainedMismatch errors.
 */
import { beforeAll, describe, expect, test } from "bun:test"
import * as tf from "@tensorflow/tfjs-core"
import { Effect, Result } from "effect"
import { cpSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { initialParams, type ModelShape } from "../../src/model/classifier.ts"
import { disposeTrainState } from "../../src/model/optimizer.ts"
import { CHECKPOINT, readCheckpoint, trainStateFromCheckpoint, writeCheckpoint, type LoadedCheckpoint } from "../../src/model/checkpoint.ts"
import type { Config, ConfigInput } from "../../src/pipeline/config.ts"
import { deepMerge } from "../../src/pipeline/config.ts"
import { prepareData } from "../../src/pipeline/data.ts"
import { runPretraining, type PretrainOutcome } from "../../src/pipeline/pretrain.ts"
import { silentProgress, type Progress } from "../../src/pipeline/progress.ts"
import { pretrainedDir, pretrainedNames, restorePretrained } from "../../src/pipeline/restore.ts"
import { runPipeline, type RunOutcome, type StopSignal } from "../../src/pipeline/run.ts"
import { rng } from "../../src/random.ts"
import { maxAbsDiff, useBackend, values } from "../helpers.ts"
import { metricLines, tempDir, tinyConfig, writeTinyDataset } from "./fixtures.ts"

useBackend("cpu")

const data = writeTinyDataset(tempDir())

/** A small LM pretraining config on the tiny dataset (the classifier's tinyConfig, task language-model). */
const lmConfig = (overrides: ConfigInput = {}): Config =>
  tinyConfig(
    data,
    deepMerge(
      // Windows of 4 positions: most documents span several windows, so slots carry state from step to step.
      { task: "language-model", backend: "cpu", data: { window: 4 }, lm: { candidateSamples: 8, validationDocs: 0 }, train: { steps: 12, batchSize: 16, evalEvery: 6, checkpointEvery: 5, learningRate: 0.01 } },
      overrides
    ) as ConfigInput
  )
const classifierConfig = (overrides: ConfigInput = {}): Config => tinyConfig(data, deepMerge({ backend: "cpu", train: { steps: 3 } }, overrides) as ConfigInput)

const pretrain = (config: Config, runDir: string, extra: { resume?: boolean; stop?: StopSignal; progress?: Progress } = {}) =>
  Effect.runPromise(runPretraining(config, { runDir, progress: silentProgress, ...extra }))
const classify = (config: Config, runDir: string, extra: { resume?: boolean; progress?: Progress } = {}) =>
  Effect.runPromise(runPipeline(config, { runDir, progress: silentProgress, ...extra }))


/** A progress that records lines and asks the run to stop once the status line of step `stopAt` appears. */
function recordingProgress(stopAt?: { step: number; stop: StopSignal }): Progress & { readonly lines: Array<string> } {
  const lines: Array<string> = []
  return {
    lines,
    line: (text) => void lines.push(text),
    status: (text) => {
      if (stopAt !== undefined && text.startsWith(`step ${stopAt.step}/`)) stopAt.stop.requested = true
    },
    done: () => {}
  }
}

const readCkpt = (runDir: string) => readCheckpoint(join(runDir, CHECKPOINT))
const disposeCkpt = (c: LoadedCheckpoint) => tf.dispose([...c.tensors.values()])
const tensorValues = (c: LoadedCheckpoint, key: string) => {
  const t = c.tensors.get(key)
  if (t === undefined) throw new Error(`checkpoint has no ${key}`)
  return values(t)
}

/** The classifier shape tinyConfig builds for `vocabSize` words. */
const classifierShape = (vocabSize: number, bidirectional = false): ModelShape => ({ vocabSize, embeddingDim: 16, lstmUnits: 24, hiddenUnits: 8, numClasses: 2, bidirectional })

/** Runs shared by several tests: LM pretraining to 12 steps in <base>/lm-3 (seed 3, so "{seed}" names it). */
const base = tempDir()
const lmDir = join(base, "lm-3")
let straight: Extract<PretrainOutcome, { status: "completed" }>

describe("runPretraining", () => {
  beforeAll(async () => {
    straight = (await pretrain(lmConfig(), lmDir)) as typeof straight
  })

  test("writes config.json, metrics.jsonl (per-step loss, validation perplexity), summary.json and a checkpoint with the LM head and carried state", () => {
    expect(straight.status).toBe("completed")
    const summary = JSON.parse(readFileSync(join(lmDir, "summary.json"), "utf8"))
    expect(summary).toEqual(JSON.parse(JSON.stringify(straight.summary)))
    expect(summary).toMatchObject({ task: "language-model", steps: 12, seed: 3, bidirectional: false, candidateSamples: 8, backend: "cpu" })
    // LM text = labeled train (400 − 10% validation) + unlabeled (200), never validation or test.
    expect(summary.trainDocuments).toBe(360 + 200)
    expect(summary.validationPerplexity).toHaveLength(1)
    const ppl = summary.validationPerplexity[0]
    expect(ppl).toBeGreaterThan(1)
    // EMA weights after 12 steps: still near the uniform guess (a perplexity of about V), never far above it.
    expect(ppl).toBeLessThan(2 * summary.vocabularySize)
    expect(JSON.parse(readFileSync(join(lmDir, "config.json"), "utf8")).task).toBe("language-model")

    const metrics = metricLines(lmDir)
    const steps = metrics.filter((m) => "loss" in m)
    expect(steps.map((m) => m.step)).toEqual(Array.from({ length: 12 }, (_, i) => i + 1))
    for (const m of steps) {
      expect(Number.isFinite(m.loss as number) && (m.loss as number) > 0).toBe(true)
      for (const key of ["gradNorm", "learningRate", "tokens", "epoch"]) expect(m).toHaveProperty(key)
      // A sampled-softmax loss is not a perplexity.
      expect(m).not.toHaveProperty("batchPerplexity")
    }
    expect(steps[0].learningRate).toBe(0.01)
    // Each evaluation logs the full-softmax perplexity of a fixed training sample next to the validation one.
    for (const m of metrics.filter((m) => "validationPerplexity" in m)) expect((m.trainPerplexity as Array<number>)[0]).toBeGreaterThan(1)
    expect(summary.trainPerplexity[0]).toBeGreaterThan(1)
    const validation = metrics.filter((m) => "validationPerplexity" in m)
    expect(validation.some((m) => m.step === 6)).toBe(true)
    expect(validation.at(-1)).toMatchObject({ step: 12, validationPerplexity: summary.validationPerplexity })
    for (const m of validation) expect((m.validationPerplexity as Array<number>)[0]).toBeCloseTo(Math.exp((m.validationLoss as Array<number>)[0]), 6)

    const ckpt = readCkpt(lmDir)
    try {
      expect(ckpt.step).toBe(12)
      expect(ckpt.meta.task).toBe("language-model")
      const words = ckpt.meta.vocabulary as Array<string>
      expect(words).toHaveLength(summary.vocabularySize)
      expect(words.at(-1)).toBe("</s>")
      const V = words.length
      expect(ckpt.tensors.get("params/embedding")!.shape).toEqual([V, 16])
      expect(ckpt.tensors.get("params/lstm/inputKernel")!.shape).toEqual([16, 96])
      expect(ckpt.tensors.get("params/lm/weights")!.shape).toEqual([V, 24])
      expect(ckpt.tensors.get("params/lm/bias")!.shape).toEqual([V])
      expect(ckpt.tensors.get("extra/carried/0/c")!.shape).toEqual([16, 24])
      expect(ckpt.tensors.get("extra/carried/0/h")!.shape).toEqual([16, 24])
      const keys = [...ckpt.tensors.keys()]
      expect(keys.some((k) => k.includes("head/"))).toBe(false)
      expect(keys.some((k) => k.includes("Reverse"))).toBe(false)
    } finally {
      disposeCkpt(ckpt)
    }
  })

  test("a stop after step 7 and a resume reach the uninterrupted run's metrics, summary and checkpoint exactly", async () => {
    const dir = join(tempDir(), "interrupted")
    const stop: StopSignal = { requested: false }
    const first = await pretrain(lmConfig(), dir, { stop, progress: recordingProgress({ step: 7, stop }) })
    expect(first).toEqual({ status: "interrupted", step: 7 })
    expect(existsSync(join(dir, "summary.json"))).toBe(false)
    const mid = readCkpt(dir)
    expect(mid.step).toBe(7)
    disposeCkpt(mid)
    const resumed = (await pretrain(lmConfig(), dir, { resume: true })) as Extract<PretrainOutcome, { status: "completed" }>
    expect(resumed.status).toBe("completed")
    expect(resumed.summary.validationPerplexity).toEqual(straight.summary.validationPerplexity)
    expect(resumed.summary.steps).toBe(12)
    expect(metricLines(dir)).toEqual(metricLines(lmDir))
    const x = readCkpt(lmDir)
    const y = readCkpt(dir)
    try {
      expect([...y.tensors.keys()].sort()).toEqual([...x.tensors.keys()].sort())
      for (const [name, t] of x.tensors) expect(tensorValues(y, name)).toEqual(values(t))
    } finally {
      disposeCkpt(x)
      disposeCkpt(y)
    }
  })

  test("running to 7 steps and resuming with train.steps 12 gives the same weights; the carried state in the checkpoint matters", async () => {
    const dir = join(tempDir(), "extended")
    await pretrain(lmConfig({ train: { steps: 7, evalEvery: 0 } }), dir)
    const at7 = readCkpt(dir)
    const carried = tensorValues(at7, "extra/carried/0/h")
    // Some slot is in the middle of a document at step 7 (else this test could not see a lost state).
    expect(carried.some((x) => x !== 0)).toBe(true)
    // A copy of the run whose checkpoint lost its carried state (zeros): resuming it must end elsewhere.
    const tampered = join(tempDir(), "tampered")
    cpSync(dir, tampered, { recursive: true })
    const zeros = { shape: [16, 24], data: new Float32Array(16 * 24) }
    const state = trainStateFromCheckpoint(at7)
    writeCheckpoint(join(tampered, CHECKPOINT), state, at7.meta, { "carried/0/c": zeros, "carried/0/h": zeros })
    disposeTrainState(state)

    await pretrain(lmConfig({ train: { evalEvery: 0 } }), dir, { resume: true })
    await pretrain(lmConfig({ train: { evalEvery: 0 } }), tampered, { resume: true })
    const x = readCkpt(lmDir)
    const y = readCkpt(dir)
    const z = readCkpt(tampered)
    try {
      expect(y.step).toBe(12)
      for (const [name, t] of x.tensors) expect(tensorValues(y, name)).toEqual(values(t))
      expect(tensorValues(z, "params/lstm/inputKernel")).not.toEqual(tensorValues(x, "params/lstm/inputKernel"))
    } finally {
      disposeCkpt(x)
      disposeCkpt(y)
      disposeCkpt(z)
    }
  })
})

describe("restoring a pretraining run into a classifier", () => {
  beforeAll(async () => {
    straight ??= (await pretrain(lmConfig(), lmDir)) as typeof straight
  })

  test("restorePretrained replaces exactly embedding and lstm/* with the LM's raw (not EMA) weights; the head is the fresh init of the same seed", async () => {
    const prepared = await Effect.runPromise(prepareData(classifierConfig(), {}, () => {}))
    const words = prepared.vocabulary.words
    const lm = readCkpt(lmDir)
    expect(lm.meta.vocabulary).toEqual([...words])
    const shape = classifierShape(words.length)
    const params = initialParams(shape, rng(3, "init"))
    const fresh = initialParams(shape, rng(3, "init"))
    try {
      const count = tf.memory().numTensors
      const names = restorePretrained(params, lmDir, words, false)
      expect(tf.memory().numTensors).toBe(count)
      expect(names).toEqual(["embedding", "lstm/inputKernel", "lstm/recurrentKernel", "lstm/bias"])
      expect(names).toEqual(pretrainedNames(false))
      expect(Object.keys(params).sort()).toEqual(Object.keys(fresh).sort())
      for (const name of names) {
        expect(values(params[name])).toEqual(tensorValues(lm, `params/${name}`))
        expect(maxAbsDiff(values(params[name]), tensorValues(lm, `ema/${name}`))).toBeGreaterThan(1e-4)
        expect(maxAbsDiff(values(params[name]), values(fresh[name]))).toBeGreaterThan(1e-4)
      }
      for (const name of Object.keys(fresh).filter((n) => n.startsWith("head/"))) expect(values(params[name])).toEqual(values(fresh[name]))

      // pretrainedParts "embedding": the embedding only; the LSTM keeps its fresh initialization.
      const embeddingOnly = initialParams(shape, rng(3, "init"))
      expect(restorePretrained(embeddingOnly, lmDir, words, false, "embedding")).toEqual(["embedding"])
      expect(values(embeddingOnly.embedding)).toEqual(tensorValues(lm, "params/embedding"))
      for (const name of Object.keys(fresh).filter((n) => n !== "embedding")) expect(values(embeddingOnly[name])).toEqual(values(fresh[name]))
      tf.dispose(Object.values(embeddingOnly))
    } finally {
      disposeCkpt(lm)
      tf.dispose([...Object.values(params), ...Object.values(fresh)])
    }
  })

  test('a classifier run with pretrained "<dir>/lm-{seed}" restores the LM weights, restarts the step and learning-rate decay, and is not re-restored on --resume', async () => {
    const copy = join(tempDir(), "lm-3")
    cpSync(lmDir, copy, { recursive: true })
    const template = copy.replace(/lm-3$/, "lm-{seed}")
    expect(pretrainedDir(template, 3)).toBe(copy)
    const progress = recordingProgress()
    const runDir = join(tempDir(), "classifier")
    // A tiny learning rate keeps the classifier's weights within ~1e-6 of where they started.
    const config = classifierConfig({ pretrained: template, train: { learningRate: 1e-7 } })
    const outcome = (await classify(config, runDir, { progress })) as Extract<RunOutcome, { status: "completed" }>
    expect(outcome.status).toBe("completed")
    expect(progress.lines.some((l) => l.includes(`restored pretrained embedding, lstm/inputKernel, lstm/recurrentKernel, lstm/bias from ${copy}`))).toBe(true)
    const metrics = metricLines(runDir).filter((m) => "loss" in m)
    expect(metrics[0]).toMatchObject({ step: 1, learningRate: 1e-7 })

    const lm = readCkpt(lmDir)
    const clf = readCkpt(runDir)
    const fresh = initialParams(classifierShape((lm.meta.vocabulary as Array<string>).length), rng(3, "init"))
    try {
      expect(clf.step).toBe(3)
      for (const name of pretrainedNames(false)) {
        expect(maxAbsDiff(tensorValues(clf, `params/${name}`), tensorValues(lm, `params/${name}`))).toBeLessThan(1e-5)
        expect(maxAbsDiff(tensorValues(clf, `params/${name}`), values(fresh[name]))).toBeGreaterThan(1e-4)
      }
      for (const name of Object.keys(fresh).filter((n) => n.startsWith("head/"))) {
        expect(maxAbsDiff(tensorValues(clf, `params/${name}`), values(fresh[name]))).toBeLessThan(1e-5)
      }
      expect([...clf.tensors.keys()].some((k) => k.includes("/lm/"))).toBe(false)
    } finally {
      disposeCkpt(lm)
      disposeCkpt(clf)
      tf.dispose(Object.values(fresh))
    }

    // --resume never restores again: it works after the pretraining run dir is gone.
    rmSync(copy, { recursive: true })
    const resumed = await classify(classifierConfig({ pretrained: template, train: { steps: 5, learningRate: 1e-7 } }), runDir, { resume: true })
    expect(resumed.status).toBe("completed")
  })

  test("pretrainedDir replaces every {seed} and leaves other paths alone", () => {
    expect(pretrainedDir("runs/lm-{seed}/x{seed}", 7)).toBe("runs/lm-7/x7")
    expect(pretrainedDir("runs/lm", 7)).toBe("runs/lm")
    expect(pretrainedDir("{seed}", 0)).toBe("0")
  })

  describe("clear PretrainedMismatch errors (one paragraph, no stack, no run started, no tensor leaked)", () => {
    const expectMismatch = async (overrides: ConfigInput, ...fragments: Array<string>) => {
      const runDir = join(tempDir(), "classifier")
      const before = tf.memory().numTensors
      const result = await Effect.runPromise(Effect.result(runPipeline(classifierConfig(overrides), { runDir, progress: silentProgress })))
      expect(Result.isFailure(result)).toBe(true)
      if (!Result.isFailure(result)) return
      const error = result.failure
      expect(error._tag).toBe("PretrainedMismatch")
      expect(error.message).toStartWith("cannot restore pretrained weights from ")
      expect(error.message).not.toContain("\n")
      expect(error.message).not.toMatch(/\bat .*\.ts:\d+/)
      for (const f of fragments) expect(error.message).toContain(f)
      expect(existsSync(join(runDir, CHECKPOINT))).toBe(false)
      expect(tf.memory().numTensors).toBe(before)
    }

    test("a missing run dir, an empty one, a {seed} with no run for this seed, and a file that is not a checkpoint", async () => {
      const missing = join(tempDir(), "nope")
      await expectMismatch({ pretrained: missing }, missing, `no ${CHECKPOINT}`)
      const empty = tempDir()
      await expectMismatch({ pretrained: empty }, empty, `no ${CHECKPOINT}`)
      await expectMismatch({ seed: 4, pretrained: join(base, "lm-{seed}") }, join(base, "lm-4"), `no ${CHECKPOINT}`)
      const junk = tempDir()
      writeFileSync(join(junk, CHECKPOINT), "not a checkpoint at all")
      await expectMismatch({ pretrained: junk }, junk, "not an advtext checkpoint")
    })

    test("another vocabulary", async () => {
      await expectMismatch({ pretrained: lmDir, data: { maxVocab: 10 } }, "vocabulary", "differs", "same dataset")
    })

    test("other shapes: model.lstmUnits and model.embeddingDim", async () => {
      await expectMismatch({ pretrained: lmDir, model: { lstmUnits: 12 } }, "lstm/inputKernel has shape [16,96] there but [16,48] here", "model.lstmUnits")
      await expectMismatch({ pretrained: lmDir, model: { embeddingDim: 8 } }, "embedding has shape", "model.embeddingDim")
    })

    test("a bidirectional classifier from a unidirectional LM (no lstmReverse)", async () => {
      await expectMismatch({ pretrained: lmDir, model: { bidirectional: true } }, "lstmReverse/inputKernel", "model.bidirectional: true")
    })
  })
})

describe("bidirectional pretraining", () => {
  test("a bidirectional LM (full softmax) logs both directions, saves lstmReverse/lmReverse and two carried states, and a bidirectional classifier restores both LSTMs", async () => {
    const dir = join(tempDir(), "bi-lm")
    const outcome = (await pretrain(lmConfig({ model: { bidirectional: true }, lm: { candidateSamples: 0 }, train: { steps: 4, evalEvery: 0 } }), dir)) as Extract<
      PretrainOutcome,
      { status: "completed" }
    >
    expect(outcome.summary.bidirectional).toBe(true)
    expect(outcome.summary.validationPerplexity).toHaveLength(2)
    for (const p of outcome.summary.validationPerplexity!) expect(p).toBeGreaterThan(1)
    const steps = metricLines(dir).filter((m) => "loss" in m)
    expect(steps).toHaveLength(4)
    // Full softmax: the batch perplexity is exp(mean loss per direction).
    for (const m of steps) expect(m.batchPerplexity as number).toBeCloseTo(Math.exp((m.loss as number) / 2), 2)

    const lm = readCkpt(dir)
    const words = lm.meta.vocabulary as Array<string>
    const params = initialParams(classifierShape(words.length, true), rng(3, "init"))
    try {
      expect(lm.meta.bidirectional).toBe(true)
      for (const key of ["params/lstmReverse/inputKernel", "params/lmReverse/weights", "params/lmReverse/bias", "extra/carried/1/c", "extra/carried/1/h"]) {
        expect(lm.tensors.has(key)).toBe(true)
      }
      const names = restorePretrained(params, dir, words, true)
      expect(names).toEqual(pretrainedNames(true))
      expect(names).toContain("lstmReverse/recurrentKernel")
      for (const name of names) expect(values(params[name])).toEqual(tensorValues(lm, `params/${name}`))
      expect(params["head/hiddenKernel"].shape).toEqual([48, 8])
    } finally {
      disposeCkpt(lm)
      tf.dispose(Object.values(params))
    }

    // And the bidirectional classifier trains end to end from it.
    const runDir = join(tempDir(), "bi-classifier")
    mkdirSync(runDir, { recursive: true })
    const run = await classify(classifierConfig({ pretrained: dir, model: { bidirectional: true }, train: { steps: 2 } }), runDir)
    expect(run.status).toBe("completed")
  })
})

test("a stop during the LM's periodic evaluation leaves it out of the log; --resume runs it first, reaching the uninterrupted log; a stop in the final evaluation is an interruption", async () => {
  const reference = join(tempDir(), "reference")
  await pretrain(lmConfig(), reference)
  const dir = join(tempDir(), "stopped-in-evaluation")
  const stop: StopSignal = { requested: false }
  // onStep runs before the step's evaluation: the stop arrives as the evaluation of step 6 begins.
  const first = await Effect.runPromise(runPretraining(lmConfig(), { runDir: dir, progress: silentProgress, stop, onStep: (m) => void (m.step === 6 && (stop.requested = true)) }))
  expect(first).toEqual({ status: "interrupted", step: 6 })
  expect(metricLines(dir).some((m) => m.step === 6 && "trainPerplexity" in m)).toBe(false)
  const finalStop: StopSignal = { requested: false }
  const second = await Effect.runPromise(runPretraining(lmConfig(), { runDir: dir, progress: silentProgress, resume: true, stop: finalStop, onStep: (m) => void (m.step === 12 && (finalStop.requested = true)) }))
  expect(second).toEqual({ status: "interrupted", step: 12 })
  expect(existsSync(join(dir, "summary.json"))).toBe(false)
  expect((await pretrain(lmConfig(), dir, { resume: true })).status).toBe("completed")
  expect(metricLines(dir)).toEqual(metricLines(reference))
})
