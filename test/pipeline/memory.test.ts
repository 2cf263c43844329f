/**
 * Issue 13, case 4: memory is bounded by the window, not by the document. A 200,000-token document (in training and
 * in the test set) used to be run through the LSTM whole, with every row of its batch padded to it (peak RSS 0.15 GB →
 * 2.3 GB at D = H = 16). Now its prefix runs in window-sized chunks, so the run's peak is that of a run whose long
 * document has only 1,000 tokens (both fill the 400-token window; only the prefix length differs).
 */
import { expect, test } from "bun:test"
import { appendFileSync, writeFileSync } from "node:fs"
import { join, resolve } from "node:path"
import { tempDir, tinyConfig, writeTinyDataset } from "./fixtures.ts"

const FILLER = ["the", "film", "a", "story", "of", "and", "it", "was", "this", "movie", "plot", "actors", "with", "its"]
const longDoc = (tokens: number, label: string, cue: string) =>
  `${label}\t${Array.from({ length: tokens }, (_, i) => FILLER[(i * 7 + (i >> 3)) % FILLER.length]).join(" ")} ${cue}\n`

/** Train 10 steps (validation at 5 and 10, then test with the Figure-2 losses) in a child; its summary and peak RSS. */
function runWithLongDocument(tokens: number): { peakKb: number; summary: Record<string, unknown> } {
  const data = writeTinyDataset(tempDir(), { train: 200, test: 60 })
  appendFileSync(join(data, "train.tsv"), longDoc(tokens, "pos", "great"))
  appendFileSync(join(data, "test.tsv"), longDoc(tokens, "neg", "awful"))
  const config = tinyConfig(data, { model: { embeddingDim: 16, lstmUnits: 16 }, train: { steps: 10, evalEvery: 5 } })
  const path = join(tempDir(), "config.json")
  writeFileSync(path, JSON.stringify(config))
  const child = Bun.spawnSync(["bun", resolve(import.meta.dir, "peak-rss.ts"), path, join(tempDir(), "run")], { stdout: "pipe", stderr: "pipe" })
  expect(child.exitCode).toBe(0)
  const out = JSON.parse(child.stdout.toString().trim().split("\n").at(-1)!)
  return { peakKb: out.peakKb, summary: out.outcome.summary }
}

test("a 200,000-token document trains and evaluates within the peak RSS of a 1,000-token one", () => {
  const short = runWithLongDocument(1_000)
  const long = runWithLongDocument(200_000)
  expect(long.summary.testExamples).toBe(61)
  expect(short.summary.testExamples).toBe(61)
  // Measured: ~250 MB for both (the old code: > 2 GB). The margin covers tokenizing the long text and GC timing.
  expect(long.peakKb).toBeLessThan(short.peakKb * 1.3)
}, 300_000)
