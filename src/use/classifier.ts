/**
 * A trained classifier run, loaded for use: its EMA weights (what every evaluation of the run used), its vocabulary
 * and unigram frequencies (Eq. 1 normalization), its tokenizer settings and classes. `classify` runs documents exactly
 * as the run's test evaluation did: tokenize → encode (OOV dropped, EOS appended) → length-ordered batches → a long
 * document's prefix gives the initial state of its final window (src/stages/batch.ts) → head → probabilities.
 *
 * `loadClassifier` is the Effect form (a scoped resource: its tensors are released when the scope closes);
 * `openClassifier` is the Promise form with an explicit `close()`.
 */
import * as tf from "@tensorflow/tfjs-core"
import { Cause, Effect, Exit, Scope } from "effect"
import { existsSync, readFileSync, statSync } from "node:fs"
import { join } from "node:path"
import { type ActiveBackend, type BackendName, selectBackend } from "../engine/backend.ts"
import type { ModelEngine } from "../engine/model-engine.ts"
import { BackendError, ConfigError, RunDirError } from "../errors.ts"
import { head, outputUnits, type Params } from "../model/classifier.ts"
import { CHECKPOINT, readCheckpoint } from "../model/checkpoint.ts"
import { type Config, resolveConfig } from "../pipeline/config.ts"
import { type EncodedDoc, evaluationOrder, makeBatch } from "../stages/batch.ts"
import { cleanFeatures, withTable } from "../stages/evaluate.ts"
import { tokenize } from "../stages/tokenize.ts"
import { batchTensors } from "../stages/train.ts"
import { Vocabulary } from "../stages/vocabulary.ts"

/** One document's prediction. */
export interface Prediction {
  /** The predicted class (the run's class name). */
  readonly label: string
  /** Its index in `classes`. */
  readonly index: number
  /** Probability of every class, in the order of `classes`. */
  readonly probabilities: ReadonlyArray<number>
  /** In-vocabulary words the model read (0: it saw only EOS, so the prediction is the model's prior). */
  readonly words: number
}

/** What `classify` reports as it goes (documents done of total), for a progress line on long inputs. */
export type ClassifyProgress = (done: number, total: number) => void

export interface Classifier {
  readonly runDir: string
  readonly classes: ReadonlyArray<string>
  readonly config: Config
  readonly vocabulary: Vocabulary
  /** The training step the checkpoint was written at. */
  readonly step: number
  /** Probabilities and predicted class of each text, in input order. */
  classify(texts: ReadonlyArray<string>, onProgress?: ClassifyProgress): Array<Prediction>
  /** The ids the model reads for a text (EOS last): what the exported tokenizer must reproduce. */
  encode(text: string): Int32Array
}

export interface LoadOptions {
  /**
   * Tensor backend to select first (default "auto"), or the `ActiveBackend` a `selectBackend` of the caller's returned:
   * kept as it is, and the model runs on its engine.
   */
  readonly backend?: BackendName | ActiveBackend
  /** Documents per forward pass (default: the run's train.evalBatchSize). */
  readonly batchSize?: number
}

const runDirError = (message: string) => new RunDirError({ message })

/** The run's resolved config, or a RunDirError saying why the folder is not a usable classifier run. */
export function readRunConfig(runDir: string): Config {
  if (!existsSync(runDir) || !statSync(runDir).isDirectory()) {
    throw runDirError(`${runDir} is not a directory. Pass the run directory a training run wrote (it holds config.json and ${CHECKPOINT}).`)
  }
  const path = join(runDir, "config.json")
  if (!existsSync(path)) {
    throw runDirError(`${runDir} is not a run directory: it has no config.json. Pass the folder given to (or printed by) bun run pipeline --run-dir.`)
  }
  try {
    return resolveConfig(JSON.parse(readFileSync(path, "utf8")), [], path)
  } catch (e) {
    const why = e instanceof ConfigError || e instanceof SyntaxError ? e.message : String(e)
    throw runDirError(`${path} is not a valid run config (${why}). Was it written by this version of advtext?`)
  }
}

