/**
 * `bun run export`: the exported tf.LayersModel, loaded with tf.loadLayersModel, gives predict's probabilities; the
 * exported tokenizer.js encodes exactly as the run does.
 */
import { beforeAll, describe, expect, test } from "bun:test"
import * as tf from "@tensorflow/tfjs-core"
import * as tfl from "@tensorflow/tfjs-layers"
import { Effect } from "effect"
import fc from "fast-check"
import { readFileSync, writeFileSync } from "node:fs"
import { join, resolve } from "node:path"
import { rng } from "../../src/random.ts"
import { openClassifier } from "../../src/use/classifier.ts"
import { exportRun, tokenizerModule } from "../../src/use/export.ts"
import { tokenize } from "../../src/stages/tokenize.ts"
import { sentence, tempDir } from "../pipeline/fixtures.ts"
import { trainTinyRun } from "./fixtures.ts"

const CLI = resolve(import.meta.dir, "../../src/use/cli.ts")

/** tf.loadLayersModel through a file-reading IOHandler (tfjs-core has no file:// handler without tfjs-node). */
export function loadExport(dir: string): Promise<tfl.LayersModel> {
  const modelJson = JSON.parse(readFileSync(join(dir, "model.json"), "utf8")) as tf.io.ModelJSON
  return tfl.loadLayersModel(
    tf.io.fromMemory(
      tf.io.getModelArtifactsForJSONSync(modelJson, modelJson.weightsManifest[0]!.weights, new Uint8Array(
        Buffer.concat(modelJson.weightsManifest[0]!.paths.map((p) => readFileSync(join(dir, p))))
      ).buffer)
    )
  )
}

interface Tokenizer {
  encoder(vocabulary: { words: Array<string> }): (text: string) => Int32Array
  reversed(ids: Int32Array): Int32Array
}

/** Probabilities of the exported model for texts, in batches padded with 0 (masked), as a page would batch them. */
async function exportProbabilities(dir: string, texts: ReadonlyArray<string>): Promise<Array<Array<number>>> {
  const model = await loadExport(dir)
  const vocabulary = JSON.parse(readFileSync(join(dir, "vocabulary.json"), "utf8"))
  const tokenizer = (await import(join(dir, "tokenizer.js"))) as Tokenizer
  const encode = tokenizer.encoder(vocabulary)
  const out: Array<Array<number>> = []
  for (let start = 0; start < texts.length; start += 50) {
    const rows = texts.slice(start, start + 50).map(encode)
    const T = Math.max(...rows.map((r) => r.length))
    const pad = (rs: Array<Int32Array>) => {
      const flat = new Int32Array(rs.length * T)
      rs.forEach((r, i) => flat.set(r, i * T))
      return tf.tensor2d(flat, [rs.length, T], "int32")
    }
    const inputs = vocabulary.bidirectional ? [pad(rows), pad(rows.map(tokenizer.reversed))] : pad(rows)
    const probs = model.predict(inputs) as tf.Tensor2D
    out.push(...(probs.arraySync() as Array<Array<number>>))
    tf.dispose([probs, inputs])
  }
  model.dispose()
  return out
}

const texts = (n: number) => {
  const random = rng(11, "export-texts")
  // Mixed lengths (the window is 6 tokens: most are longer), unknown words, punctuation and case.
  return Array.from({ length: n }, (_, i) =>
    i % 10 === 0 ? "Zzz QQQ!!" : Array.from({ length: 1 + (i % 4) }, () => sentence(random.uniform() < 0.5 ? "pos" : "neg", random)).join(". ").toUpperCase()
  )
}

async function expectExportMatchesPredict(runDir: string, n: number) {
  const out = join(tempDir(), "export")
  const files = await Effect.runPromise(exportRun(runDir, out))
  expect(files.map((f) => f.slice(out.length + 1)).sort()).toEqual(["group1-shard1of1.bin", "model.json", "tokenizer.js", "vocabulary.json"])
  const docs = texts(n)
  const classifier = await openClassifier(runDir)
  const expected = classifier.classify(docs)
  await classifier.close()
  const actual = await exportProbabilities(out, docs)
  let worst = 0
  actual.forEach((p, i) => p.forEach((v, k) => (worst = Math.max(worst, Math.abs(v - expected[i]!.probabilities[k]!)))))
  expect(worst).toBeLessThan(1e-4)
  return out
}

