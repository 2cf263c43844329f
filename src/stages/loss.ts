/**
 * Classification loss (spec A3.1): sigmoid cross-entropy on one logit for 2 classes, sparse softmax cross-entropy
 * otherwise, at the EOS step, averaged over the documents of the batch (every document ends in its batch here).
 */
import * as tf from "@tensorflow/tfjs-core"

export function classificationLoss(logits: tf.Tensor2D, labels: tf.Tensor1D): tf.Scalar {
  return tf.tidy(() => {
    if (logits.shape[1] === 1) {
      const z = tf.reshape(logits, [-1])
      const y = tf.cast(labels, "float32")
      // max(z, 0) − z·y + log(1 + exp(−|z|)): the numerically stable form.
      return tf.mean(tf.add(tf.sub(tf.relu(z), tf.mul(z, y)), tf.log1p(tf.exp(tf.neg(tf.abs(z)))))) as tf.Scalar
    }
    const logProbs = tf.logSoftmax(logits)
    const picked = tf.sum(tf.mul(logProbs, tf.oneHot(labels, logits.shape[1])), 1)
    return tf.neg(tf.mean(picked)) as tf.Scalar
  })
}
