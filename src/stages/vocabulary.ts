/**
 * Frequency table and vocabulary (spec A1.3).
 *
 * Every token string is interned once to a temporary id, so a document is held as a small Int32Array instead of an
 * array of strings (RT's unlabeled stand-in is ~10^6 IMDB sentences). Counting follows the reference:
 * - `count` (the raw frequency, used for embedding normalization, Eq. 1) and `docCount` come from the training split:
 *   labeled-train plus unlabeled documents, never validation or test;
 * - documents from a foreign unlabeled corpus (`addsTokens: false`, the reference's Amazon reviews) may raise the counts
 *   of words seen in the labeled data but cannot add new words;
 * - keep words that occur in at least `minDocCount` documents, order by frequency (ties: alphabetical, for
 *   determinism; the reference's order is arbitrary), cap at `maxSize`, then append EOS `</s>` with count 1 as the
 *   last id. There is no UNK: out-of-vocabulary words are dropped by the encoder.
 */
export const EOS = "</s>"

/**
 * Where two word lists first differ: the first index whose words differ, the shorter list's length when one is a
 * prefix of the other, or −1 when they are the same list (a checkpoint's ids mean the same words only then).
 */
export function firstVocabularyDifference(a: ReadonlyArray<string>, b: ReadonlyArray<string>): number {
  const n = Math.min(a.length, b.length)
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i
  return a.length === b.length ? -1 : n
}

export class FrequencyTable {
  private readonly ids = new Map<string, number>()
  readonly words: Array<string> = []
  private readonly counts: Array<number> = []
  private readonly docCounts: Array<number> = []
  private readonly inAddingDoc: Array<boolean> = []
  private readonly lastDocSeen: Array<number> = []
  private docsCounted = 0

  /** Map tokens to temporary ids (does not count them). */
  intern(tokens: ReadonlyArray<string>): Int32Array {
    const out = new Int32Array(tokens.length)
    for (let i = 0; i < tokens.length; i++) {
      let id = this.ids.get(tokens[i])
      if (id === undefined) {
        id = this.words.length
        this.ids.set(tokens[i], id)
        this.words.push(tokens[i])
        this.counts.push(0)
        this.docCounts.push(0)
        this.inAddingDoc.push(false)
        this.lastDocSeen.push(-1)
      }
      out[i] = id
    }
    return out
  }

  /** Count one training document (already interned). */
  count(tempIds: Int32Array, addsTokens: boolean): void {
    const doc = this.docsCounted++
    for (let i = 0; i < tempIds.length; i++) {
      const id = tempIds[i]
      this.counts[id]++
      if (addsTokens) this.inAddingDoc[id] = true
      if (this.lastDocSeen[id] !== doc) {
        this.lastDocSeen[id] = doc
        this.docCounts[id]++
      }
    }
  }

  get documentsCounted(): number {
    return this.docsCounted
  }

  buildVocabulary(options: { readonly minDocCount: number; readonly maxSize: number }): Vocabulary {
    const kept: Array<number> = []
    for (let id = 0; id < this.words.length; id++) {
      if (this.inAddingDoc[id] && this.docCounts[id] >= options.minDocCount) kept.push(id)
    }
    kept.sort((a, b) => this.counts[b] - this.counts[a] || (this.words[a] < this.words[b] ? -1 : 1))
    const top = kept.slice(0, Math.max(0, options.maxSize))
    const vocab = new Vocabulary(
      [...top.map((id) => this.words[id]), EOS],
      [...top.map((id) => this.counts[id]), 1]
    )
    const remap = new Int32Array(this.words.length).fill(-1)
    top.forEach((tempId, vocabId) => (remap[tempId] = vocabId))
    vocab.attachRemap(this, remap)
    return vocab
  }
}

export class Vocabulary {
  readonly index: ReadonlyMap<string, number>
  private remap: { table: FrequencyTable; ids: Int32Array } | undefined

  constructor(
    readonly words: ReadonlyArray<string>,
    readonly counts: ReadonlyArray<number>
  ) {
    if (words.length === 0 || words[words.length - 1] !== EOS) throw new Error("a vocabulary must end with EOS")
    this.index = new Map(words.map((w, i) => [w, i]))
  }

  get size(): number {
    return this.words.length
  }
  get eosId(): number {
    return this.words.length - 1
  }

  /** Unigram frequencies f_k = count_k / Σ count (paper Eq. 1). */
  frequencies(): Float32Array {
    const total = this.counts.reduce((a, b) => a + b, 0)
    return Float32Array.from(this.counts, (c) => c / total)
  }

  /** @internal lets `encodeInterned` map temporary ids without going back to strings. */
  attachRemap(table: FrequencyTable, ids: Int32Array): void {
    this.remap = { table, ids }
  }

  /** Vocabulary ids of tokens, OOV dropped, EOS appended (spec A1.4). */
  encodeTokens(tokens: ReadonlyArray<string>): Int32Array {
    const out: Array<number> = []
    for (const token of tokens) {
      const id = this.index.get(token)
      if (id !== undefined && id !== this.eosId) out.push(id)
    }
    out.push(this.eosId)
    return Int32Array.from(out)
  }

  /** Same as `encodeTokens` for ids interned by the table this vocabulary was built from. */
  encodeInterned(table: FrequencyTable, tempIds: Int32Array): Int32Array {
    if (this.remap === undefined || this.remap.table !== table) {
      return this.encodeTokens(Array.from(tempIds, (id) => table.words[id]))
    }
    const map = this.remap.ids
    let n = 0
    for (let i = 0; i < tempIds.length; i++) if (tempIds[i] < map.length && map[tempIds[i]] >= 0) n++
    const out = new Int32Array(n + 1)
    let k = 0
    for (let i = 0; i < tempIds.length; i++) {
      const id = tempIds[i] < map.length ? map[tempIds[i]] : -1
      if (id >= 0) out[k++] = id
    }
    out[n] = this.eosId
    return out
  }
}
