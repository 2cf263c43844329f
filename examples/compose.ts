/**
 * Composing the stages in your own graph: here, a tokenizer that also emits word bigrams, on a custom labeled
 * dataset, trained with the library's train step and scored with its evaluation stage.
 *   bun examples/compose.ts train.tsv test.tsv
 */
import * as tf from "@tensorflow/tfjs-core"
import { Effect, Stream } from "effect"
import {
  createTrainState,
  disposeTrainState,
  encodeDocument,
  evaluate,
  evaluationBatches,
  FrequencyTable,
  loadCustom,
  model,
  OPTIMIZER_DEFAULTS,
  rng,
  selectBackend,
  stepBatches,
  tokenize,
  trainingBatches,
  trainStep,
  type EncodedDoc
} from "../src/index.ts"

/** Unigrams plus bigrams: a stage of our own, in place of the library's tokenizer. */
const withBigrams = (text: string) => {
  const words = tokenize(text, { lowercase: true })
  return [...words, ...words.slice(1).map((w, i) => `${words[i]}_${w}`)]
}

export const composeExample = (trainFile: string, testFile: string, steps = 60) =>
  Effect.gen(function* () {
    yield* selectBackend("auto")
    const { corpus } = yield* loadCustom({ train: trainFile, test: testFile })
    const table = new FrequencyTable()
    const train = yield* Stream.fromIterable(corpus.train).pipe(
      Stream.map((doc) => ({ ids: table.intern(withBigrams(doc.text)), label: doc.label })),
      Stream.tap((doc) => Effect.sync(() => table.count(doc.ids, true))),
      Stream.runCollect
    )
    const vocab = table.buildVocabulary({ minDocCount: 2, maxSize: 20_000 })
    const encode = (docs: ReadonlyArray<{ ids: Int32Array; label: number }>) =>
      docs.map((d) => encodeDocument(vocab.encodeInterned(table, d.ids), d.label)).filter((d): d is EncodedDoc => d !== undefined)
    const trainDocs = encode(train)
    const testDocs = encode(corpus.test!.map((d) => ({ ids: table.intern(withBigrams(d.text)), label: d.label })))

    const shape = { vocabSize: vocab.size, embeddingDim: 16, lstmUnits: 24, hiddenUnits: 8, numClasses: corpus.classes.length }
    const initial = model.initialParams(shape, rng(1, "init"))
    const state = createTrainState(initial)
    tf.dispose(Object.values(initial))
    const frequencies = tf.tensor1d(vocab.frequencies())
    const options = {
      seed: 1,
      embeddingKeepProb: 0.8,
      normalizeEmbeddings: true,
      optimizer: { ...OPTIMIZER_DEFAULTS, learningRate: 0.01, learningRateDecay: 1 }
    }
    const batches = (stream: string, batchSize: number) => trainingBatches(trainDocs, { batchSize, seed: 1, stream, window: 400, startStep: 0 })
    yield* stepBatches(batches("labeled", 32), batches("unlabeled", 64), 0).pipe(
      Stream.take(steps),
      Stream.runForEach((step) => Effect.sync(() => trainStep(state, step, frequencies, options)))
    )
    const result = evaluate(state.ema, frequencies, evaluationBatches(testDocs, 64, 400), options)
    disposeTrainState(state)
    frequencies.dispose()
    return result
  })

if (import.meta.main) {
  const [train, test] = process.argv.slice(2)
  const result = await Effect.runPromise(composeExample(train, test))
  console.log(`test accuracy ${(result.accuracy * 100).toFixed(1)}% on ${result.examples} documents`)
}
