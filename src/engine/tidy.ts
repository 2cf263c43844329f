import * as tf from "@tensorflow/tfjs-core"

/**
 * tf.tidy with a precise return type: disposes every tensor created in `fn` except those reachable from its result
 * (which move to the enclosing scope). Unlike tf.tidy, typed arrays in the result are not searched element by
 * element: tfjs walks every index of every Float32Array it meets (a set insertion each), which cost ~20–50 ms per LM
 * step for the carried [B × H] states alone.
 */
export function tidy<T>(fn: () => T): T {
  const engine = tf.engine()
  let kept: Array<tf.Tensor> = []
  engine.startScope()
  try {
    const result = fn()
    kept = tensorsIn(result)
    return result
  } finally {
    engine.endScope(kept)
  }
}

/** The tensors reachable from a result through arrays and plain objects (typed arrays and other views skipped). */
export function tensorsIn(value: unknown, out: Array<tf.Tensor> = [], seen = new Set<object>()): Array<tf.Tensor> {
  if (value === null || typeof value !== "object" || ArrayBuffer.isView(value) || seen.has(value)) return out
  seen.add(value)
  if (value instanceof tf.Tensor) out.push(value)
  else for (const item of Array.isArray(value) ? value : Object.values(value)) tensorsIn(item, out, seen)
  return out
}
