/**
 * Headless Chromium for the report's browser test and the docs screenshots: Debian's `chromium` (installed by
 * .ci/run) driven by puppeteer-core. `launchChromium` returns undefined, with the reason, where it cannot start, so
 * tests can skip with a message.
 */
import { existsSync } from "node:fs"
import puppeteer, { type Browser } from "puppeteer-core"

export const CHROMIUM = process.env.ADVTEXT_CHROMIUM ?? "/usr/bin/chromium"

export async function launchChromium(): Promise<{ browser: Browser } | { browser: undefined; reason: string }> {
  if (!existsSync(CHROMIUM)) return { browser: undefined, reason: `${CHROMIUM} does not exist (apt-get install chromium, or set ADVTEXT_CHROMIUM)` }
  try {
    // --no-sandbox: CI containers run as root, where Chromium's sandbox refuses to start.
    const browser = await puppeteer.launch({ executablePath: CHROMIUM, headless: true, args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"] })
    return { browser }
  } catch (cause) {
    return { browser: undefined, reason: `${CHROMIUM} did not start: ${(cause as Error).message.split("\n")[0]}` }
  }
}
