/**
 * A screenshot of the browser example classifying typed text (docs/browser-page.png was made with this):
 *   bun examples/browser/screenshot.ts EXPORT_DIR OUT.png "text to type"
 */
import { launchBrowser, openExamplePage, typeAndRead } from "./drive.ts"

const [exportDir, out, text] = process.argv.slice(2)
if (exportDir === undefined || out === undefined) {
  process.stderr.write('usage: bun examples/browser/screenshot.ts EXPORT_DIR OUT.png ["text to type"]\n')
  process.exit(2)
}
const browser = await launchBrowser()
if (typeof browser === "string") {
  process.stderr.write(`cannot take the screenshot: ${browser}\n`)
  process.exit(1)
}
try {
  const example = await openExamplePage(browser, exportDir)
  const shown = await typeAndRead(example.page, text ?? "a gorgeous, funny and moving film")
  await example.page.screenshot({ path: out as `${string}.png` })
  process.stdout.write(`${out}: ${shown.label} ${JSON.stringify(shown.probabilities)}${example.errors.length > 0 ? ` (page errors: ${example.errors.join("; ")})` : ""}\n`)
  await example.close()
} finally {
  await browser.close()
}
