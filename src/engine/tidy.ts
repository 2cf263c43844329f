import * as tf from "@tensorflow/tfjs-core"

/**
 * tf.tidy with a precise return type: disposes every tensor created in `fn` except those reachable from its result
 * (which move to the enclosing scope). tfjs types the result as TensorContainer; our results are plain records.
 */
export const tidy = <T>(fn: () => T): T => tf.tidy(fn as () => tf.TensorContainer) as T
