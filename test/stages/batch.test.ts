import { describe, expect, test } from "bun:test"
import { Effect, Stream } from "effect"
import fc from "fast-check"
import {
  batchesPerEpoch,
  batchIndicesAt,
  encodeDocument,
  evaluationBatches,
  makeBatch,
  stepBatches,
  trainingBatches,
  type Batch,
  type BatchSchedule,
  type EncodedDoc
} from "../../src/stages/batch.ts"

const EOS_ID = 99

/** A document of `n` ≥ 2 ids: n−1 word ids in 1..98 and the EOS last. */
const encodedDoc = (maxLength: number) =>
  fc
    .tuple(fc.array(fc.integer({ min: 1, max: 98 }), { minLength: 1, maxLength: maxLength - 1 }), fc.integer({ min: -1, max: 3 }))
    .map(([words, label]): EncodedDoc => ({ ids: Int32Array.from([...words, EOS_ID]), label }))

const docsArb = (maxDocs: number, maxLength: number) => fc.array(encodedDoc(maxLength), { minLength: 1, maxLength: maxDocs })

/** Row b of the window ids, as a plain array of `steps` entries. */
const row = (batch: Batch, b: number) => Array.from(batch.ids.subarray(b * batch.steps, (b + 1) * batch.steps))
const prefixRow = (batch: Batch, b: number) => Array.from(batch.prefix!.rows[b])

/** Reassemble each document of a batch from its prefix and window. */
function reconstruct(batch: Batch): Array<Array<number>> {
  return Array.from({ length: batch.size }, (_, b) => {
    const prefix = batch.prefix === undefined ? [] : prefixRow(batch, b)
    return [...prefix, ...row(batch, b).slice(0, batch.lengths[b])]
  })
}

const collect = <A>(stream: Stream.Stream<A>, n: number) => Effect.runPromise(Stream.runCollect(Stream.take(stream, n)))

describe("encodeDocument (spec A1.4)", () => {
  test("a document needs a word besides EOS", () => {
    expect(encodeDocument(Int32Array.from([EOS_ID]), 1)).toBeUndefined()
    expect(encodeDocument(new Int32Array(0), 1)).toBeUndefined()
    const doc = encodeDocument(Int32Array.from([5, EOS_ID]), 0)!
    expect([...doc.ids]).toEqual([5, EOS_ID])
    expect(doc.label).toBe(0)
  })
})

describe("makeBatch (spec A1.6, final-window handling)", () => {
  test("windows are the last min(L, window) ids, prefix + window reconstructs each document, padding is zero", () => {
    fc.assert(
      fc.property(docsArb(8, 30), fc.integer({ min: 1, max: 12 }), (docs, window) => {
        const batch = makeBatch(docs, window)
        expect(batch.size).toBe(docs.length)
        const lengths = docs.map((d) => Math.min(d.ids.length, window))
        expect([...batch.lengths]).toEqual(lengths)
        expect(batch.steps).toBe(Math.max(...lengths))
        expect(batch.ids.length).toBe(batch.size * batch.steps)
        expect([...batch.labels]).toEqual(docs.map((d) => d.label))
        for (let b = 0; b < batch.size; b++) {
          const r = row(batch, b)
          // EOS is the last valid position; everything after it is padding.
          expect(r[batch.lengths[b] - 1]).toBe(EOS_ID)
          expect(r.slice(batch.lengths[b]).every((x) => x === 0)).toBe(true)
          expect(r.slice(0, batch.lengths[b])).toEqual(Array.from(docs[b].ids.subarray(docs[b].ids.length - batch.lengths[b])))
        }
        expect(reconstruct(batch)).toEqual(docs.map((d) => Array.from(d.ids)))
        const longest = Math.max(...docs.map((d) => d.ids.length))
        if (longest <= window) {
          expect(batch.prefix).toBeUndefined()
        } else {
          const p = batch.prefix!
          expect([...p.lengths]).toEqual(docs.map((d) => d.ids.length - Math.min(d.ids.length, window)))
          expect(p.steps).toBe(longest - window)
          expect(p.window).toBe(window)
          // Unpadded: each row holds exactly its own prefix, a view of the document (no copy).
          for (let b = 0; b < batch.size; b++) {
            expect(p.rows[b].length).toBe(p.lengths[b])
            expect(p.rows[b].buffer).toBe(docs[b].ids.buffer)
          }
        }
      }),
      { numRuns: 300 }
    )
  })

  test("a concrete batch", () => {
    const batch = makeBatch(
      [
        { ids: Int32Array.from([1, 2, 3, 4, 5, 6, 7, EOS_ID]), label: 1 },
        { ids: Int32Array.from([8, EOS_ID]), label: 0 }
      ],
      5
    )
    expect(batch.steps).toBe(5)
    expect([...batch.ids]).toEqual([4, 5, 6, 7, EOS_ID, 8, EOS_ID, 0, 0, 0])
    expect([...batch.lengths]).toEqual([5, 2])
    expect(batch.prefix!.steps).toBe(3)
    expect(batch.prefix!.rows.map((r) => [...r])).toEqual([[1, 2, 3], []])
    expect([...batch.prefix!.lengths]).toEqual([3, 0])
  })
})

