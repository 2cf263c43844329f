/**
 * Language-model pretraining steps (spec A1.4, A1.6, A2.4): lmTrainStep on a tiny generated corpus (loss goes down,
 * determinism, no tensor leaks, full and sampled softmax), the carried LSTM state between stateful windows, the
 * train/evaluation consistency, a perplexity bound after training, and the bidirectional LM.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import * as tf from "@tensorflow/tfjs-core"
import { embed, initialParams, lstmSequence, type Params } from "../../src/model/classifier.ts"
import { createTrainState, disposeTrainState, type OptimizerConfig, type TrainState, OPTIMIZER_DEFAULTS } from "../../src/model/optimizer.ts"
import { rng } from "../../src/random.ts"
import type { EncodedDoc } from "../../src/stages/batch.ts"
import { LmSchedule, lmEvaluationBatches, reverseIds, type LmBatch } from "../../src/stages/lm-batch.ts"
import { type CarriedState, evaluateLanguageModel, lmHeadParams, lmSamplerCounts, lmTrainStep, type LmStepOptions, zeroCarriedState } from "../../src/stages/pretrain.ts"
import { fullSoftmaxLoss, UnigramSampler } from "../../src/stages/sampled-softmax.ts"
import { embeddingTable } from "../../src/stages/train.ts"
import { loadBlas } from "../../src/engine/blas.ts"
import { fusedEngine, type ModelEngine, REFERENCE_ENGINE } from "../../src/engine/model-engine.ts"
import { expectClose, initBackend, useBackend, values } from "../helpers.ts"

useBackend("cpu")

const blas = loadBlas()
const engines = [false, ...(blas === undefined ? [] : [true])]
/** The engine the cpu backend runs with the fused LSTM on or off (useEngine checks the selection gives it). */
const engineOf = (fused: boolean): ModelEngine => (fused ? fusedEngine(blas!) : REFERENCE_ENGINE)
async function useEngine(fused: boolean) {
  const { engine } = await initBackend("cpu", { fusedLstm: fused ? "auto" : "off" })
  expect(engine.fused).toBe(engineOf(fused).fused)
}

afterAll(async () => {
  await initBackend("cpu")
})

const V = 20
const EOS = V - 1
const D = 8
const H = 8

/**
 * Documents that cycle a fixed word sequence: doc i starts at a pseudo-random point of the cycle of V − 1 words and
 * has `minLength … maxLength` words, then EOS. The next word is always determined by the current one.
 */
const CYCLE = permutationOf(V - 1, 5)
function permutationOf(n: number, seed: number): Array<number> {
  const random = rng(seed, "perm")
  const a = Array.from({ length: n }, (_, i) => i)
  for (let i = n - 1; i > 0; i--) {
    const j = random.int(i + 1)
    ;[a[i], a[j]] = [a[j], a[i]]
  }
  return a
}
function cycleDocs(n: number, seed: number, minLength = 5, maxLength = 14): Array<EncodedDoc> {
  const random = rng(seed, "cycle-docs")
  return cycleDocsOf(Array.from({ length: n }, () => minLength + random.int(maxLength - minLength + 1)), seed)
}
/** Cyclic documents of the given word counts. */
function cycleDocsOf(lengths: ReadonlyArray<number>, seed: number): Array<EncodedDoc> {
  const random = rng(seed, "cycle-starts")
  return lengths.map((length) => {
    const start = random.int(V - 1)
    return { ids: Int32Array.from([...Array.from({ length }, (_, t) => CYCLE[(start + t) % (V - 1)]), EOS]), label: -1 }
  })
}

/** Unigram counts of a corpus (every id ≥ 1, as the vocabulary guarantees). */
function countsOf(docs: ReadonlyArray<EncodedDoc>): Array<number> {
  const counts = Array.from({ length: V }, () => 1)
  for (const d of docs) for (const id of d.ids) counts[id]++
  return counts
}

