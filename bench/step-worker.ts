/**
 * One side of `bench/step.ts`: our training step of one spec and kind, driven over stdin/stdout so the benchmark can
 * interleave it with PyTorch's. `bun bench/step-worker.ts <spec name> <kind> [--blas off] [--fused-lstm off]`.
 * Prints `ready` after two warm-up steps; then each `step` line runs one step and answers {"ms": …} (wall time of the
 * step alone); `rss` answers {"peakRssMiB": …} (this process's VmHWM); end of input exits.
 */
import * as tf from "@tensorflow/tfjs-core"
import { Effect } from "effect"
import { readFileSync } from "node:fs"
import { selectBackend, type BackendName } from "../src/engine/backend.ts"
import { initialParams } from "../src/model/classifier.ts"
import { createTrainState, type OptimizerConfig, OPTIMIZER_DEFAULTS } from "../src/model/optimizer.ts"
import { rng } from "../src/random.ts"
import { makeBatch } from "../src/stages/batch.ts"
import { LmSchedule } from "../src/stages/lm-batch.ts"
import { lmHeadParams, lmTrainStep, zeroCarriedState, type CarriedState } from "../src/stages/pretrain.ts"
import { UnigramSampler } from "../src/stages/sampled-softmax.ts"
import type { Method } from "../src/method/method.ts"
import { trainStep } from "../src/stages/train.ts"
import { type ClassifierSpec, type LmSpec, SPECS, zipfCounts } from "./step-configs.ts"

const [specName, kind, ...rest] = process.argv.slice(2)
const flag = (name: string) => {
  const i = rest.indexOf(name)
  return i >= 0 ? rest[i + 1] : undefined
}
const spec = SPECS[specName]
if (spec === undefined) throw new Error(`unknown spec ${specName}`)
const { engine } = await Effect.runPromise(
  selectBackend((flag("--backend") ?? "auto") as BackendName, { blas: (flag("--blas") ?? "auto") as "auto" | "off", fusedLstm: (flag("--fused-lstm") ?? "auto") as "auto" | "off" })
)

const optimizer: OptimizerConfig = { ...OPTIMIZER_DEFAULTS }
const METHOD: Record<string, Method> = { supervised: "baseline", adversarial: "adversarial", virtual: "virtual" }

function classifierStep(c: ClassifierSpec): () => void {
  const random = rng(0, "bench", specName)
  const docs = (lengths: ReadonlyArray<number>, labeled: boolean) =>
    lengths.map((n, i) => {
      const ids = Int32Array.from({ length: n }, () => random.int(c.V - 1))
      ids[n - 1] = c.V - 1
      return { ids, label: labeled ? i % 2 : -1 }
    })
  const batches = { step: 0, labeled: makeBatch(docs(c.labeledLengths, true), 400), unlabeled: makeBatch(docs(c.unlabeledLengths, false), 400) }
  const frequencies = tf.fill([c.V], 1 / c.V) as tf.Tensor1D
  const initial = initialParams({ vocabSize: c.V, embeddingDim: c.E, lstmUnits: c.H, hiddenUnits: 30, numClasses: 2 }, rng(0, "init"))
  const state = createTrainState(initial)
  tf.dispose(Object.values(initial))
  const options = {
    engine,
    seed: 0,
    embeddingKeepProb: 0.5,
    normalizeEmbeddings: true,
    optimizer,
    method: METHOD[kind],
    perturbation: { epsilon: 5, xi: 0.1, powerIterations: 1, lambda: 1, vatMicroBatch: 0 }
  }
  if (options.method === undefined) throw new Error(`unknown classifier step kind ${kind}`)
  return () => void trainStep(state, batches, frequencies, options)
}

function lmStep(c: LmSpec): () => void {
  const random = rng(1, "bench", specName)
  const { ["head/hiddenKernel"]: _hk, ["head/hiddenBias"]: _hb, ["head/outputKernel"]: _ok, ["head/outputBias"]: _ob, ...base } = initialParams(
    { vocabSize: c.V, embeddingDim: c.D, lstmUnits: c.H, hiddenUnits: 1, numClasses: 2, bidirectional: c.bidirectional },
    random
  )
  const heads = c.bidirectional ? { ...lmHeadParams(c.V, c.H, random), ...lmHeadParams(c.V, c.H, random, "lmReverse") } : lmHeadParams(c.V, c.H, random)
  const state = createTrainState({ ...base, ...heads })
  tf.dispose([...Object.values(base), ...Object.values(heads)])
  const counts = zipfCounts(c.V)
  const total = counts.reduce((a, b) => a + b, 0)
  // Documents of T + 1 ids fill each slot's window exactly (T inputs, T targets), as the PyTorch twin's [B, T] batch.
  const docs = Array.from({ length: 8 * c.B }, () => ({
    ids: Int32Array.from({ length: c.T + 1 }, () => Math.min(c.V - 1, Math.floor(Math.exp(random.uniform() * Math.log(c.V))))),
    label: -1
  }))
  const schedule = new LmSchedule(docs, { batchSize: c.B, window: 400, seed: 1, bidirectional: c.bidirectional })
  const frequencies = tf.tensor1d(counts.map((n) => n / total))
  const sampler = new UnigramSampler(counts)
  const options = { engine, seed: 1, embeddingKeepProb: 0.5, normalizeEmbeddings: true, candidateSamples: c.K, bidirectional: c.bidirectional, optimizer }
  let carried: CarriedState = zeroCarriedState(c.B, c.H, c.bidirectional ? 2 : 1)
  return () => {
    const result = lmTrainStep(state, schedule.nextBatch(), carried, frequencies, sampler, options)
    if (result.ok) carried = result.carried
  }
}

const step = spec.task === "lm" ? lmStep(spec) : classifierStep(spec)
step()
step()

const peakRssMiB = () => {
  const line = readFileSync("/proc/self/status", "utf8").split("\n").find((l) => l.startsWith("VmHWM:"))
  return line === undefined ? process.memoryUsage().rss / 2 ** 20 : Number(line.split(/\s+/)[1]) / 1024
}

console.log("ready")
for await (const line of console) {
  const command = line.trim()
  if (command === "step") {
    const t0 = performance.now()
    step()
    console.log(JSON.stringify({ ms: performance.now() - t0 }))
  } else if (command === "rss") {
    console.log(JSON.stringify({ peakRssMiB: peakRssMiB() }))
  } else if (command === "quit") {
    break
  }
}
process.exit(0)