describe("batch schedule", () => {
  const schedule = fc.record({
    numDocs: fc.integer({ min: 1, max: 60 }),
    batchSize: fc.integer({ min: 1, max: 20 }),
    seed: fc.integer({ min: 0, max: 2 ** 31 - 1 }),
    stream: fc.constantFrom("labeled", "unlabeled")
  })

  test("every document appears exactly once per epoch; only the last batch may be smaller", () => {
    fc.assert(
      fc.property(schedule, fc.integer({ min: 0, max: 5 }), (s, epoch) => {
        const perEpoch = batchesPerEpoch(s)
        expect(perEpoch).toBe(Math.ceil(s.numDocs / s.batchSize))
        const seen = new Array<number>(s.numDocs).fill(0)
        for (let within = 0; within < perEpoch; within++) {
          const indices = batchIndicesAt(s, epoch * perEpoch + within)
          if (within < perEpoch - 1) expect(indices.length).toBe(s.batchSize)
          else expect(indices.length).toBe(s.numDocs - (perEpoch - 1) * s.batchSize)
          for (const i of indices) seen[i]++
        }
        expect(seen.every((n) => n === 1)).toBe(true)
      }),
      { numRuns: 200 }
    )
  })

  test("batches are a pure function of (seed, stream, step); the cache does not change them", () => {
    fc.assert(
      fc.property(schedule, fc.array(fc.integer({ min: 0, max: 200 }), { minLength: 1, maxLength: 20 }), (s, steps) => {
        const cache = new Map<number, Int32Array>()
        for (const step of steps) {
          const a = Array.from(batchIndicesAt(s, step))
          expect(Array.from(batchIndicesAt({ ...s }, step))).toEqual(a)
          expect(Array.from(batchIndicesAt(s, step, cache))).toEqual(a)
        }
      }),
      { numRuns: 100 }
    )
  })

  test("epochs are reshuffled; different stream names or seeds give different orders", () => {
    const base: BatchSchedule = { numDocs: 200, batchSize: 200, seed: 7 << 8, stream: "labeled" }
    const order = (s: BatchSchedule, step = 0) => Array.from(batchIndicesAt(s, step))
    const o = order(base)
    expect([...o].sort((a, b) => a - b)).toEqual(Array.from({ length: 200 }, (_, i) => i))
    expect(order(base, 1)).not.toEqual(o)
    expect(order({ ...base, stream: "unlabeled" })).not.toEqual(o)
    expect(order({ ...base, seed: 8 << 8 })).not.toEqual(o)
  })

  // Regression: mixKeys once XOR-ed the seed into the FNV basis and then fed its low byte, which cancelled out, so seeds
  // differing only in their low 8 bits (0..255, the default 0 included) gave identical streams.
  test("flipping any single bit of the seed changes the order", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 2 ** 32 - 1 }), fc.integer({ min: 0, max: 31 }), (seed, bit) => {
        const order = (s: number) => Array.from(batchIndicesAt({ numDocs: 100, batchSize: 100, seed: s, stream: "labeled" }, 0))
        expect(order((seed ^ (1 << bit)) >>> 0)).not.toEqual(order(seed))
      }),
      { numRuns: 100 }
    )
    const order = (seed: number) => Array.from(batchIndicesAt({ numDocs: 200, batchSize: 200, seed, stream: "labeled" }, 0))
    expect(order(8)).not.toEqual(order(7))
    expect(order(1)).not.toEqual(order(0))
  })

  test("labeled and unlabeled orders are statistically independent", () => {
    // Spearman correlation of the two permutations, averaged over seeds, should be near 0 (each is ~N(0, 1/n)).
    const n = 500
    const seeds = Array.from({ length: 20 }, (_, k) => (k + 1) * 0x10101 * 256)
    let sum = 0
    const distinct = new Set<string>()
    for (const seed of seeds) {
      const a = batchIndicesAt({ numDocs: n, batchSize: n, seed, stream: "labeled" }, 0)
      const b = batchIndicesAt({ numDocs: n, batchSize: n, seed, stream: "unlabeled" }, 0)
      distinct.add(Array.from(a.subarray(0, 10)).join(","))
      let fixedPoints = 0
      let d2 = 0
      for (let i = 0; i < n; i++) {
        d2 += (a[i] - b[i]) ** 2
        if (a[i] === b[i]) fixedPoints++
      }
      expect(fixedPoints).toBeLessThan(8)
      sum += 1 - (6 * d2) / (n * (n * n - 1))
    }
    expect(distinct.size).toBe(seeds.length)
    // 20 independent samples: the mean has standard deviation ≈ 0.01.
    expect(Math.abs(sum / seeds.length)).toBeLessThan(0.04)
  })
})

