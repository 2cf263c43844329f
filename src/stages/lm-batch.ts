/**
 * Language-model batches (spec A1.4, A1.6): stateful truncated BPTT over whole documents.
 *
 * A document's LM sequence predicts each next token, EOS included: inputs ids[0…n−2], targets ids[1…n−1] (the EOS
 * step predicts nothing, so it is not an input). The reverse sequence is the words reversed, then EOS — the same
 * length, so forward and reverse windows of one document line up and always come from the same document.
 *
 * `batchSize` slots each stream one document, `window` positions per step; a document longer than the window spans
 * several steps, and its slot carries the LSTM state from one window to the next (gradients stop at the boundary).
 * When a document ends, the next one in the epoch's shuffled order takes the slot with a zero state. The schedule is
 * a pure function of (seed, step) — `LmSchedule.at` replays it from step 0 — so `--resume` gets the same batches.
 */
import { permutation, rng } from "../random.ts"
import { type EncodedDoc, reversedAt } from "./batch.ts"

export { reverseIds } from "./batch.ts"

export interface LmBatch {
  readonly size: number
  /** Padded window length T (the longest window in the batch). */
  readonly steps: number
  /** [size × steps] input ids and next-token targets, zero-padded past `lengths`. */
  readonly inputs: Int32Array
  readonly targets: Int32Array
  /** Valid positions of each slot's window (≥ 1). */
  readonly lengths: Int32Array
  /** 1 where the slot continues the document of its previous window (so it starts from the carried state). */
  readonly continues: Uint8Array
  /** The same windows over the reversed documents (bidirectional pretraining only). */
  readonly reverse: { readonly inputs: Int32Array; readonly targets: Int32Array } | undefined
  /** Positions with a target in this batch (Σ lengths). */
  readonly tokens: number
}

interface Slot {
  doc: number
  offset: number
}

/** Positions of a document's LM sequence: every token but the last (EOS) is an input. */
export const lmLength = (doc: EncodedDoc): number => doc.ids.length - 1

/**
 * One batch of windows: row b holds positions [offset, offset + lengths[b]) of document b's LM sequence (and of its
 * reverse), zero-padded to the longest window. Rows of length 0 stay empty.
 */
function windowBatch(
  rows: ReadonlyArray<{ readonly ids: Int32Array; readonly offset: number }>,
  lengths: Int32Array,
  continues: Uint8Array,
  bidirectional: boolean
): LmBatch {
  const B = rows.length
  const T = Math.max(...lengths)
  const inputs = new Int32Array(B * T)
  const targets = new Int32Array(B * T)
  const reverse = bidirectional ? { inputs: new Int32Array(B * T), targets: new Int32Array(B * T) } : undefined
  let tokens = 0
  for (let b = 0; b < B; b++) {
    const n = lengths[b]
    if (n === 0) continue
    const { ids, offset } = rows[b]
    inputs.set(ids.subarray(offset, offset + n), b * T)
    targets.set(ids.subarray(offset + 1, offset + 1 + n), b * T)
    if (reverse !== undefined) {
      for (let t = 0; t < n; t++) {
        reverse.inputs[b * T + t] = reversedAt(ids, offset + t)
        reverse.targets[b * T + t] = reversedAt(ids, offset + 1 + t)
      }
    }
    tokens += n
  }
  return { size: B, steps: T, inputs, targets, lengths, continues, reverse, tokens }
}

export interface LmStreamOptions {
  readonly batchSize: number
  readonly window: number
  readonly seed: number
  readonly bidirectional: boolean
}

/** The slot schedule: which document and offset each slot reads at each step. */
export class LmSchedule {
  private readonly slots: Array<Slot | undefined>
  private epoch = 0
  private next = 0
  private order: Int32Array
  private step = 0

  constructor(
    private readonly docs: ReadonlyArray<EncodedDoc>,
    private readonly options: LmStreamOptions
  ) {
    if (docs.length === 0) throw new Error("the language model has no training documents")
    this.slots = Array.from({ length: options.batchSize }, () => undefined)
    this.order = permutation(docs.length, rng(options.seed, "lm-order", 0))
  }

  private takeDoc(): number {
    if (this.next === this.order.length) {
      this.epoch++
      this.next = 0
      this.order = permutation(this.docs.length, rng(this.options.seed, "lm-order", this.epoch))
    }
    return this.order[this.next++]
  }

  /** The batch of the current step; advances the schedule. */
  nextBatch(): LmBatch {
    const { batchSize: B, window } = this.options
    const continues = new Uint8Array(B)
    const lengths = new Int32Array(B)
    for (let b = 0; b < B; b++) {
      const slot = this.slots[b]
      if (slot !== undefined && slot.offset < lmLength(this.docs[slot.doc])) continues[b] = 1
      else this.slots[b] = { doc: this.takeDoc(), offset: 0 }
      const s = this.slots[b]!
      lengths[b] = Math.min(window, lmLength(this.docs[s.doc]) - s.offset)
    }
    const batch = windowBatch(
      this.slots.map((s) => ({ ids: this.docs[s!.doc].ids, offset: s!.offset })),
      lengths,
      continues,
      this.options.bidirectional
    )
    for (let b = 0; b < B; b++) this.slots[b]!.offset += lengths[b]
    this.step++
    return batch
  }

  /** Number of batches taken so far. */
  get position(): number {
    return this.step
  }

  /** Epochs completed (fractional), for progress lines. */
  get epochs(): number {
    return this.epoch + this.next / this.order.length
  }

  /** A schedule positioned at `step` (replays the bookkeeping; no tensors are involved, so this is cheap). */
  static at(docs: ReadonlyArray<EncodedDoc>, options: LmStreamOptions, step: number): LmSchedule {
    const schedule = new LmSchedule(docs, options)
    for (let s = 0; s < step; s++) schedule.nextBatch()
    return schedule
  }
}

/**
 * Evaluation windows: every document exactly once, in length order, `batchSize` documents at a time, each streamed
 * in windows of `window` positions with carried state (same batch layout as training; slots whose document has
 * ended get length 0 in later windows of the group).
 */
/** How many batches `lmEvaluationBatches` yields: per group of documents, one per window of its longest. */
export function lmEvaluationBatchCount(docs: ReadonlyArray<EncodedDoc>, batchSize: number, window: number): number {
  const lengths = docs.map(lmLength).sort((a, b) => a - b)
  let count = 0
  for (let start = 0; start < lengths.length; start += batchSize) count += Math.ceil(lengths[Math.min(lengths.length, start + batchSize) - 1] / window)
  return count
}

export function* lmEvaluationBatches(docs: ReadonlyArray<EncodedDoc>, batchSize: number, window: number, bidirectional: boolean): Generator<LmBatch> {
  const order = docs.map((_, i) => i).sort((a, b) => docs[a].ids.length - docs[b].ids.length || a - b)
  for (let start = 0; start < order.length; start += batchSize) {
    const group = order.slice(start, start + batchSize).map((i) => docs[i])
    const longest = Math.max(...group.map(lmLength))
    for (let offset = 0; offset < longest; offset += window) {
      const B = group.length
      const lengths = new Int32Array(B)
      for (let b = 0; b < B; b++) lengths[b] = Math.max(0, Math.min(window, lmLength(group[b]) - offset))
      yield windowBatch(
        group.map((d) => ({ ids: d.ids, offset })),
        lengths,
        new Uint8Array(B).fill(offset > 0 ? 1 : 0),
        bidirectional
      )
    }
  }
}
