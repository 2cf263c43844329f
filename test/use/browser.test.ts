/**
 * The browser example (examples/browser/) in headless Chromium: it loads an export from a local Bun server (tfjs from
 * node_modules, nothing from outside 127.0.0.1), and what it shows for typed text equals `predict`'s probabilities.
 * Skips, saying why, where Chromium cannot start.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import type { Browser } from "puppeteer-core"
import { Effect } from "effect"
import { join } from "node:path"
import { launchBrowser, openExamplePage, typeAndRead } from "../../examples/browser/drive.ts"
import { openClassifier } from "../../src/use/classifier.ts"
import { exportRun } from "../../src/use/export.ts"
import { tempDir } from "../pipeline/fixtures.ts"
import { trainTinyRun } from "./fixtures.ts"

const launched = await launchBrowser()
const browser: Browser | undefined = typeof launched === "string" ? undefined : launched
if (browser === undefined) console.warn(`skipping the browser tests: ${launched}`)

describe("browser example", () => {
  afterAll(async () => {
    await browser?.close()
  })
  let runDir: string
  let exportDir: string
  beforeAll(async () => {
    if (browser === undefined) return
    runDir = (await trainTinyRun()).runDir
    exportDir = join(tempDir(), "export")
    await Effect.runPromise(exportRun(runDir, exportDir))
  })

  test.skipIf(browser === undefined)("classifies typed text with predict's probabilities (within 1e-4), all from 127.0.0.1", async () => {
    const example = await openExamplePage(browser!, exportDir)
    const texts = ["a great and wonderful film", "It was a DULL, tedious mess; the plot of the movie was boring and the actors awful", "zzz qqq"]
    const shown = []
    for (const text of texts) shown.push(await typeAndRead(example.page, text))
    await example.close()
    const classifier = await openClassifier(runDir)
    const expected = classifier.classify(texts)
    await classifier.close()
    shown.forEach((s, i) => {
      expect(s.label).toBe(expected[i]!.label)
      expect(s.probabilities).toHaveLength(2)
      s.probabilities.forEach((p, k) => expect(Math.abs(p - expected[i]!.probabilities[k]!)).toBeLessThan(1e-4))
    })
    expect(example.errors).toEqual([])
    expect(example.requests.length).toBeGreaterThan(5)
    for (const url of example.requests) expect(new URL(url).hostname).toBe("127.0.0.1")
  }, 120_000)

  test.skipIf(browser === undefined)("a missing export is shown on the page, not silently ignored", async () => {
    const example = await openExamplePage(browser!, tempDir())
    expect(example.errors.join("\n")).toContain("could not load the model")
    await example.close()
  }, 120_000)
})
