/**
 * IMDB with the paper's bidirectional LSTM classifier (spec A4.2 per-dataset table): forward and reverse LSTMs of 512
 * units sharing a D 256 embedding, features concatenated (2 × 512), 15,000 steps, restored from a bidirectional LM:
 *   bun run pipeline configs/imdb-pretrain.ts --set model.bidirectional=true --set model.lstmUnits=512 --run-dir runs/imdb-bilm
 *   bun run pipeline configs/imdb-bidirectional.ts --set pretrained=runs/imdb-bilm --set method=virtual
 */
import { defineConfig } from "../src/pipeline/config.ts"
import imdb from "./imdb.ts"

export default defineConfig({
  ...imdb,
  name: "imdb-bidirectional",
  model: { ...imdb.model, embeddingDim: 256, lstmUnits: 512, bidirectional: true }
})
