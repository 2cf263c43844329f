import { describe, expect, test } from "bun:test"
import { Effect, Stream } from "effect"
import fc from "fast-check"
import { tokenize, tokenizeStage } from "../../src/stages/tokenize.ts"

// Text drawn from a mix of word characters, punctuation, whitespace, HTML and non-ASCII letters.
const pieces = ["a", "B", "z", "Z", "0", "9", "_", " ", "\t", "\n", "'", ".", ",", "!", "-", "<br />", "é", "ß", "日本", "Ω", "🙂", "\u0301"]
const text = fc.oneof(fc.string({ maxLength: 60 }), fc.array(fc.constantFrom(...pieces), { maxLength: 40 }).map((p) => p.join("")))

describe("tokenize (spec A1.1)", () => {
  test("ascii tokens are never empty and hold only [A-Za-z0-9_]", () => {
    fc.assert(
      fc.property(text, fc.boolean(), (s, lowercase) => {
        for (const token of tokenize(s, { lowercase })) {
          expect(token.length).toBeGreaterThan(0)
          expect(token).toMatch(/^[A-Za-z0-9_]+$/)
        }
      }),
      { numRuns: 300 }
    )
  })

  test("ascii tokens, joined, are exactly the word characters of the text in order", () => {
    fc.assert(
      fc.property(text, (s) => {
        const tokens = tokenize(s, { lowercase: false })
        expect(tokens.join("")).toBe(s.replace(/[^A-Za-z0-9_]/g, ""))
      }),
      { numRuns: 200 }
    )
  })

  test("unicode tokens are never empty and hold only letters, marks, digits and _", () => {
    fc.assert(
      fc.property(text, fc.boolean(), (s, lowercase) => {
        for (const token of tokenize(s, { lowercase, tokenizer: "unicode" })) {
          expect(token.length).toBeGreaterThan(0)
          expect(token).toMatch(/^[\p{L}\p{N}\p{M}_]+$/u)
          expect(token).not.toMatch(/[\s'.,!<>\/-]/)
        }
      }),
      { numRuns: 200 }
    )
  })

  test("lowercase option lowercases every token; without it case is kept", () => {
    fc.assert(
      fc.property(text, (s) => {
        const lower = tokenize(s, { lowercase: true })
        for (const token of lower) expect(token).toBe(token.toLowerCase())
        expect(lower).toEqual(tokenize(s, { lowercase: false }).map((t) => t.toLowerCase()))
      }),
      { numRuns: 200 }
    )
    expect(tokenize("Hello World", { lowercase: false })).toEqual(["Hello", "World"])
    expect(tokenize("Hello World", { lowercase: true })).toEqual(["hello", "world"])
  })

  test("punctuation acts as whitespace", () => {
    expect(tokenize("don't", { lowercase: false })).toEqual(["don", "t"])
    expect(tokenize("Great movie.<br /><br />Loved it!", { lowercase: false })).toEqual(["Great", "movie", "br", "br", "Loved", "it"])
    expect(tokenize("<br />", { lowercase: true })).toEqual(["br"])
    expect(tokenize("a,b;c--d...e", { lowercase: false })).toEqual(["a", "b", "c", "d", "e"])
    expect(tokenize("snake_case and 2nd", { lowercase: false })).toEqual(["snake_case", "and", "2nd"])
    expect(tokenize("  \t\n  ", { lowercase: true })).toEqual([])
    expect(tokenize("", { lowercase: true })).toEqual([])
    expect(tokenize("...!!!", { lowercase: true })).toEqual([])
  })

  test("ascii mode splits at non-ASCII characters; unicode mode keeps them in words", () => {
    expect(tokenize("café au lait", { lowercase: false })).toEqual(["caf", "au", "lait"])
    expect(tokenize("café au lait", { lowercase: false, tokenizer: "unicode" })).toEqual(["café", "au", "lait"])
    expect(tokenize("Café, don't", { lowercase: true, tokenizer: "unicode" })).toEqual(["café", "don", "t"])
    // A combining accent stays with its letter.
    expect(tokenize("cafe\u0301!", { lowercase: false, tokenizer: "unicode" })).toEqual(["cafe\u0301"])
    expect(tokenize("naïve 日本語 x", { lowercase: false, tokenizer: "unicode" })).toEqual(["naïve", "日本語", "x"])
  })

  test("tokenizeStage attaches tokens to each record", async () => {
    const out = await Effect.runPromise(
      Stream.runCollect(tokenizeStage({ lowercase: true })(Stream.fromIterable([{ text: "Don't stop", id: 1 }, { text: "", id: 2 }])))
    )
    expect(out).toEqual([
      { text: "Don't stop", id: 1, tokens: ["don", "t", "stop"] },
      { text: "", id: 2, tokens: [] }
    ])
  })
})

test("ascii mode treats non-ASCII letters as separators even when lowercasing maps them to ASCII", () => {
  expect(tokenize("\u212Aelvin İstanbul", { lowercase: true })).toEqual(["elvin", "stanbul"])
  expect(tokenize("\u212Aelvin İstanbul", { lowercase: false })).toEqual(["elvin", "stanbul"])
})
