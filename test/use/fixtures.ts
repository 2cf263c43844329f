/** Tiny trained runs for the "use a trained model" tests (predict, evaluate, loadClassifier, export). */
import { Effect } from "effect"
import { join } from "node:path"
import type { ConfigInput } from "../../src/pipeline/config.ts"
import { silentProgress } from "../../src/pipeline/progress.ts"
import { runPipeline } from "../../src/pipeline/run.ts"
import { tempDir, tinyConfig, writeTinyDataset } from "../pipeline/fixtures.ts"

/**
 * Trains a tiny run on the generated dataset and returns its folders. `data.window` is 6 tokens, so most documents
 * (5–16 words + EOS) are longer than the window and go through the prefix-state path.
 */
export async function trainTinyRun(overrides: ConfigInput = {}): Promise<{ readonly runDir: string; readonly data: string }> {
  const data = writeTinyDataset(tempDir())
  const runDir = join(tempDir(), "run")
  const config = tinyConfig(data, { data: { window: 6 }, train: { steps: 40 }, ...overrides })
  await Effect.runPromise(runPipeline(config, { runDir, progress: silentProgress }))
  return { runDir, data }
}
