/**
 * configs/rt-cpu-methods.ts started from a pretrained LM: the embedding and LSTM come from the per-split pretraining
 * runs of configs/rt-cpu-pretrain.ts (same data, split and vocabulary; "{seed}" picks the seed's run), the head is
 * fresh. Everything else — steps, batches, learning rate, ε — equals the from-scratch preset, so the two grids compare
 * paired by seed.
 *   bun run experiment configs/rt-cpu-pretrain.ts --seeds 3 --root runs/rt-cpu-pretrain --data-dir ../shared/data
 *   bun run experiment configs/rt-cpu-pretrained.ts --methods baseline,adversarial,virtual --seeds 3 --root runs/grid-pretrained --data-dir ../shared/data
 */
import { defineConfig } from "../src/pipeline/config.ts"
import rtCpuMethods from "./rt-cpu-methods.ts"

export default defineConfig({
  ...rtCpuMethods,
  name: "rt-cpu-pretrained",
  pretrained: "runs/rt-cpu-pretrain/seed{seed}"
})
