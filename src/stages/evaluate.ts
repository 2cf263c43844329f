/**
 * Evaluation stage (spec A4.3): the EMA weights, no dropout, every document scored exactly once.
 */
import * as tf from "@tensorflow/tfjs-core"
import type { ModelEngine } from "../engine/model-engine.ts"
import { embed, features, head, predict, type Params } from "../model/classifier.ts"
import type { Batch } from "./batch.ts"
import { rng } from "../random.ts"
import { adversarialTerm, classificationLoss, gaussian, type LossTerm, perturbedLosses, type TermInput, virtualTerm } from "../method/method.ts"
import { batchTensors, embeddingTable, prefixState } from "./train.ts"

export interface Evaluation {
  readonly examples: number
  readonly accuracy: number
  readonly error: number
  /** Mean classification loss. */
  readonly loss: number
}

/** What every evaluation pass needs besides the weights: how the model runs, and whether it normalizes (Eq. 1). */
export interface EvaluationOptions {
  /** The selected backend's `ActiveBackend.engine` (or REFERENCE_ENGINE for the tfjs ops). */
  readonly engine: ModelEngine
  readonly normalizeEmbeddings: boolean
}

/** Run `body` with the (normalized) embedding table computed once for a whole evaluation pass. */
export function withTable<A>(params: Params, frequencies: tf.Tensor1D, options: EvaluationOptions, body: (table: tf.Tensor2D) => A): A {
  const table = tf.keep(tf.tidy(() => embeddingTable(options.engine, params, frequencies, options.normalizeEmbeddings)))
  try {
    return body(table)
  } finally {
    if (table !== params["embedding"]) table.dispose()
  }
}

/**
 * An evaluation pass as a generator that yields the number of batches done after each one and returns the result, so
 * a caller can report progress, let signals in and stop between batches (`return()` releases the table). The plain
 * functions below run one to the end.
 */
export type EvaluationSteps<A> = Generator<number, A, void>

/** Run an evaluation generator to its end. */
export function runToEnd<A>(steps: EvaluationSteps<A>): A {
  for (;;) {
    const next = steps.next()
    if (next.done) return next.value
  }
}

function* withTableSteps<A>(params: Params, frequencies: tf.Tensor1D, options: EvaluationOptions, body: (table: tf.Tensor2D) => EvaluationSteps<A>): EvaluationSteps<A> {
  const table = tf.keep(tf.tidy(() => embeddingTable(options.engine, params, frequencies, options.normalizeEmbeddings)))
  try {
    return yield* body(table)
  } finally {
    if (table !== params["embedding"]) table.dispose()
  }
}

/** A batch's features as evaluation sees them: no dropout, no perturbation, no gradient (in the caller's tidy scope). */
export function cleanFeatures(engine: ModelEngine, params: Params, table: tf.Tensor2D, batch: Batch, ids: tf.Tensor2D): tf.Tensor2D {
  return features(engine, params, embed(table, ids, undefined), batch.lengths, prefixState(engine, params, table, batch, undefined), "none")
}

export function evaluate(params: Params, frequencies: tf.Tensor1D, batches: ReadonlyArray<Batch>, options: EvaluationOptions): Evaluation {
  return runToEnd(evaluationSteps(params, frequencies, batches, options))
}

/** `evaluate`, one batch per step. */
export function* evaluationSteps(params: Params, frequencies: tf.Tensor1D, batches: ReadonlyArray<Batch>, options: EvaluationOptions): EvaluationSteps<Evaluation> {
  let correct = 0
  let lossSum = 0
  let examples = 0
  yield* withTableSteps(params, frequencies, options, function* (table) {
    for (const [index, batch] of batches.entries()) {
      tf.tidy(() => {
        const tensors = batchTensors(batch)
        const { logits } = head(params, cleanFeatures(options.engine, params, table, batch, tensors.ids))
        const predicted = predict(logits).dataSync()
        for (let b = 0; b < batch.size; b++) if (predicted[b] === batch.labels[b]) correct++
        lossSum += classificationLoss(logits, tensors.labels).dataSync()[0] * batch.size
        examples += batch.size
        tensors.dispose()
      })
      yield index + 1
    }
  })
  const accuracy = examples === 0 ? 0 : correct / examples
  return { examples, accuracy, error: 1 - accuracy, loss: examples === 0 ? 0 : lossSum / examples }
}

