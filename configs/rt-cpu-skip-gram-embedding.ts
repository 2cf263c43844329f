/**
 * configs/rt-cpu-methods.ts with its embedding restored from skip-gram pretraining (configs/rt-cpu-skip-gram.ts; not in
 * the paper — the embedding is what transfers at CPU scale, and skip-gram trains one in minutes). The LSTM and head
 * start fresh. Same splits, steps, batches and learning rate as the from-scratch and LM-restored presets, so grids pair
 * by seed. ε = 1, chosen on seed 0's validation split (AT: 18.56% at ε 1 vs 18.77% at ε 0.1; VAT at ε 1 18.46%;
 * baseline 18.46%; README, Results).
 *   bun run experiment configs/rt-cpu-skip-gram.ts --seeds 5 --root runs/rt-cpu-skip-gram --data-dir ../shared/data
 *   bun run experiment configs/rt-cpu-skip-gram-embedding.ts --methods baseline,adversarial --seeds 5 --root runs/grid-skip-gram --data-dir ../shared/data
 */
import { defineConfig } from "../src/pipeline/config.ts"
import rtCpuMethods from "./rt-cpu-methods.ts"

export default defineConfig({
  ...rtCpuMethods,
  name: "rt-cpu-skip-gram-embedding",
  pretrained: "runs/rt-cpu-skip-gram/seed{seed}",
  pretrainedParts: "embedding",
  perturbation: { epsilon: 1, evalEpsilon: 5 }
})
