/**
 * Linear probe of the classifier's features (the LSTM state at the EOS, spec A1.4): how much label information an
 * LSTM carries before any fine-tuning. For a fresh LSTM (the config's seed), the config's `pretrained` run (raw and EMA
 * weights) and any `--run DIR` (its EMA weights: a pretraining or a classifier run with the same vocabulary), it fits
 * a logistic regression on the standardized training-split features and reports its train and test error.
 *   bun bench/probe-features.ts configs/rt-cpu-pretrained.ts [--seed S] [--data-dir DIR] [--run DIR ...]
 */
import * as tf from "@tensorflow/tfjs-core"
import { Effect } from "effect"
import { join, resolve } from "node:path"
import { selectBackend } from "../src/engine/backend.ts"
import { initialParams } from "../src/model/classifier.ts"
import { CHECKPOINT, readCheckpoint } from "../src/model/checkpoint.ts"
import { loadConfigFile } from "../src/pipeline/config.ts"
import { prepareData } from "../src/pipeline/data.ts"
import { pretrainedDir, restorePretrained } from "../src/pipeline/restore.ts"
import { modelShapeOf } from "../src/pipeline/run.ts"
import { rng } from "../src/random.ts"
import { evaluationBatches, type EncodedDoc } from "../src/stages/batch.ts"
import { cleanFeatures, withTable } from "../src/stages/evaluate.ts"
import { batchTensors } from "../src/stages/train.ts"

const args = process.argv.slice(2)
const option = (name: string) => args.flatMap((a, i) => (a === name ? [args[i + 1]] : []))
const configPath = args.find((a, i) => !a.startsWith("--") && !args[i - 1]?.startsWith("--"))
if (configPath === undefined) throw new Error("usage: bun bench/probe-features.ts <classifier config> [--seed S] [--data-dir DIR] [--run DIR ...]")
const config = await loadConfigFile(resolve(configPath), [`seed=${option("--seed")[0] ?? "0"}`])
const { engine } = await Effect.runPromise(selectBackend(config.backend, { blas: config.blas, fusedLstm: config.fusedLstm }))
const data = await Effect.runPromise(prepareData(config, { dataDir: option("--data-dir")[0] ?? "../shared/data", download: false }, () => {}))
const frequencies = tf.tensor1d(data.vocabulary.frequencies())
const fresh = () => initialParams(modelShapeOf(config, data), rng(config.seed, "init"))

/** [docs × features] at each document's EOS (no dropout), and the labels in the same order. */
function featureMatrix(params: Record<string, tf.Tensor>, docs: ReadonlyArray<EncodedDoc>): { x: tf.Tensor2D; y: Float32Array } {
  const batches = evaluationBatches(docs, 256, config.data.window, config.model.bidirectional)
  const rows = withTable(params, frequencies, { engine, normalizeEmbeddings: config.model.normalizeEmbeddings }, (table) =>
    batches.map((batch) => tf.tidy(() => cleanFeatures(engine, params, table, batch, batchTensors(batch).ids)))
  )
  const x = tf.concat(rows) as tf.Tensor2D
  tf.dispose(rows)
  return { x, y: Float32Array.from(batches.flatMap((b) => Array.from(b.labels))) }
}

function probe(name: string, params: Record<string, tf.Tensor>) {
  tf.tidy(() => {
    const train = featureMatrix(params, data.train)
    const test = featureMatrix(params, data.test)
    const { mean, variance } = tf.moments(train.x, 0)
    const sd = tf.add(tf.sqrt(variance), 1e-6)
    const xs = tf.div(tf.sub(train.x, mean), sd) as tf.Tensor2D
    const xt = tf.div(tf.sub(test.x, mean), sd) as tf.Tensor2D
    const y = tf.tensor1d(train.y)
    const w = tf.variable(tf.zeros([xs.shape[1], 1]))
    const b = tf.variable(tf.zeros([1]))
    const optimizer = tf.train.adam(0.05)
    // Full-batch, L2-regularized; 300 Adam steps converge on these sizes.
    for (let i = 0; i < 300; i++) {
      optimizer.minimize(() => {
        const logits = tf.add(tf.reshape(tf.matMul(xs, w), [-1]), b)
        return tf.add(tf.losses.sigmoidCrossEntropy(y, logits), tf.mul(tf.sum(tf.square(w)), 1e-3)) as tf.Scalar
      })
    }
    const error = (x: tf.Tensor2D, labels: Float32Array) => {
      const logits = tf.add(tf.reshape(tf.matMul(x, w), [-1]), b).dataSync()
      let wrong = 0
      for (let i = 0; i < logits.length; i++) if ((logits[i] > 0 ? 1 : 0) !== labels[i]) wrong++
      return ((100 * wrong) / logits.length).toFixed(2)
    }
    const energy = tf.mean(tf.square(train.x)).dataSync()[0]
    // How much of the features' energy differs between documents (1 − ‖mean‖²/E‖f‖²): near 0, every document looks
    // alike to the head, so a ReLU unit is on for all of them or off (dead) for all.
    const varying = tf.mean(variance).dataSync()[0] / energy
    console.log(
      `${name}: feature rms ${Math.sqrt(energy).toFixed(3)}, varying share ${varying.toFixed(3)}, ` +
        `probe train error ${error(xs, train.y)}%, test error ${error(xt, test.y)}%`
    )
    optimizer.dispose()
    tf.dispose([w, b])
  })
}

/** `base` with every parameter the run's checkpoint has under `ema/` replaced. */
function withRunWeights(base: Record<string, tf.Tensor>, runDir: string): Record<string, tf.Tensor> {
  const params = { ...base }
  for (const [key, value] of readCheckpoint(join(runDir, CHECKPOINT)).tensors) {
    if (key.startsWith("ema/") && key.slice(4) in base) params[key.slice(4)] = value
  }
  return params
}

console.log(`${config.name}, seed ${config.seed}: ${data.train.length} train / ${data.test.length} test documents`)
const initial = fresh()
probe("fresh LSTM", initial)
if (config.pretrained !== "") {
  const dir = pretrainedDir(config.pretrained, config.seed)
  const restored = fresh()
  restorePretrained(restored, dir, data.vocabulary.words, config.model.bidirectional)
  probe(`pretrained ${dir} (raw)`, restored)
  probe(`pretrained ${dir} (EMA)`, withRunWeights(restored, dir))
}
for (const dir of option("--run")) probe(`${dir} (EMA)`, withRunWeights(initial, dir))
