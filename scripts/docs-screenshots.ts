/**
 * The README's report screenshots, made from real runs:
 *   bun scripts/docs-screenshots.ts <run dir | experiment root> ... [--out-dir docs]
 * builds the report exactly as `bun run report` does, opens it in headless Chromium and writes
 * <out-dir>/report-charts.png (everything above the neighbour tables) and <out-dir>/report-neighbors.png (the first
 * two neighbour tables).
 */
import { Effect } from "effect"
import { mkdirSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { pathToFileURL } from "node:url"
import { selectBackend } from "../src/engine/backend.ts"
import { buildReport } from "../src/pipeline/report.ts"
import { launchChromium } from "./chromium.ts"

const args = process.argv.slice(2)
const at = args.indexOf("--out-dir")
const outDir = at >= 0 ? args[at + 1] : "docs"
const paths = args.filter((_, i) => at < 0 || (i !== at && i !== at + 1))
if (paths.length === 0) {
  process.stderr.write("usage: bun scripts/docs-screenshots.ts <run dir | experiment root> ... [--out-dir docs]\n")
  process.exit(2)
}

const html = await Effect.runPromise(
  Effect.gen(function* () {
    yield* selectBackend("cpu")
    return yield* buildReport(paths, { log: (l) => process.stderr.write(l + "\n") })
  })
)
const page = join(tmpdir(), `advtext-report-${process.pid}.html`)
writeFileSync(page, html)
const launched = await launchChromium()
if (launched.browser === undefined) {
  process.stderr.write(`cannot take screenshots: ${launched.reason}\n`)
  process.exit(1)
}
const browser = launched.browser
try {
  const tab = await browser.newPage()
  await tab.setViewport({ width: 1360, height: 1000 })
  await tab.goto(pathToFileURL(page).href, { waitUntil: "load" })
  // Document coordinates: the page is never scrolled, so the viewport's are the document's.
  const box = (selector: string, index = 0) =>
    tab.$$eval(selector, (els, i) => {
      const r = els[i as number].getBoundingClientRect()
      return { x: r.left, y: r.top, width: r.width, height: r.height }
    }, index)
  // The neighbours section (heading included) down to the end of its second table.
  const section = await box("section", (await tab.$$("section")).length - 1)
  const second = await box(".neighbors", 1)
  mkdirSync(outDir, { recursive: true })
  await tab.screenshot({ path: join(outDir, "report-charts.png") as `${string}.png`, clip: { x: 0, y: 0, width: 1360, height: section.y - 10 }, captureBeyondViewport: true })
  await tab.screenshot({
    path: join(outDir, "report-neighbors.png") as `${string}.png`,
    clip: { x: 0, y: section.y - 10, width: 1360, height: second.y + second.height - section.y + 20 },
    captureBeyondViewport: true
  })
  process.stderr.write(`wrote ${join(outDir, "report-charts.png")} and ${join(outDir, "report-neighbors.png")}\n`)
} finally {
  await browser.close()
}
