/**
 * Nearest neighbours in a word embedding (the paper's Table 3): cosine similarity between rows of the table the model
 * reads — Eq. 1 normalized when the run normalizes (`embeddingTable`), since that is what training perturbs.
 */
import * as tf from "@tensorflow/tfjs-core"

export interface Neighbor {
  readonly id: number
  readonly similarity: number
}

/** cos(a, b) = a·b / (‖a‖ ‖b‖); 0 when either vector is zero (it has no direction). */
export function cosineSimilarity(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`vectors of different lengths (${a.length} and ${b.length})`)
  let dot = 0
  let aa = 0
  let bb = 0
  for (let i = 0; i < a.length; i++) {
    dot += a[i] * b[i]
    aa += a[i] * a[i]
    bb += b[i] * b[i]
  }
  return aa === 0 || bb === 0 ? 0 : dot / Math.sqrt(aa * bb)
}

/**
 * The `k` rows of `table` [V, D] most cosine-similar to each query row, most similar first (ties: lower id first).
 * Never the query itself nor an id in `exclude` (e.g. EOS), so fewer than k come back only when the table is smaller.
 */
export function nearestNeighbors(
  table: tf.Tensor2D,
  queries: ReadonlyArray<number>,
  k: number,
  exclude: ReadonlySet<number> = new Set()
): Array<Array<Neighbor>> {
  const V = table.shape[0]
  for (const q of queries) if (!Number.isInteger(q) || q < 0 || q >= V) throw new Error(`query id ${q} is outside the table (${V} rows)`)
  if (queries.length === 0) return []
  const similarities = tf.tidy(() => {
    // Unit rows, so one matrix product gives every cosine; a zero row stays zero (similarity 0 to everything).
    const unit = tf.div(table, tf.maximum(tf.norm(table, 2, 1, true), 1e-12))
    return tf.matMul(tf.gather(unit, tf.tensor1d(Array.from(queries), "int32")), unit, false, true)
  })
  const all = similarities.dataSync()
  similarities.dispose()
  return queries.map((q, row) => topK(all.subarray(row * V, (row + 1) * V), k, (id) => id === q || exclude.has(id)))
}

/** The k largest entries (ties: lower id first), skipping ids for which `skip` holds; O(V·k), k is small. */
function topK(values: ArrayLike<number>, k: number, skip: (id: number) => boolean): Array<Neighbor> {
  const best: Array<Neighbor> = []
  if (k <= 0) return best
  for (let id = 0; id < values.length; id++) {
    const similarity = values[id]
    if (skip(id) || Number.isNaN(similarity) || (best.length === k && !(similarity > best[k - 1].similarity))) continue
    let at = best.length
    while (at > 0 && similarity > best[at - 1].similarity) at--
    best.splice(at, 0, { id, similarity })
    if (best.length > k) best.pop()
  }
  return best
}
