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

/** A batch as plain typed arrays; tensors are created (and disposed) by the step that consumes it. */
export interface Batch {
  readonly size: number
  /** Padded window length T (the longest window in the batch). */
  readonly steps: number
  /** [size × steps] ids of the final windows, left-aligned, zero-padded. */
  readonly ids: Int32Array
  /** Valid length of each window; the last valid position is the EOS. */
  readonly lengths: Int32Array
  readonly labels: Int32Array
  /** Tokens before the window (only when some document is longer than the window). */
  readonly prefix: { readonly steps: number; readonly ids: Int32Array; readonly lengths: Int32Array } | undefined
}

export function encodeDocument(ids: Int32Array, label: number): EncodedDoc | undefined {
  // A document needs at least one word besides EOS (spec A1.4).
  return ids.length >= 2 ? { ids, label } : undefined
}

export function makeBatch(docs: ReadonlyArray<EncodedDoc>, window: number): Batch {
  const size = docs.length
  const lengths = new Int32Array(size)
  const prefixLengths = new Int32Array(size)
  for (let b = 0; b < size; b++) {
    const n = docs[b].ids.length
    lengths[b] = Math.min(n, window)
    prefixLengths[b] = n - lengths[b]
  }
  const steps = Math.max(1, ...lengths)
  const prefixSteps = Math.max(0, ...prefixLengths)
  const ids = new Int32Array(size * steps)
  const labels = new Int32Array(size)
  const prefixIds = prefixSteps > 0 ? new Int32Array(size * prefixSteps) : undefined
  for (let b = 0; b < size; b++) {
    const doc = docs[b].ids
    ids.set(doc.subarray(prefixLengths[b]), b * steps)
    if (prefixIds !== undefined) prefixIds.set(doc.subarray(0, prefixLengths[b]), b * prefixSteps)
    labels[b] = docs[b].label
  }
  return {
    size,
    steps,
    ids,
    lengths,
    labels,
    prefix: prefixIds === undefined ? undefined : { steps: prefixSteps, ids: prefixIds, lengths: prefixLengths }
  }
}

/** Rows [start, end) of a batch, keeping its padded length (so a micro-batch computes exactly what its rows did). */
export function sliceBatch(batch: Batch, start: number, end: number): Batch {
  const T = batch.steps
  const prefix = batch.prefix
  return {
    size: end - start,
    steps: T,
    ids: batch.ids.slice(start * T, end * T),
    lengths: batch.lengths.slice(start, end),
    labels: batch.labels.slice(start, end),
    prefix:
      prefix === undefined
        ? undefined
        : { steps: prefix.steps, ids: prefix.ids.slice(start * prefix.steps, end * prefix.steps), lengths: prefix.lengths.slice(start, end) }
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
  options: { readonly batchSize: number; readonly seed: number; readonly stream: string; readonly window: number; readonly startStep: number }
): Stream.Stream<Batch> {
  const schedule: BatchSchedule = { numDocs: docs.length, batchSize: options.batchSize, seed: options.seed, stream: options.stream }
  const cache = new Map<number, Int32Array>()
  return Stream.fromIterable({
    *[Symbol.iterator]() {
      for (let step = options.startStep; ; step++) {
        const indices = batchIndicesAt(schedule, step, cache)
        yield makeBatch(Array.from(indices, (i) => docs[i]), options.window)
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

/** Evaluation batches: every document exactly once, in length order (less padding), never shuffled. */
export function evaluationBatches(docs: ReadonlyArray<EncodedDoc>, batchSize: number, window: number): Array<Batch> {
  const order = docs.map((_, i) => i).sort((a, b) => docs[a].ids.length - docs[b].ids.length || a - b)
  const batches: Array<Batch> = []
  for (let start = 0; start < order.length; start += batchSize) {
    batches.push(makeBatch(order.slice(start, start + batchSize).map((i) => docs[i]), window))
  }
  return batches
}
