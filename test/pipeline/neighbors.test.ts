/** `neighbors` on real (tiny) runs: the embedding the model reads, the run's tokenizer, notes and errors. */
import { beforeAll, describe, expect, test } from "bun:test"
import * as tf from "@tensorflow/tfjs-core"
import { Effect } from "effect"
import { resolve, join } from "node:path"
import { mkdirSync, writeFileSync } from "node:fs"
import { readCheckpoint } from "../../src/model/checkpoint.ts"
import { normalizeEmbeddings as referenceNormalizeEmbeddings } from "../../src/method/method.ts"
import { cosineSimilarity } from "../../src/model/neighbors.ts"
import { resolveRuns, runNeighbors } from "../../src/pipeline/inspect.ts"
import { formatNeighbors, splitPathsAndWords } from "../../src/pipeline/neighbors.ts"
import { silentProgress } from "../../src/pipeline/progress.ts"
import { runPipeline } from "../../src/pipeline/run.ts"
import { useBackend } from "../helpers.ts"
import { tempDir, tinyConfig, writeTinyDataset } from "./fixtures.ts"

useBackend("cpu")

const CLI = resolve(import.meta.dir, "../../src/pipeline/neighbors.ts")
const cli = (args: ReadonlyArray<string>) => {
  const p = Bun.spawnSync(["bun", CLI, ...args], { stdout: "pipe", stderr: "pipe" })
  return { code: p.exitCode, stdout: p.stdout.toString(), stderr: p.stderr.toString() }
}
const noStackTrace = (stderr: string) => expect(stderr).not.toMatch(/^\s+at .+:\d+/m)

