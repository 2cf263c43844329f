/**
 * Drives the browser example in headless Chromium (puppeteer-core; Debian's `chromium` package): used by its test
 * (test/use/browser.test.ts) and by screenshot.ts, which made docs/browser-page.png.
 */
import puppeteer, { type Browser, type Page } from "puppeteer-core"
import { existsSync } from "node:fs"
import { serveBrowserExample } from "./serve.ts"

/** The page's document, inside page.evaluate callbacks (this file is typechecked without the DOM library). */
declare const document: any

export const CHROMIUM = process.env.ADVTEXT_CHROMIUM ?? "/usr/bin/chromium"

/** A headless Chromium, or the reason it could not start (tests skip with it). */
export async function launchBrowser(): Promise<Browser | string> {
  if (!existsSync(CHROMIUM)) return `${CHROMIUM} does not exist (install Debian's chromium package, or set ADVTEXT_CHROMIUM)`
  try {
    return await puppeteer.launch({ executablePath: CHROMIUM, headless: true, args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"] })
  } catch (e) {
    return `${CHROMIUM} did not start: ${(e as Error).message.split("\n")[0]}`
  }
}

export interface ExamplePage {
  readonly page: Page
  readonly url: string
  /** Every URL the page requested (all must be on the local server). */
  readonly requests: Array<string>
  /** Console errors and uncaught page errors. */
  readonly errors: Array<string>
  close(): Promise<void>
}

/** Serves `exportDir` with the example page on 127.0.0.1 and opens it; resolves once the model has loaded. */
export async function openExamplePage(browser: Browser, exportDir: string): Promise<ExamplePage> {
  const server = serveBrowserExample(exportDir)
  const page = await browser.newPage()
  const requests: Array<string> = []
  const errors: Array<string> = []
  page.on("request", (r) => requests.push(r.url()))
  page.on("console", (m) => {
    if (m.type() === "error") errors.push(m.text())
  })
  page.on("pageerror", (e) => errors.push(String(e)))
  await page.setViewport({ width: 760, height: 420 })
  const url = server.url.href
  await page.goto(url)
  await page.waitForFunction(() => document.body.dataset.ready !== undefined, { timeout: 60_000 })
  const ready = await page.evaluate(() => document.body.dataset.ready)
  if (ready !== "true") errors.push(`page did not load the model: ${await page.evaluate(() => document.getElementById("status")?.textContent)}`)
  return {
    page,
    url,
    requests,
    errors,
    close: async () => {
      await page.close()
      server.stop(true)
    }
  }
}

/** Types `text` into the page as a user would and reads the prediction it shows. */
export async function typeAndRead(page: Page, text: string): Promise<{ label: string; probabilities: Array<number> }> {
  // Clear without an input event, then type: every keystroke fires one, as for a user.
  await page.$eval("#text", (el) => ((el as unknown as { value: string }).value = ""))
  await page.type("#text", text)
  await page.waitForFunction((t) => (document.getElementById("text") as unknown as { value: string }).value === t && !document.getElementById("result")!.hidden, {}, text)
  return page.evaluate(() => ({
    label: document.getElementById("label")!.textContent ?? "",
    probabilities: JSON.parse(document.getElementById("result")!.dataset.probabilities ?? "[]") as Array<number>
  }))
}
