import { describe, expect, test } from "bun:test"
import fc from "fast-check"
import { EOS, firstVocabularyDifference, FrequencyTable, Vocabulary } from "../../src/stages/vocabulary.ts"

interface Doc {
  readonly tokens: Array<string>
  readonly addsTokens: boolean
}

const word = fc.constantFrom("the", "a", "movie", "good", "bad", "plot", "actor", "x", "y", "z", "Zed", "éa")
const doc = (addsTokens: boolean) => fc.record({ tokens: fc.array(word, { maxLength: 12 }), addsTokens: fc.constant(addsTokens) })
// The pipeline counts labeled (adding) documents first, then the unlabeled corpus (src/pipeline/data.ts).
const corpus = fc
  .tuple(fc.array(doc(true), { maxLength: 12 }), fc.array(doc(false), { maxLength: 8 }), fc.array(doc(true), { maxLength: 4 }))
  .map(([a, foreign, b]) => [...a, ...foreign, ...b])
const options = fc.record({ minDocCount: fc.integer({ min: 0, max: 4 }), maxSize: fc.integer({ min: 0, max: 14 }) })

function build(docs: ReadonlyArray<Doc>): FrequencyTable {
  const table = new FrequencyTable()
  for (const d of docs) table.count(table.intern(d.tokens), d.addsTokens)
  return table
}

/** Plain-JS statistics of a corpus: raw counts, document counts, and whether a word occurs in an adding document. */
function stats(docs: ReadonlyArray<Doc>) {
  const count = new Map<string, number>()
  const docCount = new Map<string, number>()
  const adding = new Set<string>()
  for (const d of docs) {
    for (const t of d.tokens) count.set(t, (count.get(t) ?? 0) + 1)
    for (const t of new Set(d.tokens)) docCount.set(t, (docCount.get(t) ?? 0) + 1)
    if (d.addsTokens) for (const t of d.tokens) adding.add(t)
  }
  return { count, docCount, adding }
}

/** The vocabulary spec A1.3 describes, computed independently. */
function expectedVocabulary(docs: ReadonlyArray<Doc>, minDocCount: number, maxSize: number) {
  const { count, docCount, adding } = stats(docs)
  const kept = [...adding].filter((w) => docCount.get(w)! >= minDocCount)
  kept.sort((a, b) => count.get(b)! - count.get(a)! || (a < b ? -1 : a > b ? 1 : 0))
  const top = kept.slice(0, maxSize)
  return { words: [...top, EOS], counts: [...top.map((w) => count.get(w)!), 1] }
}

