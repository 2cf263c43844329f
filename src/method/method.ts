/**
 * The paper's math in one place (Miyato, Dai & Goodfellow, "Adversarial Training Methods for Semi-Supervised Text
 * Classification", ICLR 2017; spec A3). Everything here is plain tfjs on tensors; the model, the data streams and the
 * optimizer live elsewhere (src/model/, src/stages/train.ts) and call in.
 *
 *   Eq. (1)  v̄_k = (v_k − E(v)) / sqrt(Var(v)), E and Var weighted by word frequency      normalizeEmbeddings
 *            ℓ(s) = −(1/N) Σ log p(y_n | s_n; θ)            (the clean loss; spec A3.1)     classificationLoss
 *            KL[p(·|s; θ̂) ‖ p(·|s + r; θ)]                  (inside Eq. 3 and 8)             klDivergence
 *   Eq. (5)  r_adv  = −ε·g/‖g‖₂,  g = ∇_s log p(y | s; θ̂)   (= ε·∇ℓ/‖∇ℓ‖)                    adversarialPerturbation
 *   Eq. (6)  L_adv  = −(1/N) Σ log p(y_n | s_n + r_adv,n; θ)                                 adversarialTerm
 *   Eq. (7)  r_vadv = ε·g/‖g‖₂,   g = ∇_{s+d} KL[p(·|s; θ̂) ‖ p(·|s + d; θ̂)], d small random  virtualAdversarialPerturbation
 *   Eq. (8)  L_vadv = (1/N′) Σ KL[p(·|s_n′; θ̂) ‖ p(·|s_n′ + r_vadv,n′; θ)]                  virtualTerm
 *            r_rand = ε·u/‖u‖₂, u ~ N(0, I)  (random-perturbation controls, §5.1 Table 2)     randomPerturbation
 *
 * (Eq. 2–4 are the general input-space definitions of AT and VAT that Eq. 5–8 specialise to word embeddings.)
 *
 * A training method is a list of loss terms, each reading one data stream: the labeled batch, or the unlabeled one
 * (labeled-train plus unlabeled documents, labels ignored). The training step minimises
 *
 *   L = ℓ(s_l) + λ · Σ_terms term.loss(s_stream + term.perturbation)
 *
 * and the Figure 2 evaluation measures the same terms on test documents. s is the embedded window after embedding
 * dropout; norms are per example over the window's time × embedding dimensions. θ̂ marks values computed at the
 * current weights that are constants for the gradient: no gradient flows through any perturbation's construction or
 * through the clean distribution.
 */
import * as tf from "@tensorflow/tfjs-core"
import type { Rng } from "../random.ts"

// ─── Eq. (1): frequency-weighted embedding normalization ─────────────────────────────────────────────────────────

/**
 * Eq. (1) per embedding dimension, with f the unigram frequencies over the training documents and 1e-6 inside the
 * root (reference). The model recomputes it from the raw matrix at every forward pass, so gradients reach every row.
 * This tfjs form is the definition; the CPU engine has a fused op with the same result (src/engine/normalize-op.ts).
 */
export function normalizeEmbeddings(embedding: tf.Tensor2D, frequencies: tf.Tensor1D): tf.Tensor2D {
  return tf.tidy(() => {
    const f = tf.reshape(frequencies, [-1, 1])
    const mean = tf.sum(tf.mul(f, embedding), 0, true)
    const centered = tf.sub(embedding, mean)
    const variance = tf.sum(tf.mul(f, tf.square(centered)), 0, true)
    return tf.div(centered, tf.sqrt(tf.add(variance, 1e-6))) as tf.Tensor2D
  })
}

// ─── Losses on the logits at the EOS step ────────────────────────────────────────────────────────────────────────

/**
 * −log p(y | s) per example (spec A3.1): sigmoid cross-entropy on one logit for 2 classes, softmax cross-entropy on
 * C logits otherwise. Returns [B].
 */
export function classificationLosses(logits: tf.Tensor2D, labels: tf.Tensor1D): tf.Tensor1D {
  return tf.tidy(() => {
    if (logits.shape[1] === 1) {
      const z = tf.reshape(logits, [-1])
      const y = tf.cast(labels, "float32")
      // max(z, 0) − z·y + log(1 + exp(−|z|)): the numerically stable form.
      return tf.add(tf.sub(tf.relu(z), tf.mul(z, y)), tf.log1p(tf.exp(tf.neg(tf.abs(z))))) as tf.Tensor1D
    }
    const logProbs = tf.logSoftmax(logits)
    return tf.neg(tf.sum(tf.mul(logProbs, tf.oneHot(labels, logits.shape[1])), 1)) as tf.Tensor1D
  })
}

