/**
 * Rotten Tomatoes, CPU preset: the paper's recipe (spec A4.2) at a size that trains from scratch on 2 cores in well
 * under an hour — D 128, LSTM 256 (paper: 512 / 1024), 2,000 steps of 64 sentences (~15 epochs of the 8.6k training
 * sentences), Adam 1e-3 decayed ×0.9995 per step (no LM pretraining here, so a larger start than the paper's 5e-4).
 * Unlabeled data (IMDB sentences < 25 tokens, counts only for RT words) is loaded so the vocabulary and embedding
 * normalization are the ones the perturbation methods use.
 */
import { defineConfig } from "../src/pipeline/config.ts"
import rt from "./rt.ts"

export default defineConfig({
  ...rt,
  name: "rt-cpu",
  model: { embeddingDim: 128, lstmUnits: 256, hiddenUnits: 30, embeddingKeepProb: 0.5, normalizeEmbeddings: true },
  train: { steps: 2_000, batchSize: 64, unlabeledBatchSize: 512, learningRate: 1e-3, learningRateDecay: 0.9995, evalEvery: 500, checkpointEvery: 250 }
})
