/**
 * IMDB, CPU preset (the structure of configs/imdb.ts at a size 2 cores can train): D 256, LSTM 512, hidden 30,
 * 400-token windows (a longer review's prefix only sets the initial state), batch 64 labeled + 64 unlabeled reviews,
 * Adam 1e-3 ×0.9995, 2,000 steps (~6 epochs of the 21k training reviews), the first author's validation split.
 * configs/imdb-cpu-skip-gram-embedding.ts starts it from a skip-gram embedding (configs/imdb-cpu-skip-gram.ts).
 *   bun run experiment configs/imdb-cpu.ts --methods baseline --seeds 2 --root runs/imdb-cpu --data-dir ../shared/data
 */
import { defineConfig } from "../src/pipeline/config.ts"
import imdb from "./imdb.ts"

export default defineConfig({
  ...imdb,
  name: "imdb-cpu",
  model: { embeddingDim: 256, lstmUnits: 512, hiddenUnits: 30, embeddingKeepProb: 0.5, normalizeEmbeddings: true },
  perturbation: { epsilon: 1, evalEpsilon: 5 },
  train: { steps: 2_000, batchSize: 64, unlabeledBatchSize: 64, learningRate: 1e-3, learningRateDecay: 0.9995, evalEvery: 500, checkpointEvery: 100, logEvery: 25, evalBatchSize: 64 }
})
