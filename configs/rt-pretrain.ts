/**
 * Language-model pretraining for Rotten Tomatoes at the paper's sizes (paper §4.1, spec A4.2): D 512, LSTM 1024,
 * sampled softmax with 1,024 unique negatives, batch 256, Adam 1e-3 decayed ×0.9999 per step, 100,000 steps,
 * clipping 1.0 (embedding excluded), embedding keep 0.5, 400-token stateful windows. Data, split and vocabulary are
 * configs/rt.ts's (labeled-train sentences + IMDB sentences < 25 tokens; validation and test text never seen), so
 * a classifier restores it with `pretrained`:
 *   bun run pipeline configs/rt-pretrain.ts --run-dir runs/rt-pretrain/seed0
 *   bun run pipeline configs/rt.ts --set pretrained=runs/rt-pretrain/seed0
 */
import { defineConfig } from "../src/pipeline/config.ts"
import rt from "./rt.ts"

export default defineConfig({
  ...rt,
  name: "rt-pretrain",
  task: "language-model",
  lm: { candidateSamples: 1024, validationDocs: 0 },
  train: { steps: 100_000, batchSize: 256, learningRate: 1e-3, learningRateDecay: 0.9999, evalEvery: 5_000, checkpointEvery: 1_000, evalBatchSize: 256 }
})