describe("training and evaluation batch streams", () => {
  const docsFor = (n: number, label: number, offset: number): Array<EncodedDoc> =>
    Array.from({ length: n }, (_, i) => ({ ids: Int32Array.from([...Array.from({ length: 1 + ((i * 7) % 9) }, () => offset + i), EOS_ID]), label }))

  test("trainingBatches follows batchIndicesAt from startStep on", async () => {
    const docs = docsFor(23, 1, 1)
    const options = { batchSize: 5, seed: 3, stream: "labeled", window: 4, startStep: 7 }
    const batches = await collect(trainingBatches(docs, options), 12)
    expect(batches.length).toBe(12)
    batches.forEach((batch, k) => {
      const indices = batchIndicesAt({ numDocs: 23, batchSize: 5, seed: 3, stream: "labeled" }, 7 + k)
      expect(batch).toEqual(makeBatch(Array.from(indices, (i) => docs[i]), 4))
    })
    // Determinism: the same stream again, and a resumed stream, give the same batches.
    expect(await collect(trainingBatches(docs, options), 12)).toEqual(batches)
    expect(await collect(trainingBatches(docs, { ...options, startStep: 10 }), 9)).toEqual(batches.slice(3))
  })

  test("stepBatches zips labeled and unlabeled streams with independent batch sizes", async () => {
    fc.assert(
      await fc.asyncProperty(
        fc.integer({ min: 1, max: 30 }),
        fc.integer({ min: 1, max: 30 }),
        fc.integer({ min: 1, max: 8 }),
        fc.integer({ min: 1, max: 12 }),
        fc.integer({ min: 0, max: 50 }),
        async (nl, nu, bl, bu, startStep) => {
          const labeled = docsFor(nl, 1, 1)
          const unlabeled = docsFor(nu, -1, 50)
          const seed = 11
          const steps = 6
          const zipped = await collect(
            stepBatches(
              trainingBatches(labeled, { batchSize: bl, seed, stream: "labeled", window: 6, startStep }),
              trainingBatches(unlabeled, { batchSize: bu, seed, stream: "unlabeled", window: 6, startStep }),
              startStep
            ),
            steps
          )
          expect(zipped.map((z) => z.step)).toEqual(Array.from({ length: steps }, (_, k) => startStep + k))
          for (const z of zipped) {
            const li = batchIndicesAt({ numDocs: nl, batchSize: bl, seed, stream: "labeled" }, z.step)
            const ui = batchIndicesAt({ numDocs: nu, batchSize: bu, seed, stream: "unlabeled" }, z.step)
            expect(z.labeled.size).toBe(li.length)
            expect(z.unlabeled.size).toBe(ui.length)
            expect(z.labeled).toEqual(makeBatch(Array.from(li, (i) => labeled[i]), 6))
            expect(z.unlabeled).toEqual(makeBatch(Array.from(ui, (i) => unlabeled[i]), 6))
            expect([...z.labeled.labels].every((l) => l === 1)).toBe(true)
            expect([...z.unlabeled.labels].every((l) => l === -1)).toBe(true)
          }
        }
      ),
      { numRuns: 25 }
    )
  })

  test("evaluationBatches covers each document exactly once, sorted by length, never more than batchSize", () => {
    fc.assert(
      fc.property(docsArb(40, 15), fc.integer({ min: 1, max: 9 }), fc.integer({ min: 1, max: 10 }), (docs, batchSize, window) => {
        // Tag every document by a unique first id so it can be found in the batches.
        const tagged = docs.map((d, i) => ({ ids: Int32Array.from([1000 + i, ...d.ids]), label: d.label }))
        const batches = evaluationBatches(tagged, batchSize, window)
        expect(batches.length).toBe(Math.ceil(tagged.length / batchSize))
        const seen: Array<number> = []
        let previousLength = 0
        for (const batch of batches) {
          expect(batch.size).toBeLessThanOrEqual(batchSize)
          expect(batch.size).toBeGreaterThan(0)
          reconstruct(batch).forEach((ids, b) => {
            const i = ids[0] - 1000
            expect(ids).toEqual(Array.from(tagged[i].ids))
            expect(batch.labels[b]).toBe(tagged[i].label)
            expect(ids.length).toBeGreaterThanOrEqual(previousLength)
            previousLength = ids.length
            seen.push(i)
          })
        }
        expect(seen.sort((a, b) => a - b)).toEqual(tagged.map((_, i) => i))
      }),
      { numRuns: 150 }
    )
    expect(evaluationBatches([], 4, 10)).toEqual([])
  })
})