/** ℓ: the mean classification loss over the batch (every document ends in its batch here). */
export function classificationLoss(logits: tf.Tensor2D, labels: tf.Tensor1D): tf.Scalar {
  return tf.tidy(() => tf.mean(classificationLosses(logits, labels)) as tf.Scalar)
}

/**
 * KL(q ‖ p) per example between the clean distribution (logits q, a constant: the paper's θ̂) and the perturbed one
 * (logits p), at the EOS step (spec A3.4). One logit: Bernoulli KL; several: categorical KL. Returns [B].
 */
export function klDivergence(qLogits: tf.Tensor2D, pLogits: tf.Tensor2D): tf.Tensor1D {
  return tf.tidy(() => {
    if (qLogits.shape[1] === 1) {
      const q = tf.reshape(qLogits, [-1])
      const p = tf.reshape(pLogits, [-1])
      // log σ(z) = −softplus(−z), log(1 − σ(z)) = −softplus(z); q·(log q − log p) + (1−q)·(log(1−q) − log(1−p)).
      const qProb = tf.sigmoid(q)
      const logQ = tf.neg(tf.softplus(tf.neg(q)))
      const log1mQ = tf.neg(tf.softplus(q))
      const logP = tf.neg(tf.softplus(tf.neg(p)))
      const log1mP = tf.neg(tf.softplus(p))
      return tf.add(tf.mul(qProb, tf.sub(logQ, logP)), tf.mul(tf.sub(1, qProb), tf.sub(log1mQ, log1mP))) as tf.Tensor1D
    }
    const logQ = tf.logSoftmax(qLogits)
    const logP = tf.logSoftmax(pLogits)
    return tf.sum(tf.mul(tf.exp(logQ), tf.sub(logQ, logP)), 1) as tf.Tensor1D
  })
}

// ─── Perturbations of the embedded window s [B, T, D] (added after embedding dropout) ─────────────────────────────

/**
 * ε·x / ‖x‖₂ per example (norm over all axes but the first). Like the reference's scale_l2 (spec A3.2) it divides by
 * α = max|x| first, so squaring neither overflows nor underflows for any float32 magnitude, and maps x = 0 to 0 (never
 * NaN). Unlike the reference it adds no 1e-12 to α and no 1e-6 under the root, which shrink the result for directions
 * with max|x| ≲ 1e-6: here Σ(x/α)² ≥ 1 whenever x ≠ 0, so ‖result‖ = ε exactly for every nonzero x.
 */
export function scaleL2(x: tf.Tensor, epsilon: number): tf.Tensor {
  return tf.tidy(() => {
    const axes = x.shape.map((_, i) => i).slice(1)
    const alpha = tf.max(tf.abs(x), axes, true)
    const unit = tf.div(x, tf.where(tf.greater(alpha, 0), alpha, tf.onesLike(alpha)))
    const norm = tf.sqrt(tf.maximum(tf.sum(tf.square(unit), axes, true), 1))
    return tf.mul(epsilon, tf.div(unit, norm))
  })
}

/** [B, T, 1] mask keeping steps 0 … len−2: zero at the last valid step (EOS) and on padding (spec A3.2 mask_by_length). */
export function beforeEosMask(lengths: Int32Array, steps: number): tf.Tensor3D {
  const B = lengths.length
  const m = new Float32Array(B * steps)
  for (let b = 0; b < B; b++) for (let t = 0; t < lengths[b] - 1 && t < steps; t++) m[b * steps + t] = 1
  return tf.tensor3d(m, [B, steps, 1])
}

/** Standard normal noise of `shape` from a seeded generator (so a step's noise is reproducible on resume). */
export function gaussian(shape: ReadonlyArray<number>, random: Rng): tf.Tensor {
  const size = shape.reduce((a, b) => a * b, 1)
  const values = new Float32Array(size)
  for (let i = 0; i < size; i++) values[i] = random.normal()
  return tf.tensor(values, [...shape])
}

/** r_rand (spec A3.5): Gaussian `noise` [B, T, D] masked at EOS and padding, scaled to norm ε per example. */
export function randomPerturbation(noise: tf.Tensor3D, lengths: Int32Array, epsilon: number): tf.Tensor3D {
  return tf.tidy(() => scaleL2(tf.mul(noise, beforeEosMask(lengths, noise.shape[1])), epsilon) as tf.Tensor3D)
}

/**
 * r_adv (Eq. 5) from g = ∇_s ℓ, the gradient of the clean loss (a constant: computed in its own pass). ℓ = −log p, so
 * ε·g/‖g‖ is the paper's −ε·∇log p/‖∇log p‖. Not masked at EOS (spec A6).
 */
