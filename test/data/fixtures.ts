/** Test helpers: temp folders and tar archives built with the system `tar`. */
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { dirname, join } from "node:path"
import { Effect } from "effect"

const made: Array<string> = []

export const tempDir = (): string => {
  const d = mkdtempSync(join(tmpdir(), "advtext-test-"))
  made.push(d)
  return d
}

export const cleanupTemp = (): void => {
  for (const d of made.splice(0)) rmSync(d, { recursive: true, force: true })
}

/** Writes `files` (relative path -> content) under `root`. */
export const writeTree = (root: string, files: Record<string, string | Uint8Array>): void => {
  for (const [rel, content] of Object.entries(files)) {
    mkdirSync(dirname(join(root, rel)), { recursive: true })
    writeFileSync(join(root, rel), content)
  }
}

/** `tar -c[z]f out -C root ...members` with extra flags (e.g. --format=posix). */
export const makeTar = (out: string, root: string, members: Array<string>, flags: Array<string> = []): void => {
  const r = Bun.spawnSync(["tar", ...flags, out.endsWith("gz") ? "-czf" : "-cf", out, "-C", root, ...members])
  if (r.exitCode !== 0) throw new Error(`tar failed: ${r.stderr.toString()}`)
}

/** Runs an effect expected to fail and returns its typed error (rejects if it succeeds). */
export const failure = <A, E>(eff: Effect.Effect<A, E>): Promise<E> => Effect.runPromise(Effect.flip(eff))
