/**
 * Encoding and batching (spec A1.4, A1.6).
 *
 * A document is its in-vocabulary ids followed by EOS; the label sits at EOS. Documents with no in-vocabulary word are
 * skipped. Training uses the spec's "simpler" segment handling (A6): the **final window** of ≤ `window` tokens (400 in
 * the paper) is what gets gradients, perturbations and the label; a longer document's earlier tokens form a **prefix**
 * that runs forward without gradient only to produce the LSTM's initial state. (The reference streams 400-token
 * segments from the start, so its final segment can be as short as 1 token; ours always has min(L, window) tokens —
 * the paper's "up to 400 words from each end".)
 *
 * Labeled and unlabeled batches come from two independent streams with their own batch sizes and shuffles. Both are
 * pure functions of (seed, step), which is what makes `--resume` reproduce an uninterrupted run exactly.
 */
import { Stream } from "effect"
import { permutation, rng } from "../random.ts"

export interface EncodedDoc {
  /** Vocabulary ids, EOS last. */
  readonly ids: Int32Array
  /** Class index, or -1 for unlabeled text. */
  readonly label: number
}

/**
 * A batch as plain typed arrays; tensors are created (and disposed) by the step that consumes it.
 *
 * A bidirectional batch (`directions` 2) has two rows per document: row 2b is document b, row 2b + 1 the same
 * document reversed (words reversed, EOS last; spec A1.4). Both rows have the same length, so every per-row quantity
 * (windows, masks, per-example perturbation norms) works unchanged, and each direction's perturbation is scaled to ε
 * on its own (spec A3.7). Labels stay one per document.
 */
export interface Batch {
  /** Documents in the batch. */
  readonly size: number
  readonly directions: 1 | 2
  /** Padded window length T (the longest window in the batch). */
  readonly steps: number
  /** [size · directions × steps] ids of the final windows, left-aligned, zero-padded. */
  readonly ids: Int32Array
  /** Valid length of each row's window; the last valid position is the EOS. */
  readonly lengths: Int32Array
  readonly labels: Int32Array
  /** Tokens before the window (only when some document is longer than the window), per row. */
  readonly prefix: Prefix | undefined
}

/**
 * The tokens before each row's window, unpadded: `rows[r]` is a view of the document's ids (no copy), so a batch never
 * holds rows × the longest prefix. The prefix runs through the LSTM in chunks of `window` steps carrying the state,
 * which bounds its memory by the window whatever the document's length.
 */
export interface Prefix {
  /** The longest prefix in the batch. */
  readonly steps: number
  readonly rows: ReadonlyArray<Int32Array>
  readonly lengths: Int32Array
  /** Steps per chunk (the batch's window length). */
  readonly window: number
}

/** Rows of a batch's id and length arrays (and of its embedded tensors). */
export const rowsOf = (batch: Batch): number => batch.size * batch.directions

export function encodeDocument(ids: Int32Array, label: number): EncodedDoc | undefined {
  // A document needs at least one word besides EOS (spec A1.4).
  return ids.length >= 2 ? { ids, label } : undefined
}

export function makeBatch(docs: ReadonlyArray<EncodedDoc>, window: number, bidirectional = false): Batch {
  const size = docs.length
  const directions = bidirectional ? 2 : 1
  const rows = docs.flatMap((d) => (bidirectional ? [d.ids, reverseIds(d.ids)] : [d.ids]))
  const lengths = new Int32Array(rows.length)
  const prefixLengths = new Int32Array(rows.length)
  for (let r = 0; r < rows.length; r++) {
    const n = rows[r].length
    lengths[r] = Math.min(n, window)
    prefixLengths[r] = n - lengths[r]
  }
  // Loops, not Math.max(...xs): a spread of a large batch's lengths can exceed the engine's argument limit.
  let steps = 1
  let prefixSteps = 0
  for (let r = 0; r < rows.length; r++) {
    steps = Math.max(steps, lengths[r])
    prefixSteps = Math.max(prefixSteps, prefixLengths[r])
  }
  const ids = new Int32Array(rows.length * steps)
  for (let r = 0; r < rows.length; r++) ids.set(rows[r].subarray(prefixLengths[r]), r * steps)
  const labels = Int32Array.from(docs, (d) => d.label)
  return {
    size,
    directions,
    steps,
    ids,
    lengths,
    labels,
    prefix: prefixSteps === 0 ? undefined : { steps: prefixSteps, rows: rows.map((row, r) => row.subarray(0, prefixLengths[r])), lengths: prefixLengths, window }
  }
}

