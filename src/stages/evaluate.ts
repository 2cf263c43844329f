/**
 * Evaluation stage (spec A4.3): the EMA weights, no dropout, every document scored exactly once.
 */
import * as tf from "@tensorflow/tfjs-core"
import { embed, head, lstm, predict, type Params } from "../model/classifier.ts"
import type { Batch } from "./batch.ts"
import { classificationLoss } from "./loss.ts"
import { batchTensors, embeddingTable, prefixState } from "./train.ts"

export interface Evaluation {
  readonly examples: number
  readonly accuracy: number
  readonly error: number
  /** Mean classification loss. */
  readonly loss: number
}

export function evaluate(
  params: Params,
  frequencies: tf.Tensor1D,
  batches: ReadonlyArray<Batch>,
  options: { readonly normalizeEmbeddings: boolean }
): Evaluation {
  const table = tf.keep(tf.tidy(() => embeddingTable(params, frequencies, options.normalizeEmbeddings)))
  let correct = 0
  let lossSum = 0
  let examples = 0
  try {
    for (const batch of batches) {
      tf.tidy(() => {
        const tensors = batchTensors(batch)
        const initial = prefixState(params, table, batch, undefined)
        const { logits } = head(params, lstm(params, embed(table, tensors.ids, undefined), batch.lengths, initial, false).h)
        const predicted = predict(logits).dataSync()
        for (let b = 0; b < batch.size; b++) if (predicted[b] === batch.labels[b]) correct++
        lossSum += classificationLoss(logits, tensors.labels).dataSync()[0] * batch.size
        examples += batch.size
        tensors.dispose()
      })
    }
  } finally {
    if (table !== params["embedding"]) table.dispose()
  }
  const accuracy = examples === 0 ? 0 : correct / examples
  return { examples, accuracy, error: 1 - accuracy, loss: examples === 0 ? 0 : lossSum / examples }
}
