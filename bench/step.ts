/**
 * Training-step benchmark, ours vs PyTorch on the same machine, in one invocation:
 *   bun bench/step.ts [--reps N] [--configs small,paper-rt,rt-cpu] [--no-torch] [--blas off] [--fused-lstm off]
 * Step types: supervised (NLL), adversarial (NLL + AT), virtual (NLL on B + VAT on U, 1 power iteration).
 * Both sides run with the same OpenBLAS environment (printed). The last line is one JSON object with every ms/step,
 * every ratio (ours / PyTorch) and `worstRatio`.
 */
import * as tf from "@tensorflow/tfjs-core"
import { Effect } from "effect"
import { resolve } from "node:path"
import { selectBackend, type BackendName } from "../src/engine/backend.ts"
import { initialParams } from "../src/model/classifier.ts"
import { createTrainState, disposeTrainState } from "../src/model/optimizer.ts"
import { rng } from "../src/random.ts"
import { makeBatch } from "../src/stages/batch.ts"
import { type Method, trainStep } from "../src/stages/train.ts"

const CONFIGS = {
  small: { V: 20_000, E: 128, H: 256, B: 32, U: 128, T: 25 },
  "paper-rt": { V: 20_000, E: 512, H: 1024, B: 64, U: 512, T: 25 },
  /** configs/rt-cpu-methods.ts's sizes (vocabulary and a typical padded RT batch length). */
  "rt-cpu": { V: 15_500, E: 128, H: 256, B: 64, U: 64, T: 40 }
} as const
type ConfigName = keyof typeof CONFIGS
const STEPS: ReadonlyArray<[string, Method]> = [
  ["supervised", "baseline"],
  ["adversarial", "adversarial"],
  ["virtual", "virtual"]
]

const args = process.argv.slice(2)
const flag = (name: string) => {
  const i = args.indexOf(name)
  return i >= 0 ? args[i + 1] : undefined
}
const reps = Number(flag("--reps") ?? 5)
const configNames = (flag("--configs") ?? "small,paper-rt").split(",") as Array<ConfigName>
const withTorch = !args.includes("--no-torch")
const backend = (flag("--backend") ?? "auto") as BackendName

const active = await Effect.runPromise(
  selectBackend(backend, { blas: (flag("--blas") as "auto" | "off") ?? "auto", fusedLstm: (flag("--fused-lstm") as "auto" | "off") ?? "auto" })
)
console.log(`ours: ${active.description}`)
console.log(
  `OpenBLAS environment: OPENBLAS_CORETYPE=${process.env.OPENBLAS_CORETYPE ?? "(unset)"} OPENBLAS_L2_SIZE=${process.env.OPENBLAS_L2_SIZE ?? "(unset)"} ` +
    `OPENBLAS_NUM_THREADS=${process.env.OPENBLAS_NUM_THREADS ?? "(unset)"}`
)

let peakRss = 0
const sampleRss = () => (peakRss = Math.max(peakRss, process.memoryUsage().rss))

function ours(name: ConfigName): Record<string, number> {
  const c = CONFIGS[name]
  const random = rng(0, "bench", name)
  const docs = (n: number, labeled: boolean) =>
    Array.from({ length: n }, (_, i) => {
      const ids = Int32Array.from({ length: c.T }, () => random.int(c.V - 1))
      ids[c.T - 1] = c.V - 1
      return { ids, label: labeled ? i % 2 : -1 }
    })
  const batches = { step: 0, labeled: makeBatch(docs(c.B, true), 400), unlabeled: makeBatch(docs(c.U, false), 400) }
  const frequencies = tf.fill([c.V], 1 / c.V) as tf.Tensor1D
  const result: Record<string, number> = {}
  for (const [kind, method] of STEPS) {
    const initial = initialParams({ vocabSize: c.V, embeddingDim: c.E, lstmUnits: c.H, hiddenUnits: 30, numClasses: 2 }, rng(0, "init"))
    const state = createTrainState(initial)
    tf.dispose(Object.values(initial))
    const options = {
      seed: 0,
      embeddingKeepProb: 0.5,
      normalizeEmbeddings: true,
      optimizer: { learningRate: 5e-4, learningRateDecay: 0.9998, maxGradNorm: 1, beta1: 0.9, beta2: 0.999, epsilon: 1e-8, emaDecay: 0.999 },
      method,
      perturbation: { epsilon: 5, xi: 0.1, powerIterations: 1, lambda: 1, vatMicroBatch: 0 }
    }
    trainStep(state, batches, frequencies, options) // warm-up
    const times: Array<number> = []
    for (let r = 0; r < reps; r++) {
      const t0 = performance.now()
      trainStep(state, batches, frequencies, options)
      times.push(performance.now() - t0)
      sampleRss()
    }
    times.sort((a, b) => a - b)
    result[kind] = times[Math.floor(times.length / 2)]
    disposeTrainState(state)
  }
  frequencies.dispose()
  return result
}

function torch(name: ConfigName): { ms: Record<string, number>; peakRssMiB: number } | undefined {
  const c = CONFIGS[name]
  const p = Bun.spawnSync(["/usr/bin/python3", resolve(import.meta.dir, "torch_step.py"), [c.V, c.E, c.H, c.B, c.U, c.T].join(","), String(reps), "2"], {
    stdout: "pipe",
    stderr: "pipe"
  })
  if (p.exitCode !== 0) {
    console.log(`PyTorch side failed (install Debian's python3-torch): ${p.stderr.toString().trim().split("\n").at(-1)}`)
    return undefined
  }
  return JSON.parse(p.stdout.toString().trim().split("\n").at(-1)!)
}

const summary: Record<string, unknown> = { reps, backend: active.description }
let worstRatio = 0
for (const name of configNames) {
  const c = CONFIGS[name]
  console.log(`\n${name}: V ${c.V}, E ${c.E}, H ${c.H}, B ${c.B}, U ${c.U}, T ${c.T}  (median of ${reps})`)
  const mine = ours(name)
  const theirs = withTorch ? torch(name) : undefined
  console.log(`  ${"step".padEnd(12)} ${"ours ms".padStart(10)} ${"torch ms".padStart(10)} ${"ratio".padStart(7)}`)
  for (const [kind] of STEPS) {
    const t = theirs?.ms[kind]
    const ratio = t === undefined ? undefined : mine[kind] / t
    if (ratio !== undefined) worstRatio = Math.max(worstRatio, ratio)
    console.log(`  ${kind.padEnd(12)} ${mine[kind].toFixed(1).padStart(10)} ${t === undefined ? "-".padStart(10) : t.toFixed(1).padStart(10)} ${ratio === undefined ? "-".padStart(7) : ratio.toFixed(2).padStart(7)}`)
    summary[`${name}.${kind}.oursMs`] = Number(mine[kind].toFixed(1))
    if (t !== undefined) summary[`${name}.${kind}.torchMs`] = Number(t.toFixed(1))
    if (ratio !== undefined) summary[`${name}.${kind}.ratio`] = Number(ratio.toFixed(3))
  }
  if (theirs) summary[`${name}.torchPeakRssMiB`] = Math.round(theirs.peakRssMiB)
}
summary.oursPeakRssMiB = Math.round(peakRss / 2 ** 20)
summary.worstRatio = withTorch ? Number(worstRatio.toFixed(3)) : null
console.log(`\npeak RSS: ours ${summary.oursPeakRssMiB} MiB`)
console.log(JSON.stringify(summary))
