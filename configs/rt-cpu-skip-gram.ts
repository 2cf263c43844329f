/**
 * Skip-gram embedding pretraining for the RT CPU preset (not in the paper; an option for CPU budgets): the rt-cpu data,
 * split and vocabulary (labeled-train sentences + IMDB sentences < 25 tokens; never validation or test text), D 128,
 * window 5, 5 negatives, 5 epochs. configs/rt-cpu-skip-gram-embedding.ts restores it.
 *   bun run experiment configs/rt-cpu-skip-gram.ts --seeds 5 --root runs/rt-cpu-skip-gram --data-dir ../shared/data
 */
import { defineConfig } from "../src/pipeline/config.ts"
import rtCpu from "./rt-cpu.ts"

export default defineConfig({
  ...rtCpu,
  name: "rt-cpu-skip-gram",
  task: "skip-gram",
  skipGram: { window: 5, negatives: 5, epochs: 5, subsample: 1e-4, learningRate: 0.025 }
})