export function adversarialPerturbation(lossGradient: tf.Tensor3D, epsilon: number): tf.Tensor3D {
  return scaleL2(lossGradient, epsilon) as tf.Tensor3D
}

/**
 * r_vadv (Eq. 7) by power iteration (spec A3.4): d ← ∇_d KL(q ‖ p(s + d)) at d = ξ·normalize(mask(d)), repeated
 * `iterations` times from d = `noise`, then scaled to ε (the final direction is not masked). `klAt(d)` must return
 * Σ_examples KL with q held constant (a sum, so each example's direction does not depend on the batch size).
 */
export function virtualAdversarialPerturbation(
  shape: ReadonlyArray<number>,
  lengths: Int32Array,
  options: { readonly epsilon: number; readonly xi: number; readonly iterations: number },
  klAt: (d: tf.Tensor3D) => tf.Scalar,
  noise: tf.Tensor3D
): tf.Tensor3D {
  return tf.tidy(() => {
    const mask = beforeEosMask(lengths, shape[1])
    let d: tf.Tensor3D = noise
    for (let k = 0; k < options.iterations; k++) {
      const probe = scaleL2(tf.mul(d, mask), options.xi) as tf.Tensor3D
      d = tf.grad((x: tf.Tensor) => klAt(x as tf.Tensor3D))(probe) as tf.Tensor3D
    }
    return scaleL2(d, options.epsilon) as tf.Tensor3D
  })
}

// ─── Loss terms and methods ──────────────────────────────────────────────────────────────────────────────────────

/** The sizes a term's perturbation needs: ε, the power-iteration probe norm ξ, and the number of iterations. */
export interface PerturbationSize {
  /** ε: the L2 norm of every perturbation, per example over the window (paper: 5.0 with LM pretraining). */
  readonly epsilon: number
  /** ξ: the norm of the VAT power-iteration probe (reference: 0.1). */
  readonly xi: number
  readonly powerIterations: number
}

export interface PerturbationOptions extends PerturbationSize {
  /** λ: weight of the perturbation terms (paper: 1). */
  readonly lambda: number
  /** Unlabeled examples per micro-batch for the unlabeled stream's terms (0: the whole batch at once). */
  readonly vatMicroBatch: number
}

export const DEFAULT_PERTURBATION: PerturbationOptions = { epsilon: 5, xi: 0.1, powerIterations: 1, lambda: 1, vatMicroBatch: 0 }

/** Which batch a term reads: the labeled one, or the unlabeled one (labeled-train + unlabeled documents). */
export type Stream = "labeled" | "unlabeled"

/**
 * What a term sees of its stream's (micro-)batch at the current weights θ̂. Every tensor here is a constant for the
 * gradient of the total loss. Tensors made by these functions belong to the caller's tidy scope; call them from
 * `prepare` (outside any gradient pass).
 */
export interface TermInput {
  /** The embedded window s [B, T, D], after embedding dropout. */
  readonly e: tf.Tensor3D
  readonly lengths: Int32Array
  /** Class labels [B] on the labeled stream; undefined on the unlabeled one. */
  readonly labels: tf.Tensor1D | undefined
  /** The term's seeded Gaussian noise [B, T, D] when it declares `noise`, else undefined. */
  readonly noise: tf.Tensor3D | undefined
  readonly size: PerturbationSize
  /** Logits p(·|x; θ̂) for a window x, differentiable w.r.t. x only (for perturbation directions). */
  logits(x: tf.Tensor3D): tf.Tensor2D
  /** Logits at the clean window, without gradient: q in the KL terms. */
  cleanLogits(): tf.Tensor2D
  /** g = ∇_s ℓ(s) of the clean classification loss (labeled stream only; in training it is a by-product of ℓ's pass). */
  lossGradient(): tf.Tensor3D
}

/** A term ready to differentiate: its perturbation r (a constant) and its per-example loss at p(·|s + r; θ). */
export interface PreparedTerm {
  readonly perturbation: tf.Tensor3D
  readonly loss: (perturbedLogits: tf.Tensor2D) => tf.Tensor1D
}

/**
 * One term of a method's loss. The training step adds λ · mean(loss) over the stream's examples and takes its
 * gradient w.r.t. the weights and s in one forward/backward pass; the Figure 2 evaluation reports the same mean.
 */
export interface LossTerm {
  readonly name: string
  readonly stream: Stream
  /** Set to a name to receive seeded Gaussian noise in `TermInput.noise` (the name seeds it: same name, same noise). */
  readonly noise?: string
  prepare(input: TermInput): PreparedTerm
}

