/**
 * Kernel-time breakdown of one training step (tf.profile), for finding what dominates.
 * bun bench/profile-step.ts [backend] [V E H B T]
 */
import * as tf from "@tensorflow/tfjs-core"
import { Effect } from "effect"
import { printKernelTimes } from "./kernel-profile.ts"
import { selectBackend, type BackendName } from "../src/engine/backend.ts"
import { initialParams } from "../src/model/classifier.ts"
import { createTrainState, OPTIMIZER_DEFAULTS } from "../src/model/optimizer.ts"
import { rng } from "../src/random.ts"
import { makeBatch } from "../src/stages/batch.ts"
import { trainStep } from "../src/stages/train.ts"

const [backendArg = "wasm", V = "8841", E = "128", H = "256", B = "32", T = "50"] = process.argv.slice(2)
const active = await Effect.runPromise(selectBackend(backendArg as BackendName))
console.log(active.description)
const random = rng(1, "bench")
const shape = { vocabSize: +V, embeddingDim: +E, lstmUnits: +H, hiddenUnits: 30, numClasses: 2 }
const state = createTrainState(initialParams(shape, random))
const docs = Array.from({ length: +B }, (_, b) => ({
  ids: Int32Array.from({ length: Math.max(2, +T - (b % 7) * 3) }, () => random.int(+V)),
  label: b % 2
}))
const batch = makeBatch(docs, 400)
const freq = tf.fill([+V], 1 / +V) as tf.Tensor1D
const options = {
  engine: active.engine,
  seed: 1,
  embeddingKeepProb: 0.5,
  normalizeEmbeddings: true,
  optimizer: { ...OPTIMIZER_DEFAULTS }
}
const step = () => trainStep(state, { step: 0, labeled: batch, unlabeled: batch }, freq, options)
step()
const info = await tf.profile(() => void step())
printKernelTimes(info, 14)
const t0 = performance.now()
for (let i = 0; i < 3; i++) step()
console.log(`wall per step ${((performance.now() - t0) / 3).toFixed(1)} ms`)
