/**
 * The training step: tensors for the zipped labeled/unlabeled batches, the clean forward, the method's loss terms
 * (src/method/method.ts), the loss gradient, clipping, Adam and EMA. Every tensor a step creates is released before it
 * returns.
 *
 *   L = ℓ(s_l) + λ · Σ_{terms of the method} mean over the term's stream of term.loss(s + r)
 *
 * The gradient is assembled explicitly: each term gives ∂/∂(LSTM and head weights) and ∂/∂s of its input window in
 * one forward/backward pass; the clean term's ∂ℓ/∂s is exactly the adversarial direction g (a constant, so no gradient
 * flows through the perturbation's construction); the per-stream ∂/∂s are then pulled back through the embedding
 * lookup and Eq. (1) normalization in one cheap pass. This costs what the reference graph costs (no extra forward).
 */
import * as tf from "@tensorflow/tfjs-core"
import type { ModelEngine } from "../engine/model-engine.ts"
import { tidy } from "../engine/tidy.ts"
import {
  DEFAULT_PERTURBATION,
  gaussian,
  methodDefinition,
  type LossTerm,
  type Method,
  type MethodDefinition,
  type PerturbationOptions,
  type PerturbationSize,
  type Stream,
  type TermInput,
  classificationLoss
} from "../method/method.ts"
import {
  EMBEDDING,
  FEATURE_MEAN,
  embed,
  embeddingDropoutMask,
  features,
  head,
  normalizeEmbeddings,
  prefixStateOf,
  type LstmGradients,
  type LstmState,
  type Params
} from "../model/classifier.ts"
import { clipAndApply, type OptimizerConfig, type TrainState } from "../model/optimizer.ts"
import { rng } from "../random.ts"
import { type Batch, rowsOf, sliceBatch, type StepBatches } from "./batch.ts"

export interface StepOptions {
  /** How the model runs: the selected backend's `ActiveBackend.engine` (or REFERENCE_ENGINE for the tfjs ops). */
  readonly engine: ModelEngine
  readonly seed: number
  readonly embeddingKeepProb: number
  readonly normalizeEmbeddings: boolean
  readonly optimizer: OptimizerConfig
  /** A built-in method's name or a user's term list (default: baseline). */
  readonly method?: Method | MethodDefinition
  readonly perturbation?: PerturbationOptions
}

/** The embedding table the model looks words up in: Eq. (1) normalized, or raw. */
export function embeddingTable(engine: ModelEngine, params: Params, frequencies: tf.Tensor1D, normalize: boolean): tf.Tensor2D {
  const raw = params[EMBEDDING] as tf.Tensor2D
  return normalize ? normalizeEmbeddings(engine, raw, frequencies) : raw
}

/** Tensors for one batch; `dispose()` releases them. */
export interface BatchTensors {
  readonly ids: tf.Tensor2D
  readonly labels: tf.Tensor1D
  dispose(): void
}

export function batchTensors(batch: Batch): BatchTensors {
  const ids = tf.tensor2d(batch.ids, [rowsOf(batch), batch.steps], "int32")
  const labels = tf.tensor1d(batch.labels, "int32")
  return { ids, labels, dispose: () => tf.dispose([ids, labels]) }
}

/**
 * Initial LSTM state from the tokens before the window, run forward without gradient (spec A6, "simpler" segment
 * handling). Undefined when no document of the batch is longer than the window.
 *
 * The prefix runs in chunks of `prefix.window` steps, each starting from the state the previous one ended in, so memory
 * is bounded by the window, not by the longest document. The first chunk runs every row (a prefix within one window is
 * exactly one LSTM pass over the batch, as always); later chunks run only the rows whose prefix goes on (whole
 * direction pairs, which share a length), so one long document costs its own length, not the batch's rows × it.
 */
