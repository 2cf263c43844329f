/**
 * RCV1 single-label topic classification on the 55 second-level topics (Lewis et al. 2004; Johnson & Zhang's split,
 * as the paper: 15,564 train, 49,838 test) at the paper's classifier settings (§4.2; spec A4.2 per-dataset table):
 * D 512, LSTM 1024, hidden 128, batch 64, 10,000 steps, 400-token windows, lowercase, Lewis et al.'s stop words
 * removed (the loader drops the words of rcv1_data/rcv1_stopword.txt).
 *
 *   bun run pipeline configs/rcv1.ts --data-dir DIR --set method=virtual
 *
 * Reuters' licence forbids redistributing the text, so there is no download: DIR must hold rcv1_data/ (or
 * rcv1_data.tar.gz) built from a licensed RCV1 copy with Johnson & Zhang's scripts (riejohnson.com/cnn_data.html):
 * rcv1-1m-{train,test}.txt.tok and .lvl2, rcv1_stopword.txt, optionally rcv1-lvl2.catdic. Their 668,640 unlabeled
 * articles can be given as text, one per line: --set unlabeled.source=custom --set dataset.unlabeled=PATH
 */
import { defineConfig } from "../src/pipeline/config.ts"

export default defineConfig({
  name: "rcv1",
  method: "baseline",
  seed: 0,
  dataset: { kind: "rcv1" },
  data: { lowercase: true, window: 400 },
  unlabeled: { source: "none" },
  model: { embeddingDim: 512, lstmUnits: 1024, hiddenUnits: 128, embeddingKeepProb: 0.5, normalizeEmbeddings: true },
  train: { steps: 10_000, batchSize: 64, unlabeledBatchSize: 64, learningRate: 5e-4, learningRateDecay: 0.9998, evalBatchSize: 64 }
})