const labelsOf = (input: TermInput, term: string): tf.Tensor1D => {
  if (input.labels === undefined) throw new Error(`loss term ${term} needs labels: put it on the labeled stream`)
  return input.labels
}

const noiseOf = (input: TermInput, term: string): tf.Tensor3D => {
  if (input.noise === undefined) throw new Error(`loss term ${term} reads noise: give it a \`noise\` name`)
  return input.noise
}

/** ℓ(s + r_rand) on the labeled batch: the paper's "random perturbation with labeled examples" control. */
export const randomTerm: LossTerm = {
  name: "random",
  stream: "labeled",
  noise: "random-perturbation",
  prepare: (input) => ({
    perturbation: randomPerturbation(noiseOf(input, "random"), input.lengths, input.size.epsilon),
    loss: (logits) => classificationLosses(logits, labelsOf(input, "random"))
  })
}

/** KL(p(s_u) ‖ p(s_u + r_rand)) on the unlabeled batch: VAT's random-direction control (absent from the reference code). */
export const randomUnlabeledTerm: LossTerm = {
  name: "random-unlabeled",
  stream: "unlabeled",
  noise: "kl-noise",
  prepare: (input) => {
    const q = input.cleanLogits()
    return { perturbation: randomPerturbation(noiseOf(input, "random-unlabeled"), input.lengths, input.size.epsilon), loss: (logits) => klDivergence(q, logits) }
  }
}

/** L_adv (Eq. 6) with r_adv (Eq. 5), on the labeled batch. */
export const adversarialTerm: LossTerm = {
  name: "adversarial",
  stream: "labeled",
  prepare: (input) => ({
    perturbation: adversarialPerturbation(input.lossGradient(), input.size.epsilon),
    loss: (logits) => classificationLosses(logits, labelsOf(input, "adversarial"))
  })
}

/** L_vadv (Eq. 8) with r_vadv (Eq. 7), on the unlabeled batch. */
export const virtualTerm: LossTerm = {
  name: "virtual",
  stream: "unlabeled",
  noise: "kl-noise",
  prepare: (input) => {
    const q = input.cleanLogits()
    const { epsilon, xi, powerIterations } = input.size
    const klAt = (d: tf.Tensor3D) => tf.sum(klDivergence(q, input.logits(tf.add(input.e, d) as tf.Tensor3D))) as tf.Scalar
    const perturbation = virtualAdversarialPerturbation(input.e.shape, input.lengths, { epsilon, xi, iterations: powerIterations }, klAt, noiseOf(input, "virtual"))
    return { perturbation, loss: (logits) => klDivergence(q, logits) }
  }
}

/** A training method: its name and its loss terms (the clean ℓ is always there). */
export interface MethodDefinition {
  readonly name: string
  readonly terms: ReadonlyArray<LossTerm>
}

/** The built-in methods' names, in the order reports list them (config `method`). */
export const METHODS = ["baseline", "random", "random-unlabeled", "adversarial", "virtual", "adversarial+virtual"] as const
export type Method = (typeof METHODS)[number]

/** The built-in methods as term lists. adversarial+virtual shares one ε between its two terms. */
export const BUILT_IN_METHODS: Readonly<Record<Method, MethodDefinition>> = {
  baseline: { name: "baseline", terms: [] },
  random: { name: "random", terms: [randomTerm] },
  "random-unlabeled": { name: "random-unlabeled", terms: [randomUnlabeledTerm] },
  adversarial: { name: "adversarial", terms: [adversarialTerm] },
  virtual: { name: "virtual", terms: [virtualTerm] },
  "adversarial+virtual": { name: "adversarial+virtual", terms: [adversarialTerm, virtualTerm] }
}

/** A built-in method's definition, or a user's definition as given. */
export const methodDefinition = (method: Method | MethodDefinition): MethodDefinition =>
  typeof method === "string" ? BUILT_IN_METHODS[method] : method

const reads = (method: Method | MethodDefinition, stream: Stream) => methodDefinition(method).terms.some((t) => t.stream === stream)
/** Whether the method has a term on the labeled stream (its `perturbedLoss` metric). */
export const usesLabeledPerturbation = (method: Method | MethodDefinition): boolean => reads(method, "labeled")
/** Whether the method reads the unlabeled stream (its `virtualLoss` metric). */
export const usesUnlabeled = (method: Method | MethodDefinition): boolean => reads(method, "unlabeled")

/** A term's per-example loss at its perturbation, at the current weights (no gradient taken): Figure 2's measure. */
export function perturbedLosses(term: LossTerm, input: TermInput): tf.Tensor1D {
  const { perturbation, loss } = term.prepare(input)
  return loss(input.logits(tf.add(input.e, perturbation) as tf.Tensor3D))
}
