import { afterAll, describe, expect, test } from "bun:test"
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { Effect, Stream } from "effect"
import { locateArchive, sha256File, type ArchiveSpec } from "../../src/data/archive.ts"
import { imdbUnlabeled, imdbSentences, loadImdb, loadRottenTomatoes } from "../../src/data/sources.ts"
import { cleanupTemp, failure, makeTar, tempDir, writeTree } from "./fixtures.ts"

afterAll(cleanupTemp)

// latin-1 bytes: 0xE9 = é, 0x85 inside a line (NEL in latin-1, "…" in windows-1252), 0x96 (a C1 control in latin-1).
const bytes = (...parts: Array<string | Array<number>>) =>
  Buffer.concat(parts.map((p) => (typeof p === "string" ? Buffer.from(p, "latin1") : Buffer.from(p))))
const POS = bytes("a caf", [0xe9], " movie", [0x85], " really\n", "second ", [0x96], " line\n", "third\n")
const NEG = bytes("bad\n", "worse", [0x85], "still on one line\n")

const rtFixture = (members = ["rt-polaritydata"]) => {
  const root = tempDir()
  writeTree(root, { "rt-polaritydata/rt-polarity.pos": POS, "rt-polaritydata/rt-polarity.neg": NEG })
  const dir = tempDir()
  makeTar(join(dir, "rt-polaritydata.tar.gz"), root, members)
  return { dir, root }
}
const noDownload = (dataDir: string) => ({ dataDir, cacheDir: tempDir(), download: false })

describe("loadRottenTomatoes", () => {
  test("decodes latin-1 byte-for-byte and splits on \\n only", async () => {
    const { dir } = rtFixture()
    const c = await Effect.runPromise(loadRottenTomatoes(noDownload(dir)))
    expect(c.classes).toEqual(["neg", "pos"])
    expect(c.test).toBeUndefined()
    expect(c.train.map((d) => d.label)).toEqual([0, 0, 1, 1, 1])
    expect(c.train.map((d) => d.text)).toEqual([
      "bad",
      "worse\u0085still on one line",
      "a caf\u00e9 movie\u0085 really",
      "second \u0096 line",
      "third",
    ])
  })

  test("reads an extracted folder, and a UTF-8 re-encoded copy", async () => {
    const root = tempDir()
    writeTree(root, {
      "rt-polaritydata/rt-polarity.pos": "caf\u00e9 \u2026 ok\n",
      "rt-polaritydata/rt-polarity.neg": "no\n",
    })
    const c = await Effect.runPromise(loadRottenTomatoes(noDownload(root)))
    expect(c.train.map((d) => d.text)).toEqual(["no", "caf\u00e9 \u2026 ok"])
  })

  test("missing member => CorruptArchive", async () => {
    const root = tempDir()
    writeTree(root, { "rt-polaritydata/rt-polarity.pos": POS })
    const dir = tempDir()
    makeTar(join(dir, "rt-polaritydata.tar.gz"), root, ["rt-polaritydata"])
    const e = await failure(loadRottenTomatoes(noDownload(dir)))
    expect(e._tag).toBe("CorruptArchive")
    expect(e.message).toContain("rt-polaritydata/rt-polarity.neg")
  })

  test("truncated archive => CorruptArchive", async () => {
    const { dir } = rtFixture()
    const p = join(dir, "rt-polaritydata.tar.gz")
    writeFileSync(p, readFileSync(p).subarray(0, 60))
    const e = await failure(loadRottenTomatoes(noDownload(dir)))
    expect(e._tag).toBe("CorruptArchive")
    expect(e.message).toContain(p)
  })

  test("SHA256SUMS in the folder: mismatch => ChecksumMismatch, match => ok, unlisted => not verified", async () => {
    const { dir } = rtFixture()
    const p = join(dir, "rt-polaritydata.tar.gz")
    writeFileSync(join(dir, "SHA256SUMS"), `${"0".repeat(64)}  rt-polaritydata.tar.gz\n`)
    const e = await failure(loadRottenTomatoes(noDownload(dir)))
    expect(e._tag).toBe("ChecksumMismatch")
    expect(e.message).toContain(p)
    writeFileSync(join(dir, "SHA256SUMS"), `${await sha256File(p)}  rt-polaritydata.tar.gz\n`)
    expect((await Effect.runPromise(loadRottenTomatoes(noDownload(dir)))).train.length).toBe(5)
    writeFileSync(join(dir, "SHA256SUMS"), `${"0".repeat(64)}  other.tar.gz\n`)
    expect((await Effect.runPromise(loadRottenTomatoes(noDownload(dir)))).train.length).toBe(5)
  })

  test("falls back to the cache folder", async () => {
    const { dir } = rtFixture()
    const c = await Effect.runPromise(loadRottenTomatoes({ dataDir: tempDir(), cacheDir: dir, download: false }))
    expect(c.train.length).toBe(5)
  })

  test("missing archive with download disabled => DataNotFound naming folders, URL and flags", async () => {
    const dataDir = tempDir()
    const cacheDir = tempDir()
    const e = await failure(loadRottenTomatoes({ dataDir, cacheDir, download: false }))
    expect(e._tag).toBe("DataNotFound")
    for (const s of [dataDir, cacheDir, "rt-polaritydata.tar.gz", "http://www.cs.cornell.edu/", "--data-dir DIR", "ADVTEXT_DATA_DIR"]) {
      expect(e.message).toContain(s)
    }
    expect(e.message).not.toContain("\n")
  })
})

