/**
 * Child process for the memory test: runs the pipeline on a config (JSON, argv[2]) into a run dir (argv[3]) and prints
 * the summary and this process's peak resident set (VmHWM, kB) as one JSON line.
 */
import { Effect } from "effect"
import { readFileSync } from "node:fs"
import { silentProgress } from "../../src/pipeline/progress.ts"
import { runPipeline } from "../../src/pipeline/run.ts"

const config = JSON.parse(readFileSync(process.argv[2], "utf8"))
const outcome = await Effect.runPromise(runPipeline(config, { runDir: process.argv[3], progress: silentProgress }))
const peakKb = Number(/VmHWM:\s+(\d+) kB/.exec(readFileSync("/proc/self/status", "utf8"))![1])
process.stdout.write(JSON.stringify({ outcome, peakKb }) + "\n")
