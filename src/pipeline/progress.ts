/**
 * Progress reporting: a live, rewritten line on a terminal; plain periodic lines otherwise (CI logs, files).
 */
export interface Progress {
  /** A permanent log line. */
  line(text: string): void
  /** A transient status line (rewritten in place on a TTY; printed at most every `every` calls otherwise). */
  status(text: string, force?: boolean): void
  /** End any live line. */
  done(): void
}

export function consoleProgress(stream: NodeJS.WriteStream = process.stderr, quiet = false): Progress {
  const live = stream.isTTY === true
  let pending = false
  let lastPrinted = 0
  return {
    line(text) {
      if (quiet) return
      if (pending) stream.write("\r\x1b[2K")
      pending = false
      stream.write(text + "\n")
    },
    status(text, force = false) {
      if (quiet) return
      if (live) {
        stream.write("\r\x1b[2K" + text)
        pending = true
      } else {
        const now = Date.now()
        if (force || now - lastPrinted >= 10_000) {
          stream.write(text + "\n")
          lastPrinted = now
        }
      }
    },
    done() {
      if (pending) stream.write("\n")
      pending = false
    }
  }
}

export const silentProgress: Progress = { line() {}, status() {}, done() {} }

export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return "?"
  const s = Math.round(seconds)
  const h = Math.floor(s / 3600)
  const m = Math.floor((s % 3600) / 60)
  const r = s % 60
  return h > 0 ? `${h}h${String(m).padStart(2, "0")}m` : m > 0 ? `${m}m${String(r).padStart(2, "0")}s` : `${r}s`
}