describe("download", () => {
  const { dir } = rtFixture()
  const archive = readFileSync(join(dir, "rt-polaritydata.tar.gz"))
  const server = Bun.serve({
    port: 0,
    fetch: (req) => (new URL(req.url).pathname === "/rt.tar.gz" ? new Response(archive) : new Response("nope", { status: 404 })),
  })
  afterAll(() => server.stop(true))
  const spec = async (path: string, sha?: string): Promise<ArchiveSpec> => ({
    title: "test archive",
    fileName: "rt-polaritydata.tar.gz",
    extractedDir: "rt-polaritydata",
    canonicalUrl: `http://localhost:${server.port}${path}`,
    canonicalSha256: sha ?? (await sha256File(join(dir, "rt-polaritydata.tar.gz"))),
    canonicalBytes: archive.length,
  })

  test("downloads into the cache, verified, via a temp file", async () => {
    const cacheDir = join(tempDir(), "nested", "cache")
    const h = await Effect.runPromise(locateArchive({ dataDir: tempDir(), cacheDir }, await spec("/rt.tar.gz")))
    expect(h).toEqual({ kind: "archive", path: join(cacheDir, "rt-polaritydata.tar.gz") })
    expect(readdirSync(cacheDir)).toEqual(["rt-polaritydata.tar.gz"])
  })

  test("checksum mismatch deletes the download", async () => {
    const cacheDir = tempDir()
    const e = await failure(locateArchive({ dataDir: tempDir(), cacheDir }, await spec("/rt.tar.gz", "f".repeat(64))))
    expect(e._tag).toBe("ChecksumMismatch")
    expect(readdirSync(cacheDir)).toEqual([])
  })

  test("HTTP error => DownloadFailed naming URL and flags", async () => {
    const cacheDir = tempDir()
    const e = await failure(locateArchive({ dataDir: tempDir(), cacheDir }, await spec("/missing")))
    expect(e._tag).toBe("DownloadFailed")
    expect(e.message).toContain("/missing")
    expect(e.message).toContain("404")
    expect(e.message).toContain("--data-dir DIR")
    expect(existsSync(join(cacheDir, "rt-polaritydata.tar.gz"))).toBe(false)
  })
})

describe("IMDB on a fixture", () => {
  const root = tempDir()
  writeTree(root, {
    "aclImdb/README": "readme",
    "aclImdb/train/pos/10_9.txt": "Great. Really great!",
    "aclImdb/train/pos/2_8.txt": "Fine film.",
    "aclImdb/train/neg/1_1.txt": "Bad.<br /><br />Awful? Yes",
    "aclImdb/train/unsup/5_0.txt": "Unlabeled one. Two",
    "aclImdb/test/pos/0_10.txt": "Caf\u00e9 ok",
    "aclImdb/test/neg/3_2.txt": "Meh",
  })
  const dir = tempDir()
  makeTar(join(dir, "aclImdb_v1.tar.gz"), root, ["aclImdb"])
  const loc = noDownload(dir)

  test("loadImdb sorts by split, class, id and keeps ids", async () => {
    const c = await Effect.runPromise(loadImdb(loc))
    expect(c.classes).toEqual(["neg", "pos"])
    expect(c.train.map((d) => [d.label, d.id])).toEqual([[0, 1], [1, 2], [1, 10]])
    expect(c.test!.map((d) => d.text)).toEqual(["Meh", "Caf\u00e9 ok"])
  })

  test("imdbUnlabeled streams chosen folders, whole or as sentences, re-readably", async () => {
    const docs = imdbUnlabeled(loc, { include: ["unsup"], sentences: false })
    expect(await Effect.runPromise(Stream.runCollect(docs()))).toEqual(["Unlabeled one. Two"])
    const sents = imdbUnlabeled(loc, { include: ["train", "unsup"], sentences: true })
    const got = await Effect.runPromise(Stream.runCollect(sents()))
    expect([...got].sort()).toEqual(["Awful?", "Bad.", "Fine film.", "Great.", "Really great!", "Two", "Unlabeled one.", "Yes"])
    expect((await Effect.runPromise(Stream.runCollect(sents()))).length).toBe(8)
  })

  test("imdbSentences", () => {
    expect(imdbSentences("A b. C!<br />D? e.f  g")).toEqual(["A b.", "C!", "D?", "e.f  g"])
  })

  test("invalid UTF-8 in a member => DecodeError naming it", async () => {
    const r = tempDir()
    writeTree(r, {
      "aclImdb/train/pos/0_9.txt": Buffer.from([0x41, 0xff, 0x42]),
      "aclImdb/train/neg/0_1.txt": "x",
      "aclImdb/test/pos/0_9.txt": "x",
      "aclImdb/test/neg/0_1.txt": "x",
    })
    const e = await failure(loadImdb(noDownload(r)))
    expect(e._tag).toBe("DecodeError")
    expect(e.message).toContain("aclImdb/train/pos/0_9.txt")
    expect(e.message).toContain("offset 1")
  })

  test("missing split => CorruptArchive", async () => {
    const r = tempDir()
    writeTree(r, { "aclImdb/train/pos/0_9.txt": "x", "aclImdb/train/neg/0_1.txt": "x" })
    const e = await failure(loadImdb(noDownload(r)))
    expect(e._tag).toBe("CorruptArchive")
    expect(e.message).toContain("aclImdb/test/neg")
  })
})
