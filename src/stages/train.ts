/**
 * The training step: tensors for the zipped labeled/unlabeled batches, the clean forward, the method's perturbed
 * passes, the loss gradient, clipping, Adam and EMA. Every tensor a step creates is released before it returns.
 *
 * Total loss (paper Eq. 6 and 8; spec A3.6):  L = ℓ(e_l) + λ · Σ_terms
 *   random             ℓ(e_l + r_rand)                  labeled stream
 *   random-unlabeled   KL(p(e_u) ‖ p(e_u + r_rand))     unlabeled stream (labeled-train + unlabeled, labels ignored)
 *   adversarial        ℓ(e_l + r_adv)                   labeled stream
 *   virtual            KL(p(e_u) ‖ p(e_u + r_vadv))     unlabeled stream
 *   adversarial+virtual  both, one shared ε
 *
 * The gradient is assembled explicitly: each term gives ∂/∂(LSTM and head weights) and ∂/∂e of its input window in
 * one forward/backward pass; the clean term's ∂ℓ/∂e is exactly the adversarial direction g (a constant, so no gradient
 * flows through the perturbation's construction); the per-stream ∂/∂e are then pulled back through the embedding
 * lookup and Eq. (1) normalization in one cheap pass. This costs what the reference graph costs (no extra forward).
 */
import * as tf from "@tensorflow/tfjs-core"
import { tidy } from "../engine/tidy.ts"
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
import { classificationLoss, klDivergence } from "./loss.ts"
import { adversarialPerturbation, gaussian, randomPerturbation, virtualAdversarialPerturbation } from "./perturbation.ts"

export const METHODS = ["baseline", "random", "random-unlabeled", "adversarial", "virtual", "adversarial+virtual"] as const
export type Method = (typeof METHODS)[number]

export interface PerturbationOptions {
  /** ε: the L2 norm of every perturbation, per example over the window (paper: 5.0 with LM pretraining). */
  readonly epsilon: number
  /** ξ: the norm of the VAT power-iteration probe (reference: 0.1). */
  readonly xi: number
  readonly powerIterations: number
  /** λ: weight of the perturbation terms (paper: 1). */
  readonly lambda: number
  /** Unlabeled examples per micro-batch for the KL terms (0: the whole batch at once). */
  readonly vatMicroBatch: number
}

export const DEFAULT_PERTURBATION: PerturbationOptions = { epsilon: 5, xi: 0.1, powerIterations: 1, lambda: 1, vatMicroBatch: 0 }

export interface StepOptions {
  readonly seed: number
  readonly embeddingKeepProb: number
  readonly normalizeEmbeddings: boolean
  readonly optimizer: OptimizerConfig
  readonly method?: Method
  readonly perturbation?: PerturbationOptions
}

export const usesLabeledPerturbation = (m: Method) => m === "random" || m === "adversarial" || m === "adversarial+virtual"
export const usesUnlabeled = (m: Method) => m === "random-unlabeled" || m === "virtual" || m === "adversarial+virtual"