/** Fresh LM parameters: the classifier's embedding and LSTM(s) plus LM head(s), as runPretraining builds them. */
function lmParams(seed: number, bidirectional = false): Record<string, tf.Tensor> {
  const classifier = initialParams({ vocabSize: V, embeddingDim: D, lstmUnits: H, hiddenUnits: 1, numClasses: 2, bidirectional }, rng(seed, "init"))
  const params: Record<string, tf.Tensor> = {}
  for (const [name, t] of Object.entries(classifier)) {
    if (name.startsWith("head/")) t.dispose()
    else params[name] = t
  }
  Object.assign(params, lmHeadParams(V, H, rng(seed, "init", "lm"), "lm"))
  if (bidirectional) Object.assign(params, lmHeadParams(V, H, rng(seed, "init", "lmReverse"), "lmReverse"))
  return params
}

function newState(seed: number, bidirectional = false): TrainState {
  const initial = lmParams(seed, bidirectional)
  const state = createTrainState(initial)
  tf.dispose(Object.values(initial))
  return state
}

const optimizer: OptimizerConfig = { ...OPTIMIZER_DEFAULTS, learningRate: 0.02, learningRateDecay: 1, emaDecay: 0.99 }
/** An optimizer whose steps are far below float32 resolution: the weights stay put, so windows can be compared. */
const frozen: OptimizerConfig = { ...optimizer, learningRate: 1e-15 }

const stepOptions = (engine: ModelEngine, overrides: Partial<LmStepOptions> = {}): LmStepOptions => ({
  engine,
  seed: 11,
  embeddingKeepProb: 1,
  normalizeEmbeddings: true,
  optimizer,
  candidateSamples: 0,
  bidirectional: false,
  ...overrides
})

const snapshot = (state: TrainState) => Object.fromEntries(Object.entries(state.params).map(([n, v]) => [n, values(v)]))

/** Run `steps` LM steps over a schedule, carrying state; returns the losses. */
function trainFor(state: TrainState, schedule: LmSchedule, steps: number, frequencies: tf.Tensor1D, sampler: UnigramSampler, options: LmStepOptions, onStep?: () => void) {
  let carried: CarriedState | undefined
  const losses: Array<number> = []
  for (let s = 0; s < steps; s++) {
    const batch = schedule.nextBatch()
    carried ??= zeroCarriedState(batch.size, H, options.bidirectional ? 2 : 1)
    const stepBefore = state.step
    const result = lmTrainStep(state, batch, carried, frequencies, sampler, options)
    if (!result.ok) throw new Error(`step ${s}: non-finite loss ${result.loss}`)
    expect(state.step).toBe(stepBefore + 1)
    expect(result.metrics.step).toBe(state.step)
    expect(result.metrics.tokens).toBe(batch.tokens)
    carried = result.carried
    losses.push(result.metrics.loss)
    onStep?.()
  }
  return losses
}

const mean = (a: ReadonlyArray<number>) => a.reduce((x, y) => x + y, 0) / a.length

const corpus = cycleDocs(60, 1)
const counts = countsOf(corpus)
const sampler = new UnigramSampler(counts)
const frequencyValues = counts.map((c) => c / counts.reduce((a, b) => a + b, 0))

