/**
 * Skip-gram with negative sampling (Mikolov et al., 2013): a word embedding pretrained on the unlabeled text by a far
 * cheaper objective than the LM. Not in the paper — an option for CPU budgets, where the LM's embedding is what
 * transfers and its LSTM does not (README, Results). For each position t of a document and each context word c within
 * a random radius b ≤ window, maximize  log σ(u_c · w_t) + Σ_{k ≤ negatives} log σ(−u_c · w_{n_k}),  n_k ~ unigram^0.75,
 * over the input vectors u (the embedding we keep) and output vectors w. Frequent words are subsampled; the learning
 * rate decays linearly to zero over all passes. Plain typed-array loops: one pass over 8.6 M tokens takes about a
 * minute on one core, so no tensors are involved.
 */
import { rng } from "../random.ts"

export interface SkipGramOptions {
  readonly dim: number
  /** The largest context radius; each position draws its radius from 1..window (nearer words weigh more). */
  readonly window: number
  readonly negatives: number
  /** Passes over the documents. */
  readonly epochs: number
  /** Subsampling threshold t: a word of frequency f is kept with probability (√(f/t) + 1)·t/f. 0 keeps all. */
  readonly subsample: number
  readonly learningRate: number
  readonly seed: number
}

export interface SkipGramProgress {
  readonly tokensDone: number
  readonly tokensTotal: number
  readonly epoch: number
  /** Mean negative-sampling loss per (word, context) pair since the previous report. */
  readonly loss: number
  readonly learningRate: number
}

export interface SkipGramResult {
  /** Input vectors, [vocabSize × dim] row-major. */
  readonly vectors: Float32Array
  readonly tokensPerEpoch: number
  readonly finalLoss: number
}

/** Slots in the negative-sampling table: a power of two (masked indexing), ~256 per word, at most 4 M. */
const tableSize = (vocabSize: number) => Math.min(1 << 22, Math.max(1 << 10, 2 ** Math.ceil(Math.log2(256 * vocabSize))))

/** Sampling table for unigram^0.75 (word2vec's): each word fills a share of slots proportional to count^0.75. */
export function negativeTable(counts: Float64Array | Int32Array, excluded: number): Int32Array {
  const NEGATIVE_TABLE_SIZE = tableSize(counts.length)
  const table = new Int32Array(NEGATIVE_TABLE_SIZE)
  let total = 0
  for (let w = 0; w < counts.length; w++) if (w !== excluded) total += Math.pow(counts[w], 0.75)
  let w = -1
  let cumulative = 0
  for (let slot = 0; slot < NEGATIVE_TABLE_SIZE; slot++) {
    while (w < counts.length - 1 && cumulative <= (slot + 0.5) / NEGATIVE_TABLE_SIZE) {
      w++
      if (w !== excluded) cumulative += Math.pow(counts[w], 0.75) / total
    }
    table[slot] = w
  }
  return table
}

/**
 * Train skip-gram vectors on `docs` (vocabulary ids; `boundary`, e.g. EOS, is skipped and never sampled).
 * `report` is called every `reportEvery` tokens; returning `false` from it stops training early (Ctrl-C).
 */
export function trainSkipGram(
  docs: ReadonlyArray<Int32Array>,
  vocabSize: number,
  boundary: number,
  options: SkipGramOptions,
  report: (p: SkipGramProgress) => boolean | void = () => {},
  reportEvery = 1_000_000
): SkipGramResult {
  const steps = skipGramSteps(docs, vocabSize, boundary, options, reportEvery)
  for (let next = steps.next(true); ; ) {
    if (next.done === true) return next.value
    next = steps.next(report(next.value) !== false)
  }
}

/**
 * The same training as a generator that pauses at every progress report (every `reportEvery` tokens, and once at the
 * end) so a driver can yield to the event loop there (signals, interruption); `next(false)` stops it early.
 */
