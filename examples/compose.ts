/**
 * Plugging your own stage into the library's run: a tokenizer that also emits word bigrams, given as a layer. The run
 * keeps everything else: validation, checkpoints, metrics.jsonl, the divergence guard, and --resume.
 *   bun examples/compose.ts train.tsv test.tsv runs/bigrams
 */
import { Effect } from "effect"
import { resolveConfig, runPipeline, tokenize, tokenizerLayer } from "../src/index.ts"

/** Unigrams plus bigrams, in place of the library's tokenizer, for every split. */
export const bigramTokenizer = tokenizerLayer((text, options) => {
  const words = tokenize(text, options)
  return [...words, ...words.slice(1).map((w, i) => `${words[i]}_${w}`)]
})

export const composeExample = (trainFile: string, testFile: string, runDir: string, steps = 60, resume = false) =>
  runPipeline(
    resolveConfig({
      name: "bigrams",
      dataset: { kind: "custom", train: trainFile, test: testFile },
      model: { embeddingDim: 16, lstmUnits: 24, hiddenUnits: 8, embeddingKeepProb: 0.8 },
      perturbation: { evalEpsilon: 0 },
      train: { steps, batchSize: 32, learningRate: 0.02, evalEvery: 20, checkpointEvery: 20 }
    }),
    { runDir, resume }
  ).pipe(Effect.provide(bigramTokenizer))

if (import.meta.main) {
  const [train, test, runDir = "runs/bigrams"] = process.argv.slice(2)
  const outcome = await Effect.runPromise(composeExample(train, test, runDir))
  if (outcome.status === "completed") console.log(`test accuracy ${(outcome.summary.testAccuracy * 100).toFixed(1)}%`)
}