/** The embedding table the model looks words up in: Eq. (1) normalized, or raw. */
export function embeddingTable(params: Params, frequencies: tf.Tensor1D, normalize: boolean): tf.Tensor2D {
  const raw = params[EMBEDDING] as tf.Tensor2D
  return normalize ? normalizeEmbeddings(raw, frequencies) : raw
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
export function prefixState(params: Params, table: tf.Tensor2D, batch: Batch, dropout: tf.Tensor3D | undefined): LstmState | undefined {
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
      if (previous === undefined) return prefixStateOf(params, embed(table, chunkIds, dropout), lengths)
      const index = tf.tensor1d(Int32Array.from(active), "int32")
      const mask = dropout === undefined ? undefined : tf.gather(dropout, index)
      const next = prefixStateOf(params, embed(table, chunkIds, mask), lengths, { c: tf.gather(previous.c, index), h: tf.gather(previous.h, index) })
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
  /** ℓ(e + r_adv) or ℓ(e + r_rand) on the labeled batch, when the method has it. */
  readonly perturbedLoss?: number
  /** KL term on the unlabeled batch (VAT or random-unlabeled), when the method has it. */
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

function embedStream(params: Params, table: tf.Tensor2D, batch: Batch, keepProb: number, random: ReturnType<typeof rng>): EmbeddedStream {
  const D = table.shape[1]
  const ids = tf.tensor2d(batch.ids, [rowsOf(batch), batch.steps], "int32")
  // One mask per row: a bidirectional model's two directions get independent dropout samples.
  const dropout = embeddingDropoutMask(rowsOf(batch), D, keepProb, random)
  return { batch, ids, dropout, e: embed(table, ids, dropout), initial: prefixState(params, table, batch, dropout) }
}

const logitsOf = (params: Params, e: tf.Tensor3D, s: { batch: Batch; initial: LstmState | undefined }, gradients: LstmGradients = "all") =>
  head(params, features(params, e, s.batch.lengths, s.initial, gradients)).logits

/**
 * The KL term on the unlabeled stream for one (micro-)batch: q = p(·|e_u) held constant, r = r_vadv (power iteration)
 * or r_rand, value = mean KL(q ‖ p(·|e_u + r)) scaled by `weight` (micro-batch share). Gradients as `termGradients`.
 */
function klTermGradients(
  params: Params,
  s: EmbeddedStream,
  noise: tf.Tensor3D,
  method: "virtual" | "random-unlabeled",
  p: PerturbationOptions,
  weight: number
): TermGradients {
  return tidy(() => {
    const q = head(params, features(params, s.e, s.batch.lengths, s.initial, "none")).logits
    const r =
      method === "virtual"
        ? virtualAdversarialPerturbation(s.e.shape, s.batch.lengths, { epsilon: p.epsilon, xi: p.xi, iterations: p.powerIterations }, (d) =>
            // Σ over examples (not the mean): each example's direction is then independent of the micro-batch size.
            tf.sum(klDivergence(q, logitsOf(params, tf.add(s.e, d) as tf.Tensor3D, s, "inputs"))) as tf.Scalar, noise)
        : randomPerturbation(noise, s.batch.lengths, p.epsilon)
    return termGradients(params, tf.add(s.e, r) as tf.Tensor3D, (e, ps) => tf.mul(weight, tf.mean(klDivergence(q, logitsOf(ps, e, s)))) as tf.Scalar)
  })
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
  readonly perturbedLoss: number | undefined
  readonly virtualLoss: number | undefined
  readonly deadUnits: number
}

/**
 * The gradient of the method's total loss at the current weights (tensors owned by the caller's tidy scope).
 * Deterministic given (seed, step): dropout masks and noise come from seeded generators.
 */
export function stepGradients(state: TrainState, batches: StepBatches, frequencies: tf.Tensor1D, options: StepOptions): StepGradients {
  const step = state.step
  const method = options.method ?? "baseline"
  const p = options.perturbation ?? DEFAULT_PERTURBATION
  const random = rng(options.seed, "step", step)
  const params = state.params as Params
  const table = embeddingTable(params, frequencies, options.normalizeEmbeddings)
  const labeled = embedStream(params, table, batches.labeled, options.embeddingKeepProb, random)
  const labels = tf.tensor1d(batches.labeled.labels, "int32")
  const grads: Record<string, tf.Tensor> = {}

  // Clean NLL; its ∂ℓ/∂e is the adversarial direction g.
  let hidden: tf.Tensor2D | undefined
  const clean = termGradients(params, labeled.e, (e, ps) => {
    const out = head(ps, features(ps, e, labeled.batch.lengths, labeled.initial))
    hidden = tf.keep(out.hidden)
    return classificationLoss(out.logits, labels)
  })
  accumulate(grads, clean.dParams)
  let dLabeled: tf.Tensor3D = clean.dInput
  let total = clean.value
  let perturbedLoss: number | undefined
  let virtualLoss: number | undefined

  if (usesLabeledPerturbation(method)) {
    const r =
      method === "random"
        ? randomPerturbation(gaussian(labeled.e.shape, rng(options.seed, "random-perturbation", step)) as tf.Tensor3D, labeled.batch.lengths, p.epsilon)
        : adversarialPerturbation(clean.dInput, p.epsilon)
    const term = termGradients(params, tf.add(labeled.e, r) as tf.Tensor3D, (e, ps) =>
      classificationLoss(head(ps, features(ps, e, labeled.batch.lengths, labeled.initial)).logits, labels)
    )
    accumulate(grads, term.dParams, p.lambda)
    dLabeled = tf.add(dLabeled, tf.mul(term.dInput, p.lambda))
    perturbedLoss = term.value
    total += p.lambda * term.value
  }

  let unlabeled: { stream: EmbeddedStream; dInput: tf.Tensor3D } | undefined
  if (usesUnlabeled(method)) {
    const stream = embedStream(params, table, batches.unlabeled, options.embeddingKeepProb, rng(options.seed, "unlabeled-dropout", step))
    const noise = gaussian(stream.e.shape, rng(options.seed, "kl-noise", step)) as tf.Tensor3D
    const U = stream.batch.size
    const chunk = p.vatMicroBatch > 0 ? p.vatMicroBatch : U
    const dChunks: Array<tf.Tensor3D> = []
    let value = 0
    for (let start = 0; start < U; start += chunk) {
      const end = Math.min(U, start + chunk)
      const part = sliceStream(stream, start, end)
      const kind = method === "random-unlabeled" ? "random-unlabeled" : "virtual"
      const rows = stream.batch.directions
      const term = klTermGradients(params, part, tf.slice(noise, [start * rows, 0, 0], [(end - start) * rows, -1, -1]), kind, p, (end - start) / U)
      accumulate(grads, term.dParams, p.lambda)
      dChunks.push(tf.mul(term.dInput, p.lambda))
      value += term.value
    }
    unlabeled = { stream, dInput: dChunks.length === 1 ? dChunks[0] : (tf.concat(dChunks, 0) as tf.Tensor3D) }
    virtualLoss = value
    total += p.lambda * value
  }

  // Pull ∂/∂e of every stream back through the lookup and the Eq. (1) normalization: the embedding gradient.
  const pulled = [{ s: labeled, d: dLabeled }, ...(unlabeled ? [{ s: unlabeled.stream, d: unlabeled.dInput }] : [])]
  grads[EMBEDDING] = tf.grad((raw: tf.Tensor) => {
    const t = embeddingTable({ ...params, [EMBEDDING]: raw }, frequencies, options.normalizeEmbeddings)
    return tf.addN(pulled.map(({ s, d }) => tf.sum(tf.mul(embed(t, s.ids, s.dropout), d)))) as tf.Scalar
  })(params[EMBEDDING])

  const deadUnits = hidden === undefined ? 0 : tf.sum(tf.cast(tf.equal(tf.max(hidden, 0), 0), "int32")).dataSync()[0]
  hidden?.dispose()
  return { grads, loss: total, nll: clean.value, perturbedLoss, virtualLoss, deadUnits }
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