describe("FrequencyTable / Vocabulary (spec A1.3)", () => {
  test("matches an independent computation of the spec", () => {
    fc.assert(
      fc.property(corpus, options, (docs, { minDocCount, maxSize }) => {
        const vocab = build(docs).buildVocabulary({ minDocCount, maxSize })
        const expected = expectedVocabulary(docs, minDocCount, maxSize)
        expect([...vocab.words]).toEqual(expected.words)
        expect([...vocab.counts]).toEqual(expected.counts)
      }),
      { numRuns: 300 }
    )
  })

  test("EOS is the last id with count 1; kept words meet minDocCount; size is capped; order is by frequency", () => {
    fc.assert(
      fc.property(corpus, options, (docs, { minDocCount, maxSize }) => {
        const table = build(docs)
        expect(table.documentsCounted).toBe(docs.length)
        const vocab = table.buildVocabulary({ minDocCount, maxSize })
        const { docCount, adding } = stats(docs)
        expect(vocab.eosId).toBe(vocab.size - 1)
        expect(vocab.words[vocab.eosId]).toBe(EOS)
        expect(vocab.counts[vocab.eosId]).toBe(1)
        expect(vocab.index.get(EOS)).toBe(vocab.eosId)
        expect(vocab.size).toBeLessThanOrEqual(maxSize + 1)
        expect(new Set(vocab.words).size).toBe(vocab.size)
        const words = vocab.words.slice(0, -1)
        for (const w of words) {
          expect(docCount.get(w)!).toBeGreaterThanOrEqual(minDocCount)
          expect(adding.has(w)).toBe(true)
        }
        for (let i = 1; i < words.length; i++) {
          const [a, b] = [vocab.counts[i - 1], vocab.counts[i]]
          expect(a).toBeGreaterThanOrEqual(b)
          if (a === b) expect(words[i - 1] < words[i]).toBe(true)
        }
        // Capping only ever drops the least frequent eligible words.
        const eligible = [...adding].filter((w) => docCount.get(w)! >= minDocCount)
        expect(words.length).toBe(Math.min(maxSize, eligible.length))
      }),
      { numRuns: 300 }
    )
  })

  test("frequencies are count / Σcount and sum to 1", () => {
    fc.assert(
      fc.property(corpus, options, (docs, o) => {
        const vocab = build(docs).buildVocabulary(o)
        const f = vocab.frequencies()
        expect(f.length).toBe(vocab.size)
        const total = vocab.counts.reduce((a, b) => a + b, 0)
        for (let i = 0; i < f.length; i++) {
          expect(f[i]).toBeGreaterThan(0)
          expect(f[i]).toBeCloseTo(vocab.counts[i] / total, 6)
        }
        expect(Math.abs(f.reduce((a, b) => a + b, 0) - 1)).toBeLessThan(1e-5)
      }),
      { numRuns: 150 }
    )
  })

  test("words seen only in addsTokens=false documents are excluded, but such documents raise counts of existing words", () => {
    const docs: Array<Doc> = [
      { tokens: ["good", "movie"], addsTokens: true },
      { tokens: ["good", "plot", "good"], addsTokens: true },
      { tokens: ["good", "amazon", "amazon", "plot"], addsTokens: false },
      { tokens: ["amazon", "movie", "amazon"], addsTokens: false }
    ]
    const vocab = build(docs).buildVocabulary({ minDocCount: 2, maxSize: 100 })
    expect([...vocab.words]).toEqual(["good", "movie", "plot", EOS])
    // good: 3 adding + 1 foreign; movie: 1 + 1 (docs 2); plot: 1 + 1. "amazon" (4 occurrences, 2 docs) never enters.
    expect([...vocab.counts]).toEqual([4, 2, 2, 1])
    expect(vocab.index.has("amazon")).toBe(false)
    // Without the foreign documents "movie" and "plot" each appear in only one document and miss the threshold.
    const labeledOnly = build(docs.slice(0, 2)).buildVocabulary({ minDocCount: 2, maxSize: 100 })
    expect([...labeledOnly.words]).toEqual(["good", EOS])
    expect([...labeledOnly.counts]).toEqual([3, 1])
  })

  test("minDocCount counts documents, not occurrences", () => {
    const docs: Array<Doc> = [
      { tokens: ["once", "once", "once", "twice"], addsTokens: true },
      { tokens: ["twice"], addsTokens: true }
    ]
    const vocab = build(docs).buildVocabulary({ minDocCount: 2, maxSize: 10 })
    expect([...vocab.words]).toEqual(["twice", EOS])
    expect([...vocab.counts]).toEqual([2, 1])
  })

  test("encodeTokens and encodeInterned drop OOV words, append EOS and agree", () => {
    const extra = fc.array(fc.oneof(word, fc.constantFrom("unseen", "novel", "qq")), { maxLength: 20 })
    fc.assert(
      fc.property(corpus, options, fc.array(extra, { maxLength: 5 }), (docs, o, queries) => {
        const table = build(docs)
        const vocab = table.buildVocabulary(o)
        const all = [...docs.map((d) => d.tokens), ...queries]
        for (const tokens of all) {
          const expected = [...tokens.filter((t) => vocab.index.has(t)).map((t) => vocab.index.get(t)!), vocab.eosId]
          const byTokens = vocab.encodeTokens(tokens)
          expect(byTokens).toBeInstanceOf(Int32Array)
          expect([...byTokens]).toEqual(expected)
          // Interning after the vocabulary was built may add new temporary ids (unknown to the remap): still OOV.
          const interned = vocab.encodeInterned(table, table.intern(tokens))
          expect(interned).toBeInstanceOf(Int32Array)
          expect([...interned]).toEqual(expected)
          for (const id of byTokens.subarray(0, -1)) {
            expect(id).toBeGreaterThanOrEqual(0)
            expect(id).toBeLessThan(vocab.eosId)
          }
        }
      }),
      { numRuns: 200 }
    )
  })

  test("encodeInterned with ids from another table falls back to the words", () => {
    const table = build([
      { tokens: ["a", "b", "a"], addsTokens: true },
      { tokens: ["b", "c"], addsTokens: true }
    ])
    const vocab = table.buildVocabulary({ minDocCount: 1, maxSize: 10 })
    const other = new FrequencyTable()
    const ids = other.intern(["zz", "c", "a", "zz", "b"])
    expect([...vocab.encodeInterned(other, ids)]).toEqual([...vocab.encodeTokens(["zz", "c", "a", "zz", "b"])])
    expect([...vocab.encodeTokens(["zz", "c", "a", "zz", "b"])]).toEqual([2, 0, 1, 3])
    expect([...vocab.encodeTokens([])]).toEqual([vocab.eosId])
    // EOS spelled out in the text is not a word of the vocabulary: only the appended EOS remains.
    expect([...vocab.encodeTokens([EOS, "a"])]).toEqual([0, vocab.eosId])
  })

  test("a vocabulary must end with EOS", () => {
    expect(() => new Vocabulary(["a", "b"], [2, 1])).toThrow(/EOS/)
    expect(() => new Vocabulary([], [])).toThrow(/EOS/)
    expect(new Vocabulary(["a", EOS], [3, 1]).eosId).toBe(1)
  })
})

test("firstVocabularyDifference: −1 for the same list, else the first differing index or the shorter length", () => {
  expect(firstVocabularyDifference(["a", "b", EOS], ["a", "b", EOS])).toBe(-1)
  expect(firstVocabularyDifference([], [])).toBe(-1)
  expect(firstVocabularyDifference(["a", "x", EOS], ["a", "b", EOS])).toBe(1)
  expect(firstVocabularyDifference(["a", "b"], ["a", "b", EOS])).toBe(2)
  expect(firstVocabularyDifference(["a", "b", EOS], ["a"])).toBe(1)
})
