import { beforeAll, describe, expect, test } from "bun:test"
import * as tf from "@tensorflow/tfjs-core"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import type { EngineOptions } from "../../src/engine/backend.ts"
import { loadBlas } from "../../src/engine/blas.ts"
import { fusedEngine, type ModelEngine, REFERENCE_ENGINE } from "../../src/engine/model-engine.ts"
import { embed, FEATURE_MEAN, features, head, initialParams, lstm, type ModelShape } from "../../src/model/classifier.ts"
import { readCheckpoint, trainStateFromCheckpoint, writeCheckpoint } from "../../src/model/checkpoint.ts"
import { createTrainState, disposeTrainState, type OptimizerConfig, type TrainState, OPTIMIZER_DEFAULTS } from "../../src/model/optimizer.ts"
import { rng } from "../../src/random.ts"
import { evaluationBatches, makeBatch, type EncodedDoc, type StepBatches } from "../../src/stages/batch.ts"
import { evaluate, meanFeature } from "../../src/stages/evaluate.ts"
import { DEFAULT_PERTURBATION, METHODS, usesLabeledPerturbation, usesUnlabeled, type Method } from "../../src/method/method.ts"
import { embeddingTable, trainStep, type StepOptions } from "../../src/stages/train.ts"
import { initBackend, maxAbsDiff, values } from "../helpers.ts"

const V = 12
const EOS_ID = V - 1
const shape: ModelShape = { vocabSize: V, embeddingDim: 4, lstmUnits: 5, hiddenUnits: 3, numClasses: 2 }
const WINDOW = 5

const optimizer: OptimizerConfig = { ...OPTIMIZER_DEFAULTS, learningRate: 0.02, learningRateDecay: 0.999 }
/** Step options but the engine, which each block takes from its backend selection. */
const stepDefaults: Omit<StepOptions, "engine"> = { seed: 7 << 8, embeddingKeepProb: 0.5, normalizeEmbeddings: true, optimizer }

/**
 * Documents labeled by whether word 1 occurs in them. The first half has 1–4 words (fits the window of 5 with EOS),
 * the second half 5–11 words (longer than the window: a prefix).
 */
function makeDocs(n: number, seed: number, label = true): Array<EncodedDoc> {
  const random = rng(seed, "docs")
  return Array.from({ length: n }, (_, i) => {
    const words = Array.from({ length: i < n / 2 ? 1 + (i % 4) : 5 + (i % 7) }, () => 1 + random.int(V - 2))
    return { ids: Int32Array.from([...words, EOS_ID]), label: label ? (words.includes(1) ? 1 : 0) : -1 }
  })
}

const labeled = makeDocs(24, 1)
const unlabeled = makeDocs(10, 2, false)
const frequencyValues = Array.from({ length: V }, (_, i) => (V - i) / ((V * (V + 1)) / 2))

/** Step batches built with makeBatch: rotating labeled batches of 4 (some with a prefix), unlabeled batches of 3. */
function stepBatchesFor(steps: number, startStep = 0): Array<StepBatches> {
  return Array.from({ length: steps }, (_, k) => {
    const step = startStep + k
    const pick = (docs: Array<EncodedDoc>, size: number) => Array.from({ length: size }, (_, j) => docs[(step * size + j) % docs.length])
    return { step, labeled: makeBatch(pick(labeled, 4), WINDOW), unlabeled: makeBatch(pick(unlabeled, 3), WINDOW) }
  })
}

function newState(seed = 3): TrainState {
  const initial = initialParams(shape, rng(seed, "init"))
  const state = createTrainState(initial)
  tf.dispose(Object.values(initial))
  return state
}

const snapshot = (state: TrainState) => Object.fromEntries(Object.entries(state.params).map(([n, v]) => [n, values(v)]))

const blas = loadBlas()
/** `engine`: what selecting `backend` with `options` gives (checked in each block's beforeAll). */
const engines: Array<{ name: string; backend: "cpu" | "wasm"; options: EngineOptions; engine: ModelEngine }> = [
  { name: "cpu, reference LSTM", backend: "cpu", options: { fusedLstm: "off" }, engine: REFERENCE_ENGINE },
  ...(blas === undefined ? [] : [{ name: "cpu, fused LSTM", backend: "cpu" as const, options: {}, engine: fusedEngine(blas) }]),
  { name: "wasm, reference LSTM", backend: "wasm", options: { fusedLstm: "off" }, engine: REFERENCE_ENGINE },
  ...(blas === undefined ? [] : [{ name: "wasm, fused LSTM", backend: "wasm" as const, options: {}, engine: fusedEngine(blas) }])
]

