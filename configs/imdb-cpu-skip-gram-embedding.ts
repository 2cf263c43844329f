/**
 * configs/imdb-cpu.ts with its embedding restored from configs/imdb-cpu-skip-gram.ts (not in the paper; the RT
 * recipe that beat from-scratch training on every split, README Results). LSTM and head start fresh.
 *   bun run experiment configs/imdb-cpu-skip-gram.ts --seeds 2 --root runs/imdb-cpu-skip-gram --data-dir ../shared/data
 *   bun run experiment configs/imdb-cpu-skip-gram-embedding.ts --methods baseline,adversarial,virtual,adversarial+virtual --seeds 2 --root runs/imdb-cpu-sg --data-dir ../shared/data
 */
import { defineConfig } from "../src/pipeline/config.ts"
import imdbCpu from "./imdb-cpu.ts"

export default defineConfig({
  ...imdbCpu,
  name: "imdb-cpu-skip-gram-embedding",
  pretrained: "runs/imdb-cpu-skip-gram/seed{seed}",
  pretrainedParts: "embedding"
})