describe("lmTrainStep", () => {
  // The file's backend selection (useBackend above): the fused LSTM whenever a BLAS loads.
  const engine = engineOf(engines.at(-1)!)
  test("the loss falls on a repetitive corpus (full and sampled softmax), and tf.memory().numTensors stays flat", () => {
    const frequencies = tf.tensor1d(frequencyValues)
    try {
      for (const candidateSamples of [0, 6]) {
        const state = newState(3)
        try {
          const schedule = new LmSchedule(corpus, { batchSize: 8, window: 6, seed: 2, bidirectional: false })
          const before = tf.memory().numTensors
          const losses = trainFor(state, schedule, 80, frequencies, sampler, stepOptions(engine, { candidateSamples, embeddingKeepProb: 0.9 }), () => {
            expect(tf.memory().numTensors).toBe(before)
          })
          expect(state.step).toBe(80)
          expect(losses.every((l) => Number.isFinite(l) && l > 0)).toBe(true)
          // Full softmax starts near log V; both fall far below their start.
          if (candidateSamples === 0) expect(Math.abs(losses[0] - Math.log(V))).toBeLessThan(0.5)
          expect(mean(losses.slice(-10))).toBeLessThan(0.5 * mean(losses.slice(0, 10)))
        } finally {
          disposeTrainState(state)
        }
      }
    } finally {
      frequencies.dispose()
    }
  })

  test("same seed, same steps: identical losses and weights from two fresh states; another seed differs (dropout, candidates)", () => {
    const frequencies = tf.tensor1d(frequencyValues)
    const run = (seed: number, bidirectional: boolean) => {
      const state = newState(3, bidirectional)
      try {
        const schedule = new LmSchedule(corpus, { batchSize: 5, window: 4, seed: 2, bidirectional })
        const losses = trainFor(state, schedule, 6, frequencies, sampler, stepOptions(engine, { seed, candidateSamples: 5, embeddingKeepProb: 0.7, bidirectional }))
        return { losses, weights: snapshot(state) }
      } finally {
        disposeTrainState(state)
      }
    }
    try {
      for (const bidirectional of [false, true]) {
        const a = run(21, bidirectional)
        const b = run(21, bidirectional)
        expect(b.losses).toEqual(a.losses)
        expect(b.weights).toEqual(a.weights)
        const c = run(22, bidirectional)
        expect(c.losses).not.toEqual(a.losses)
      }
    } finally {
      frequencies.dispose()
    }
  })

  test("sampled softmax with K < V runs and differs from the full softmax; K ≥ the sampler's support falls back to the full softmax", () => {
    const frequencies = tf.tensor1d(frequencyValues)
    const batch = new LmSchedule(corpus, { batchSize: 6, window: 5, seed: 4, bidirectional: false }).nextBatch()
    const lossWith = (candidateSamples: number) => {
      const state = newState(5)
      try {
        const r = lmTrainStep(state, batch, zeroCarriedState(batch.size, H, 1), frequencies, sampler, stepOptions(engine, { candidateSamples }))
        if (!r.ok) throw new Error("non-finite")
        return r.metrics.loss
      } finally {
        disposeTrainState(state)
      }
    }
    try {
      const full = lossWith(0)
      const sampled = lossWith(4)
      expect(Number.isFinite(sampled) && sampled > 0).toBe(true)
      expect(Math.abs(sampled - full)).toBeGreaterThan(1e-3)
      expect(lossWith(V)).toBe(full)
    } finally {
      frequencies.dispose()
    }
  })
})

/** A hand-made LM batch from per-slot windows (input ids with the next-token targets), zero-padded. */
function handBatch(windows: ReadonlyArray<{ inputs: ReadonlyArray<number>; targets: ReadonlyArray<number> }>, continues: ReadonlyArray<number>): LmBatch {
  const B = windows.length
  const lengths = Int32Array.from(windows, (w) => w.inputs.length)
  const T = Math.max(1, ...lengths)
  const inputs = new Int32Array(B * T)
  const targets = new Int32Array(B * T)
  windows.forEach((w, b) => {
    inputs.set(w.inputs, b * T)
    targets.set(w.targets, b * T)
  })
  return { size: B, steps: T, inputs, targets, lengths, continues: Uint8Array.from(continues), reverse: undefined, tokens: lengths.reduce((a, b) => a + b, 0) }
}

/** Slice [from, to) of a document's LM sequence as a window. */
const windowOf = (doc: EncodedDoc, from: number, to: number) => ({ inputs: Array.from(doc.ids.subarray(from, to)), targets: Array.from(doc.ids.subarray(from + 1, to + 1)) })

/** Final (c, h) and summed full-softmax loss of whole sequences run from a zero state, each in one window. */
function wholeRun(engine: ModelEngine, params: Params, frequencies: tf.Tensor1D, seqs: ReadonlyArray<{ inputs: ReadonlyArray<number>; targets: ReadonlyArray<number> }>, prefix = "lstm", head = "lm") {
  return tf.tidy(() => {
    const batch = handBatch(seqs, seqs.map(() => 0))
    const table = embeddingTable(engine, params, frequencies, true)
    const { outputs, final } = lstmSequence(engine, params, embed(table, tf.tensor2d(batch.inputs, [batch.size, batch.steps], "int32"), undefined), batch.lengths, undefined, prefix)
    const flat = tf.reshape(outputs, [-1, H])
    const index: Array<number> = []
    const targets: Array<number> = []
    for (let b = 0; b < batch.size; b++) {
      for (let t = 0; t < batch.lengths[b]; t++) {
        index.push(b * batch.steps + t)
        targets.push(batch.targets[b * batch.steps + t])
      }
    }
    const hidden = tf.gather(flat, tf.tensor1d(index, "int32")) as tf.Tensor2D
    const loss = tf.sum(fullSoftmaxLoss(hidden, tf.tensor1d(targets, "int32"), params[`${head}/weights`] as tf.Tensor2D, params[`${head}/bias`] as tf.Tensor1D))
    return { c: values(final.c), h: values(final.h), lossSum: loss.dataSync()[0] }
  })
}

