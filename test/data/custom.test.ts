import { afterAll, describe, expect, test } from "bun:test"
import { writeFileSync } from "node:fs"
import { join } from "node:path"
import { Effect, Stream } from "effect"
import { loadCustom } from "../../src/data/sources.ts"
import { cleanupTemp, failure, tempDir } from "./fixtures.ts"

afterAll(cleanupTemp)

const file = (name: string, content: string | Uint8Array) => {
  const p = join(tempDir(), name)
  writeFileSync(p, content)
  return p
}
const load = (spec: Parameters<typeof loadCustom>[0]) => Effect.runPromise(loadCustom(spec))

describe("loadCustom", () => {
  test("jsonl with string labels, sorted classes, test mapped", async () => {
    const train = file("t.jsonl", '{"text":"good","label":"pos"}\n\n{"text":"bad","label":"neg"}\r\n{"text":"ok","label":"mid"}\n')
    const test = file("v.jsonl", '{"text":"fine","label":"pos"}\n')
    const { corpus, unlabeled } = await load({ train, test })
    expect(corpus.classes).toEqual(["mid", "neg", "pos"])
    expect(corpus.train).toEqual([{ text: "good", label: 2 }, { text: "bad", label: 1 }, { text: "ok", label: 0 }])
    expect(corpus.test).toEqual([{ text: "fine", label: 2 }])
    expect(corpus.name).toBe("t")
    expect(unlabeled).toBeUndefined()
  })

  test("numeric labels sort numerically", async () => {
    const train = file("n.jsonl", ['{"text":"a","label":10}', '{"text":"b","label":2}', '{"text":"c","label":1}'].join("\n"))
    const { corpus } = await load({ train })
    expect(corpus.classes).toEqual(["1", "2", "10"])
    expect(corpus.train.map((d) => d.label)).toEqual([2, 1, 0])
  })

  test("csv with RFC 4180 quoting and embedded newlines; numeric string labels", async () => {
    const train = file("d.csv", 'id,label,text\r\n1,2,"hello, ""world""\nsecond line"\r\n2,10,plain\n\n3,2,""\n')
    const { corpus } = await load({ train })
    expect(corpus.classes).toEqual(["2", "10"])
    expect(corpus.train).toEqual([
      { text: 'hello, "world"\nsecond line', label: 0 },
      { text: "plain", label: 1 },
      { text: "", label: 0 },
    ])
  })

  test("csv errors: missing column, wrong field count (with line), unclosed quote", async () => {
    let e = await failure(loadCustom({ train: file("a.csv", "txt,label\nx,1\n") }))
    expect(e._tag).toBe("InvalidDataset")
    expect(e.message).toContain('"text"')
    const bad = file("b.csv", 'text,label\n"multi\nline",1\nx,1,extra\n')
    e = await failure(loadCustom({ train: bad }))
    expect(e._tag).toBe("DecodeError")
    expect(e.message).toContain(`${bad}:4`)
    e = await failure(loadCustom({ train: file("c.csv", 'text,label\n"open,1\n') }))
    expect(e.message).toContain("never closed")
  })

  test("tsv label<TAB>text, format override", async () => {
    const train = file("d.txt", "pos\tgreat\tfilm\nneg\tawful\n")
    const { corpus } = await load({ train, format: "tsv" })
    expect(corpus.train).toEqual([{ text: "great\tfilm", label: 1 }, { text: "awful", label: 0 }])
    const e = await failure(loadCustom({ train: file("e.tsv", "pos\tok\nno tab here\n") }))
    expect(e._tag).toBe("DecodeError")
    expect(e.message).toMatch(/e\.tsv:2: expected label<TAB>text/)
  })

  test("one class => InvalidDataset", async () => {
    const e = await failure(loadCustom({ train: file("o.tsv", "pos\ta\npos\tb\n") }))
    expect(e._tag).toBe("InvalidDataset")
    expect(e.message).toContain("needs at least two classes, found only 'pos'")
  })

  test("empty file => InvalidDataset", async () => {
    const e = await failure(loadCustom({ train: file("empty.jsonl", "\n\n") }))
    expect(e._tag).toBe("InvalidDataset")
    expect(e.message).toContain("has no records")
  })

  test("invalid UTF-8 => DecodeError with file, offset and line", async () => {
    const train = file("l1.tsv", Buffer.concat([Buffer.from("pos\tok\nneg\tcaf"), Buffer.from([0xe9]), Buffer.from(" x\n")]))
    const e = await failure(loadCustom({ train }))
    expect(e._tag).toBe("DecodeError")
    expect(e.message).toContain(train)
    expect(e.message).toContain("byte offset 14 (line 2)")
  })

  test("malformed JSON line => DecodeError file:line", async () => {
    const train = file("m.jsonl", '{"text":"a","label":"x"}\n{"text": oops}\n')
    const e = await failure(loadCustom({ train }))
    expect(e._tag).toBe("DecodeError")
    expect(e.message).toContain(`${train}:2: not valid JSON`)
    const e2 = await failure(loadCustom({ train: file("m2.jsonl", '{"text":"a","label":null}\n') }))
    expect(e2.message).toContain(':1: missing or wrongly typed "text" or "label"')
  })

  test("test label unseen in train => InvalidDataset; missing file => DataNotFound; unknown extension", async () => {
    const train = file("t.tsv", "a\tx\nb\ty\n")
    const e = await failure(loadCustom({ train, test: file("v.tsv", "c\tz\n") }))
    expect(e._tag).toBe("InvalidDataset")
    expect(e.message).toContain("label 'c'")
    const nf = await failure(loadCustom({ train: "/nonexistent/x.tsv" }))
    expect(nf._tag).toBe("DataNotFound")
    expect(nf.message).toContain("/nonexistent/x.tsv")
    const ext = await failure(loadCustom({ train: file("x.dat", "a\tb\n") }))
    expect(ext.message).toContain(".jsonl, .csv or .tsv")
  })

  test("unlabeled file streams lines, skips blanks, re-readable; bad UTF-8 => DecodeError", async () => {
    const train = file("t.tsv", "a\tx\nb\ty\n")
    const big = Array.from({ length: 30_000 }, (_, i) => `doc ${i} ${"\u00e9\u20ac".repeat(15)}`).join("\n\n") // ~2.5 MB: spans 1 MB read chunks
    const { unlabeled } = await load({ train, unlabeled: file("u.txt", `${big}\r\n   \n`) })
    const docs = await Effect.runPromise(Stream.runCollect(unlabeled!()))
    expect(docs.length).toBe(30_000)
    expect(docs[29_999]).toBe(`doc 29999 ${"\u00e9\u20ac".repeat(15)}`)
    expect((await Effect.runPromise(Stream.runCollect(unlabeled!()))).length).toBe(30_000)
    const bad = file("bad.txt", Buffer.concat([Buffer.from("one\ntwo\nth"), Buffer.from([0xff]), Buffer.from("ree\n")]))
    const r = await load({ train, unlabeled: bad })
    const e = await failure(Stream.runCollect(r.unlabeled!()))
    expect(e._tag).toBe("DecodeError")
    expect(e.message).toContain("byte offset 10 (line 3)")
    expect((await failure(loadCustom({ train, unlabeled: "/nonexistent/u.txt" })))._tag).toBe("DataNotFound")
  })
})
