import { describe, expect, test } from "bun:test"
import fc from "fast-check"
import type { EncodedDoc } from "../../src/stages/batch.ts"
import { LmSchedule, lmEvaluationBatchCount, lmEvaluationBatches, lmLength, reverseIds } from "../../src/stages/lm-batch.ts"

const EOS = 99

/** Documents of the given lengths (words then EOS); word ids encode (doc, position) so tests can trace them. */
const docsOf = (lengths: ReadonlyArray<number>): Array<EncodedDoc> =>
  lengths.map((n, d) => ({ ids: Int32Array.from({ length: n + 1 }, (_, i) => (i === n ? EOS : 1 + ((d * 7 + i) % 90))), label: -1 }))

/** Reassemble what each slot streamed: per document, the concatenated (input, target) pairs in order. */
function replay(docs: ReadonlyArray<EncodedDoc>, options: { batchSize: number; window: number; seed: number; bidirectional: boolean }, steps: number) {
  const schedule = new LmSchedule(docs, options)
  const perSlot: Array<{ inputs: Array<number>; targets: Array<number>; reverseInputs: Array<number>; reverseTargets: Array<number> }> = []
  const finished: Array<(typeof perSlot)[number]> = []
  for (let s = 0; s < steps; s++) {
    const batch = schedule.nextBatch()
    expect(batch.steps).toBe(Math.max(...batch.lengths))
    expect(batch.tokens).toBe(batch.lengths.reduce((a, b) => a + b, 0))
    for (let b = 0; b < batch.size; b++) {
      expect(batch.lengths[b]).toBeGreaterThanOrEqual(1)
      expect(batch.lengths[b]).toBeLessThanOrEqual(options.window)
      if (batch.continues[b] === 0) {
        if (perSlot[b] !== undefined) finished.push(perSlot[b])
        perSlot[b] = { inputs: [], targets: [], reverseInputs: [], reverseTargets: [] }
      }
      const row = (a: Int32Array) => Array.from(a.subarray(b * batch.steps, b * batch.steps + batch.lengths[b]))
      perSlot[b].inputs.push(...row(batch.inputs))
      perSlot[b].targets.push(...row(batch.targets))
      if (batch.reverse) {
        perSlot[b].reverseInputs.push(...row(batch.reverse.inputs))
        perSlot[b].reverseTargets.push(...row(batch.reverse.targets))
      }
      // Padding stays zero.
      for (let t = batch.lengths[b]; t < batch.steps; t++) expect(batch.inputs[b * batch.steps + t]).toBe(0)
    }
  }
  return { finished, schedule }
}

