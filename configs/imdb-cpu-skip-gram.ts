/**
 * Skip-gram embedding pretraining for the IMDB CPU preset (not in the paper): the imdb-cpu data and vocabulary, on the
 * labeled-train reviews (minus the validation slice) + the 50k unlabeled reviews, never validation or test text;
 * D 256, window 5, 5 negatives, 3 epochs.
 *   bun run experiment configs/imdb-cpu-skip-gram.ts --seeds 2 --root runs/imdb-cpu-skip-gram --data-dir ../shared/data
 */
import { defineConfig } from "../src/pipeline/config.ts"
import imdbCpu from "./imdb-cpu.ts"

export default defineConfig({
  ...imdbCpu,
  name: "imdb-cpu-skip-gram",
  task: "skip-gram",
  skipGram: { window: 5, negatives: 5, epochs: 3, subsample: 1e-4, learningRate: 0.025 }
})
