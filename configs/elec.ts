/**
 * Elec (Amazon electronics reviews; Johnson & Zhang's elec2 release without duplicates, as the paper used: 2 classes,
 * 24,792 train, 24,897 test) at the paper's classifier settings (§4.2; spec A4.2 per-dataset table): D 512,
 * LSTM 1024, hidden 30, batch 64, 10,000 steps, 400-token windows, no lowercasing (the paper lowercases only RT,
 * DBpedia and RCV1).
 *
 *   bun run pipeline configs/elec.ts --data-dir DIR --set method=virtual
 *
 * DIR holds elec2.tar.gz (or its elec/ folder); without it the archive is downloaded from riejohnson.com (no published
 * sha256: the download is reported unverified with its checksum). The paper's 197,025 unlabeled reviews are a
 * separate Johnson & Zhang file: give it as text, one review per line, with
 *   --set unlabeled.source=custom --set dataset.unlabeled=PATH
 */
import { defineConfig } from "../src/pipeline/config.ts"

export default defineConfig({
  name: "elec",
  method: "baseline",
  seed: 0,
  dataset: { kind: "elec" },
  data: { lowercase: false, window: 400 },
  unlabeled: { source: "none" },
  model: { embeddingDim: 512, lstmUnits: 1024, hiddenUnits: 30, embeddingKeepProb: 0.5, normalizeEmbeddings: true },
  train: { steps: 10_000, batchSize: 64, unlabeledBatchSize: 64, learningRate: 5e-4, learningRateDecay: 0.9998, evalBatchSize: 64 }
})
