/**
 * Kernel-time breakdown of one LM pretraining step (tf.profile) at the rt-cpu-pretrain sizes by default.
 * bun bench/profile-lm.ts [backend] [V D H B T K]
 */
import * as tf from "@tensorflow/tfjs-core"
import { Effect } from "effect"
import { printKernelTimes } from "./kernel-profile.ts"
import { selectBackend, type BackendName } from "../src/engine/backend.ts"
import { createTrainState, OPTIMIZER_DEFAULTS } from "../src/model/optimizer.ts"
import { rng } from "../src/random.ts"
import { LmSchedule } from "../src/stages/lm-batch.ts"
import { lmTrainStep, zeroCarriedState } from "../src/stages/pretrain.ts"
import { UnigramSampler } from "../src/stages/sampled-softmax.ts"
import { initialParams } from "../src/model/classifier.ts"
import { lmHeadParams } from "../src/stages/pretrain.ts"

const [backendArg = "wasm", V = "15468", D = "128", H = "256", B = "128", T = "18", K = "1024"] = process.argv.slice(2)
const active = await Effect.runPromise(selectBackend(backendArg as BackendName))
console.log(active.description)
const random = rng(1, "bench")
const { ["head/hiddenKernel"]: _a, ["head/hiddenBias"]: _b, ["head/outputKernel"]: _c, ["head/outputBias"]: _d, ...base } = initialParams(
  { vocabSize: +V, embeddingDim: +D, lstmUnits: +H, hiddenUnits: 1, numClasses: 2 },
  random
)
const state = createTrainState({ ...base, ...lmHeadParams(+V, +H, random) })
// Zipf-like counts so the sampler behaves as on text.
const counts = Array.from({ length: +V }, (_, i) => Math.max(1, Math.round(1e6 / (i + 1))))
const docs = Array.from({ length: 4 * +B }, (_, d) => ({ ids: Int32Array.from({ length: Math.max(3, +T + ((d % 9) - 4)) }, () => Math.min(+V - 1, Math.floor(Math.exp(random.uniform() * Math.log(+V))))), label: -1 }))
const schedule = new LmSchedule(docs, { batchSize: +B, window: 400, seed: 1, bidirectional: false })
const freq = tf.tensor1d(counts.map((c) => c / counts.reduce((a, b) => a + b, 0)))
const sampler = new UnigramSampler(counts)
const options = {
  engine: active.engine,
  seed: 1,
  embeddingKeepProb: 0.5,
  normalizeEmbeddings: true,
  candidateSamples: +K,
  bidirectional: false,
  optimizer: { ...OPTIMIZER_DEFAULTS, learningRate: 1e-3, learningRateDecay: 0.9999 }
}
let carried = zeroCarriedState(+B, +H, 1)
const step = () => {
  const r = lmTrainStep(state, schedule.nextBatch(), carried, freq, sampler, options)
  if (r.ok) carried = r.carried
}
step()
const info = await tf.profile(() => void step())
printKernelTimes(info, 16)
const t0 = performance.now()
let tokens = 0
for (let i = 0; i < 5; i++) {
  const batch = schedule.nextBatch()
  tokens += batch.tokens
  const r = lmTrainStep(state, batch, carried, freq, sampler, options)
  if (r.ok) carried = r.carried
}
const ms = (performance.now() - t0) / 5
console.log(`wall per step ${ms.toFixed(1)} ms, ${Math.round((tokens / 5 / ms) * 1000)} tokens/s`)
