/** Issue 13, case 9: every shipped config's fused-LSTM passes fit in one WebAssembly memory; one that does not is told why. */
import { expect, test } from "bun:test"
import { readdirSync } from "node:fs"
import { join } from "node:path"
import { loadBlas } from "../../src/engine/blas.ts"
import { loadConfigFile } from "../../src/pipeline/config.ts"
import { memoryPlanProblems, releaseAfterWasmExhaustion, withinWasmMemory } from "../../src/pipeline/memory-plan.ts"
import { BackendError } from "../../src/errors.ts"
import { cli, configFile, noStackTrace, tempDir, writeTinyDataset } from "./fixtures.ts"

const CONFIGS = join(import.meta.dir, "../../configs")

test("every shipped config's memory plan fits (configs/imdb-pretrain.ts included: batch 256 × 400 steps at H 1024)", async () => {
  const files = readdirSync(CONFIGS).filter((f) => f.endsWith(".ts"))
  expect(files).toContain("imdb-pretrain.ts")
  for (const file of files) {
    // Named in the failure, with the message that says which setting to change.
    expect({ file, problems: memoryPlanProblems(await loadConfigFile(join(CONFIGS, file), [])) }).toEqual({ file, problems: [] })
  }
  // The bidirectional LM its comment describes, too.
  const bidirectional = await loadConfigFile(join(CONFIGS, "imdb-pretrain.ts"), ["model.bidirectional=true", "model.lstmUnits=512"])
  expect(memoryPlanProblems(bidirectional)).toEqual([])
})

test("a pass that cannot fit names the pass, the settings that size it and the largest batch that fits", async () => {
  const lm = await loadConfigFile(join(CONFIGS, "imdb-pretrain.ts"), ["train.batchSize=400"])
  expect(memoryPlanProblems(lm)).toEqual([
    "an LM training step: the fused LSTM over train.batchSize 400 rows × data.window 400 steps at model.lstmUnits 1024 (model.embeddingDim 256) " +
      'needs 4.43 GiB in one WebAssembly memory, more than the 4 GiB WebAssembly allows. Lower train.batchSize to at most 360 (or lower data.window or model.lstmUnits), or set fusedLstm: "off" with backend: "cpu".'
  ])
  const vat = await loadConfigFile(join(CONFIGS, "imdb.ts"), ["method=virtual", "train.unlabeledBatchSize=1000", "perturbation.vatMicroBatch=0"])
  const problems = memoryPlanProblems(vat)
  expect(problems).toHaveLength(1)
  expect(problems[0]).toStartWith("the unlabeled KL term: the fused LSTM over train.unlabeledBatchSize 1000 rows")
  expect(memoryPlanProblems({ ...vat, perturbation: { ...vat.perturbation, vatMicroBatch: 64 } })).toEqual([])
})

test.skipIf(loadBlas() === undefined)("the CLI refuses such a config before loading data, exit 2, one paragraph (needs a BLAS: the fused LSTM)", () => {
  const data = writeTinyDataset(tempDir(), { train: 20, test: 10 })
  const dataset = `{ kind: "custom", train: ${JSON.stringify(join(data, "train.tsv"))} }`
  const r = cli([configFile(tempDir(), dataset), "--run-dir", join(tempDir(), "r"), "--set", "model.lstmUnits=4096", "--set", "data.window=400", "--set", "train.batchSize=100"])
  expect(r.code).toBe(2)
  expect(r.stderr).toContain("this config cannot run with the fused LSTM:")
  expect(r.stderr).toContain("Lower train.batchSize to at most")
  expect(r.stderr).not.toContain("loading custom data")
  noStackTrace(r.stderr)
})

test("WebAssembly memory running out in a step is a BackendError naming the sizes and what to change; other errors pass through", async () => {
  const config = await loadConfigFile(join(CONFIGS, "imdb-pretrain.ts"), [])
  const outOfBounds = () => {
    throw new WebAssembly.RuntimeError("Out of bounds memory access (evaluating 'this.wasm.tfjs.registerTensor(id, size, memoryOffset)')")
  }
  const error = withinWasmMemory(config, 86_934, "pretraining step 1", outOfBounds)
  expect(error).toBeInstanceOf(BackendError)
  const message = (error as BackendError).message
  expect(message).toStartWith("pretraining step 1 ran out of WebAssembly memory (4 GiB at most")
  for (const part of ["vocabulary 86,934 × model.embeddingDim 256", "an LM softmax of 86,934 words × 1024", "train.batchSize 256 × data.window 400", "Lower data.maxVocab or model.lstmUnits (the softmax and its copies) and train.batchSize or data.window", 'backend: "tensorflow"']) {
    expect(message).toContain(part)
  }
  expect(withinWasmMemory(config, 10, "x", () => 42)).toBe(42)
  expect(() => withinWasmMemory(config, 10, "x", () => { throw new TypeError("a bug") })).toThrow("a bug")
  // After such a failure the heap may refuse to release tensors too: that second failure is dropped, a bug is not.
  expect(() => releaseAfterWasmExhaustion(outOfBounds)).not.toThrow()
  expect(() => releaseAfterWasmExhaustion(() => { throw new TypeError("a bug") })).toThrow("a bug")
})
