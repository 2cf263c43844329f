/**
 * Skip-gram with negative sampling (src/stages/skip-gram.ts): words that share contexts end up closer than words that
 * never do; the sampling table follows unigram^0.75; one seed gives the same vectors; Ctrl-C stops it.
 */
import { describe, expect, test } from "bun:test"
import fc from "fast-check"
import { negativeTable, rescaleToStd, trainSkipGram, type SkipGramOptions } from "../../src/stages/skip-gram.ts"
import { rng } from "../../src/random.ts"

const EOS = 0
/** Two topics: words 1–4 occur only with each other, words 5–8 only with each other. */
function topicCorpus(docs: number, seed = 1): Array<Int32Array> {
  const random = rng(seed, "corpus")
  return Array.from({ length: docs }, () => {
    const base = random.uniform() < 0.5 ? 1 : 5
    const words = Array.from({ length: 8 }, () => base + random.int(4))
    return Int32Array.from([...words, EOS])
  })
}
const options: SkipGramOptions = { dim: 8, window: 3, negatives: 4, epochs: 3, subsample: 0, learningRate: 0.05, seed: 2 }
const cosine = (v: Float32Array, a: number, b: number, d: number) => {
  let dot = 0, na = 0, nb = 0
  for (let j = 0; j < d; j++) {
    dot += v[a * d + j] * v[b * d + j]
    na += v[a * d + j] ** 2
    nb += v[b * d + j] ** 2
  }
  return dot / Math.sqrt(na * nb)
}

describe("trainSkipGram", () => {
  test("words of the same topic are closer than words of different topics", () => {
    const { vectors, tokensPerEpoch } = trainSkipGram(topicCorpus(400), 9, EOS, options)
    expect(tokensPerEpoch).toBe(400 * 8)
    let within = 0, across = 0
    for (let a = 1; a <= 4; a++) {
      for (let b = 1; b <= 4; b++) if (a !== b) within += cosine(vectors, a, b, 8) + cosine(vectors, a + 4, b + 4, 8)
      for (let b = 5; b <= 8; b++) across += 2 * cosine(vectors, a, b, 8)
    }
    expect(within / 24).toBeGreaterThan(0.5)
    expect(across / 32).toBeLessThan(within / 24 - 0.5)
  })

  test("the loss falls from ln 2 per term towards the data's", () => {
    const losses: Array<number> = []
    trainSkipGram(topicCorpus(400), 9, EOS, options, (p) => void losses.push(p.loss), 500)
    expect(losses[0]).toBeGreaterThan(losses.at(-1)! + 0.3)
  })

  test("same seed, same vectors; another seed, other vectors", () => {
    const corpus = topicCorpus(50)
    const a = trainSkipGram(corpus, 9, EOS, options).vectors
    const b = trainSkipGram(corpus, 9, EOS, options).vectors
    const c = trainSkipGram(corpus, 9, EOS, { ...options, seed: 3 }).vectors
    expect(Array.from(a)).toEqual(Array.from(b))
    expect(Array.from(a)).not.toEqual(Array.from(c))
  })

  test("the boundary token keeps its initial vector (never a center, context or negative)", () => {
    const init = trainSkipGram(topicCorpus(50), 9, EOS, { ...options, epochs: 1 }, () => false, 1).vectors.slice(0, 8)
    const trained = trainSkipGram(topicCorpus(50), 9, EOS, options).vectors.slice(0, 8)
    expect(Array.from(trained)).toEqual(Array.from(init))
  })

  test("returning false from report stops early", () => {
    let reports = 0
    trainSkipGram(topicCorpus(400), 9, EOS, options, () => ++reports < 2, 100)
    // One stop report plus the final one; a full run reports every ~100 tokens (96 times).
    expect(reports).toBe(3)
  })
})

describe("negativeTable", () => {
  test("slot shares follow count^0.75 and never hold the excluded word", () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 1, max: 1000 }), { minLength: 2, maxLength: 6 }), (raw) => {
        const counts = Int32Array.from([500, ...raw])
        const table = negativeTable(counts, 0)
        const hits = new Float64Array(counts.length)
        for (const w of table) hits[w]++
        expect(hits[0]).toBe(0)
        const total = raw.reduce((a, c) => a + c ** 0.75, 0)
        for (let w = 1; w < counts.length; w++) expect(Math.abs(hits[w] / table.length - counts[w] ** 0.75 / total)).toBeLessThan(2 / table.length)
      }),
      { numRuns: 20 }
    )
  })
})

test("rescaleToStd scales to the target standard deviation", () => {
  const v = Float32Array.from({ length: 1000 }, (_, i) => Math.sin(i) * 0.01)
  const out = rescaleToStd(v, 0.5)
  const mean = out.reduce((a, x) => a + x, 0) / out.length
  const std = Math.sqrt(out.reduce((a, x) => a + (x - mean) ** 2, 0) / out.length)
  expect(std).toBeCloseTo(0.5, 4)
})
