/** Nearest neighbours by cosine similarity (paper Table 3): the math, against a brute-force reference. */
import { describe, expect, test } from "bun:test"
import * as tf from "@tensorflow/tfjs-core"
import fc from "fast-check"
import { cosineSimilarity, nearestNeighbors } from "../../src/model/neighbors.ts"
import { useBackend } from "../helpers.ts"

useBackend("cpu")

// Multiples of 0.01: embedding-like magnitudes, without float32 underflow in the squared norms.
const vector = (dim: number) => fc.array(fc.integer({ min: -1000, max: 1000 }).map((x) => x / 100), { minLength: dim, maxLength: dim })
const nonZero = (dim: number) => vector(dim).filter((v) => v.some((x) => Math.abs(x) > 1e-3))
/** A table of V rows of D dims (V ≥ 2). */
const tableArb = fc.integer({ min: 1, max: 6 }).chain((dim) => fc.array(vector(dim), { minLength: 2, maxLength: 24 }).map((rows) => ({ dim, rows })))

const withTable = <A>(rows: ReadonlyArray<ReadonlyArray<number>>, body: (t: tf.Tensor2D) => A): A => {
  const t = tf.tensor2d(rows.map((r) => [...r]))
  try {
    return body(t)
  } finally {
    t.dispose()
  }
}

describe("cosineSimilarity", () => {
  test("is symmetric, within [−1, 1], invariant to positive scaling, 1 for a vector with itself and −1 with its negation", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 8 }).chain((d) => fc.tuple(nonZero(d), nonZero(d))), fc.float({ min: Math.fround(0.01), max: 100, noNaN: true }), ([a, b], s) => {
        const ab = cosineSimilarity(a, b)
        expect(ab).toBe(cosineSimilarity(b, a))
        expect(Math.abs(ab)).toBeLessThanOrEqual(1 + 1e-12)
        expect(cosineSimilarity(a.map((x) => x * s), b)).toBeCloseTo(ab, 9)
        expect(cosineSimilarity(a, a)).toBeCloseTo(1, 12)
        expect(cosineSimilarity(a, a.map((x) => -x))).toBeCloseTo(-1, 12)
      })
    )
  })

  test("is 0 for a zero vector and for orthogonal vectors, and refuses vectors of different lengths", () => {
    expect(cosineSimilarity([0, 0], [1, 2])).toBe(0)
    expect(cosineSimilarity([1, 0, 0], [0, 3, 0])).toBe(0)
    expect(() => cosineSimilarity([1], [1, 2])).toThrow("different lengths")
  })
})

describe("nearestNeighbors", () => {
  test("returns min(k, V − 1) ids, never the query, most similar first, with the brute-force similarities, and nothing outside beats the last one", () => {
    fc.assert(
      fc.property(tableArb, fc.integer({ min: 1, max: 30 }), fc.nat(), ({ rows }, k, pick) => {
        const query = pick % rows.length
        const before = tf.memory().numTensors
        const [found] = withTable(rows, (t) => nearestNeighbors(t, [query], k))
        expect(tf.memory().numTensors).toBe(before)
        expect(found).toHaveLength(Math.min(k, rows.length - 1))
        const ids = found.map((n) => n.id)
        expect(ids).not.toContain(query)
        expect(new Set(ids).size).toBe(ids.length)
        for (let i = 1; i < found.length; i++) expect(found[i - 1].similarity).toBeGreaterThanOrEqual(found[i].similarity)
        // float32 products on the tensor side, float64 here.
        for (const n of found) expect(Math.abs(n.similarity - cosineSimilarity(rows[query], rows[n.id]))).toBeLessThan(1e-5)
        const last = found.at(-1)!.similarity
        for (let id = 0; id < rows.length; id++) {
          if (id !== query && !ids.includes(id)) expect(cosineSimilarity(rows[query], rows[id])).toBeLessThanOrEqual(last + 1e-5)
        }
      })
    )
  })

  test("the similarity matrix is symmetric: a's similarity to b equals b's to a", () => {
    fc.assert(
      fc.property(tableArb, ({ rows }) => {
        const all = withTable(rows, (t) => nearestNeighbors(t, rows.map((_, i) => i), rows.length))
        const sim = (a: number, b: number) => all[a].find((n) => n.id === b)!.similarity
        for (let a = 0; a < rows.length; a++) for (let b = a + 1; b < rows.length; b++) expect(Math.abs(sim(a, b) - sim(b, a))).toBeLessThan(1e-6)
      })
    )
  })

  test("a positive multiple of the query is its nearest neighbour (similarity 1); excluded ids never appear", () => {
    fc.assert(
      fc.property(tableArb, fc.float({ min: Math.fround(0.1), max: 10, noNaN: true }), ({ rows }, s) => {
        const query = rows.map((r) => r.map(Math.abs)).findIndex((r) => r.some((x) => x > 1e-2))
        fc.pre(query >= 0)
        const table = [...rows, rows[query].map((x) => x * s)]
        const twin = table.length - 1
        const [found] = withTable(table, (t) => nearestNeighbors(t, [query], table.length))
        expect(found[0].similarity).toBeCloseTo(1, 5)
        // Another row may also point the same way (a tie); the twin is then among the ties at 1.
        expect(found.filter((n) => n.similarity > 1 - 1e-5).map((n) => n.id)).toContain(twin)
        const [without] = withTable(table, (t) => nearestNeighbors(t, [query], table.length, new Set([twin, 0])))
        expect(without.map((n) => n.id)).not.toContain(twin)
        expect(without.map((n) => n.id)).not.toContain(0)
      })
    )
  })

  test("ties go to the lower id; several queries at once; k = 0 gives nothing; an id outside the table is refused", () => {
    const rows = [
      [1, 0],
      [0, 1],
      [2, 0],
      [3, 0],
      [-1, 0]
    ]
    const result = withTable(rows, (t) => nearestNeighbors(t, [0, 1], 3))
    expect(result[0].map((n) => n.id)).toEqual([2, 3, 1])
    expect(result[1].map((n) => n.id)).toEqual([0, 2, 3])
    expect(withTable(rows, (t) => nearestNeighbors(t, [0], 0))).toEqual([[]])
    expect(withTable(rows, (t) => nearestNeighbors(t, [], 3))).toEqual([])
    expect(() => withTable(rows, (t) => nearestNeighbors(t, [5], 1))).toThrow("outside the table")
  })
})