interface LoadedRun {
  readonly config: Config
  readonly classes: ReadonlyArray<string>
  readonly vocabulary: Vocabulary
  readonly step: number
  /** The EMA weights, under their parameter names. */
  readonly params: Record<string, tf.Tensor>
  readonly frequencies: tf.Tensor1D
}

/** Reads config.json and the checkpoint's EMA weights; every other checkpoint tensor is released at once. */
export function readRun(runDir: string): LoadedRun {
  const config = readRunConfig(runDir)
  if (config.task === "language-model") {
    throw runDirError(
      `${runDir} is a language-model pretraining run: it has no classifier head to predict with. Use a classifier run, e.g. one trained with pretrained: "${runDir}".`
    )
  }
  const path = join(runDir, CHECKPOINT)
  if (!existsSync(path)) {
    throw runDirError(`${runDir} has no ${CHECKPOINT}: the run has not written a checkpoint yet (or it was removed). Let it reach a checkpoint, or resume it with bun run pipeline --resume ${runDir}.`)
  }
  let ckpt: ReturnType<typeof readCheckpoint>
  try {
    ckpt = readCheckpoint(path)
  } catch (e) {
    throw runDirError(`cannot read ${path}: ${(e as Error).message}. The file is damaged; restore it from a copy or retrain.`)
  }
  const release = () => tf.dispose([...ckpt.tensors.values()])
  const words = ckpt.meta.vocabulary as Array<string> | undefined
  const counts = ckpt.meta.counts as Array<number> | undefined
  const classes = ckpt.meta.classes as Array<string> | undefined
  if (ckpt.meta.task === "language-model" || classes === undefined) {
    release()
    throw runDirError(`${path} holds no classifier (no classes in it; a language-model checkpoint?). Use a classifier run.`)
  }
  let vocabulary: Vocabulary
  try {
    if (words === undefined || counts === undefined || words.length !== counts.length) throw new Error("no vocabulary with counts")
    vocabulary = new Vocabulary(words, counts)
  } catch (e) {
    release()
    throw runDirError(`${path} is corrupt: ${(e as Error).message}. Restore it from a copy or retrain.`)
  }
  const params: Record<string, tf.Tensor> = {}
  for (const [key, t] of ckpt.tensors) if (key.startsWith("ema/")) params[key.slice("ema/".length)] = t
  for (const [key, t] of ckpt.tensors) if (!key.startsWith("ema/")) t.dispose()
  const missing = ["embedding", "lstm/bias", "head/hiddenKernel", "head/outputKernel"].filter((n) => params[n] === undefined)
  // The classes are checked against the head they are read through: a sigmoid unit for 2, one logit each otherwise.
  const problem =
    missing.length > 0
      ? `it lacks the EMA weights ${missing.join(", ")}`
      : params["embedding"]!.shape[0] !== vocabulary.size
        ? "its embedding does not match its vocabulary"
        : params["head/outputKernel"]!.shape[1] !== outputUnits(classes.length)
          ? `its ${classes.length} classes do not match its head's ${params["head/outputKernel"]!.shape[1]} outputs`
          : undefined
  if (problem !== undefined) {
    tf.dispose(Object.values(params))
    throw runDirError(`${path} is corrupt: ${problem}. Restore it from a copy or retrain.`)
  }
  return { config, classes, vocabulary, step: ckpt.step, params, frequencies: tf.tensor1d(vocabulary.frequencies()) }
}

/** Class probabilities from logits: σ for the binary model's one logit ([1 − p, p]), softmax otherwise. */
export function probabilities(logits: tf.Tensor2D): tf.Tensor2D {
  return tf.tidy(() => {
    if (logits.shape[1] !== 1) return tf.softmax(logits)
    const p = tf.sigmoid(logits)
    return tf.concat([tf.sub(1, p), p], 1) as tf.Tensor2D
  })
}

