/**
 * Export a classifier run for tfjs (the `export` command): a standard `tf.LayersModel` (model.json + weight shards,
 * loadable with `tf.loadLayersModel` in a browser or Node), `vocabulary.json` (words, classes, tokenizer settings) and
 * `tokenizer.js`, a dependency-free ES module that tokenizes and encodes text exactly as training did.
 *
 * The layers model computes what `classify` computes:
 *   ids [B, T] (vocabulary id + 1; 0 is padding, masked) → Embedding (the EMA embedding after Eq. 1 normalization,
 *   baked in; row 0 zeros) → LSTM (the state at each row's last non-padding step) [→ and the reverse LSTM on the
 *   reversed ids, concatenated] → Dense ReLU → Dense softmax = the probability of every class.
 * Our LSTM is TF's BasicLSTMCell with gates [i, j, f, o] and forget bias 0 (src/model/classifier.ts); Keras's cell
 * reads [i, f, j, o] with the same equations, so the kernel and bias columns are reordered and the recurrent
 * activation is set to a true sigmoid (tfjs-layers defaults to hard sigmoid). The binary model's single logit z
 * becomes the two logits [0, z]: softmax([0, z]) = [1 − σ(z), σ(z)], what `classify` reports. A centered head's fixed
 * feature mean m folds into the hidden bias: (x − m)W + b = xW + (b − mW).
 *
 * Long documents: `classify` runs the tokens before the final window (without gradient) only to get the window's
 * initial LSTM state, then the window from that state. Without dropout that is the same recurrence as running the
 * whole document in one pass, which is what the exported model does (the test checks they agree within 1e-4).
 */