for (const fused of engines) describe(`carried state between windows (${fused ? "fused" : "reference"} LSTM)`, () => {
  const engine = engineOf(fused)
  beforeAll(() => useEngine(fused))

  test("a continuing slot starts from its carried state (= one forward pass over the concatenated windows), a new document from zero, a length-0 slot keeps its state", () => {
    const frequencies = tf.tensor1d(frequencyValues)
    const state = newState(7)
    const docs = cycleDocs(5, 9, 9, 12)
    try {
      const before = snapshot(state)
      const options = stepOptions(engine, { optimizer: frozen })
      // Step 1: three slots, all new documents.
      const b1 = handBatch([windowOf(docs[0], 0, 4), windowOf(docs[1], 0, 3), windowOf(docs[2], 0, 5)], [0, 0, 0])
      const r1 = lmTrainStep(state, b1, zeroCarriedState(3, H, 1), frequencies, sampler, options)
      if (!r1.ok) throw new Error("non-finite")
      expect(r1.carried).toHaveLength(1)
      const one = wholeRun(engine, state.params, frequencies, [windowOf(docs[0], 0, 4), windowOf(docs[1], 0, 3), windowOf(docs[2], 0, 5)])
      expectClose(r1.carried[0].c, one.c, 1e-5, 1e-4)
      expectClose(r1.carried[0].h, one.h, 1e-5, 1e-4)
      // The step's loss is the mean full-softmax cross-entropy over the valid positions.
      expect(r1.metrics.loss).toBeCloseTo(one.lossSum / b1.tokens, 4)

      // Step 2: slot 0 continues docs[0]; slot 1 starts docs[3] (new, from zero); slot 2 has nothing this window.
      const b2 = handBatch([windowOf(docs[0], 4, 8), windowOf(docs[3], 0, 6), { inputs: [], targets: [] }], [1, 0, 1])
      const r2 = lmTrainStep(state, b2, r1.carried, frequencies, sampler, options)
      if (!r2.ok) throw new Error("non-finite")
      const two = wholeRun(engine, state.params, frequencies, [windowOf(docs[0], 0, 8), windowOf(docs[3], 0, 6)])
      const slot = (a: Float32Array, b: number) => Array.from(a.subarray(b * H, (b + 1) * H))
      expectClose(slot(r2.carried[0].c, 0), two.c.slice(0, H), 1e-5, 1e-4)
      expectClose(slot(r2.carried[0].h, 0), two.h.slice(0, H), 1e-5, 1e-4)
      expectClose(slot(r2.carried[0].c, 1), two.c.slice(H), 1e-5, 1e-4)
      expectClose(slot(r2.carried[0].h, 1), two.h.slice(H), 1e-5, 1e-4)
      // Slot 2 (length 0, continuing) keeps exactly what it carried.
      expect(slot(r2.carried[0].c, 2)).toEqual(slot(r1.carried[0].c, 2))
      expect(slot(r2.carried[0].h, 2)).toEqual(slot(r1.carried[0].h, 2))
      // The loss of the continuing window is computed from the carried state: window 2 of docs[0] plus docs[3].
      const w2Loss = two.lossSum - wholeRun(engine, state.params, frequencies, [windowOf(docs[0], 0, 4)]).lossSum
      expect(r2.metrics.loss).toBeCloseTo(w2Loss / b2.tokens, 4)

      // Ignoring the carried state would be wrong: a zero start on slot 0 gives another final state.
      const fresh = wholeRun(engine, state.params, frequencies, [windowOf(docs[0], 4, 8)])
      expect(slot(r2.carried[0].h, 0).some((x, k) => Math.abs(x - fresh.h[k]) > 1e-3)).toBe(true)

      // Step 3: slot 2 is a new document even though a state was carried: it starts from zero.
      const b3 = handBatch([windowOf(docs[0], 8, 9), windowOf(docs[3], 6, 8), windowOf(docs[4], 0, 2)], [1, 1, 0])
      const r3 = lmTrainStep(state, b3, r2.carried, frequencies, sampler, options)
      if (!r3.ok) throw new Error("non-finite")
      const three = wholeRun(engine, state.params, frequencies, [windowOf(docs[0], 0, 9), windowOf(docs[3], 0, 8), windowOf(docs[4], 0, 2)])
      expectClose(r3.carried[0].c, three.c, 1e-5, 1e-4)
      expectClose(r3.carried[0].h, three.h, 1e-5, 1e-4)

      // The frozen optimizer really left the weights where they were (the comparisons above rely on it).
      const after = snapshot(state)
      for (const [name, v] of Object.entries(before)) expectClose(after[name], v, 1e-9, 0)
    } finally {
      disposeTrainState(state)
      frequencies.dispose()
    }
  })

  test("training windows and evaluateLanguageModel agree: Σ step loss × tokens over the evaluation windows = evaluation loss × tokens", () => {
    const frequencies = tf.tensor1d(frequencyValues)
    const state = newState(8)
    // Evaluation groups of 3 by length: {1, 3, 4}, {6, 7, 10}, {12} — windows of 4 with ended slots (length 0), no T = 1 window.
    const docs = cycleDocsOf([3, 7, 12, 1, 10, 6, 4], 13)
    try {
      const window = 4
      const windows = [...lmEvaluationBatches(docs, 3, window, false)]
      expect(windows.some((b) => b.lengths.some((n) => n === 0))).toBe(true)
      expect(windows.every((b) => b.steps >= 2)).toBe(true)
      const evaluation = evaluateLanguageModel(state.params, frequencies, lmEvaluationBatches(docs, 3, window, false), { engine, normalizeEmbeddings: true, bidirectional: false })
      const tokens = docs.reduce((a, d) => a + d.ids.length - 1, 0)
      expect(evaluation.tokens).toBe(tokens)
      let sum = 0
      let carried = zeroCarriedState(3, H, 1)
      for (const batch of lmEvaluationBatches(docs, 3, window, false)) {
        if (batch.continues.every((x) => x === 0)) carried = zeroCarriedState(batch.size, H, 1)
        const r = lmTrainStep(state, batch, carried, frequencies, sampler, stepOptions(engine, { optimizer: frozen }))
        if (!r.ok) throw new Error("non-finite")
        carried = r.carried
        sum += r.metrics.loss * batch.tokens
      }
      expect(evaluation.loss[0]).toBeCloseTo(sum / tokens, 4)
      expect(evaluation.perplexity[0]).toBeCloseTo(Math.exp(evaluation.loss[0]), 6)
      // Window size does not change the evaluation (state is carried across windows).
      const oneWindow = evaluateLanguageModel(state.params, frequencies, lmEvaluationBatches(docs, 2, 100, false), { engine, normalizeEmbeddings: true, bidirectional: false })
      expect(oneWindow.loss[0]).toBeCloseTo(evaluation.loss[0], 4)
    } finally {
      disposeTrainState(state)
      frequencies.dispose()
    }
  })

  // tfjs's unstack gradient throws on an axis of size 1; the reference LSTM special-cases one-step windows.
  test("a window of a single position (T = 1) trains and carries state like any other", () => {
    const frequencies = tf.tensor1d(frequencyValues)
    const state = newState(12)
    const docs = cycleDocsOf([3, 2], 4)
    try {
      const options = stepOptions(engine, { optimizer: frozen })
      const b1 = handBatch([windowOf(docs[0], 0, 2), windowOf(docs[1], 0, 1)], [0, 0])
      const r1 = lmTrainStep(state, b1, zeroCarriedState(2, H, 1), frequencies, sampler, options)
      if (!r1.ok) throw new Error("non-finite")
      const b2 = handBatch([windowOf(docs[0], 2, 3), windowOf(docs[1], 1, 2)], [1, 1])
      expect(b2.steps).toBe(1)
      const r2 = lmTrainStep(state, b2, r1.carried, frequencies, sampler, options)
      if (!r2.ok) throw new Error("non-finite")
      const whole = wholeRun(engine, state.params, frequencies, [windowOf(docs[0], 0, 3), windowOf(docs[1], 0, 2)])
      expectClose(r2.carried[0].h, whole.h, 1e-5, 1e-4)
      expectClose(r2.carried[0].c, whole.c, 1e-5, 1e-4)
    } finally {
      disposeTrainState(state)
      frequencies.dispose()
    }
  })
})

