/**
 * Where a training step's time goes: GEMM time (BLAS), LSTM gate/other time inside the fused op, and tfjs kernels.
 * bun bench/profile-vat.ts [method] [V E H B U T]
 */
import * as tf from "@tensorflow/tfjs-core"
import { Effect } from "effect"
import { selectBackend } from "../src/engine/backend.ts"
import { type Blas, loadBlas, useBlasMatMul } from "../src/engine/blas.ts"
import { fusedEngine } from "../src/engine/model-engine.ts"
import { initialParams } from "../src/model/classifier.ts"
import { createTrainState, OPTIMIZER_DEFAULTS } from "../src/model/optimizer.ts"
import { rng } from "../src/random.ts"
import { makeBatch } from "../src/stages/batch.ts"
import type { Method } from "../src/method/method.ts"
import { trainStep } from "../src/stages/train.ts"

const [method = "virtual", V = "20000", E = "512", H = "1024", B = "64", U = "512", T = "25"] = process.argv.slice(2)
await Effect.runPromise(selectBackend("auto"))
const blas = loadBlas()!
let gemmMs = 0
let gemmFlops = 0
const timed: Blas = {
  ...blas,
  sgemm: (...args) => {
    const t0 = performance.now()
    blas.sgemm(...args)
    gemmMs += performance.now() - t0
    gemmFlops += 2 * args[2] * args[3] * args[4]
  }
}
useBlasMatMul(timed)
const random = rng(0, "profile")
const docs = (n: number, labeled: boolean) =>
  Array.from({ length: n }, (_, i) => {
    const ids = Int32Array.from({ length: +T }, () => random.int(+V - 1))
    ids[+T - 1] = +V - 1
    return { ids, label: labeled ? i % 2 : -1 }
  })
const batches = { step: 0, labeled: makeBatch(docs(+B, true), 400), unlabeled: makeBatch(docs(+U, false), 400) }
const state = createTrainState(initialParams({ vocabSize: +V, embeddingDim: +E, lstmUnits: +H, hiddenUnits: 30, numClasses: 2 }, rng(0, "init")))
const freq = tf.fill([+V], 1 / +V) as tf.Tensor1D
const options = {
  // The model's fused ops on the timed BLAS too, so their GEMMs are counted.
  engine: fusedEngine(timed),
  seed: 0,
  embeddingKeepProb: 0.5,
  normalizeEmbeddings: true,
  optimizer: { ...OPTIMIZER_DEFAULTS },
  method: method as Method,
  perturbation: { epsilon: 5, xi: 0.1, powerIterations: 1, lambda: 1, vatMicroBatch: 0 }
}
trainStep(state, batches, freq, options)
gemmMs = 0
gemmFlops = 0
const info = await tf.profile(() => void trainStep(state, batches, freq, options))
const kernels = new Map<string, number>()
for (const k of info.kernels) kernels.set(k.name, (kernels.get(k.name) ?? 0) + (k.kernelTimeMs as number))
const gemmInKernels = kernels.get("BatchMatMul") ?? 0
const t0 = performance.now()
gemmMs = 0
gemmFlops = 0
trainStep(state, batches, freq, options)
const wall = performance.now() - t0
console.log(`wall ${wall.toFixed(0)} ms · GEMM ${gemmMs.toFixed(0)} ms (${(gemmFlops / 1e9).toFixed(0)} GFLOP, ${(gemmFlops / gemmMs / 1e6).toFixed(0)} GFLOP/s)`)
console.log("top tfjs kernels (ms):", [...kernels].sort((a, b) => b[1] - a[1]).slice(0, 10).map(([k, v]) => `${k} ${v.toFixed(0)}`).join(", "), `(BatchMatMul includes its GEMMs: ${gemmInKernels.toFixed(0)})`)