export function prefixState(engine: ModelEngine, params: Params, table: tf.Tensor2D, batch: Batch, dropout: tf.Tensor3D | undefined): LstmState | undefined {
  const prefix = batch.prefix
  if (prefix === undefined) return undefined
  let state: LstmState | undefined
  for (let start = 0; start < prefix.steps; start += prefix.window) {
    const active = start === 0 ? Array.from(prefix.rows, (_, r) => r) : prefix.rows.flatMap((_, r) => (prefix.lengths[r] > start ? [r] : []))
    const T = Math.min(prefix.window, prefix.steps - start)
    const ids = new Int32Array(active.length * T)
    const lengths = new Int32Array(active.length)
    active.forEach((r, i) => {
      lengths[i] = Math.max(0, Math.min(T, prefix.lengths[r] - start))
      ids.set(prefix.rows[r].subarray(start, start + lengths[i]), i * T)
    })
    const previous = state
    // Returned tensors move to the caller's tidy scope; the previous chunk's state is released at once.
    state = tidy((): LstmState => {
      const chunkIds = tf.tensor2d(ids, [active.length, T], "int32")
      if (previous === undefined) return prefixStateOf(engine, params, embed(table, chunkIds, dropout), lengths)
      const index = tf.tensor1d(Int32Array.from(active), "int32")
      const mask = dropout === undefined ? undefined : tf.gather(dropout, index)
      const next = prefixStateOf(engine, params, embed(table, chunkIds, mask), lengths, { c: tf.gather(previous.c, index), h: tf.gather(previous.h, index) })
      // Rows not in this chunk keep their state.
      const isActive = new Uint8Array(prefix.rows.length)
      for (const r of active) isActive[r] = 1
      const where = tf.tensor2d(isActive, [prefix.rows.length, 1], "bool")
      const merge = (a: tf.Tensor2D, b: tf.Tensor2D) => tf.where(where, tf.scatterND(tf.reshape(index, [-1, 1]), a, b.shape), b) as tf.Tensor2D
      return { c: merge(next.c, previous.c), h: merge(next.h, previous.h) }
    })
    if (previous !== undefined) tf.dispose([previous.c, previous.h])
    // Each chunk leaves ~100 KB of short-lived JS buffers (tensor reads, kernel copies) that JSC collects only lazily:
    // over a 200,000-token prefix that is ~90 MB of garbage per pass. A young-generation collection every few chunks
    // keeps the process's peak bounded by the window (under Bun; a browser has no such call).
    if (start > 0 && (start / prefix.window) % 8 === 0) (globalThis as { Bun?: { gc(full: boolean): void } }).Bun?.gc(false)
  }
  return state
}

export interface StepMetrics {
  readonly step: number
  /** Total loss: nll + λ·(perturbation terms). */
  readonly loss: number
  readonly nll: number
  /** The labeled stream's terms (built-in: ℓ(s + r_adv) or ℓ(s + r_rand)), when the method has any. */
  readonly perturbedLoss?: number
  /** The unlabeled stream's terms (built-in: the KL of VAT or random-unlabeled), when the method has any. */
  readonly virtualLoss?: number
  readonly gradNorm: number
  readonly learningRate: number
  /** Hidden ReLU units that were zero for every example of the batch. */
  readonly deadUnits: number
  readonly examples: number
}

export type StepResult = { readonly ok: true; readonly metrics: StepMetrics } | { readonly ok: false; readonly loss: number; readonly step: number }

/** Names of the parameters that the LSTM/head passes differentiate directly (all but the embedding and the centered head's constant). */
const modelParamNames = (params: Params) => Object.keys(params).filter((n) => n !== EMBEDDING && n !== FEATURE_MEAN)

interface TermGradients {
  readonly value: number
  /** ∂loss/∂(input window) */
  readonly dInput: tf.Tensor3D
  readonly dParams: Record<string, tf.Tensor>
}

/** One forward/backward pass of `loss(window, params)`, w.r.t. the window and the non-embedding parameters. */
function termGradients(params: Params, window: tf.Tensor3D, loss: (e: tf.Tensor3D, p: Params) => tf.Scalar): TermGradients {
  const names = modelParamNames(params)
  const f = (e: tf.Tensor, ...ps: Array<tf.Tensor>) => loss(e as tf.Tensor3D, { ...params, ...Object.fromEntries(names.map((n, i) => [n, ps[i]])) })
  const { value, grads } = tf.valueAndGrads(f)([window, ...names.map((n) => params[n])])
  const result = { value: value.dataSync()[0], dInput: grads[0] as tf.Tensor3D, dParams: Object.fromEntries(names.map((n, i) => [n, grads[i + 1]])) }
  value.dispose()
  return result
}

/** A stream's embedded window for this step (a constant: its gradient is pulled back through the table separately). */
interface EmbeddedStream {
  readonly batch: Batch
  readonly ids: tf.Tensor2D
  readonly dropout: tf.Tensor3D | undefined
  readonly e: tf.Tensor3D
  readonly initial: LstmState | undefined
}

function embedStream(engine: ModelEngine, params: Params, table: tf.Tensor2D, batch: Batch, keepProb: number, random: ReturnType<typeof rng>): EmbeddedStream {
  const D = table.shape[1]
  const ids = tf.tensor2d(batch.ids, [rowsOf(batch), batch.steps], "int32")
  // One mask per row: a bidirectional model's two directions get independent dropout samples.
  const dropout = embeddingDropoutMask(rowsOf(batch), D, keepProb, random)
  return { batch, ids, dropout, e: embed(table, ids, dropout), initial: prefixState(engine, params, table, batch, dropout) }
}