for (const target of engines) {
  describe(`training step and evaluation on ${target.name}`, () => {
    const { engine } = target
    const options: StepOptions = { ...stepDefaults, engine }
    let frequencies: tf.Tensor1D
    beforeAll(async () => {
      const active = await initBackend(target.backend, target.options)
      expect(active.engine.fused).toBe(engine.fused)
      frequencies = tf.tensor1d(frequencyValues)
    })

    // Every method on the default engines; the baseline alone on the reference-LSTM ones (slower, same bookkeeping).
    const methods: ReadonlyArray<Method> = target.options.fusedLstm === "off" ? ["baseline"] : METHODS
    test.each(methods.map((m) => [m]))("tf.memory().numTensors is flat across 20 trainStep calls (prefix batches included) and evaluate(): %s", (method) => {
      const batches = stepBatchesFor(20)
      expect(batches.some((b) => b.labeled.prefix !== undefined)).toBe(true)
      expect(batches.some((b) => b.labeled.prefix === undefined)).toBe(true)
      expect(batches.some((b) => b.unlabeled.prefix !== undefined)).toBe(true)
      const state = newState()
      // Micro-batches of 2 over the unlabeled batch of 3 exercise the sliced KL path.
      const stepOptions: StepOptions = { ...options, method, perturbation: { ...DEFAULT_PERTURBATION, vatMicroBatch: method === "virtual" ? 2 : 0 } }
      try {
        const before = tf.memory().numTensors
        for (const b of batches) {
          const result = trainStep(state, b, frequencies, stepOptions)
          if (!result.ok) throw new Error(`step ${b.step}: non-finite loss ${result.loss}`)
          expect(result.metrics.step).toBe(b.step + 1)
          expect(result.metrics.examples).toBe(4)
          expect(result.metrics.learningRate).toBeCloseTo(optimizer.learningRate * optimizer.learningRateDecay ** b.step, 12)
          expect(Number.isFinite(result.metrics.loss) && result.metrics.loss > 0).toBe(true)
          if (method === "baseline") expect(result.metrics.nll).toBe(result.metrics.loss)
          else expect(result.metrics.loss).toBeGreaterThanOrEqual(result.metrics.nll)
          expect(result.metrics.perturbedLoss !== undefined).toBe(usesLabeledPerturbation(method))
          expect(result.metrics.virtualLoss !== undefined).toBe(usesUnlabeled(method))
          expect(result.metrics.gradNorm).toBeGreaterThan(0)
          expect(result.metrics.deadUnits).toBeGreaterThanOrEqual(0)
          expect(result.metrics.deadUnits).toBeLessThanOrEqual(shape.hiddenUnits)
          expect(tf.memory().numTensors).toBe(before)
        }
        expect(state.step).toBe(20)
        const evaluation = evaluate(state.ema, frequencies, evaluationBatches(labeled, 5, WINDOW), { engine, normalizeEmbeddings: true })
        expect(evaluation.examples).toBe(labeled.length)
        expect(tf.memory().numTensors).toBe(before)
        // Without normalization the raw embedding is the table: evaluate must not dispose it.
        evaluate(state.params, frequencies, evaluationBatches(labeled, 5, WINDOW), { engine, normalizeEmbeddings: false })
        expect(state.params.embedding.isDisposed).toBe(false)
        expect(tf.memory().numTensors).toBe(before)
      } finally {
        disposeTrainState(state)
      }
    })

    test("evaluate scores every document once; windows with prefixes equal reading whole documents", () => {
      const state = newState(4)
      try {
        const windowed = evaluate(state.params, frequencies, evaluationBatches(labeled, 5, WINDOW), { engine, normalizeEmbeddings: true })
        const whole = evaluate(state.params, frequencies, evaluationBatches(labeled, 1, 1000), { engine, normalizeEmbeddings: true })
        expect(windowed.examples).toBe(labeled.length)
        expect(whole.examples).toBe(labeled.length)
        expect(windowed.accuracy).toBe(whole.accuracy)
        expect(windowed.error).toBeCloseTo(1 - windowed.accuracy, 12)
        expect(windowed.loss).toBeCloseTo(whole.loss, 5)
        expect(evaluate(state.params, frequencies, [], { engine, normalizeEmbeddings: true })).toEqual({ examples: 0, accuracy: 0, error: 1, loss: 0 })
      } finally {
        disposeTrainState(state)
      }
    })

    test("centered head: featureMean is the mean feature (windows and prefixes included), the head subtracts it, and training never changes it", () => {
      const initial = initialParams(shape, rng(8, "init"))
      const mean = meanFeature(initial, frequencies, evaluationBatches(labeled, 5, WINDOW), { engine, normalizeEmbeddings: true })
      // One document at a time, whole (no window): the same average.
      const perDoc = evaluationBatches(labeled, 1, 1000).map((b) =>
        tf.tidy(() => {
          const table = embeddingTable(engine, initial, frequencies, true)
          return values(features(engine, initial, embed(table, tf.tensor2d(b.ids, [1, b.steps], "int32"), undefined), b.lengths, undefined, "none"))
        })
      )
      const expected = perDoc[0].map((_, k) => perDoc.reduce((a, f) => a + f[k], 0) / perDoc.length)
      expect(maxAbsDiff(values(mean), expected)).toBeLessThan(1e-5)

      const f = tf.tensor2d([0.3, -0.2, 0.5, 0.1, 0.9, -0.4, 0.2, 0.0, -0.7, 0.6], [2, 5])
      const centered = head({ ...initial, [FEATURE_MEAN]: mean }, f)
      const manual = head(initial, tf.sub(f, mean) as tf.Tensor2D)
      expect(maxAbsDiff(values(centered.logits), values(manual.logits))).toBeLessThan(1e-6)
      expect(maxAbsDiff(values(centered.logits), values(head(initial, f).logits))).toBeGreaterThan(1e-4)

      initial[FEATURE_MEAN] = mean
      const state = createTrainState(initial)
      tf.dispose([f, centered.logits, centered.hidden, manual.logits, manual.hidden, ...Object.values(initial)])
      const before = snapshot(state)
      try {
        for (const b of stepBatchesFor(5)) {
          const r = trainStep(state, b, frequencies, { ...options, method: "adversarial" })
          if (!r.ok) throw new Error("non-finite loss")
        }
        const after = snapshot(state)
        expect(after[FEATURE_MEAN]).toEqual(before[FEATURE_MEAN])
        expect(values(state.ema[FEATURE_MEAN])).toEqual(before[FEATURE_MEAN])
        expect(maxAbsDiff(after["head/hiddenKernel"], before["head/hiddenKernel"])).toBeGreaterThan(1e-4)
      } finally {
        disposeTrainState(state)
      }
    })

    test("training lowers the loss on a repeated batch", () => {
      const state = newState(5)
      const batch = stepBatchesFor(1)[0]
      const fixed = (step: number): StepBatches => ({ ...batch, step })
      const noDropout = { ...options, embeddingKeepProb: 1, optimizer: { ...optimizer, learningRate: 0.05, maxGradNorm: 5 } }
      try {
        const losses: Array<number> = []
        for (let k = 0; k < 40; k++) {
          const r = trainStep(state, fixed(k), frequencies, noDropout)
          if (!r.ok) throw new Error("non-finite loss")
          losses.push(r.metrics.loss)
        }
        expect(losses[39]).toBeLessThan(0.5 * losses[0])
      } finally {
        disposeTrainState(state)
      }
    })

    test("a non-finite loss leaves the weights, slots and step untouched and leaks nothing", () => {
      const state = newState(6)
      try {
        trainStep(state, stepBatchesFor(1)[0], frequencies, options)
        // NaN in the output bias reaches the loss on every backend. (A NaN further down can be hidden by the ReLU on
        // wasm, whose relu maps a negative-signed NaN to 0: the next test covers that.)
        const bias = state.params["head/outputBias"]
        tf.tidy(() => bias.assign(tf.fill(bias.shape, NaN)))
        const before = { params: snapshot(state), m: values(state.adamM["lstm/bias"]), ema: values(state.ema["head/outputBias"]), step: state.step }
        const tensors = tf.memory().numTensors
        const result = trainStep(state, stepBatchesFor(2)[1], frequencies, options)
        expect(result.ok).toBe(false)
        if (!result.ok) {
          expect(Number.isNaN(result.loss)).toBe(true)
          expect(result.step).toBe(before.step)
        }
        expect(state.step).toBe(before.step)
        expect(snapshot(state)).toEqual(before.params)
        expect(values(state.adamM["lstm/bias"])).toEqual(before.m)
        expect(values(state.ema["head/outputBias"])).toEqual(before.ema)
        expect(tf.memory().numTensors).toBe(tensors)
      } finally {
        disposeTrainState(state)
      }
    })

    test("resuming from a checkpoint reproduces an uninterrupted run exactly (dropout and perturbation noise included)", () => {
      const dir = mkdtempSync(join(tmpdir(), "advtext-resume-"))
      const full: StepOptions = { ...options, method: "adversarial+virtual" }
      try {
        const batches = stepBatchesFor(10)
        const straight = newState(9)
        for (const b of batches) expect(trainStep(straight, b, frequencies, full).ok).toBe(true)
        const expected = snapshot(straight)
        const expectedEma = Object.fromEntries(Object.entries(straight.ema).map(([n, v]) => [n, values(v)]))
        disposeTrainState(straight)

        const first = newState(9)
        for (const b of batches.slice(0, 5)) expect(trainStep(first, b, frequencies, full).ok).toBe(true)
        const path = join(dir, "ckpt")
        writeCheckpoint(path, first, {})
        disposeTrainState(first)
        const resumed = trainStateFromCheckpoint(readCheckpoint(path))
        try {
          expect(resumed.step).toBe(5)
          for (const b of batches.slice(5)) expect(trainStep(resumed, b, frequencies, full).ok).toBe(true)
          expect(snapshot(resumed)).toEqual(expected)
          expect(Object.fromEntries(Object.entries(resumed.ema).map(([n, v]) => [n, values(v)]))).toEqual(expectedEma)
        } finally {
          disposeTrainState(resumed)
        }
      } finally {
        rmSync(dir, { recursive: true, force: true })
      }
    })
  })
}