/** Rows [start, end) of a batch, keeping its padded length (so a micro-batch computes exactly what its rows did). */
export function sliceBatch(batch: Batch, start: number, end: number): Batch {
  const T = batch.steps
  const prefix = batch.prefix
  const [r0, r1] = [start * batch.directions, end * batch.directions]
  return {
    size: end - start,
    directions: batch.directions,
    steps: T,
    ids: batch.ids.slice(r0 * T, r1 * T),
    lengths: batch.lengths.slice(r0, r1),
    labels: batch.labels.slice(start, end),
    prefix:
      prefix === undefined ? undefined : { steps: prefix.steps, rows: prefix.rows.slice(r0, r1), lengths: prefix.lengths.slice(r0, r1), window: prefix.window }
  }
}

export interface BatchSchedule {
  readonly numDocs: number
  readonly batchSize: number
  readonly seed: number
  /** Names the stream so labeled and unlabeled shuffles are independent. */
  readonly stream: string
}

/** Batches per epoch; the last batch of an epoch may be smaller, so every document appears exactly once per epoch. */
export const batchesPerEpoch = (s: BatchSchedule): number => Math.ceil(s.numDocs / s.batchSize)

/** Document indices of the batch used at global `step` (epoch-wise reshuffled by seed). */
export function batchIndicesAt(s: BatchSchedule, step: number, cache?: Map<number, Int32Array>): Int32Array {
  const perEpoch = batchesPerEpoch(s)
  const epoch = Math.floor(step / perEpoch)
  const within = step % perEpoch
  let order = cache?.get(epoch)
  if (order === undefined) {
    order = permutation(s.numDocs, rng(s.seed, "epoch-order", s.stream, epoch))
    cache?.clear()
    cache?.set(epoch, order)
  }
  return order.subarray(within * s.batchSize, Math.min(s.numDocs, (within + 1) * s.batchSize))
}

/** An endless stream of training batches starting at `startStep`. */
export function trainingBatches(
  docs: ReadonlyArray<EncodedDoc>,
  options: { readonly batchSize: number; readonly seed: number; readonly stream: string; readonly window: number; readonly startStep: number; readonly bidirectional?: boolean }
): Stream.Stream<Batch> {
  const schedule: BatchSchedule = { numDocs: docs.length, batchSize: options.batchSize, seed: options.seed, stream: options.stream }
  const cache = new Map<number, Int32Array>()
  return Stream.fromIterable({
    *[Symbol.iterator]() {
      for (let step = options.startStep; ; step++) {
        const indices = batchIndicesAt(schedule, step, cache)
        yield makeBatch(Array.from(indices, (i) => docs[i]), options.window, options.bidirectional)
      }
    }
    // One batch per pull: the stream is endless and consumers stop it between steps.
  }, { chunkSize: 1 })
}

/** One labeled and one unlabeled batch per training step, with independent batch sizes. */
export interface StepBatches {
  readonly step: number
  readonly labeled: Batch
  readonly unlabeled: Batch
}

export function stepBatches(
  labeled: Stream.Stream<Batch>,
  unlabeled: Stream.Stream<Batch>,
  startStep: number
): Stream.Stream<StepBatches> {
  let step = startStep
  return Stream.zipWith(labeled, unlabeled, (l, u) => ({ step: step++, labeled: l, unlabeled: u }))
}

/** Document indices by length (then position): the order evaluation batches take, so each holds little padding. */
export const evaluationOrder = (docs: ReadonlyArray<EncodedDoc>): Array<number> =>
  docs.map((_, i) => i).sort((a, b) => docs[a].ids.length - docs[b].ids.length || a - b)

/** Evaluation batches: every document exactly once, in length order (less padding), never shuffled. */
export function evaluationBatches(docs: ReadonlyArray<EncodedDoc>, batchSize: number, window: number, bidirectional = false): Array<Batch> {
  const order = evaluationOrder(docs)
  const batches: Array<Batch> = []
  for (let start = 0; start < order.length; start += batchSize) {
    batches.push(makeBatch(order.slice(start, start + batchSize).map((i) => docs[i]), window, bidirectional))
  }
  return batches
}

/** The reverse sequence's ids (bidirectional model and reverse LM): words reversed, EOS kept last (spec A1.4). */
export function reverseIds(ids: Int32Array): Int32Array {
  return Int32Array.from({ length: ids.length }, (_, p) => reversedAt(ids, p))
}

/** Position p of reverseIds(ids), without building it (a long document is read one window at a time). */
export const reversedAt = (ids: Int32Array, p: number): number => {
  const last = ids.length - 1
  return p < last ? ids[last - 1 - p] : ids[last]
}
