/**
 * A new training method from the public API: one loss term, given to the library's run. It gets validation,
 * checkpoints, metrics.jsonl, the divergence guard and --resume like the built-in methods.
 * The term: adversarial training that only penalizes what the perturbation adds, max(0, ℓ(s + r_adv) − ℓ(s)).
 *   bun examples/compose-method.ts train.tsv test.tsv runs/adversarial-margin
 */
import * as tf from "@tensorflow/tfjs-core"
import { Effect } from "effect"
import { adversarialPerturbation, classificationLosses, type LossTerm, resolveConfig, runPipeline } from "../src/index.ts"

export const adversarialMargin: LossTerm = {
  name: "adversarial-margin",
  stream: "labeled",
  prepare: (input) => {
    const clean = classificationLosses(input.cleanLogits(), input.labels!) // a constant: computed without gradient
    return {
      perturbation: adversarialPerturbation(input.lossGradient(), input.size.epsilon), // r_adv, Eq. (5)
      loss: (logits) => tf.relu(tf.sub(classificationLosses(logits, input.labels!), clean)) as tf.Tensor1D
    }
  }
}

export const composeMethodExample = (trainFile: string, testFile: string, runDir: string, steps = 60, resume = false) =>
  runPipeline(
    resolveConfig({
      name: "adversarial-margin",
      dataset: { kind: "custom", train: trainFile, test: testFile },
      model: { embeddingDim: 16, lstmUnits: 24, hiddenUnits: 8, embeddingKeepProb: 0.8 },
      perturbation: { epsilon: 1, evalEpsilon: 0 },
      train: { steps, batchSize: 32, learningRate: 0.02, evalEvery: 20, checkpointEvery: 20 }
    }),
    { runDir, resume, method: { name: "adversarial-margin", terms: [adversarialMargin] } }
  )

if (import.meta.main) {
  const [train, test, runDir = "runs/adversarial-margin"] = process.argv.slice(2)
  const outcome = await Effect.runPromise(composeMethodExample(train, test, runDir))
  if (outcome.status === "completed") console.log(`test accuracy ${(outcome.summary.testAccuracy * 100).toFixed(1)}%`)
}