const logitsOf = (engine: ModelEngine, params: Params, e: tf.Tensor3D, s: { batch: Batch; initial: LstmState | undefined }, gradients: LstmGradients = "all") =>
  head(params, features(engine, params, e, s.batch.lengths, s.initial, gradients)).logits

/** What a term sees of the (micro-)batch `s` at the current weights (src/method/method.ts `TermInput`). */
function termInput(
  engine: ModelEngine,
  params: Params,
  s: EmbeddedStream,
  size: PerturbationSize,
  noise: tf.Tensor3D | undefined,
  clean: LabeledClean | undefined
): TermInput {
  return {
    e: s.e,
    lengths: s.batch.lengths,
    labels: clean?.labels,
    noise,
    size,
    logits: (x) => logitsOf(engine, params, x, s, "inputs"),
    cleanLogits: () => logitsOf(engine, params, s.e, s, "none"),
    lossGradient: () => {
      if (clean === undefined) throw new Error("∇_s ℓ needs labels: it exists on the labeled stream only")
      return clean.lossGradient
    }
  }
}

/** The labeled stream's labels and ∂ℓ/∂s of its clean loss (the adversarial direction, already computed). */
interface LabeledClean {
  readonly labels: tf.Tensor1D
  readonly lossGradient: tf.Tensor3D
}

/**
 * One term over its stream: its perturbation, then one forward/backward pass of the mean loss at s + r per
 * (micro-)batch, each weighted by its share of the stream (micro-batches only on the unlabeled stream). Adds
 * λ·∂/∂weights into `grads`; returns the term's value and λ·∂/∂s of the stream's window.
 */
function termOnStream(
  engine: ModelEngine,
  params: Params,
  term: LossTerm,
  stream: EmbeddedStream,
  noise: tf.Tensor3D | undefined,
  clean: LabeledClean | undefined,
  p: PerturbationOptions,
  grads: Record<string, tf.Tensor>
): { readonly value: number; readonly dInput: tf.Tensor3D } {
  const size = stream.batch.size
  const chunk = term.stream === "unlabeled" && p.vatMicroBatch > 0 ? p.vatMicroBatch : size
  const rows = stream.batch.directions
  const dChunks: Array<tf.Tensor3D> = []
  let value = 0
  for (let start = 0; start < size; start += chunk) {
    const end = Math.min(size, start + chunk)
    const part = sliceStream(stream, start, end)
    const partNoise = noise === undefined || part === stream ? noise : tf.slice(noise, [start * rows, 0, 0], [(end - start) * rows, -1, -1])
    const weight = (end - start) / size
    const g = tidy(() => {
      const { perturbation, loss } = term.prepare(termInput(engine, params, part, p, partNoise, clean))
      return termGradients(params, tf.add(part.e, perturbation) as tf.Tensor3D, (e, ps) => {
        const mean = tf.mean(loss(logitsOf(engine, ps, e, part))) as tf.Scalar
        return weight === 1 ? mean : tf.mul(weight, mean)
      })
    })
    accumulate(grads, g.dParams, p.lambda)
    dChunks.push(tf.mul(g.dInput, p.lambda))
    value += g.value
  }
  return { value, dInput: dChunks.length === 1 ? dChunks[0] : (tf.concat(dChunks, 0) as tf.Tensor3D) }
}

/** Sum gradient records into `into` (scaled by `scale`). */
function accumulate(into: Record<string, tf.Tensor>, add: Record<string, tf.Tensor>, scale = 1): void {
  for (const [name, g] of Object.entries(add)) {
    const scaled = scale === 1 ? g : tf.mul(g, scale)
    into[name] = into[name] === undefined ? scaled : tf.add(into[name], scaled)
  }
}

export interface StepGradients {
  /** ∂L/∂θ for every parameter, before clipping. */
  readonly grads: Record<string, tf.Tensor>
  readonly loss: number
  readonly nll: number
  /** Σ of the labeled stream's terms, when the method has any. */
  readonly perturbedLoss: number | undefined
  /** Σ of the unlabeled stream's terms, when the method has any. */
  readonly virtualLoss: number | undefined
  readonly deadUnits: number
}

/**
 * The gradient of the method's total loss at the current weights (tensors owned by the caller's tidy scope).
 * Deterministic given (seed, step): dropout masks and noise come from seeded generators.
 */