describe("export", () => {
  let run: { runDir: string; data: string }
  beforeAll(async () => {
    run = await trainTinyRun()
  })

  test("the exported LayersModel matches predict's probabilities within 1e-4 on 300 documents (long ones included)", async () => {
    const out = await expectExportMatchesPredict(run.runDir, 300)
    const modelJson = JSON.parse(readFileSync(join(out, "model.json"), "utf8"))
    expect(modelJson.format).toBe("layers-model")
    const lstm = modelJson.modelTopology.config.layers.find((l: { class_name: string }) => l.class_name === "LSTM")
    expect(lstm.config.recurrent_activation).toBe("sigmoid")
  })

  test("bidirectional, three classes (softmax head) and a centered head export too", async () => {
    // A third class: sentences with both kinds of cue.
    const random = rng(5, "three-classes")
    const dir = tempDir()
    const lines = (n: number) =>
      Array.from({ length: n }, (_, i) => {
        const label = ["pos", "neg", "mixed"][i % 3]!
        return `${label}\t${label === "mixed" ? `${sentence("pos", random)} ${sentence("neg", random)}` : sentence(label, random)}\n`
      }).join("")
    writeFileSync(join(dir, "train.tsv"), lines(150))
    writeFileSync(join(dir, "test.tsv"), lines(30))
    const multi = await trainTinyRun({
      dataset: { kind: "custom", train: join(dir, "train.tsv"), test: join(dir, "test.tsv") },
      unlabeled: { source: "none" },
      model: { embeddingDim: 8, lstmUnits: 6, hiddenUnits: 5, bidirectional: true, centeredHead: true }
    })
    const classifier = await openClassifier(multi.runDir)
    expect(classifier.classes).toEqual(["mixed", "neg", "pos"])
    await classifier.close()
    await expectExportMatchesPredict(multi.runDir, 120)
  })

  test("tokenizer.js encodes any text exactly as the run (fast-check, ASCII and Unicode)", async () => {
    const out = join(tempDir(), "export")
    await Effect.runPromise(exportRun(run.runDir, out))
    const tokenizer = (await import(join(out, "tokenizer.js"))) as Tokenizer
    const vocabulary = JSON.parse(readFileSync(join(out, "vocabulary.json"), "utf8"))
    const encode = tokenizer.encoder(vocabulary)
    const classifier = await openClassifier(run.runDir)
    const words = [...vocabulary.words.slice(0, 20), "GREAT", "Film's", "naïve", "K", "İ"]
    const text = fc.oneof(fc.string({ unit: "grapheme" }), fc.array(fc.oneof(fc.constantFrom(...words), fc.string()), { maxLength: 12 }).map((ws) => ws.join(" ")))
    fc.assert(
      fc.property(text, (t) => {
        expect(Array.from(encode(t), (id) => id - 1)).toEqual(Array.from(classifier.encode(t)))
      }),
      { numRuns: 300 }
    )
    await classifier.close()
  })

  test("tokenizer.js's tokenize equals the training tokenizer for every setting (fast-check)", async () => {
    for (const settings of [
      { lowercase: true, tokenizer: "ascii" },
      { lowercase: false, tokenizer: "ascii" },
      { lowercase: true, tokenizer: "unicode" },
      { lowercase: false, tokenizer: "unicode" }
    ] as const) {
      const path = join(tempDir(), "tokenizer.js")
      writeFileSync(path, tokenizerModule(settings))
      const exported = (await import(path)) as { tokenize(text: string): Array<string> }
      const text = fc.oneof(fc.string({ unit: "grapheme" }), fc.string({ unit: "binary" }), fc.constantFrom("Ünïcödé wörds, K-İ ﬁne", "don't <br /> STOP", "日本語 テキスト"))
      fc.assert(fc.property(text, (t) => expect(exported.tokenize(t)).toEqual(tokenize(t, settings))), { numRuns: 200 })
    }
  })

  test("bun run export writes the files and names them; a bad run dir is a one-paragraph error", () => {
    const out = join(tempDir(), "cli-export")
    const ok = Bun.spawnSync(["bun", CLI, "export", run.runDir, "--out", out], { stdout: "pipe", stderr: "pipe" })
    expect(ok.exitCode).toBe(0)
    expect(ok.stdout.toString()).toContain(join(out, "model.json"))
    const bad = Bun.spawnSync(["bun", CLI, "export", tempDir(), "--out", out], { stdout: "pipe", stderr: "pipe" })
    expect(bad.exitCode).toBe(1)
    expect(bad.stderr.toString()).toContain("RunDirError")
    expect(bad.stderr.toString()).not.toMatch(/^\s+at .+:\d+/m)
  })
})
