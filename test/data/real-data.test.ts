/** Checks against the real archives in ../shared/data; skipped (with a message) where that folder is absent. */
import { afterAll, describe, expect, test } from "bun:test"
import { existsSync } from "node:fs"
import { resolve } from "node:path"
import { Effect, Stream } from "effect"
import { imdbUnlabeled, loadImdb, loadRottenTomatoes } from "../../src/data/sources.ts"
import { cleanupTemp, tempDir } from "./fixtures.ts"

afterAll(cleanupTemp)

const dataDir = resolve(import.meta.dir, "../../../shared/data")
const has = (f: string) => existsSync(resolve(dataDir, f))
const hasRt = has("rt-polaritydata.tar.gz")
const hasImdb = has("aclImdb_v1.tar.gz")
if (!hasRt || !hasImdb) console.log(`real-data tests: ${dataDir} lacks the archives; skipping the tests that need them.`)

// Never download here, and never touch the user's cache.
const loc = () => ({ dataDir, cacheDir: tempDir(), download: false })

describe("real data", () => {
  test.skipIf(!hasRt)("RT: 5,331 pos + 5,331 neg, latin-1 with 0x85 inside lines", async () => {
    const c = await Effect.runPromise(loadRottenTomatoes(loc()))
    expect(c.train.filter((d) => d.label === 0).length).toBe(5331)
    expect(c.train.filter((d) => d.label === 1).length).toBe(5331)
    expect(c.train.some((d) => d.text.includes("\u0085"))).toBe(true)
    expect(c.train.some((d) => d.text.includes("\u00e9"))).toBe(true)
  })

  test.skipIf(!hasImdb)(
    "IMDB: 25,000 train and 25,000 test, balanced, sorted",
    async () => {
      const t = performance.now()
      const c = await Effect.runPromise(loadImdb(loc()))
      console.log(`loadImdb on the real archive: ${((performance.now() - t) / 1000).toFixed(1)} s`)
      expect(c.train.length).toBe(25_000)
      expect(c.test!.length).toBe(25_000)
      expect(c.train.filter((d) => d.label === 1).length).toBe(12_500)
      expect(c.train[0]).toMatchObject({ label: 0, id: 0 })
      expect(c.test!.at(-1)).toMatchObject({ label: 1, id: 12_499 })
      // The first author split (SOURCES.md): validation = train/pos ids >= 10621, train/neg ids >= 10625.
      expect(c.train.filter((d) => (d.label === 1 ? d.id! >= 10621 : d.id! >= 10625)).length).toBe(3754)
    },
    60_000,
  )

  test.skipIf(!hasImdb)(
    "IMDB unlabeled: train/unsup streams 50,000 documents",
    async () => {
      const n = await Effect.runPromise(Stream.runCount(imdbUnlabeled(loc(), { include: ["unsup"], sentences: false })()))
      expect(n).toBe(50_000)
    },
    60_000,
  )
})
