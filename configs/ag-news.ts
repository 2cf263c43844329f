/**
 * AG News topic classification (Zhang et al. 2015's ag_news_csv: 4 classes, 120,000 train, 7,600 test). The paper
 * does not use AG News; this config applies its settings for the other news/topic task without unlabeled text,
 * DBpedia (§4.2; spec A4.2): D 512, LSTM 1024, hidden 128, batch 128, 20,000 steps, 400-token windows, lowercase,
 * purely supervised (VAT's KL term uses the labeled training documents).
 *
 *   bun run pipeline configs/ag-news.ts --data-dir DIR --set method=adversarial
 *
 * DIR holds ag_news_csv.tar.gz (or ag_news_csv/); without it the archive is downloaded from Google Drive (no published
 * sha256: the download is reported unverified with its checksum; pin it with a SHA256SUMS line next to the file).
 */
import { defineConfig } from "../src/pipeline/config.ts"
import dbpedia from "./dbpedia.ts"

export default defineConfig({
  ...dbpedia,
  name: "ag-news",
  dataset: { kind: "ag-news" }
})
