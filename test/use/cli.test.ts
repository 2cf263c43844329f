/** `bun run predict` and `bun run evaluate` as a user meets them: output, formats, exit codes, one-paragraph errors. */
import { beforeAll, describe, expect, test } from "bun:test"
import { readFileSync, writeFileSync } from "node:fs"
import { join, resolve } from "node:path"
import { openClassifier } from "../../src/use/classifier.ts"
import { maxAbsDiff } from "../helpers.ts"
import { tempDir } from "../pipeline/fixtures.ts"
import { trainTinyRun } from "./fixtures.ts"

const CLI = resolve(import.meta.dir, "../../src/use/cli.ts")

function cli(args: ReadonlyArray<string>, stdin?: string) {
  const p = Bun.spawnSync(["bun", CLI, ...args], { stdin: stdin === undefined ? "ignore" : new Blob([stdin]), stdout: "pipe", stderr: "pipe" })
  return { code: p.exitCode, stdout: p.stdout.toString(), stderr: p.stderr.toString() }
}
const noStackTrace = (stderr: string) => expect(stderr).not.toMatch(/^\s+at .+:\d+/m)
const jsonLines = (text: string) => text.trim().split("\n").map((l) => JSON.parse(l) as Record<string, unknown>)

describe("predict and evaluate commands", () => {
  let run: { runDir: string; data: string }
  let docs: Array<{ label: string; text: string }>
  beforeAll(async () => {
    run = await trainTinyRun()
    docs = readFileSync(join(run.data, "test.tsv"), "utf8").trim().split("\n").map((l) => ({ label: l.split("\t")[0]!, text: l.split("\t")[1]! }))
  })

  test("predict: one JSON line per document with line, label and every class's probability, as classify gives", async () => {
    const dir = tempDir()
    const txt = join(dir, "texts.txt")
    writeFileSync(txt, docs.slice(0, 30).map((d) => d.text).join("\n\n") + "\n")
    const r = cli(["predict", run.runDir, txt])
    expect(r.code).toBe(0)
    const lines = jsonLines(r.stdout)
    expect(lines).toHaveLength(30)
    expect(lines[1]).toMatchObject({ file: txt, line: 3 })
    const classifier = await openClassifier(run.runDir)
    const expected = classifier.classify(docs.slice(0, 30).map((d) => d.text))
    await classifier.close()
    lines.forEach((l, i) => {
      expect(l.label).toBe(expected[i]!.label)
      const p = l.probabilities as Record<string, number>
      expect(Object.keys(p)).toEqual(["neg", "pos"])
      expect(maxAbsDiff([p.neg!, p.pos!], expected[i]!.probabilities)).toBeLessThan(1e-6)
    })
  })

  test("predict reads JSONL (text field, id kept), CSV (text column), TSV and standard input, and writes --output", () => {
    const dir = tempDir()
    writeFileSync(join(dir, "a.jsonl"), `{"id": "r1", "text": "a great film"}\n{"text": "a dull mess", "label": "neg"}\n`)
    writeFileSync(join(dir, "b.csv"), `id,text\n7,"superb, moving"\n`)
    writeFileSync(join(dir, "c.tsv"), `pos\twonderful film\nno tab here, boring\n`)
    const out = join(dir, "out", "predictions.jsonl")
    const r = cli(["predict", run.runDir, join(dir, "a.jsonl"), join(dir, "b.csv"), join(dir, "c.tsv"), "--output", out])
    expect(r.code).toBe(0)
    expect(r.stdout).toBe("")
    const lines = jsonLines(readFileSync(out, "utf8"))
    expect(lines.map((l) => [l.id, l.line])).toEqual([["r1", 1], [undefined, 2], ["7", 2], [undefined, 1], [undefined, 2]])
    expect(lines.map((l) => l.label)).toEqual(["pos", "neg", "pos", "pos", "neg"])
    const fromStdin = cli(["predict", run.runDir], "a wonderful delight\nterrible and tedious\n")
    expect(fromStdin.code).toBe(0)
    expect(jsonLines(fromStdin.stdout).map((l) => [l.file, l.line, l.label])).toEqual([["-", 1, "pos"], ["-", 2, "neg"]])
  })

  test("predict shows a progress line on long inputs (stderr), not on stdout", () => {
    const dir = tempDir()
    writeFileSync(join(dir, "many.txt"), Array.from({ length: 2500 }, (_, i) => docs[i % docs.length]!.text).join("\n"))
    const r = cli(["predict", run.runDir, join(dir, "many.txt")])
    expect(r.code).toBe(0)
    expect(r.stderr).toContain("classified 2,500/2,500 documents")
    expect(jsonLines(r.stdout)).toHaveLength(2500)
  })

  test("evaluate: the run's own test error on its test file, as a table and as JSON", () => {
    const summary = JSON.parse(readFileSync(join(run.runDir, "summary.json"), "utf8"))
    const table = cli(["evaluate", run.runDir, join(run.data, "test.tsv")])
    expect(table.code).toBe(0)
    expect(table.stdout).toContain(`error ${(summary.testError * 100).toFixed(2)}%`)
    expect(table.stdout).toMatch(/class\s+precision\s+recall\s+F1\s+support/)
    expect(table.stdout).toContain("confusion matrix")
    const json = cli(["evaluate", run.runDir, join(run.data, "test.tsv"), "--json"])
    expect(json.code).toBe(0)
    const s = JSON.parse(json.stdout)
    expect(s.examples).toBe(120)
    expect(s.error).toBeCloseTo(summary.testError, 12)
    expect(s.loss).toBeCloseTo(summary.testLoss, 4)
    const confusion = s.confusion as Array<Array<number>>
    expect(confusion.flat().reduce((a, b) => a + b, 0)).toBe(120)
    const [neg, pos] = s.classes as Array<{ label: string; precision: number; recall: number; f1: number; support: number }>
    expect(neg!.support).toBe(confusion[0]![0]! + confusion[0]![1]!)
    expect(pos!.recall).toBeCloseTo(confusion[1]![1]! / pos!.support, 12)
    expect(pos!.precision).toBeCloseTo(confusion[1]![1]! / (confusion[0]![1]! + confusion[1]![1]!), 12)
    expect(pos!.f1).toBeCloseTo((2 * pos!.precision * pos!.recall) / (pos!.precision + pos!.recall), 12)
  })

  test("bad inputs: one paragraph, exit 1, no stack trace", () => {
    const dir = tempDir()
    writeFileSync(join(dir, "empty.txt"), "\n  \n")
    writeFileSync(join(dir, "bad.txt"), Buffer.concat([Buffer.from("good film\nbad "), Buffer.from([0xff, 0xfe]), Buffer.from(" film\n")]))
    writeFileSync(join(dir, "unknown.tsv"), "meh\tan average film\n")
    writeFileSync(join(dir, "plain.txt"), "a film\n")
    writeFileSync(join(dir, "nolabel.jsonl"), `{"text": "a film"}\n`)
    const cases: Array<[Array<string>, string, string]> = [
      [["predict", dir, join(dir, "empty.txt")], "RunDirError", "no config.json"],
      [["predict", run.runDir, join(dir, "empty.txt")], "InvalidDataset", "no document"],
      [["predict", run.runDir, join(dir, "bad.txt")], "DecodeError", "line 2"],
      [["predict", run.runDir, join(dir, "missing.txt")], "DataNotFound", "does not exist"],
      [["evaluate", run.runDir, join(dir, "unknown.tsv")], "InvalidDataset", "'meh' is not one of the run's classes"],
      [["evaluate", run.runDir, join(dir, "plain.txt")], "InvalidDataset", "no labels"],
      [["evaluate", run.runDir, join(dir, "nolabel.jsonl")], "DecodeError", '"label"']
    ]
    for (const [args, tag, needle] of cases) {
      const r = cli(args)
      expect(r.code).toBe(1)
      expect(r.stderr).toContain(tag)
      expect(r.stderr).toContain(needle)
      noStackTrace(r.stderr)
    }
    const empty = cli(["predict", run.runDir], "")
    expect(empty.code).toBe(1)
    expect(empty.stderr).toContain("standard input holds no document")
  })
})
