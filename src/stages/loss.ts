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

/** Mean KL over the batch: the virtual adversarial loss L_v-adv (paper Eq. 8). */
export const meanKl = (qLogits: tf.Tensor2D, pLogits: tf.Tensor2D): tf.Scalar => tf.tidy(() => tf.mean(klDivergence(qLogits, pLogits)) as tf.Scalar)
