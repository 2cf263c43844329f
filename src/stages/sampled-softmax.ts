/**
 * LM head losses (spec A2.4): the full softmax cross-entropy and TF's `sampled_softmax_loss` with a fixed unigram
 * candidate sampler (distortion 1.0). K unique negatives are drawn once per batch and shared by every position; the
 * true and sampled logits are corrected by subtracting log(expected count) and accidental hits are removed.
 *
 * The output weights are stored row-per-word: W [V, H], b [V], so a candidate's row is `tf.gather(W, ids)`.
 */
import * as tf from "@tensorflow/tfjs-core"
import type { Rng } from "../random.ts"

/** One batch's negatives: K unique class ids, log of their expected counts, and the number of draws it took. */
export interface Candidates {
  readonly ids: Int32Array
  readonly logExpectedSampled: Float32Array
  readonly tries: number
}

/**
 * Expected count of a class of probability p among the draws (TF range_sampler.cc ExpectedCountHelper): p·k when
 * no draw was rejected, else 1 − (1 − p)^tries, the chance that it appeared at least once, as −expm1(tries·log1p(−p)).
 */
const expectedCount = (p: number, tries: number, k: number): number => (tries === k ? p * k : -Math.expm1(tries * Math.log1p(-p)))

/**
 * TF's fixed_unigram_candidate_sampler with unique=True, distortion 1.0 (spec A2.4): P(c) ∝ counts[c]. Draws with
 * replacement until k distinct ids are found. Zero-count classes are never drawn; their log expected count is −∞,
 * so they must not be targets (the vocabulary gives every word, EOS included, a count ≥ 1).
 */
export class UnigramSampler {
  /** cumulative[c] = counts[0] + … + counts[c]. */
  private readonly cumulative: Float64Array
  private readonly total: number
  /** Number of classes with a nonzero count. */
  readonly support: number

  constructor(counts: ArrayLike<number>) {
    this.cumulative = new Float64Array(counts.length)
    let total = 0
    let support = 0
    for (let c = 0; c < counts.length; c++) {
      const n = counts[c]
      if (!(n >= 0 && Number.isFinite(n))) throw new Error(`UnigramSampler: count of class ${c} is ${n}; counts must be finite and ≥ 0`)
      total += n
      if (n > 0) support++
      this.cumulative[c] = total
    }
    if (total <= 0) throw new Error("UnigramSampler: all counts are zero")
    this.total = total
    this.support = support
  }

  get classes(): number {
    return this.cumulative.length
  }

  probability(c: number): number {
    return (this.cumulative[c] - (c > 0 ? this.cumulative[c - 1] : 0)) / this.total
  }

  /** One draw: the first class whose cumulative count exceeds u·total (binary search; skips zero-count classes). */
  draw(random: Rng): number {
    const x = random.uniform() * this.total
    let lo = 0
    let hi = this.cumulative.length - 1
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if (this.cumulative[mid] > x) hi = mid
      else lo = mid + 1
    }
    return lo
  }

  /** k unique ids (in order of first appearance), as TF's unique range sampler; requires k < support. */
  sample(k: number, random: Rng): Candidates {
    if (!Number.isInteger(k) || k < 1) throw new Error(`UnigramSampler: k must be a positive integer, got ${k}`)
    if (k >= this.support) {
      throw new Error(`UnigramSampler: cannot draw ${k} unique negatives from ${this.support} classes with nonzero count; use the full softmax`)
    }
    const ids = new Int32Array(k)
    const seen = new Uint8Array(this.cumulative.length)
    let found = 0
    let tries = 0
    while (found < k) {
      const c = this.draw(random)
      tries++
      if (seen[c] === 0) {
        seen[c] = 1
        ids[found++] = c
      }
    }
    return { ids, logExpectedSampled: this.logExpectedCount(ids, tries, k), tries }
  }

  /** log expected count of arbitrary ids (e.g. the true classes) for a draw of k unique ids that took `tries` draws. */
  logExpectedCount(ids: Int32Array, tries: number, k: number): Float32Array {
    const out = new Float32Array(ids.length)
    for (let i = 0; i < ids.length; i++) out[i] = Math.log(expectedCount(this.probability(ids[i]), tries, k))
    return out
  }
}

/**
 * Per-position sampled softmax cross-entropy [N] (spec A2.4; TF nn_impl._compute_sampled_logits + softmax xent):
 *   true_n     = h_n·W[t_n] + b[t_n] − logExpectedTrue_n
 *   sampled_nk = h_n·W[S_k] + b[S_k] − logExpectedSampled_k,   −1e30 added where S_k = t_n (accidental hit)
 *   loss_n     = −log softmax([true_n, sampled_n·])[0]
 * The hit penalty makes exp(·) exactly 0 (and its gradient 0) without producing ±∞ or NaN.
 */
export function sampledSoftmaxLoss(
  hidden: tf.Tensor2D,
  targets: tf.Tensor1D,
  weights: tf.Tensor2D,
  bias: tf.Tensor1D,
  candidates: { readonly ids: tf.Tensor1D; readonly logExpectedSampled: tf.Tensor1D },
  logExpectedTrue: tf.Tensor1D
): tf.Tensor1D {
  return tf.tidy(() => {
    const N = hidden.shape[0]
    const trueLogits = tf.sub(tf.add(tf.sum(tf.mul(hidden, tf.gather(weights, targets)), 1), tf.gather(bias, targets)), logExpectedTrue)
    const sampledRaw = tf.add(tf.matMul(hidden, tf.gather(weights, candidates.ids), false, true), tf.gather(bias, candidates.ids))
    const hits = tf.cast(tf.equal(tf.expandDims(targets, 1), tf.expandDims(candidates.ids, 0)), "float32")
    const sampledLogits = tf.add(tf.sub(sampledRaw, candidates.logExpectedSampled), tf.mul(hits, -1e30))
    const logits = tf.concat([tf.reshape(trueLogits, [N, 1]), sampledLogits], 1)
    return tf.neg(tf.reshape(tf.slice(tf.logSoftmax(logits), [0, 0], [N, 1]), [N])) as tf.Tensor1D
  })
}

/** Per-position full softmax cross-entropy [N] over all V classes, logits = h·Wᵀ + b (spec A2.4, flag default −1). */
export function fullSoftmaxLoss(hidden: tf.Tensor2D, targets: tf.Tensor1D, weights: tf.Tensor2D, bias: tf.Tensor1D): tf.Tensor1D {
  return tf.tidy(() => {
    const V = weights.shape[0]
    const logProbs = tf.logSoftmax(tf.add(tf.matMul(hidden, weights, false, true), bias))
    return tf.neg(tf.sum(tf.mul(logProbs, tf.oneHot(targets, V)), 1)) as tf.Tensor1D
  })
}
