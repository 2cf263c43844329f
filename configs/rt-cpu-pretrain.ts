/**
 * LM pretraining for the RT CPU preset (configs/rt-cpu-methods.ts restores it): the same data, split and vocabulary
 * (labeled-train sentences + IMDB sentences < 25 tokens; never validation or test text), D 128, LSTM 256, sampled
 * softmax with 1,024 negatives, Adam 1e-3 ×0.9999, 6,000 steps × 128 sentence slots (~1.1 epochs of the 8.6M tokens;
 * 10 min 27 s for one run alone on 2 cores, validation perplexity 323.9 for seed 0, measured 2026-12-02).
 *   bun run experiment configs/rt-cpu-pretrain.ts --seeds 3 --root runs/rt-cpu-pretrain --data-dir ../shared/data
 */
import { defineConfig } from "../src/pipeline/config.ts"
import rtCpu from "./rt-cpu.ts"

export default defineConfig({
  ...rtCpu,
  name: "rt-cpu-pretrain",
  task: "language-model",
  lm: { candidateSamples: 1024, validationDocs: 0 },
  train: { steps: 6_000, batchSize: 128, learningRate: 1e-3, learningRateDecay: 0.9999, evalEvery: 500, checkpointEvery: 250, logEvery: 50, evalBatchSize: 256 }
})
