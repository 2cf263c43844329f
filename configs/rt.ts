/**
 * Rotten Tomatoes at the paper's settings (spec A4.2; paper §4): D 512, LSTM 1024, hidden 30, batch 64 labeled /
 * 512 unlabeled, 10,000 steps, Adam 5e-4 decayed ×0.9998 per step, embedding keep 0.5, lowercase.
 * Unlabeled: IMDB review sentences shorter than 25 tokens stand in for the paper's Amazon reviews; like the reference
 * code's Amazon text they may raise the counts of RT words but add no new words.
 */
import { defineConfig } from "../src/pipeline/config.ts"

export default defineConfig({
  name: "rt",
  method: "baseline",
  seed: 0,
  dataset: { kind: "rt" },
  data: { lowercase: true, testFraction: 0.1, validationFraction: 0.1, window: 400 },
  unlabeled: { source: "imdb-sentences", maxTokens: 25, addsTokens: false },
  model: { embeddingDim: 512, lstmUnits: 1024, hiddenUnits: 30, embeddingKeepProb: 0.5, normalizeEmbeddings: true },
  train: { steps: 10_000, batchSize: 64, unlabeledBatchSize: 512, learningRate: 5e-4, learningRateDecay: 0.9998 }
})