export function stepGradients(state: TrainState, batches: StepBatches, frequencies: tf.Tensor1D, options: StepOptions): StepGradients {
  const step = state.step
  const method = methodDefinition(options.method ?? "baseline")
  const p = options.perturbation ?? DEFAULT_PERTURBATION
  const params = state.params as Params
  const { engine } = options
  const table = embeddingTable(engine, params, frequencies, options.normalizeEmbeddings)
  const labeled = embedStream(engine, params, table, batches.labeled, options.embeddingKeepProb, rng(options.seed, "step", step))
  const labels = tf.tensor1d(batches.labeled.labels, "int32")
  const grads: Record<string, tf.Tensor> = {}

  // Clean NLL; its ∂ℓ/∂s is the adversarial direction g.
  let hidden: tf.Tensor2D | undefined
  const clean = termGradients(params, labeled.e, (e, ps) => {
    const out = head(ps, features(engine, ps, e, labeled.batch.lengths, labeled.initial))
    hidden = tf.keep(out.hidden)
    return classificationLoss(out.logits, labels)
  })
  accumulate(grads, clean.dParams)
  let total = clean.value

  // The method's terms, each on its stream; the unlabeled stream is embedded when a term first reads it.
  const dInput: Partial<Record<Stream, tf.Tensor3D>> = { labeled: clean.dInput }
  const streamLoss: Partial<Record<Stream, number>> = {}
  let unlabeled: EmbeddedStream | undefined
  for (const term of method.terms) {
    const stream =
      term.stream === "labeled"
        ? labeled
        : (unlabeled ??= embedStream(engine, params, table, batches.unlabeled, options.embeddingKeepProb, rng(options.seed, "unlabeled-dropout", step)))
    const noise = term.noise === undefined ? undefined : (gaussian(stream.e.shape, rng(options.seed, term.noise, step)) as tf.Tensor3D)
    const withLabels = term.stream === "labeled" ? { labels, lossGradient: clean.dInput } : undefined
    const t = termOnStream(engine, params, term, stream, noise, withLabels, p, grads)
    const d = dInput[term.stream]
    dInput[term.stream] = d === undefined ? t.dInput : (tf.add(d, t.dInput) as tf.Tensor3D)
    streamLoss[term.stream] = (streamLoss[term.stream] ?? 0) + t.value
    total += p.lambda * t.value
  }

  // Pull ∂/∂s of every stream back through the lookup and the Eq. (1) normalization: the embedding gradient.
  const pulled = [{ s: labeled, d: dInput.labeled! }, ...(unlabeled ? [{ s: unlabeled, d: dInput.unlabeled! }] : [])]
  grads[EMBEDDING] = tf.grad((raw: tf.Tensor) => {
    const t = embeddingTable(engine, { ...params, [EMBEDDING]: raw }, frequencies, options.normalizeEmbeddings)
    return tf.addN(pulled.map(({ s, d }) => tf.sum(tf.mul(embed(t, s.ids, s.dropout), d)))) as tf.Scalar
  })(params[EMBEDDING])

  const deadUnits = hidden === undefined ? 0 : tf.sum(tf.cast(tf.equal(tf.max(hidden, 0), 0), "int32")).dataSync()[0]
  hidden?.dispose()
  return { grads, loss: total, nll: clean.value, perturbedLoss: streamLoss.labeled, virtualLoss: streamLoss.unlabeled, deadUnits }
}

/** One optimizer step. A non-finite loss leaves the weights untouched and reports failure. */
export function trainStep(state: TrainState, batches: StepBatches, frequencies: tf.Tensor1D, options: StepOptions): StepResult {
  const step = state.step
  return tidy((): StepResult => {
    const g = stepGradients(state, batches, frequencies, options)
    if (!Number.isFinite(g.loss)) return { ok: false, loss: g.loss, step }
    const update = clipAndApply(state, g.grads, options.optimizer)
    if (!update.ok) return { ok: false, loss: update.value, step }
    const { gradNorm, learningRate } = update
    return {
      ok: true,
      metrics: {
        step: step + 1,
        loss: g.loss,
        nll: g.nll,
        ...(g.perturbedLoss !== undefined ? { perturbedLoss: g.perturbedLoss } : {}),
        ...(g.virtualLoss !== undefined ? { virtualLoss: g.virtualLoss } : {}),
        gradNorm,
        learningRate,
        deadUnits: g.deadUnits,
        examples: batches.labeled.size
      }
    }
  })
}

/** Rows [start, end) of an embedded stream (a micro-batch). */
function sliceStream(s: EmbeddedStream, start: number, end: number): EmbeddedStream {
  if (start === 0 && end === s.batch.size) return s
  // Tensors have one row per direction of each document.
  const [r0, n] = [start * s.batch.directions, (end - start) * s.batch.directions]
  return {
    batch: sliceBatch(s.batch, start, end),
    ids: tf.slice(s.ids, [r0, 0], [n, -1]),
    dropout: s.dropout === undefined ? undefined : tf.slice(s.dropout, [r0, 0, 0], [n, -1, -1]),
    e: tf.slice(s.e, [r0, 0, 0], [n, -1, -1]),
    initial: s.initial === undefined ? undefined : { c: tf.slice(s.initial.c, [r0, 0], [n, -1]), h: tf.slice(s.initial.h, [r0, 0], [n, -1]) }
  }
}
