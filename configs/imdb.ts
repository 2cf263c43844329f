/**
 * IMDB (Maas et al. 2011) at the paper's classifier settings (spec A4.2): D 256, LSTM 1024, hidden 30, batch 64,
 * 15,000 steps, 400-token windows, no lowercasing; unlabeled = the 50k train/unsup reviews (they add words);
 * validation = the first author's id-based slice of train (3,754 reviews), as in the reference code.
 */
import { defineConfig } from "../src/pipeline/config.ts"

export default defineConfig({
  name: "imdb",
  method: "baseline",
  seed: 0,
  dataset: { kind: "imdb" },
  data: { lowercase: false, validationSplit: "imdb-author", window: 400 },
  unlabeled: { source: "imdb-unsup", maxTokens: 0, addsTokens: true },
  model: { embeddingDim: 256, lstmUnits: 1024, hiddenUnits: 30, embeddingKeepProb: 0.5, normalizeEmbeddings: true },
  train: { steps: 15_000, batchSize: 64, unlabeledBatchSize: 64, learningRate: 5e-4, learningRateDecay: 0.9998, evalBatchSize: 64 }
})