// KNOWN BUG in src/stages/train.ts (trainStep): the non-finite guard looks only at the loss. A finite loss can come with
// non-finite gradients — whenever a ReLU hides a NaN/Inf in the forward pass (on wasm, relu(−NaN) = 0, so a NaN in the
// embedding gives loss log 2 and NaN gradients) — and the step then applies them: every weight becomes NaN while the
// step reports ok: true (with gradNorm NaN). Fix: also require finite gradients (e.g. Number.isFinite(gradNorm) and a
// finite embedding-gradient norm) before applyGradients. Shown deterministically on cpu: a dead ReLU unit made dead
// by an infinite hidden-kernel entry has a finite forward pass, but its backward pass computes 0·∞ = NaN.
describe("trainStep's non-finite guard", () => {
  test("a finite loss with non-finite gradients is not applied", async () => {
    const { engine } = await initBackend("cpu")
    const frequencies = tf.tensor1d(frequencyValues)
    const state = newState(10)
    try {
      const batch = makeBatch([labeled[1]], WINDOW)
      const noDropout = { ...stepDefaults, engine, embeddingKeepProb: 1 }
      // The sign of LSTM feature 0 for this document decides which infinity kills hidden unit 0.
      const feature0 = tf.tidy(() => {
        const table = embeddingTable(engine, state.params, frequencies, true)
        return lstm(engine, state.params, embed(table, tf.tensor2d(batch.ids, [1, batch.steps], "int32"), undefined), batch.lengths, undefined, "none").h.dataSync()[0]
      })
      const kernel = state.params["head/hiddenKernel"]
      const poisoned = values(kernel)
      poisoned[0] = feature0 > 0 ? -Infinity : Infinity
      tf.tidy(() => kernel.assign(tf.tensor2d(poisoned, kernel.shape as [number, number])))
      const result = trainStep(state, { step: 0, labeled: batch, unlabeled: batch }, frequencies, noDropout)
      if (result.ok) {
        expect(Number.isFinite(result.metrics.loss)).toBe(true)
        expect(Number.isFinite(result.metrics.gradNorm)).toBe(true)
      }
      expect(values(state.params["lstm/recurrentKernel"]).every(Number.isFinite)).toBe(true)
      expect(values(state.params.embedding).every(Number.isFinite)).toBe(true)
    } finally {
      disposeTrainState(state)
      frequencies.dispose()
    }
  })
})