export function* skipGramSteps(
  docs: ReadonlyArray<Int32Array>,
  vocabSize: number,
  boundary: number,
  options: SkipGramOptions,
  reportEvery = 1_000_000
): Generator<SkipGramProgress, SkipGramResult, boolean> {
  const { dim: D, window, negatives, epochs, subsample } = options
  const counts = new Float64Array(vocabSize)
  let tokensPerEpoch = 0
  for (const doc of docs) {
    for (let i = 0; i < doc.length; i++) {
      if (doc[i] === boundary) continue
      counts[doc[i]]++
      tokensPerEpoch++
    }
  }
  // Keep probabilities as 32-bit thresholds, compared with the generator's raw output.
  const keep = new Uint32Array(vocabSize)
  for (let w = 0; w < vocabSize; w++) {
    const f = counts[w] / Math.max(1, tokensPerEpoch)
    const p = subsample > 0 && f > 0 ? (Math.sqrt(f / subsample) + 1) * (subsample / f) : 1
    keep[w] = p >= 1 ? 0xffffffff : Math.floor(p * 4294967296)
  }
  const table = negativeTable(counts, boundary)
  const tableMask = table.length - 1

  const init = rng(options.seed, "skip-gram", "init")
  const input = new Float32Array(vocabSize * D)
  for (let i = 0; i < input.length; i++) input[i] = (init.uniform() - 0.5) / D
  const output = new Float32Array(vocabSize * D)
  const gradient = new Float32Array(D)
  const sentence = new Int32Array(docs.reduce((a, d) => Math.max(a, d.length), 1))

  // xorshift32 for the hot loop (radius, subsampling, negatives), seeded from the run's seed.
  let state = (rng(options.seed, "skip-gram", "sample").uniform() * 4294967296) >>> 0 || 1
  const next = (): number => {
    state ^= state << 13
    state ^= state >>> 17
    state ^= state << 5
    return state >>> 0
  }

  const totalTokens = tokensPerEpoch * epochs
  let done = 0
  let sinceReport = 0
  let lossSum = 0
  let pairs = 0
  let lossOfLastReport = 0
  let stopped = false
  const order = new Int32Array(docs.length)
  for (let epoch = 0; epoch < epochs && !stopped; epoch++) {
    // A fresh document order each epoch (the docs come grouped by source).
    const shuffle = rng(options.seed, "skip-gram", "order", epoch)
    for (let i = 0; i < order.length; i++) order[i] = i
    for (let i = order.length - 1; i > 0; i--) {
      const j = shuffle.int(i + 1)
      const t = order[i]
      order[i] = order[j]
      order[j] = t
    }
    for (let d = 0; d < order.length && !stopped; d++) {
      const doc = docs[order[d]]
      let n = 0
      for (let i = 0; i < doc.length; i++) {
        const w = doc[i]
        if (w === boundary) continue
        done++
        sinceReport++
        if (keep[w] !== 0xffffffff && next() >= keep[w]) continue
        sentence[n++] = w
      }
      const alpha = options.learningRate * Math.max(1e-4, 1 - done / (totalTokens + 1))
      for (let t = 0; t < n; t++) {
        const center = sentence[t]
        const radius = 1 + (next() % window)
        const from = Math.max(0, t - radius)
        const to = Math.min(n - 1, t + radius)
        for (let c = from; c <= to; c++) {
          if (c === t) continue
          const u = sentence[c] * D
          gradient.fill(0)
          for (let k = 0; k <= negatives; k++) {
            let target: number
            let label: number
            if (k === 0) {
              target = center
              label = 1
            } else {
              target = table[next() & tableMask]
              if (target === center) continue
              label = 0
            }
            const o = target * D
            let dot = 0
            for (let j = 0; j < D; j++) dot += input[u + j] * output[o + j]
            const sigma = dot > 30 ? 1 : dot < -30 ? 0 : 1 / (1 + Math.exp(-dot))
            lossSum -= Math.log(Math.max(1e-12, label === 1 ? sigma : 1 - sigma))
            const g = (label - sigma) * alpha
            for (let j = 0; j < D; j++) {
              gradient[j] += g * output[o + j]
              output[o + j] += g * input[u + j]
            }
          }
          for (let j = 0; j < D; j++) input[u + j] += gradient[j]
          pairs++
        }
      }
      if (sinceReport >= reportEvery) {
        sinceReport = 0
        lossOfLastReport = pairs > 0 ? lossSum / pairs : 0
        lossSum = 0
        pairs = 0
        if (!(yield { tokensDone: done, tokensTotal: totalTokens, epoch, loss: lossOfLastReport, learningRate: alpha })) stopped = true
      }
    }
  }
  const finalLoss = pairs > 0 ? lossSum / pairs : lossOfLastReport
  yield { tokensDone: done, tokensTotal: totalTokens, epoch: epochs - 1, loss: finalLoss, learningRate: 0 }
  return { vectors: input, tokensPerEpoch, finalLoss }
}

/** Rescale vectors to a target standard deviation (the classifier's U(−1, 1) init has 1/√3), so Adam's step means the same. */
export function rescaleToStd(vectors: Float32Array, targetStd: number): Float32Array {
  let sum = 0
  let sumSq = 0
  for (let i = 0; i < vectors.length; i++) {
    sum += vectors[i]
    sumSq += vectors[i] * vectors[i]
  }
  const mean = sum / vectors.length
  const std = Math.sqrt(Math.max(1e-30, sumSq / vectors.length - mean * mean))
  const out = new Float32Array(vectors.length)
  for (let i = 0; i < vectors.length; i++) out[i] = (vectors[i] * targetStd) / std
  return out
}
