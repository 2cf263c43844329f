/**
 * LM head losses (spec A2.4): the full softmax cross-entropy and TF's `sampled_softmax_loss` with a fixed unigram
 * candidate sampler (distortion 1.0). K unique negatives are drawn once per batch and shared by every position; the
 * true and sampled logits are corrected by subtracting log(expected count) and accidental hits are removed.
 *
 * The output weights are stored row-per-word: W [V, H], b [V], so a candidate's row is `tf.gather(W, ids)`.
 */
import * as tf from "@tensorflow/tfjs-core"
import type { Blas } from "../engine/blas.ts"
import { filledTensor, valuesView } from "../engine/js-kernel.ts"
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

/**
 * The same sampled-softmax loss as one op for the CPU engine (used when a BLAS is loaded): the candidate logits are
 * one GEMM, the softmax and accidental-hit removal one JS pass, and the backward pass two GEMMs plus row scatters into
 * dense dW/db. The tfjs-op version's autodiff spends most of an LM step on V×H copies (the gather gradient's transpose
 * and cast of the whole output matrix); this op touches W only in the K + N rows it reads. Values and gradients equal
 * `sampledSoftmaxLoss` (tested).
 */
export function fusedSampledSoftmaxLoss(
  blas: Blas,
  hidden: tf.Tensor2D,
  targets: Int32Array,
  weights: tf.Tensor2D,
  bias: tf.Tensor1D,
  candidates: { readonly ids: Int32Array; readonly logExpectedSampled: Float32Array },
  logExpectedTrue: Float32Array
): tf.Tensor1D {
  const [N, H] = hidden.shape
  const V = weights.shape[0]
  const ids = candidates.ids
  const K = ids.length
  const op = tf.customGrad(((hiddenT: tf.Tensor, weightsT: tf.Tensor, biasT: tf.Tensor) => {
    const h = hiddenT.dataSync() as Float32Array
    // W and b are only read here, before this op allocates any tensor (views into the backend's memory, no copy).
    const W = valuesView(weightsT)
    const b = valuesView(biasT)
    const Wc = gatherRows(W, ids, H)
    const Wt = gatherRows(W, targets, H)
    const bc = Float32Array.from(ids, (c) => b[c])
    const trueLogits = Float32Array.from(targets, (t, n) => b[t] - logExpectedTrue[n])
    for (let n = 0; n < N; n++) trueLogits[n] += dot(h, n * H, Wt, n * H, H)
    // probs: the sampled logits, then (in place) their softmax probabilities, kept for the backward pass.
    const probs = takeScratch(N * K)
    blas.sgemm(false, true, N, K, H, 1, h, H, Wc, H, 0, probs, K)
    const pTrue = new Float32Array(N)
    const loss = sampledSoftmaxRows(probs, trueLogits, targets, ids, bc, candidates.logExpectedSampled, pTrue, N, K)
    return {
      value: tf.tensor1d(loss),
      gradFunc: (dy: tf.Tensor) => {
        // ∂loss_n/∂(sampled logit k) = p_nk; ∂loss_n/∂(true logit) = p_n,true − 1; both times the upstream dy_n.
        const g = dy.dataSync() as Float32Array
        scaleRows(probs, g, N, K)
        const trueCoef = Float64Array.from(g, (gn, n) => gn * (pTrue[n] - 1))
        const dHidden = filledTensor([N, H], [], (out) => {
          blas.sgemm(false, false, N, H, K, 1, probs, K, Wc, H, 0, out, H)
          for (let n = 0; n < N; n++) axpy(trueCoef[n], Wt, n * H, out, n * H, H)
        })
        const dWc = new Float32Array(K * H)
        blas.sgemm(true, false, K, H, N, 1, probs, K, h, H, 0, dWc, H)
        const db = new Float32Array(V)
        // The dense [V, H] gradient is written straight into the backend's memory: zeros but for the touched rows.
        const dW = filledTensor([V, H], [], (out) => {
          out.fill(0)
          scatterCandidates(out, db, dWc, probs, ids, N, K, H)
          for (let n = 0; n < N; n++) {
            axpy(trueCoef[n], h, n * H, out, targets[n] * H, H)
            db[targets[n]] += trueCoef[n]
          }
        })
        releaseScratch(probs)
        return [dHidden, dW, tf.tensor1d(db)]
      }
    }
  }) as unknown as Parameters<typeof tf.customGrad>[0])
  return op(hidden, weights, bias) as tf.Tensor1D
}

