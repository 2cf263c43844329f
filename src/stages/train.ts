/**
 * The training step stages: tensors for a batch, clean forward, loss, gradient, clipping, Adam and EMA update.
 * Every tensor a step creates is released before it returns (tf.tidy plus explicit disposal of kept tensors), so
 * `tf.memory().numTensors` is flat across steps.
 */
import * as tf from "@tensorflow/tfjs-core"
import {
  EMBEDDING,
  embed,
  embeddingDropoutMask,
  logitsFromEmbedded,
  lstm,
  normalizeEmbeddings,
  type LstmState,
  type Params
} from "../model/classifier.ts"
import { applyGradients, clipByGlobalNorm, learningRateAt, type OptimizerConfig, type TrainState } from "../model/optimizer.ts"
import { tidy } from "../engine/tidy.ts"
import { rng } from "../random.ts"
import type { Batch, StepBatches } from "./batch.ts"
import { classificationLoss } from "./loss.ts"

export interface StepOptions {
  readonly seed: number
  readonly embeddingKeepProb: number
  readonly normalizeEmbeddings: boolean
  readonly optimizer: OptimizerConfig
}

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
  const ids = tf.tensor2d(batch.ids, [batch.size, batch.steps], "int32")
  const labels = tf.tensor1d(batch.labels, "int32")
  return { ids, labels, dispose: () => tf.dispose([ids, labels]) }
}

/**
 * Initial LSTM state from the tokens before the window, run forward without gradient (spec A6, "simpler" segment
 * handling). Undefined when no document of the batch is longer than the window.
 */
export function prefixState(params: Params, table: tf.Tensor2D, batch: Batch, dropout: tf.Tensor3D | undefined): LstmState | undefined {
  const prefix = batch.prefix
  if (prefix === undefined) return undefined
  return tidy(() => {
    const ids = tf.tensor2d(prefix.ids, [batch.size, prefix.steps], "int32")
    // Returned tensors move to the caller's tidy scope.
    return lstm(params, embed(table, ids, dropout), prefix.lengths, undefined, false)
  })
}

export interface StepMetrics {
  readonly step: number
  readonly loss: number
  readonly nll: number
  readonly gradNorm: number
  readonly learningRate: number
  /** Hidden ReLU units that were zero for every example of the batch. */
  readonly deadUnits: number
  readonly examples: number
}

export type StepResult = { readonly ok: true; readonly metrics: StepMetrics } | { readonly ok: false; readonly loss: number; readonly step: number }

/**
 * One optimizer step on the labeled batch (method `baseline`: total loss = NLL). The unlabeled batch rides along in
 * the zipped stream for the perturbation methods. A non-finite loss leaves the weights untouched and reports failure.
 */
export function trainStep(state: TrainState, batches: StepBatches, frequencies: tf.Tensor1D, options: StepOptions): StepResult {
  const step = state.step
  const random = rng(options.seed, "step", step)
  const batch = batches.labeled
  const D = state.params[EMBEDDING].shape[1]!
  return tidy((): StepResult => {
    const tensors = batchTensors(batch)
    const dropout = embeddingDropoutMask(batch.size, D, options.embeddingKeepProb, random)
    const initial = tidy(() => {
      if (batch.prefix === undefined) return undefined
      const table = embeddingTable(state.params, frequencies, options.normalizeEmbeddings)
      return prefixState(state.params, table, batch, dropout)
    })
    let hidden: tf.Tensor2D | undefined
    const { value, grads } = tf.variableGrads(() => {
      const table = embeddingTable(state.params, frequencies, options.normalizeEmbeddings)
      const e = embed(table, tensors.ids, dropout)
      const out = logitsFromEmbedded(state.params, e, batch.lengths, initial)
      hidden = tf.keep(out.hidden)
      return classificationLoss(out.logits, tensors.labels)
    }, Object.values(state.params))
    const byName: Record<string, tf.Tensor> = {}
    for (const [name, v] of Object.entries(state.params)) byName[name] = grads[v.name]
    const loss = value.dataSync()[0]
    const deadUnits = hidden === undefined ? 0 : tf.tidy(() => tf.sum(tf.cast(tf.equal(tf.max(hidden!, 0), 0), "int32")).dataSync()[0])
    hidden?.dispose()
    tensors.dispose()
    if (!Number.isFinite(loss)) return { ok: false, loss, step }
    const clipped = clipByGlobalNorm(byName, options.optimizer.maxGradNorm)
    const gradNorm = clipped.globalNorm.dataSync()[0]
    const learningRate = learningRateAt(options.optimizer, step)
    applyGradients(state, clipped.grads, options.optimizer)
    return { ok: true, metrics: { step: step + 1, loss, nll: loss, gradNorm, learningRate, deadUnits, examples: batch.size } }
  })
}
