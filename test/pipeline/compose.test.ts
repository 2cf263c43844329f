import { expect, test } from "bun:test"
import { Effect } from "effect"
import { join } from "node:path"
import { composeExample } from "../../examples/compose.ts"
import { tempDir, writeTinyDataset } from "./fixtures.ts"

test("the README's composed stage graph (custom bigram tokenizer) trains and evaluates", async () => {
  const data = writeTinyDataset(tempDir())
  const result = await Effect.runPromise(composeExample(join(data, "train.tsv"), join(data, "test.tsv"), 80))
  expect(result.examples).toBe(120)
  expect(result.accuracy).toBeGreaterThan(0.9)
})