/**
 * The op's [N, K] probabilities live from its forward pass to its backward pass; the buffers are reused from step to
 * step instead of allocating (and page-faulting) ~10 MB each time. A buffer whose backward pass never runs is simply
 * not returned.
 */
const scratch: Array<Float32Array> = []
function takeScratch(n: number): Float32Array {
  const i = scratch.findIndex((b) => b.length === n)
  return i >= 0 ? scratch.splice(i, 1)[0] : new Float32Array(n)
}
function releaseScratch(buffer: Float32Array): void {
  if (scratch.length < 4) scratch.push(buffer)
}

// The op's loops, as top-level functions so the JIT optimizes them once.

function gatherRows(W: Float32Array, ids: Int32Array, H: number): Float32Array {
  const out = new Float32Array(ids.length * H)
  for (let k = 0; k < ids.length; k++) out.set(W.subarray(ids[k] * H, (ids[k] + 1) * H), k * H)
  return out
}

function dot(a: Float32Array, ao: number, b: Float32Array, bo: number, n: number): number {
  let s = 0
  for (let j = 0; j < n; j++) s += a[ao + j] * b[bo + j]
  return s
}

/** y[yo…] += alpha · x[xo…] over n values. */
function axpy(alpha: number, x: Float32Array, xo: number, y: Float32Array, yo: number, n: number): void {
  for (let j = 0; j < n; j++) y[yo + j] += alpha * x[xo + j]
}

/**
 * Row-wise softmax over [true, sampled…] with the log-expected-count correction and accidental hits removed
 * (probability 0). Overwrites `logits` [N, K] with the sampled probabilities, fills pTrue, returns the losses.
 */
function sampledSoftmaxRows(
  logits: Float32Array,
  trueLogits: Float32Array,
  targets: Int32Array,
  ids: Int32Array,
  sampledBias: Float32Array,
  logExpectedSampled: Float32Array,
  pTrue: Float32Array,
  N: number,
  K: number
): Float32Array {
  const loss = new Float32Array(N)
  const shift = new Float32Array(K)
  for (let k = 0; k < K; k++) shift[k] = sampledBias[k] - logExpectedSampled[k]
  for (let n = 0; n < N; n++) {
    const o = n * K
    const t = targets[n]
    let max = trueLogits[n]
    for (let k = 0; k < K; k++) {
      const z = logits[o + k] + shift[k]
      logits[o + k] = z
      if (ids[k] !== t && z > max) max = z
    }
    let sum = Math.exp(trueLogits[n] - max)
    for (let k = 0; k < K; k++) {
      const e = ids[k] === t ? 0 : Math.exp(logits[o + k] - max)
      logits[o + k] = e
      sum += e
    }
    const inv = 1 / sum
    for (let k = 0; k < K; k++) logits[o + k] *= inv
    pTrue[n] = Math.exp(trueLogits[n] - max) * inv
    loss[n] = Math.log(sum) + max - trueLogits[n]
  }
  return loss
}

function scaleRows(m: Float32Array, scale: Float32Array, N: number, K: number): void {
  for (let n = 0; n < N; n++) {
    const s = scale[n]
    for (let k = n * K, end = k + K; k < end; k++) m[k] *= s
  }
}

/** dW[ids[k]] += dWc[k]; db[ids[k]] += Σ_n dLogits[n, k]. */
function scatterCandidates(dW: Float32Array, db: Float32Array, dWc: Float32Array, dLogits: Float32Array, ids: Int32Array, N: number, K: number, H: number): void {
  const columnSums = new Float64Array(K)
  for (let n = 0; n < N; n++) for (let k = 0, o = n * K; k < K; k++) columnSums[k] += dLogits[o + k]
  for (let k = 0; k < K; k++) {
    axpy(1, dWc, k * H, dW, ids[k] * H, H)
    db[ids[k]] += columnSums[k]
  }
}