/** The mean feature (LSTM output at the EOS, no dropout) over the batches' documents. */
export function meanFeature(params: Params, frequencies: tf.Tensor1D, batches: ReadonlyArray<Batch>, options: EvaluationOptions): tf.Tensor1D {
  let sum: tf.Tensor1D | undefined
  let examples = 0
  withTable(params, frequencies, options, (table) => {
    for (const batch of batches) {
      const next = tf.tidy(() => {
        const tensors = batchTensors(batch)
        const batchSum = tf.sum(cleanFeatures(options.engine, params, table, batch, tensors.ids), 0)
        return sum === undefined ? batchSum : tf.add(sum, batchSum)
      }) as tf.Tensor1D
      sum?.dispose()
      sum = next
      examples += batch.size
    }
  })
  if (sum === undefined) throw new Error("meanFeature needs at least one document")
  const mean = tf.div(sum, examples) as tf.Tensor1D
  sum.dispose()
  return mean
}

export interface PerturbationEvaluation {
  /** Mean ℓ(e + r_adv) at ε (paper Figure 2a). */
  readonly adversarialLoss: number
  /** Mean KL(p(e) ‖ p(e + r_vadv)) at ε (paper Figure 2b). */
  readonly virtualAdversarialLoss: number
}

/**
 * The adversarial and virtual adversarial losses of a model on labeled documents (EMA weights, no dropout), the
 * quantities the paper plots in Figure 2. VAT noise is seeded per batch, so repeated evaluations are comparable.
 */
export interface PerturbationLossOptions extends EvaluationOptions {
  readonly epsilon: number
  readonly xi: number
  readonly powerIterations: number
  readonly seed: number
}

export function evaluatePerturbationLosses(
  params: Params,
  frequencies: tf.Tensor1D,
  batches: ReadonlyArray<Batch>,
  options: PerturbationLossOptions
): PerturbationEvaluation {
  return runToEnd(perturbationLossSteps(params, frequencies, batches, options))
}

/** `evaluatePerturbationLosses`, one batch per step. */
export function* perturbationLossSteps(
  params: Params,
  frequencies: tf.Tensor1D,
  batches: ReadonlyArray<Batch>,
  options: PerturbationLossOptions
): EvaluationSteps<PerturbationEvaluation> {
  let adversarial = 0
  let virtual = 0
  let examples = 0
  yield* withTableSteps(params, frequencies, options, function* (table) {
    for (const [index, batch] of batches.entries()) {
      tf.tidy(() => {
        const inputFor = evaluationTermInput(params, table, batch, options, index)
        // The training step's own terms (src/method/method.ts), summed over the batch's documents.
        adversarial += tf.sum(perturbedLosses(adversarialTerm, inputFor(adversarialTerm))).dataSync()[0]
        virtual += tf.sum(perturbedLosses(virtualTerm, inputFor(virtualTerm))).dataSync()[0]
        examples += batch.size
      })
      yield index + 1
    }
  })
  return { adversarialLoss: examples === 0 ? 0 : adversarial / examples, virtualAdversarialLoss: examples === 0 ? 0 : virtual / examples }
}

/**
 * What a loss term sees of an evaluation batch: the given weights, no dropout, a term's noise seeded per batch (so
 * repeated evaluations are comparable). Tensors belong to the caller's tidy scope.
 */
function evaluationTermInput(params: Params, table: tf.Tensor2D, batch: Batch, options: PerturbationLossOptions, index: number): (term: LossTerm) => TermInput {
  const { ids, labels } = batchTensors(batch)
  const { engine } = options
  const initial = prefixState(engine, params, table, batch, undefined)
  const e = embed(table, ids, undefined)
  // Only ∂/∂(window) is ever taken here, so the fused LSTM may skip its weight gradients.
  const logits = (x: tf.Tensor3D) => head(params, features(engine, params, x, batch.lengths, initial, "inputs")).logits
  return (term) => ({
    e,
    lengths: batch.lengths,
    labels,
    noise: term.noise === undefined ? undefined : (gaussian(e.shape, rng(options.seed, "evaluation-noise", index)) as tf.Tensor3D),
    size: options,
    logits,
    cleanLogits: () => head(params, features(engine, params, e, batch.lengths, initial, "none")).logits,
    lossGradient: () => tf.grad((x: tf.Tensor) => classificationLoss(logits(x as tf.Tensor3D), labels))(e) as tf.Tensor3D
  })
}