describe("neighbors", () => {
  const data = writeTinyDataset(tempDir(), { train: 200, test: 40 })
  const root = tempDir()
  const baseline = join(root, "baseline", "seed3")
  const raw = join(tempDir(), "raw")
  beforeAll(async () => {
    await Effect.runPromise(runPipeline(tinyConfig(data, { train: { steps: 25 } }), { runDir: baseline, progress: silentProgress }))
    // Without Eq. 1 normalization the model reads the raw embedding, so that is what neighbours are measured in.
    await Effect.runPromise(runPipeline(tinyConfig(data, { model: { normalizeEmbeddings: false }, train: { steps: 5 } }), { runDir: raw, progress: silentProgress }))
  })

  /** Brute force: cosine over the checkpoint's EMA embedding, Eq. 1 normalized (reference tfjs form) when the run is. */
  const bruteForce = (runDir: string, word: string, normalize: boolean, group: "ema" | "params" = "ema") => {
    const ckpt = readCheckpoint(join(runDir, "checkpoint.ckpt"))
    const words = ckpt.meta.vocabulary as Array<string>
    const counts = ckpt.meta.counts as Array<number>
    const total = counts.reduce((a, b) => a + b, 0)
    const f = tf.tensor1d(counts.map((c) => c / total))
    const ema = ckpt.tensors.get(`${group}/embedding`) as tf.Tensor2D
    const table = normalize ? referenceNormalizeEmbeddings(ema, f) : ema
    const rows = table.arraySync()
    tf.dispose([f, table, ...ckpt.tensors.values()])
    const q = words.indexOf(word)
    return words
      .map((w, id) => ({ word: w, similarity: cosineSimilarity(rows[q], rows[id]) }))
      .filter((n, id) => id !== q && n.word !== "</s>")
      .sort((a, b) => b.similarity - a.similarity)
  }

  test("equal a brute-force search over the EMA embedding, normalized when the run normalizes, never the word itself or EOS", () => {
    for (const [dir, normalize] of [
      [baseline, true],
      [raw, false]
    ] as const) {
      const [run] = resolveRuns([dir])
      const before = tf.memory().numTensors
      const [result] = runNeighbors(run, ["great"], 5)
      expect(tf.memory().numTensors).toBe(before)
      if (!("neighbors" in result)) throw new Error("great should be in the vocabulary")
      const expected = bruteForce(dir, "great", normalize).slice(0, 5)
      expect(result.neighbors.map((n) => n.word)).toEqual(expected.map((n) => n.word))
      for (let i = 0; i < 5; i++) expect(Math.abs(result.neighbors[i].similarity - expected[i].similarity)).toBeLessThan(1e-4)
    }
    // The normalization changes the geometry: the two answers differ from a search in the other space.
    const [run] = resolveRuns([baseline])
    const [normalized] = runNeighbors(run, ["great"], 5)
    const rawSpace = bruteForce(baseline, "great", false).slice(0, 5).map((n) => n.similarity)
    expect("neighbors" in normalized && normalized.neighbors.map((n) => n.similarity)).not.toEqual(rawSpace)
  })

  test("weights \"raw\" reads the trained variables instead of their EMA", () => {
    const [run] = resolveRuns([baseline])
    const [raw] = runNeighbors(run, ["great"], 5, "raw")
    const expected = bruteForce(baseline, "great", true, "params").slice(0, 5)
    if (!("neighbors" in raw)) throw new Error("great should be in the vocabulary")
    for (let i = 0; i < 5; i++) expect(Math.abs(raw.neighbors[i].similarity - expected[i].similarity)).toBeLessThan(1e-4)
    const [ema] = runNeighbors(run, ["great"], 5)
    expect("neighbors" in ema && ema.neighbors.map((n) => n.similarity)).not.toEqual(raw.neighbors.map((n) => n.similarity))
  })

  test("tokenizes the query as the run did (lowercase), and notes out-of-vocabulary and multi-token queries", () => {
    const [run] = resolveRuns([baseline])
    const [upper, oov, two, eos] = runNeighbors(run, ["GREAT", "zyzzyva", "two words", "</s>"], 3)
    expect(upper).toMatchObject({ query: "GREAT", word: "great" })
    expect(oov).toEqual({ query: "zyzzyva", note: expect.stringContaining("not in this run's vocabulary") })
    expect(two).toEqual({ query: "two words", note: expect.stringContaining("2 tokens") })
    expect("note" in eos).toBe(true)
  })

  test("an experiment root expands into its runs; labels name method and seed", () => {
    const runs = resolveRuns([root])
    expect(runs.map((r) => r.label)).toEqual(["baseline · seed 3"])
    expect(resolveRuns([baseline, baseline]).map((r) => r.label)).toEqual([`baseline · seed 3 (${baseline})`, `baseline · seed 3 (${baseline})`])
  })

  test("the terminal table has one column per run and one row per rank", () => {
    const runs = resolveRuns([baseline, raw])
    const results = runs.map((r) => runNeighbors(r, ["great", "nope"], 4))
    const text = formatNeighbors(runs, results, ["great", "nope"])
    const [great, nope] = text.trim().split("\n\n")
    const lines = great.split("\n")
    expect(lines[0]).toBe("great")
    expect(lines).toHaveLength(2 + 4)
    expect(lines[1]).toContain(runs[0].label)
    for (let rank = 1; rank <= 4; rank++) {
      const cells = results.map((r) => ("neighbors" in r[0] ? r[0].neighbors[rank - 1] : undefined)!)
      for (const c of cells) expect(lines[rank + 1]).toContain(`${c.word}`)
      expect(lines[rank + 1]).toContain(cells[1].similarity.toFixed(3))
    }
    expect(nope).toContain("not in this run's vocabulary")
    // A query the tokenizer changes is shown with the token looked up.
    expect(formatNeighbors(runs, runs.map((r) => runNeighbors(r, ["GREAT"], 2)), ["GREAT"]).split("\n")[0]).toBe("GREAT → great")
  })

  test("splits positional arguments into run dirs (first, folders, anything with a /) and words", () => {
    expect(splitPathsAndWords([baseline, raw, "good", "bad"])).toEqual({ paths: [baseline, raw], words: ["good", "bad"] })
    expect(splitPathsAndWords(["runs/x", "great"])).toEqual({ paths: ["runs/x"], words: ["great"] })
  })

  test("the CLI prints the table (exit 0, OOV as a note) and refuses a bad path or --k with one paragraph", () => {
    const ok = cli([baseline, raw, "great", "zyzzyva", "--k", "3"])
    expect(ok.code).toBe(0)
    expect(ok.stdout).toContain("baseline · seed 3")
    expect(ok.stdout).toContain("not in this run's vocabulary")
    expect(ok.stdout.split("\n\n")[0].trim().split("\n")).toHaveLength(2 + 3)

    const notRun = tempDir()
    mkdirSync(join(notRun, "empty"))
    for (const [args, needle] of [
      [["/nonexistent/run"], "does not exist"],
      [[notRun, "good"], "neither a run directory"]
    ] as const) {
      const r = cli(args)
      expect(r.code).toBe(1)
      expect(r.stderr).toContain("RunDirError")
      expect(r.stderr).toContain(needle)
      noStackTrace(r.stderr)
    }
    const noCkpt = tempDir()
    writeFileSync(join(noCkpt, "config.json"), JSON.stringify(tinyConfig(data)))
    const r = cli([noCkpt, "good"])
    expect(r.code).toBe(1)
    expect(r.stderr).toContain("no checkpoint.ckpt")
    noStackTrace(r.stderr)
    const k = cli([baseline, "--k", "0"])
    expect(k.code).toBe(2)
    noStackTrace(k.stderr)
  })
})