describe("perplexity bound", () => {
  const engine = engineOf(engines.at(-1)!)
  beforeAll(() => useEngine(engines.at(-1)!))
  test("a tiny LM trained on a cyclic corpus (V = 20) reaches held-out perplexity < 3 from ≈ V at init", () => {
    const frequencies = tf.tensor1d(frequencyValues)
    const state = newState(4)
    const heldOut = cycleDocs(20, 99)
    const evalOptions = { engine, normalizeEmbeddings: true, bidirectional: false }
    try {
      const before = tf.memory().numTensors
      const init = evaluateLanguageModel(state.params, frequencies, lmEvaluationBatches(heldOut, 8, 5, false), evalOptions)
      expect(tf.memory().numTensors).toBe(before)
      expect(init.perplexity[0]).toBeGreaterThan(V / 2)
      expect(init.perplexity[0]).toBeLessThan(2 * V)
      const schedule = new LmSchedule(corpus, { batchSize: 10, window: 8, seed: 5, bidirectional: false })
      trainFor(state, schedule, 150, frequencies, sampler, stepOptions(engine, { optimizer: { ...optimizer, learningRate: 0.03 } }))
      const trained = evaluateLanguageModel(state.params, frequencies, lmEvaluationBatches(heldOut, 8, 5, false), evalOptions)
      expect(tf.memory().numTensors).toBe(before)
      expect(trained.tokens).toBe(heldOut.reduce((a, d) => a + d.ids.length - 1, 0))
      expect(trained.perplexity[0]).toBeLessThan(3)
    } finally {
      disposeTrainState(state)
      frequencies.dispose()
    }
  })
})

