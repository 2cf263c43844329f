/** DBpedia, AG News, Elec and RCV1 loaders on small generated archives in their published layouts (no network). */
import { afterAll, describe, expect, test } from "bun:test"
import { existsSync, readdirSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { Effect, Stream } from "effect"
import { locateArchive, sha256File, type ArchiveSpec } from "../../src/data/archive.ts"
import { loadAgNews, loadDbpedia, loadElec, loadRcv1 } from "../../src/data/sources.ts"
import { resolveConfig } from "../../src/pipeline/config.ts"
import { loadSources } from "../../src/pipeline/data.ts"
import { cleanupTemp, failure, makeTar, tempDir, writeTree } from "./fixtures.ts"

afterAll(cleanupTemp)

const noDownload = (dataDir: string) => ({ dataDir, cacheDir: tempDir(), download: false })

/** `files` written under a temp root and packed as `archive` (top folder `top`); returns the archive's folder. */
const archiveOf = (archive: string, top: string, files: Record<string, string>) => {
  const root = tempDir()
  writeTree(root, Object.fromEntries(Object.entries(files).map(([k, v]) => [`${top}/${k}`, v])))
  const dir = tempDir()
  makeTar(join(dir, archive), root, [top])
  return dir
}

// Zhang et al.'s CSV: class index unquoted, title and content quoted, "" for a quote, newlines inside quotes.
const DBPEDIA = {
  "classes.txt": "Company\nEducationalInstitution\nArtist\n",
  "readme.txt": "DBpedia Ontology Classification Dataset\n",
  "train.csv":
    '1,"Abbott Ltd"," Abbott of Farnham was a coachbuilding business."\n' +
    '3,"A ""quoted"" painter","Born in 1901,\nshe painted."\n' +
    '2,"Some College"," A college in a town."\n',
  "test.csv": '3,"Another Artist"," Sculptor."\n1,"Acme","Makes things."\n'
}

describe("DBpedia and AG News (Zhang et al. 2015 CSV layout)", () => {
  test("classes from classes.txt, 1-based class index, title + content, quotes and newlines kept, train/test", async () => {
    const dir = archiveOf("dbpedia_csv.tar.gz", "dbpedia_csv", DBPEDIA)
    const c = await Effect.runPromise(loadDbpedia(noDownload(dir)))
    expect(c.name).toBe("dbpedia")
    expect(c.classes).toEqual(["Company", "EducationalInstitution", "Artist"])
    expect(c.train).toEqual([
      { text: "Abbott Ltd  Abbott of Farnham was a coachbuilding business.", label: 0 },
      { text: 'A "quoted" painter Born in 1901,\nshe painted.', label: 2 },
      { text: "Some College  A college in a town.", label: 1 }
    ])
    expect(c.test!.map((d) => d.label)).toEqual([2, 0])
  })

  test("AG News reads the same layout, here from an extracted folder with CRLF line ends", async () => {
    const root = tempDir()
    writeTree(root, {
      "ag_news_csv/classes.txt": "World\r\nSports\r\nBusiness\r\nSci/Tech\r\n",
      "ag_news_csv/train.csv": '"3","Wall St. Bears","Reuters - Short-sellers are back."\r\n"2","Win","The team won."\r\n',
      "ag_news_csv/test.csv": '"4","New chip","Faster."\r\n'
    })
    const c = await Effect.runPromise(loadAgNews(noDownload(root)))
    expect(c.name).toBe("ag-news")
    expect(c.classes).toEqual(["World", "Sports", "Business", "Sci/Tech"])
    expect(c.train.map((d) => [d.label, d.text])).toEqual([
      [2, "Wall St. Bears Reuters - Short-sellers are back."],
      [1, "Win The team won."]
    ])
    expect(c.test).toEqual([{ text: "New chip Faster.", label: 3 }])
  })

  test("a class index outside classes.txt, a wrong field count, a missing member: typed errors naming the place", async () => {
    const badClass = archiveOf("dbpedia_csv.tar.gz", "dbpedia_csv", { ...DBPEDIA, "test.csv": '1,"a","b"\n4,"c","d"\n' })
    const e1 = await failure(loadDbpedia(noDownload(badClass)))
    expect(e1._tag).toBe("DecodeError")
    expect(e1.message).toContain("dbpedia_csv/test.csv:2")
    expect(e1.message).toContain("1..3")
    const badFields = archiveOf("dbpedia_csv.tar.gz", "dbpedia_csv", { ...DBPEDIA, "train.csv": '1,"only a title"\n' })
    expect((await failure(loadDbpedia(noDownload(badFields)))).message).toContain("expected 3 fields")
    const { "test.csv": _, ...noTest } = DBPEDIA
    const e3 = await failure(loadDbpedia(noDownload(archiveOf("dbpedia_csv.tar.gz", "dbpedia_csv", noTest))))
    expect(e3._tag).toBe("CorruptArchive")
    expect(e3.message).toContain("dbpedia_csv/test.csv")
  })

  test("an archive that does not match its SHA256SUMS line is refused with ChecksumMismatch", async () => {
    const dir = archiveOf("dbpedia_csv.tar.gz", "dbpedia_csv", DBPEDIA)
    writeFileSync(join(dir, "SHA256SUMS"), `${"0".repeat(64)}  dbpedia_csv.tar.gz\n`)
    const e = await failure(loadDbpedia(noDownload(dir)))
    expect(e._tag).toBe("ChecksumMismatch")
    expect(e.message).toContain(join(dir, "dbpedia_csv.tar.gz"))
    writeFileSync(join(dir, "SHA256SUMS"), `${await sha256File(join(dir, "dbpedia_csv.tar.gz"))}  dbpedia_csv.tar.gz\n`)
    expect((await Effect.runPromise(loadDbpedia(noDownload(dir)))).train).toHaveLength(3)
  })
})

describe("Elec (Johnson & Zhang's elec2 layout)", () => {
  test("tokenized text and .cat label files pair line by line; empty documents keep their place", async () => {
    const dir = archiveOf("elec2.tar.gz", "elec", {
      "elec-25k-train.txt": "Great sound, works well.\nBroke after a week!\nLove it\n",
      "elec-25k-train.txt.tok": "Great sound , works well .\nBroke after a week !\nLove it\n",
      "elec-25k-train.cat": "2\n1\n2\n",
      "elec-test.txt.tok": "Too loud .\n\nFine\n",
      "elec-test.cat": "1\n2\n2\n"
    })
    const c = await Effect.runPromise(loadElec(noDownload(dir)))
    expect(c.name).toBe("elec")
    expect(c.classes).toEqual(["1", "2"])
    expect(c.train).toEqual([
      { text: "Great sound , works well .", label: 1 },
      { text: "Broke after a week !", label: 0 },
      { text: "Love it", label: 1 }
    ])
    expect(c.test).toEqual([
      { text: "Too loud .", label: 0 },
      { text: "", label: 1 },
      { text: "Fine", label: 1 }
    ])
  })

  test("a label file of another length is an InvalidDataset naming both files", async () => {
    const dir = archiveOf("elec2.tar.gz", "elec", {
      "elec-25k-train.txt.tok": "a\nb\n",
      "elec-25k-train.cat": "1\n2\n1\n",
      "elec-test.txt.tok": "c\n",
      "elec-test.cat": "2\n"
    })
    const e = await failure(loadElec(noDownload(dir)))
    expect(e._tag).toBe("InvalidDataset")
    expect(e.message).toContain("elec/elec-25k-train.txt.tok")
    expect(e.message).toContain("elec/elec-25k-train.cat")
    expect(e.message).toContain("2 lines")
  })
})

describe("RCV1 (Johnson & Zhang's rcv1_data layout)", () => {
  const RCV1 = {
    "rcv1-1m-train.txt.tok": "The markets rallied on Monday\nA Strike at the port\n",
    "rcv1-1m-train.lvl2": "M14\nGCRIM\n",
    "rcv1-1m-test.txt.tok": "Of the prices and the bonds\n",
    "rcv1-1m-test.lvl2": "M13\n",
    "rcv1_stopword.txt": "a\nat\nof\non\nthe\nand\n"
  }

  test("class names from the .catdic, Lewis et al.'s stop words removed case-insensitively", async () => {
    const dir = archiveOf("rcv1_data.tar.gz", "rcv1_data", { ...RCV1, "rcv1-lvl2.catdic": "GCRIM\nM13\nM14\n" })
    const c = await Effect.runPromise(loadRcv1(noDownload(dir)))
    expect(c.name).toBe("rcv1")
    expect(c.classes).toEqual(["GCRIM", "M13", "M14"])
    expect(c.train).toEqual([
      { text: "markets rallied Monday", label: 2 },
      { text: "Strike port", label: 0 }
    ])
    expect(c.test).toEqual([{ text: "prices bonds", label: 1 }])
  })

  test("without a .catdic the classes are both splits' labels, sorted; the stop-word list is required", async () => {
    const root = tempDir()
    writeTree(root, Object.fromEntries(Object.entries(RCV1).map(([k, v]) => [`rcv1_data/${k}`, v])))
    expect((await Effect.runPromise(loadRcv1(noDownload(root)))).classes).toEqual(["GCRIM", "M13", "M14"])
    const { "rcv1_stopword.txt": _, ...noStop } = RCV1
    const e = await failure(loadRcv1(noDownload(archiveOf("rcv1_data.tar.gz", "rcv1_data", noStop))))
    expect(e._tag).toBe("CorruptArchive")
    expect(e.message).toContain("rcv1_data/rcv1_stopword.txt")
  })

  test("absent data is DataNotFound explaining that RCV1 has no download, even with downloads allowed", async () => {
    const e = await failure(loadRcv1({ dataDir: tempDir(), cacheDir: tempDir(), download: true }))
    expect(e._tag).toBe("DataNotFound")
    expect(e.message).toContain("no public download")
    expect(e.message).toContain("riejohnson.com/cnn_data.html")
  })
})

describe("download of an archive without a published checksum", () => {
  const dir = archiveOf("dbpedia_csv.tar.gz", "dbpedia_csv", DBPEDIA)
  const archive = Bun.file(join(dir, "dbpedia_csv.tar.gz"))
  const server = Bun.serve({
    port: 0,
    fetch: (req) =>
      new URL(req.url).pathname === "/dbpedia_csv.tar.gz"
        ? new Response(archive)
        : new Response("<html>confirm the download</html>", { headers: { "content-type": "text/html; charset=utf-8" } })
  })
  afterAll(() => server.stop(true))
  const spec = (path: string): ArchiveSpec => ({
    title: "test archive",
    fileName: "dbpedia_csv.tar.gz",
    extractedDir: "dbpedia_csv",
    canonicalUrl: `http://localhost:${server.port}${path}`,
    canonicalSha256: undefined,
    canonicalBytes: undefined
  })

  test("is kept, with a note giving its sha256 and how to pin it", async () => {
    const cacheDir = tempDir()
    const notes: Array<string> = []
    const write = process.stderr.write
    process.stderr.write = ((chunk: string) => (notes.push(String(chunk)), true)) as typeof process.stderr.write
    try {
      const h = await Effect.runPromise(locateArchive({ dataDir: tempDir(), cacheDir }, spec("/dbpedia_csv.tar.gz")))
      expect(h).toEqual({ kind: "archive", path: join(cacheDir, "dbpedia_csv.tar.gz") })
    } finally {
      process.stderr.write = write
    }
    const sha = await sha256File(join(cacheDir, "dbpedia_csv.tar.gz"))
    expect(notes.join("")).toContain(`no published sha256 is known for dbpedia_csv.tar.gz`)
    expect(notes.join("")).toContain(`"${sha}  dbpedia_csv.tar.gz"`)
  })

  test("a web page instead of the archive (Google Drive's confirmation) is DownloadFailed, nothing kept", async () => {
    const cacheDir = tempDir()
    const e = await failure(locateArchive({ dataDir: tempDir(), cacheDir }, spec("/uc?id=x")))
    expect(e._tag).toBe("DownloadFailed")
    expect(e.message).toContain("web page")
    expect(readdirSync(cacheDir)).toEqual([])
    expect(existsSync(join(cacheDir, "dbpedia_csv.tar.gz"))).toBe(false)
  })
})

describe("dataset.kind dispatch", () => {
  test("each published kind loads through loadSources; a custom unlabeled file works with any kind", async () => {
    const dir = archiveOf("dbpedia_csv.tar.gz", "dbpedia_csv", DBPEDIA)
    const { corpus } = await Effect.runPromise(loadSources(resolveConfig({ dataset: { kind: "dbpedia" } }), noDownload(dir)))
    expect(corpus.name).toBe("dbpedia")
    const elecDir = archiveOf("elec2.tar.gz", "elec", { "elec-25k-train.txt.tok": "a\nb\n", "elec-25k-train.cat": "1\n2\n", "elec-test.txt.tok": "c\n", "elec-test.cat": "2\n" })
    const unlabeledFile = join(tempDir(), "unlab.txt")
    writeFileSync(unlabeledFile, "first review\n\nsecond review\n")
    const config = resolveConfig({ dataset: { kind: "elec", unlabeled: unlabeledFile }, unlabeled: { source: "custom" } })
    const sources = await Effect.runPromise(loadSources(config, noDownload(elecDir)))
    expect(sources.corpus.name).toBe("elec")
    expect(Array.from(await Effect.runPromise(Stream.runCollect(sources.unlabeled!())))).toEqual(["first review", "second review"])
  })
})
