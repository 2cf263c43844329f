/**
 * Tokenize stage (spec A1.1): strip, optionally lowercase, split on runs of non-word characters; punctuation acts as
 * whitespace, so "don't" → `don`, `t`, and IMDB's `<br />` → `br`. No stemming, no stop words.
 *
 * `ascii` reproduces the reference code (Python 2 on bytes: every non-ASCII character separates words);
 * `unicode` keeps letters and digits of any script together (Python 3's `\W`).
 */
import { Stream } from "effect"

export const TOKENIZERS = ["ascii", "unicode"] as const
export type TokenizerKind = (typeof TOKENIZERS)[number]

/** Word separators per tokenizer (also written into an exported model's tokenizer module, src/use/export.ts). */
export const separators: Record<TokenizerKind, RegExp> = {
  ascii: /[^A-Za-z0-9_]+/,
  unicode: /[^\p{L}\p{N}\p{M}_]+/u
}

export interface TokenizeOptions {
  readonly lowercase: boolean
  readonly tokenizer?: TokenizerKind
}

export function tokenize(text: string, options: TokenizeOptions): Array<string> {
  // Split before lowercasing: Unicode case mapping turns some non-ASCII letters into ASCII ones (the Kelvin sign
  // into "k", "İ" into "i"), which the reference, splitting bytes, treats as separators.
  const tokens = text.trim().split(separators[options.tokenizer ?? "ascii"]).filter((token) => token.length > 0)
  return options.lowercase ? tokens.map((token) => token.toLowerCase()) : tokens
}

/** The stage form: documents (anything with a `text`) in, the same records with their `tokens` out. */
export const tokenizeStage =
  (options: TokenizeOptions) =>
  <A extends { readonly text: string }, E, R>(docs: Stream.Stream<A, E, R>): Stream.Stream<A & { readonly tokens: Array<string> }, E, R> =>
    Stream.map(docs, (doc) => ({ ...doc, tokens: tokenize(doc.text, options) }))