import * as tf from "@tensorflow/tfjs-core"
import * as tfl from "@tensorflow/tfjs-layers"
// tfjs-layers calls chained tensor methods (t.flatten(), …) that tfjs-core only registers on request (the
// @tensorflow/tfjs bundle does this; the project imports tfjs-core alone).
import "@tensorflow/tfjs-core/dist/public/chained_ops/register_all_chained_ops"
import { Effect } from "effect"
import { mkdirSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { type BackendName, selectBackend } from "../engine/backend.ts"
import type { ModelEngine } from "../engine/model-engine.ts"
import { type BackendError, RunDirError } from "../errors.ts"
import { FEATURE_MEAN, type Params } from "../model/classifier.ts"
import { separators } from "../stages/tokenize.ts"
import { embeddingTable } from "../stages/train.ts"
import { readRun } from "./classifier.ts"

/** Weight shards of at most this many bytes, as tfjs's converter writes them. */
const SHARD_BYTES = 4 * 1024 * 1024

/** Our LSTM's [i, j, f, o] gate blocks along the last axis reordered to Keras's [i, f, j, o]. */
function kerasGateOrder(t: tf.Tensor): tf.Tensor {
  const [i, j, f, o] = tf.split(t, 4, t.rank - 1)
  return tf.concat([i!, f!, j!, o!], t.rank - 1)
}

interface ExportedFiles {
  readonly files: ReadonlyArray<string>
}

/** The layers model for a run's EMA weights (the caller disposes it); `engine` computes the baked Eq. (1) table. */
export function buildLayersModel(
  params: Params,
  frequencies: tf.Tensor1D,
  options: { readonly engine: ModelEngine; readonly normalizeEmbeddings: boolean; readonly numClasses: number }
): tfl.LayersModel {
  const bidirectional = params["lstmReverse/bias"] !== undefined
  const embeddingLayer = tfl.layers.embedding({ inputDim: params["embedding"]!.shape[0]! + 1, outputDim: params["embedding"]!.shape[1]!, maskZero: true, name: "embedding" })
  const H = params["lstm/recurrentKernel"]!.shape[0]!
  const lstmLayer = (name: string) => tfl.layers.lstm({
      units: H,
      activation: "tanh",
      recurrentActivation: "sigmoid",
      unitForgetBias: false,
      // Overwritten below; zeros skip the default orthogonal initializer's slow QR of an [H, 4H] matrix.
      kernelInitializer: "zeros",
      recurrentInitializer: "zeros",
      name
    })
  const ids = tfl.input({ shape: [null], dtype: "int32", name: "ids" })
  const reversedIds = bidirectional ? tfl.input({ shape: [null], dtype: "int32", name: "reversed_ids" }) : undefined
  const forward = lstmLayer("lstm")
  const reverse = bidirectional ? lstmLayer("lstm_reverse") : undefined
  let features = forward.apply(embeddingLayer.apply(ids)) as tfl.SymbolicTensor
  if (reverse !== undefined) {
    const r = reverse.apply(embeddingLayer.apply(reversedIds!)) as tfl.SymbolicTensor
    features = tfl.layers.concatenate({ name: "features" }).apply([features, r]) as tfl.SymbolicTensor
  }
  const hidden = tfl.layers.dense({ units: params["head/hiddenKernel"]!.shape[1]!, activation: "relu", name: "hidden" })
  const output = tfl.layers.dense({ units: options.numClasses, activation: "softmax", name: "output" })
  const model = tfl.model({
    inputs: reversedIds === undefined ? ids : [ids, reversedIds],
    outputs: output.apply(hidden.apply(features)) as tfl.SymbolicTensor,
    name: "advtext_classifier"
  })
  tf.tidy(() => {
    const table = embeddingTable(options.engine, params, frequencies, options.normalizeEmbeddings)
    embeddingLayer.setWeights([tf.concat([tf.zeros([1, table.shape[1]]), table], 0)])
    const lstmWeights = (prefix: string) =>
      ["inputKernel", "recurrentKernel", "bias"].map((n) => kerasGateOrder(params[`${prefix}/${n}`]!))
    forward.setWeights(lstmWeights("lstm"))
    reverse?.setWeights(lstmWeights("lstmReverse"))
    const W = params["head/hiddenKernel"]! as tf.Tensor2D
    const mean = params[FEATURE_MEAN]
    const hiddenBias = mean === undefined ? params["head/hiddenBias"]! : tf.sub(params["head/hiddenBias"]!, tf.reshape(tf.matMul(tf.reshape(mean, [1, -1]), W), [-1]))
    hidden.setWeights([W, hiddenBias])
    const outW = params["head/outputKernel"]! as tf.Tensor2D
    const outB = params["head/outputBias"]!
    if (options.numClasses === 2 && outW.shape[1] === 1) {
      output.setWeights([tf.concat([tf.zerosLike(outW), outW], 1), tf.concat([tf.zerosLike(outB), outB])])
    } else output.setWeights([outW, outB])
  })
  return model
}

/** tokenizer.js: the run's tokenizer (the regex of src/stages/tokenize.ts) and encoder, dependency-free. */
export function tokenizerModule(settings: { lowercase: boolean; tokenizer: "ascii" | "unicode" }): string {
  const separator = separators[settings.tokenizer]
  return `// Written by \`bun run export\` (advtext): tokenizes and encodes text exactly as the run's training did
// (src/stages/tokenize.ts, src/stages/vocabulary.ts). No dependencies; works in browsers, Node, Bun and Deno.

/** The run's tokenizer settings (config data.lowercase, data.tokenizer). */
export const settings = Object.freeze(${JSON.stringify(settings)})

const SEPARATOR = ${separator.toString()}

/** Strip, split on runs of non-word characters (punctuation acts as whitespace), then lowercase if the run did. */
export function tokenize(text) {
  // Split before lowercasing, as training did: some case mappings turn non-ASCII letters into ASCII ones.
  const tokens = text.trim().split(SEPARATOR).filter((token) => token.length > 0)
  return settings.lowercase ? tokens.map((token) => token.toLowerCase()) : tokens
}

/**
 * An encoder for the parsed vocabulary.json: text → the model's input ids (vocabulary id + 1, since 0 is padding),
 * out-of-vocabulary words dropped and EOS appended.
 */
export function encoder(vocabulary) {
  const index = new Map(vocabulary.words.map((word, id) => [word, id]))
  const eos = vocabulary.words.length - 1
  return (text) => {
    const ids = []
    for (const token of tokenize(text)) {
      const id = index.get(token)
      if (id !== undefined && id !== eos) ids.push(id + 1)
    }
    ids.push(eos + 1)
    return Int32Array.from(ids)
  }
}

/** The reverse LSTM's input (bidirectional models): the words reversed, EOS kept last. */
export function reversed(ids) {
  const out = Int32Array.from(ids)
  out.subarray(0, out.length - 1).reverse()
  return out
}
`
}

/** Writes the run's export into `outDir`; returns the paths written. */
export function writeExport(runDir: string, outDir: string, engine: ModelEngine): Promise<ExportedFiles> {
  const run = readRun(runDir)
  const model = buildLayersModel(run.params, run.frequencies, { engine, normalizeEmbeddings: run.config.model.normalizeEmbeddings, numClasses: run.classes.length })
  const release = () => {
    model.dispose()
    tf.dispose([...Object.values(run.params), run.frequencies])
  }
  const written: Array<string> = []
  const write = (name: string, data: string | Uint8Array) => {
    writeFileSync(join(outDir, name), data)
    written.push(join(outDir, name))
  }
  return model
    .save(
      tf.io.withSaveHandler(async (artifacts) => {
        mkdirSync(outDir, { recursive: true })
        const weights = new Uint8Array(tf.io.CompositeArrayBuffer.join(artifacts.weightData))
        const shards = Math.max(1, Math.ceil(weights.byteLength / SHARD_BYTES))
        const paths = Array.from({ length: shards }, (_, k) => `group1-shard${k + 1}of${shards}.bin`)
        paths.forEach((p, k) => write(p, weights.subarray(k * SHARD_BYTES, (k + 1) * SHARD_BYTES)))
        const modelJson = {
          format: "layers-model",
          generatedBy: `advtext 0.1.0 (tfjs-layers ${tfl.version_layers})`,
          convertedBy: null,
          modelTopology: artifacts.modelTopology,
          weightsManifest: [{ paths, weights: artifacts.weightSpecs }],
          // Not read by tfjs: where the weights came from.
          userDefinedMetadata: { runDir, step: run.step, classes: run.classes }
        }
        write("model.json", JSON.stringify(modelJson))
        write(
          "vocabulary.json",
          JSON.stringify({
            classes: run.classes,
            lowercase: run.config.data.lowercase,
            tokenizer: run.config.data.tokenizer,
            bidirectional: run.config.model.bidirectional,
            window: run.config.data.window,
            step: run.step,
            // Model input id = index here + 1 (0 is padding); EOS is the last word.
            words: run.vocabulary.words
          })
        )
        write("tokenizer.js", tokenizerModule({ lowercase: run.config.data.lowercase, tokenizer: run.config.data.tokenizer }))
        return { modelArtifactsInfo: tf.io.getModelArtifactsInfoForJSON(artifacts) }
      })
    )
    .then(
      () => {
        release()
        return { files: written }
      },
      (e) => {
        release()
        throw e
      }
    )
}

/** The `export` command as an Effect: selects a backend, then writes the export. */
export const exportRun = (runDir: string, outDir: string, backend: BackendName = "auto"): Effect.Effect<ReadonlyArray<string>, RunDirError | BackendError> =>
  Effect.flatMap(selectBackend(backend), (active) =>
    Effect.tryPromise({
      try: () => writeExport(runDir, outDir, active.engine).then((r) => r.files),
      catch: (e) => (e instanceof RunDirError ? e : new RunDirError({ message: `cannot export ${runDir} to ${outDir}: ${(e as Error).message}` }))
    })
  )