for (const fused of engines) describe(`bidirectional LM (${fused ? "fused" : "reference"} LSTM)`, () => {
  const engine = engineOf(fused)
  beforeAll(() => useEngine(fused))
  /** The reverse direction's parameters under the forward names (so the unidirectional code computes it). */
  const asForward = (params: Params): Params =>
    Object.fromEntries([
      ["embedding", params.embedding],
      ...["inputKernel", "recurrentKernel", "bias"].map((p) => [`lstm/${p}`, params[`lstmReverse/${p}`]]),
      ["lm/weights", params["lmReverse/weights"]],
      ["lm/bias", params["lmReverse/bias"]]
    ])

  test("loss = forward LM loss + reverse LM loss, with per-direction carried states; evaluation reports both directions", () => {
    const frequencies = tf.tensor1d(frequencyValues)
    const bi = newState(6, true)
    const docs = cycleDocs(8, 17, 3, 10)
    try {
      expect(Object.keys(bi.params).sort()).toEqual(
        ["embedding", "lstm/bias", "lstm/inputKernel", "lstm/recurrentKernel", "lstmReverse/bias", "lstmReverse/inputKernel", "lstmReverse/recurrentKernel", "lm/bias", "lm/weights", "lmReverse/bias", "lmReverse/weights"].sort()
      )
      const batch = new LmSchedule(docs, { batchSize: 4, window: 5, seed: 1, bidirectional: true }).nextBatch()
      expect(batch.reverse).toBeDefined()
      const r = lmTrainStep(bi, batch, zeroCarriedState(4, H, 2), frequencies, sampler, stepOptions(engine, { optimizer: frozen, bidirectional: true }))
      if (!r.ok) throw new Error("non-finite")
      expect(r.carried).toHaveLength(2)

      // Each direction computed alone by the unidirectional step on copies of its weights.
      const forwardOnly = (params: Params, b: LmBatch) => {
        const copy = Object.fromEntries(Object.entries(params).map(([n, t]) => [n, t.clone()]))
        const state = createTrainState(copy)
        tf.dispose(Object.values(copy))
        try {
          const out = lmTrainStep(state, b, zeroCarriedState(4, H, 1), frequencies, sampler, stepOptions(engine, { optimizer: frozen }))
          if (!out.ok) throw new Error("non-finite")
          return out
        } finally {
          disposeTrainState(state)
        }
      }
      const fwdParams: Params = Object.fromEntries(Object.entries(bi.params).filter(([n]) => !n.startsWith("lstmReverse/") && !n.startsWith("lmReverse/")))
      const fwd = forwardOnly(fwdParams, { ...batch, reverse: undefined })
      const rev = forwardOnly(asForward(bi.params), { ...batch, inputs: batch.reverse!.inputs, targets: batch.reverse!.targets, reverse: undefined })
      expect(r.metrics.loss).toBeCloseTo(fwd.metrics.loss + rev.metrics.loss, 4)
      expect(rev.metrics.loss).not.toBeCloseTo(fwd.metrics.loss, 3)
      expectClose(r.carried[0].h, fwd.carried[0].h, 1e-5, 1e-4)
      expectClose(r.carried[1].h, rev.carried[0].h, 1e-5, 1e-4)
      expectClose(r.carried[1].c, rev.carried[0].c, 1e-5, 1e-4)

      const evalBi = evaluateLanguageModel(bi.params, frequencies, lmEvaluationBatches(docs, 3, 4, true), { engine, normalizeEmbeddings: true, bidirectional: true })
      expect(evalBi.loss).toHaveLength(2)
      expect(evalBi.perplexity).toHaveLength(2)
      const reversedDocs = docs.map((d) => ({ ids: reverseIds(d.ids), label: -1 }))
      const evalFwd = evaluateLanguageModel(fwdParams, frequencies, lmEvaluationBatches(docs, 3, 4, false), { engine, normalizeEmbeddings: true, bidirectional: false })
      const evalRev = evaluateLanguageModel(asForward(bi.params), frequencies, lmEvaluationBatches(reversedDocs, 3, 4, false), { engine, normalizeEmbeddings: true, bidirectional: false })
      expect(evalBi.loss[0]).toBeCloseTo(evalFwd.loss[0], 4)
      expect(evalBi.loss[1]).toBeCloseTo(evalRev.loss[0], 4)
    } finally {
      disposeTrainState(bi)
      frequencies.dispose()
    }
  })

  test("bidirectional steps update lstmReverse/* and lmReverse/* (and the shared embedding); numTensors flat; the sum of both losses falls", () => {
    const frequencies = tf.tensor1d(frequencyValues)
    const state = newState(10, true)
    try {
      const before = snapshot(state)
      const schedule = new LmSchedule(corpus, { batchSize: 6, window: 6, seed: 3, bidirectional: true })
      const count = tf.memory().numTensors
      const losses = trainFor(state, schedule, 40, frequencies, sampler, stepOptions(engine, { bidirectional: true, candidateSamples: 8, embeddingKeepProb: 0.8 }), () => {
        expect(tf.memory().numTensors).toBe(count)
      })
      const after = snapshot(state)
      for (const name of Object.keys(before)) expect(after[name]).not.toEqual(before[name])
      expect(mean(losses.slice(-5))).toBeLessThan(0.7 * mean(losses.slice(0, 5)))
    } finally {
      disposeTrainState(state)
      frequencies.dispose()
    }
  })
})

describe("LM candidate sampler counts", () => {
  test("EOS (last id) counts once per document; other counts and the input are unchanged", () => {
    const counts = [5, 3, 9, 1]
    expect(lmSamplerCounts(counts, 40)).toEqual([5, 3, 9, 40])
    expect(counts).toEqual([5, 3, 9, 1])
    expect(lmSamplerCounts(counts, 0)).toEqual([5, 3, 9, 1])
  })

  test("with those counts EOS is drawn as a negative about as often as its share of targets says", () => {
    // Documents of 4 words + EOS: EOS is 1/5 of the targets.
    const sampler = new UnigramSampler(lmSamplerCounts([100, 100, 100, 100, 1], 100))
    const random = rng(3, "eos-draws")
    let eos = 0
    for (let i = 0; i < 5000; i++) if (sampler.draw(random) === 4) eos++
    expect(eos / 5000).toBeGreaterThan(0.17)
    expect(eos / 5000).toBeLessThan(0.23)
  })
})
