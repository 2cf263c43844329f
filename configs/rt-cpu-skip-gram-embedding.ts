/**
 * The best RT recipe on a CPU (README, Results): configs/rt-cpu-methods.ts with its embedding restored from skip-gram
 * pretraining (configs/rt-cpu-skip-gram.ts; not in the paper — the embedding is what transfers at CPU scale, and
 * skip-gram trains one in minutes). The LSTM and head start fresh. Same splits, steps, batches and learning rate as the
 * from-scratch and LM-restored presets, so grids pair by seed. ε = 1, chosen on validation (AT 18.09% at ε 1 vs 18.61%
 * at ε 3, mean of the five validation splits). Measured test error over seeds 0–4: baseline 19.99%, adversarial
 * 19.18%, virtual 19.55%, adversarial+virtual 19.44% (from scratch 25.00%). One seed, alone on 2 cores: ~4 min of
 * skip-gram, then ~3–4 min (baseline) to ~8 min (adversarial+virtual).
 *   bun run experiment configs/rt-cpu-skip-gram.ts --seeds 5 --root runs/rt-cpu-skip-gram --data-dir ../shared/data
 *   bun run experiment configs/rt-cpu-skip-gram-embedding.ts --methods baseline,adversarial,virtual,adversarial+virtual --seeds 5 --root runs/final-sg --data-dir ../shared/data
 *   one row: bun run pipeline configs/rt-cpu-skip-gram-embedding.ts --set method=adversarial --data-dir ../shared/data  (seed 0: 17.82%)
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
