/**
 * Child process for the scoped-engine test: in a fresh process (no BLAS held yet), runs the pipeline on a config
 * (JSON, argv[2]) into a run dir (argv[3]) and prints, as one JSON line, whether matrix products and the LSTM ran on
 * BLAS during the run and after it, and a matrix product computed after the run (tfjs's own kernel again). The fused
 * LSTM shows as the workspaces it keeps pooled between steps (the run's scope lets them go when it ends).
 */
import * as tf from "@tensorflow/tfjs-core"
import { Effect } from "effect"
import { readFileSync } from "node:fs"
import { blasMatMulActive, processBlas } from "../../src/engine/blas.ts"
import { pooledWorkspaceBytes } from "../../src/engine/gates.ts"
import { silentProgress } from "../../src/pipeline/progress.ts"
import { runPipeline } from "../../src/pipeline/run.ts"

const config = JSON.parse(readFileSync(process.argv[2], "utf8"))
const during: Array<{ matmul: boolean; lstm: boolean }> = []
const outcome = await Effect.runPromise(
  runPipeline(config, { runDir: process.argv[3], progress: silentProgress, onStep: () => void during.push({ matmul: blasMatMulActive(), lstm: pooledWorkspaceBytes() > 0 }) })
)
const product = Array.from(tf.matMul(tf.tensor2d([[1, 2]]), tf.tensor2d([[3], [4]])).dataSync())
const after = { matmul: blasMatMulActive(), lstm: pooledWorkspaceBytes() > 0, processHeld: processBlas() !== undefined }
process.stdout.write(JSON.stringify({ status: outcome.status, backend: outcome.status === "completed" ? outcome.summary.backend : "", during, after, product }) + "\n")
