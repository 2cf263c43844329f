/**
 * The fused LSTM's memory plan for a config: each of its passes works in one WebAssembly memory, which cannot exceed
 * 4 GiB (wasm32). A pass that would not fit is reported before the run starts, naming the settings that size it and
 * the largest batch that fits, instead of an internal RangeError at step 1.
 */
import { lstmWorkspaceFloats } from "../engine/fused-lstm.ts"
import { WASM_MEMORY_LIMIT, workspaceBytes } from "../engine/gates.ts"
import { usesUnlabeled } from "../method/method.ts"
import { BackendError } from "../errors.ts"
import type { Config } from "./config.ts"

interface Pass {
  readonly what: string
  /** The config key that sets the pass's rows. */
  readonly setting: string
  readonly rows: number
  readonly tape: boolean
}

/** The fused-LSTM passes of a run (per direction: a bidirectional model runs one pass per LSTM over the same rows). */
function passes(config: Config): Array<Pass> {
  const t = config.train
  if (config.task === "language-model") return [{ what: "an LM training step", setting: "train.batchSize", rows: t.batchSize, tape: true }]
  const kl = config.perturbation.vatMicroBatch > 0 ? Math.min(config.perturbation.vatMicroBatch, t.unlabeledBatchSize) : t.unlabeledBatchSize
  return [
    { what: "a training step", setting: "train.batchSize", rows: t.batchSize, tape: true },
    ...(usesUnlabeled(config.method)
      ? [{ what: "the unlabeled KL term", setting: config.perturbation.vatMicroBatch > 0 ? "perturbation.vatMicroBatch" : "train.unlabeledBatchSize", rows: kl, tape: true }]
      : []),
    // The Figure-2 losses differentiate through evaluation batches.
    { what: "an evaluation batch", setting: "train.evalBatchSize", rows: t.evalBatchSize, tape: config.perturbation.evalEpsilon > 0 }
  ]
}

/** One message per pass that cannot fit; empty when the plan fits. */
export function memoryPlanProblems(config: Config): Array<string> {
  const dims = (rows: number) => ({ batch: rows, steps: config.data.window, inputSize: config.model.embeddingDim, units: config.model.lstmUnits })
  const bytes = (rows: number, tape: boolean) => workspaceBytes(lstmWorkspaceFloats(dims(rows), tape))
  return passes(config).flatMap((p) => {
    const need = bytes(p.rows, p.tape)
    if (need <= WASM_MEMORY_LIMIT) return []
    let fits = p.rows
    while (fits > 0 && bytes(fits, p.tape) > WASM_MEMORY_LIMIT) fits--
    return [
      `${p.what}: the fused LSTM over ${p.setting} ${p.rows} rows × data.window ${config.data.window} steps at model.lstmUnits ` +
        `${config.model.lstmUnits} (model.embeddingDim ${config.model.embeddingDim}) needs ${(need / 2 ** 30).toFixed(2)} GiB in one ` +
        `WebAssembly memory, more than the 4 GiB WebAssembly allows. Lower ${p.setting} to at most ${fits}` +
        (fits === 0 ? " (no batch fits: lower data.window or model.lstmUnits)" : " (or lower data.window or model.lstmUnits)") +
        `, or set fusedLstm: "off" with backend: "cpu".`
    ]
  })
}

/** tfjs-wasm's heap (and the fused LSTM's memory) running out: WebAssembly's 4 GiB cannot grow any further. */
export function isWasmMemoryExhausted(error: unknown): boolean {
  const message = error instanceof Error ? error.message : String(error)
  return (
    error instanceof WebAssembly.RuntimeError ||
    /Out of bounds memory access|Cannot enlarge memory|Maximum memory size exceeded|out of memory|page count is too large|4 GiB WebAssembly allows/i.test(message)
  )
}

/**
 * Run `body`; WebAssembly memory running out in it is returned as a BackendError naming what sizes the run and what to
 * change (instead of an internal error at step 1). Anything else is rethrown.
 */
export function withinWasmMemory<A>(config: Config, vocabularySize: number, what: string, body: () => A): A | BackendError {
  try {
    return body()
  } catch (error) {
    if (!isWasmMemoryExhausted(error)) throw error
    const { embeddingDim: D, lstmUnits: H } = config.model
    const head = config.task === "language-model" ? `, an LM softmax of ${vocabularySize.toLocaleString("en-US")} words × ${H}` : ""
    return new BackendError({
      message:
        `${what} ran out of WebAssembly memory (4 GiB at most, with every weight, its Adam and EMA copies and the step's ` +
        `activations on the wasm backend's heap): vocabulary ${vocabularySize.toLocaleString("en-US")} × model.embeddingDim ${D}${head}, ` +
        `model.lstmUnits ${H}, train.batchSize ${config.train.batchSize} × data.window ${config.data.window}. Lower ` +
        (config.task === "language-model" ? "data.maxVocab or model.lstmUnits (the softmax and its copies) and " : "") +
        `train.batchSize or data.window (the step's activations), or use backend: "tensorflow" (tfjs-node, no such limit) or "cpu" (slow). ` +
        `(${error instanceof Error ? error.message : String(error)})`
    })
  }
}

/**
 * Release tensors at the end of a run; after WebAssembly memory ran out the wasm heap may refuse even that, and the
 * run has already failed with a BackendError that says why, so that second failure is dropped. Anything else rethrows.
 */
export function releaseAfterWasmExhaustion(release: () => void): void {
  try {
    release()
  } catch (error) {
    if (!isWasmMemoryExhausted(error)) throw error
  }
}
