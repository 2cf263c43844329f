/**
 * DBpedia ontology classification (Lehmann et al. 2015; Zhang et al. 2015's dbpedia_csv: 14 classes, 560,000 train,
 * 70,000 test) at the paper's classifier settings (§4.2; spec A4.2 per-dataset table): D 512, LSTM 1024, hidden 128,
 * batch 128, 20,000 steps, 400-token windows, lowercase. DBpedia has no unlabeled text, so the task is purely
 * supervised: VAT's KL term uses the labeled training documents (paper Table 6).
 *
 *   bun run pipeline configs/dbpedia.ts --data-dir DIR --set method=virtual
 *
 * DIR holds dbpedia_csv.tar.gz (or dbpedia_csv/); without it the archive is downloaded from Google Drive (no published
 * sha256: the download is reported unverified with its checksum; pin it with a SHA256SUMS line next to the file).
 */
import { defineConfig } from "../src/pipeline/config.ts"

export default defineConfig({
  name: "dbpedia",
  method: "baseline",
  seed: 0,
  dataset: { kind: "dbpedia" },
  data: { lowercase: true, window: 400 },
  unlabeled: { source: "none" },
  model: { embeddingDim: 512, lstmUnits: 1024, hiddenUnits: 128, embeddingKeepProb: 0.5, normalizeEmbeddings: true },
  train: { steps: 20_000, batchSize: 128, unlabeledBatchSize: 128, learningRate: 5e-4, learningRateDecay: 0.9998, evalBatchSize: 128 }
})
