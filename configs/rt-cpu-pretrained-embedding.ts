/**
 * configs/rt-cpu-pretrained.ts restoring only the pretrained embedding (`pretrainedParts: "embedding"`): the LSTM and
 * the head start fresh. An ablation, not the paper's recipe (which restores the LSTM too): with this short CPU
 * pretraining the restored LSTM makes the classifier learn slowly (see README, Results), while the embedding alone
 * transfers. Same splits, steps, batches, learning rate and ε as the from-scratch preset, so the grids pair by seed.
 *   bun run experiment configs/rt-cpu-pretrained-embedding.ts --methods baseline,adversarial,virtual --seeds 3 --root runs/grid-pretrained-embedding --data-dir ../shared/data
 */
import { defineConfig } from "../src/pipeline/config.ts"
import rtCpuPretrained from "./rt-cpu-pretrained.ts"

export default defineConfig({
  ...rtCpuPretrained,
  name: "rt-cpu-pretrained-embedding",
  pretrainedParts: "embedding"
})
