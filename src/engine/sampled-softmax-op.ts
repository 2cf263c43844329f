/**
 * The LM's sampled softmax (src/stages/sampled-softmax.ts) as one op of the CPU engine: plain loops and BLAS GEMMs
 * over typed arrays, with the same values and gradients as the tfjs-op form (tested).
 */
import * as tf from "@tensorflow/tfjs-core"
import type { Blas } from "./blas.ts"
import { simdGatesActive, Workspace } from "./gates.ts"
import { filledTensor, valuesView } from "./js-kernel.ts"

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
    const rows = softmaxRowsOf(blas, h, Wc, trueLogits, targets, ids, bc, candidates.logExpectedSampled, N, K, H)
    const { probs, pTrue, loss } = rows
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
        rows.release()
        return [dHidden, dW, tf.tensor1d(db)]
      }
    }
  }) as unknown as Parameters<typeof tf.customGrad>[0])
  return op(hidden, weights, bias) as tf.Tensor1D
}

/**
 * The sampled logits (one GEMM) and the row pass over them: in a SIMD workspace (src/engine/gates.ts) when the wasm
 * kernels are loaded — its exp is the gate kernels' (relative error < 2e-7) and its sums are in f64 —, otherwise the
 * JS loop below. The [N, K] probabilities live until the backward pass; their memory is reused from step to step
 * instead of allocating (and page-faulting) ~10 MB each time, and simply not returned if no backward pass runs.
 */
function softmaxRowsOf(
  blas: Blas,
  h: Float32Array,
  Wc: Float32Array,
  trueLogits: Float32Array,
  targets: Int32Array,
  ids: Int32Array,
  sampledBias: Float32Array,
  logExpectedSampled: Float32Array,
  N: number,
  K: number,
  H: number
): { readonly probs: Float32Array; readonly pTrue: Float32Array; readonly loss: Float32Array; release(): void } {
  if (simdGatesActive()) {
    const ws = Workspace.acquire(N * K + 4 * N + 2 * K)
    const probs = ws.f32(N * K)
    const shift = ws.f32(K)
    for (let k = 0; k < K; k++) shift.view[k] = sampledBias[k] - logExpectedSampled[k]
    const t = ws.f32(N)
    t.view.set(trueLogits)
    const pTrue = ws.f32(N)
    const loss = ws.f32(N)
    const targetsAt = ws.i32(targets).at
    const idsAt = ws.i32(ids).at
    if (ws.softmax !== undefined) {
      blas.sgemm(false, true, N, K, H, 1, h, H, Wc, H, 0, probs.view, K)
      ws.softmax.softmaxRows(probs.at, t.at, targetsAt, idsAt, shift.at, pTrue.at, loss.at, N, K)
      return { probs: probs.view, pTrue: pTrue.view, loss: loss.view.slice(), release: () => ws.release() }
    }
    ws.release()
  }
  const probs = takeScratch(N * K)
  blas.sgemm(false, true, N, K, H, 1, h, H, Wc, H, 0, probs, K)
  const pTrue = new Float32Array(N)
  const loss = sampledSoftmaxRows(probs, trueLogits, targets, ids, sampledBias, logExpectedSampled, pTrue, N, K)
  return { probs, pTrue, loss, release: () => releaseScratch(probs) }
}

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
