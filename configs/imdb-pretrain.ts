/**
 * Language-model pretraining for IMDB as in the reference README (spec A4.2): D 256, LSTM 1024, sampled softmax with
 * 1,024 negatives, batch 256, Adam 1e-3 ×0.9999, 100,000 steps, 400-token stateful windows over whole reviews, on the
 * labeled-train (minus the first author's validation slice) + 50k unlabeled reviews. `--set model.bidirectional=true
 * --set model.embeddingDim=256 --set model.lstmUnits=512` pretrains the paper's bidirectional model (forward + reverse
 * LM, shared embedding) for configs/imdb-bidirectional.ts. On the wasm backend this LM does not fit the 4 GiB
 * WebAssembly heap (the 86,934 × 1024 softmax with its Adam and EMA copies, at batch 256 or 128: step 1 stops with a
 * BackendError); run it with backend: "tensorflow".
 */
import { defineConfig } from "../src/pipeline/config.ts"
import imdb from "./imdb.ts"

export default defineConfig({
  ...imdb,
  name: "imdb-pretrain",
  task: "language-model",
  lm: { candidateSamples: 1024, validationDocs: 1_000 },
  train: { steps: 100_000, batchSize: 256, learningRate: 1e-3, learningRateDecay: 0.9999, evalEvery: 5_000, checkpointEvery: 1_000, evalBatchSize: 64 }
})
