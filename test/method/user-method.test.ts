/**
 * A method defined from the public API (src/index.ts) alone: loss terms written by a user, run through `runPipeline`.
 */
import { expect, test } from "bun:test"
import { Effect } from "effect"
import { readFileSync } from "node:fs"
import { join } from "node:path"
import {
  adversarialPerturbation,
  classificationLosses,
  runPipeline,
  silentProgress,
  type LossTerm,
  type Method,
  type MethodDefinition,
  type TermInput
} from "../../src/index.ts"
import { metricLines, tempDir, tinyConfig, writeTinyDataset } from "../pipeline/fixtures.ts"

const data = writeTinyDataset(tempDir(), { train: 160, test: 60 })

/** L_adv written out by a user: r_adv = ε·g/‖g‖ at ε scaled by `scale`, the classification loss at s + r_adv. */
const userAdversarial = (name: string, scale: number): LossTerm => ({
  name,
  stream: "labeled",
  prepare: (input: TermInput) => ({
    perturbation: adversarialPerturbation(input.lossGradient(), scale * input.size.epsilon),
    loss: (logits) => classificationLosses(logits, input.labels!)
  })
})

async function run(label: string, method: Method, userMethod?: MethodDefinition) {
  const runDir = join(tempDir(), label)
  const config = tinyConfig(data, { method, train: { steps: 6, logEvery: 1, evalEvery: 3 }, perturbation: { epsilon: 1, evalEpsilon: 1 } })
  await Effect.runPromise(runPipeline(config, { runDir, progress: silentProgress, ...(userMethod ? { method: userMethod } : {}) }))
  const { wallSeconds: _w, ...summary } = JSON.parse(readFileSync(join(runDir, "summary.json"), "utf8")) as Record<string, unknown>
  const all = metricLines(runDir)
  return { all, steps: all.filter((m) => "nll" in m) as Array<{ step: number; loss: number; nll: number; perturbedLoss?: number }>, summary }
}

test("a user's term equal to the built-in adversarial one gives the same numbers; at ε/2 it changes the loss", async () => {
  const builtIn = await run("adversarial", "adversarial")
  const same = await run("user-adversarial", "baseline", { name: "user-adversarial", terms: [userAdversarial("user-adversarial", 1)] })
  expect(same.all).toEqual(builtIn.all)
  expect(same.summary).toEqual({ ...builtIn.summary, method: "user-adversarial" })

  const baseline = await run("baseline", "baseline")
  const half = await run("half-epsilon", "baseline", { name: "adversarial-half-epsilon", terms: [userAdversarial("adversarial-half-epsilon", 0.5)] })
  expect(half.steps.length).toBe(6)
  // Step 1 starts from the same weights and dropout: the clean loss agrees, the term adds ℓ(s + r_adv) at ε/2, which
  // lies between the clean loss and the built-in's at ε.
  const [b, h, a] = [baseline.steps[0], half.steps[0], builtIn.steps[0]]
  expect(h.nll).toBe(b.nll)
  expect(b.perturbedLoss).toBeUndefined()
  expect(h.perturbedLoss).toBeGreaterThan(h.nll)
  expect(h.perturbedLoss).toBeLessThan(a.perturbedLoss!)
  expect(h.loss).toBeCloseTo(h.nll + h.perturbedLoss!, 5)
  // The extra gradient changes the training path.
  expect(half.steps[5].nll).not.toBe(baseline.steps[5].nll)
  expect(half.summary["method"]).toBe("adversarial-half-epsilon")
})

test("a term that needs labels, put on the unlabeled stream, fails with a message saying so", async () => {
  const misplaced: MethodDefinition = { name: "misplaced", terms: [{ ...userAdversarial("misplaced", 1), stream: "unlabeled" }] }
  await expect(run("misplaced", "baseline", misplaced)).rejects.toThrow(/labeled stream/)
})