describe("LM sequences (spec A1.4)", () => {
  test("reverseIds reverses the words and keeps EOS last", () => {
    expect(Array.from(reverseIds(Int32Array.from([5, 6, 7, EOS])))).toEqual([7, 6, 5, EOS])
    expect(Array.from(reverseIds(Int32Array.from([5, EOS])))).toEqual([5, EOS])
  })

  test("every streamed document is its next-token sequence, whole, across windows; reverse is the same document reversed", () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 1, max: 30 }), { minLength: 1, maxLength: 12 }),
        fc.integer({ min: 1, max: 4 }),
        fc.integer({ min: 1, max: 9 }),
        fc.integer({ min: 0, max: 1000 }),
        (lengths, batchSize, window, seed) => {
          const docs = docsOf(lengths)
          const { finished } = replay(docs, { batchSize, window, seed, bidirectional: true }, 40)
          for (const streamed of finished) {
            // Identify the document by its inputs (ids encode doc and position).
            const doc = docs.find((d) => d.ids.length - 1 === streamed.inputs.length && d.ids.subarray(0, -1).every((x, i) => x === streamed.inputs[i]))
            expect(doc).toBeDefined()
            expect(streamed.targets).toEqual(Array.from(doc!.ids.subarray(1)))
            expect(streamed.targets.at(-1)).toBe(EOS)
            const rev = reverseIds(doc!.ids)
            expect(streamed.reverseInputs).toEqual(Array.from(rev.subarray(0, -1)))
            expect(streamed.reverseTargets).toEqual(Array.from(rev.subarray(1)))
          }
        }
      ),
      { numRuns: 60 }
    )
  })

  test("each epoch streams every document exactly once", () => {
    const docs = docsOf([3, 8, 1, 12, 5, 7, 2])
    const total = docs.reduce((a, d) => a + lmLength(d), 0)
    const schedule = new LmSchedule(docs, { batchSize: 3, window: 4, seed: 1, bidirectional: false })
    let tokens = 0
    const starts: Array<number> = []
    while (schedule.epochs < 2) {
      const batch = schedule.nextBatch()
      tokens += batch.tokens
      for (let b = 0; b < batch.size; b++) if (batch.continues[b] === 0) starts.push(batch.inputs[b * batch.steps])
    }
    // The first two epochs' documents were all started (slots may still be finishing the last ones).
    const firstWords = docs.map((d) => d.ids[0]).sort()
    expect(starts.slice(0, docs.length).sort()).toEqual(firstWords)
    expect(starts.slice(docs.length, 2 * docs.length).sort()).toEqual(firstWords)
    expect(tokens).toBeLessThanOrEqual(2 * total)
  })

  test("LmSchedule.at(step) continues exactly where a schedule that ran `step` batches is", () => {
    const docs = docsOf([3, 8, 1, 12, 5, 7, 2, 20, 4])
    const options = { batchSize: 2, window: 3, seed: 7, bidirectional: true }
    const a = new LmSchedule(docs, options)
    for (let s = 0; s < 13; s++) a.nextBatch()
    const b = LmSchedule.at(docs, options, 13)
    for (let s = 0; s < 10; s++) expect(b.nextBatch()).toEqual(a.nextBatch())
  })

  test("different seeds give different orders; an empty corpus is a clear error", () => {
    const docs = docsOf([3, 8, 1, 12, 5, 7, 2, 20, 4])
    const first = (seed: number) => Array.from(new LmSchedule(docs, { batchSize: 4, window: 50, seed, bidirectional: false }).nextBatch().inputs)
    expect(first(1)).not.toEqual(first(2))
    expect(() => new LmSchedule([], { batchSize: 1, window: 5, seed: 0, bidirectional: false })).toThrow("no training documents")
  })
})

describe("LM evaluation windows", () => {
  test("every document exactly once, its windows in order, later windows flagged to continue", () => {
    const docs = docsOf([3, 9, 1, 4, 6])
    const groups: Array<Array<Array<number>>> = []
    for (const batch of lmEvaluationBatches(docs, 3, 4, false)) {
      if (batch.continues.every((x) => x === 0)) groups.push(Array.from({ length: batch.size }, () => []))
      else expect(batch.continues.every((x) => x === 1)).toBe(true)
      for (let b = 0; b < batch.size; b++) groups.at(-1)![b].push(...batch.targets.subarray(b * batch.steps, b * batch.steps + batch.lengths[b]))
    }
    const expected = docs.map((d) => Array.from(d.ids.subarray(1))).sort((a, b) => a.length - b.length)
    expect(groups.flat()).toEqual(expected)
  })
})

test("lmEvaluationBatchCount is the number of batches lmEvaluationBatches yields", () => {
  fc.assert(
    fc.property(fc.array(fc.integer({ min: 1, max: 30 }), { minLength: 0, maxLength: 12 }), fc.integer({ min: 1, max: 5 }), fc.integer({ min: 1, max: 9 }), (lengths, batchSize, window) => {
      const docs = lengths.map((n) => ({ ids: Int32Array.from({ length: n + 1 }, (_, i) => i % 7), label: -1 }))
      expect(lmEvaluationBatchCount(docs, batchSize, window)).toBe([...lmEvaluationBatches(docs, batchSize, window, false)].length)
    })
  )
})