/** A classifier over a loaded run; `isClosed` guards use after its tensors were released. */
function makeClassifier(runDir: string, run: LoadedRun, batchSize: number, engine: ModelEngine, isClosed: () => boolean): Classifier {
  const { config, vocabulary, classes, params, frequencies } = run
  const tokenizeOptions = { lowercase: config.data.lowercase, tokenizer: config.data.tokenizer }
  const encode = (text: string) => vocabulary.encodeTokens(tokenize(text, tokenizeOptions))
  const bidirectional = config.model.bidirectional
  return {
    runDir,
    classes,
    config,
    vocabulary,
    step: run.step,
    encode,
    classify(texts, onProgress) {
      if (isClosed()) throw new Error(`the classifier of ${runDir} is closed; load it again`)
      // Unlike training, a text with no known word is still classified (from EOS alone) so every input gets a line.
      const docs: Array<EncodedDoc> = texts.map((text) => ({ ids: encode(text), label: -1 }))
      const order = evaluationOrder(docs)
      const out = new Array<Prediction>(docs.length)
      withTable(params as Params, frequencies, { engine, normalizeEmbeddings: config.model.normalizeEmbeddings }, (table) => {
        for (let start = 0; start < order.length; start += batchSize) {
          const indices = order.slice(start, start + batchSize)
          const batch = makeBatch(indices.map((i) => docs[i]!), config.data.window, bidirectional)
          const probs = tf.tidy(() => {
            const tensors = batchTensors(batch)
            return probabilities(head(params as Params, cleanFeatures(engine, params as Params, table, batch, tensors.ids)).logits)
          })
          const values = probs.dataSync()
          probs.dispose()
          const C = classes.length
          indices.forEach((docIndex, b) => {
            const p = Array.from(values.subarray(b * C, (b + 1) * C))
            // argmax, first on ties: for the binary model p₁ > p₀ exactly when the logit is > 0 (model.predict).
            const index = p.reduce((best, v, k) => (v > p[best]! ? k : best), 0)
            out[docIndex] = { label: classes[index]!, index, probabilities: p, words: docs[docIndex]!.ids.length - 1 }
          })
          onProgress?.(Math.min(start + batchSize, order.length), order.length)
        }
      })
      return out
    }
  }
}

const acquire = (runDir: string, options: LoadOptions) =>
  Effect.gen(function* () {
    const requested = options.backend ?? "auto"
    const backend = typeof requested === "string" ? yield* selectBackend(requested) : requested
    let closed = false
    return yield* Effect.acquireRelease(
      Effect.try({
        try: () => {
          const run = readRun(runDir)
          const batchSize = options.batchSize ?? run.config.train.evalBatchSize
          return { run, classifier: makeClassifier(runDir, run, batchSize, backend.engine, () => closed) }
        },
        catch: (e) => (e instanceof RunDirError ? e : runDirError(`cannot load ${runDir}: ${(e as Error).message}`))
      }),
      ({ run }) =>
        Effect.sync(() => {
          closed = true
          tf.dispose([...Object.values(run.params), run.frequencies])
        })
    )
  })

/** The run's classifier as a scoped resource: its tensors are released when the enclosing scope closes. */
export const loadClassifier = (runDir: string, options: LoadOptions = {}): Effect.Effect<Classifier, RunDirError | BackendError, Scope.Scope> =>
  Effect.map(acquire(runDir, options), ({ classifier }) => classifier)

/** The Promise form: the classifier plus `close()`, which releases its tensors (later `classify` calls throw). */
export async function openClassifier(runDir: string, options: LoadOptions = {}): Promise<Classifier & { close(): Promise<void> }> {
  const scope = Effect.runSync(Scope.make())
  const exit = await Effect.runPromiseExit(Scope.provide(scope)(loadClassifier(runDir, options)))
  if (Exit.isFailure(exit)) {
    await Effect.runPromise(Scope.close(scope, exit))
    // The typed error (RunDirError, BackendError) itself, so callers can tell a bad run dir from a bug.
    throw Cause.squash(exit.cause)
  }
  return { ...exit.value, close: () => Effect.runPromise(Scope.close(scope, Exit.void)) }
}
