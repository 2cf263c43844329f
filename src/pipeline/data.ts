/**
 * The data half of the stage graph: source → split → tokenize → frequency table → vocabulary → encode.
 *
 *   labeled train ─┐                      ┌→ encode → labeled training docs      (NLL / AT stream)
 *   unlabeled ─────┼→ tokenize → count ──→ vocab ─┼→ encode → unlabeled docs (+ labeled train, labels dropped: VAT stream)
 *   validation, test ─→ tokenize ──────────┘  └→ encode → evaluation docs
 *
 * Unlabeled text is streamed from its archive and kept only as interned Int32Arrays, never as strings or tensors.
 */
import { Effect, Stream } from "effect"
import { imdbUnlabeled, loadAgNews, loadCustom, loadDbpedia, loadElec, loadImdb, loadRcv1, loadRottenTomatoes, unlabeledLines } from "../data/sources.ts"
import { DATASET_KINDS, type DataLocation, type LabeledCorpus, type LabeledDoc, UNLABELED_SOURCES, type UnlabeledSource, VALIDATION_SPLITS } from "../data/types.ts"
import { type DataError, InvalidDataset } from "../errors.ts"
import { permutation, rng } from "../random.ts"
import { encodeDocument, type EncodedDoc } from "../stages/batch.ts"
import { tokenize, type TokenizeOptions } from "../stages/tokenize.ts"
import { FrequencyTable, type Vocabulary } from "../stages/vocabulary.ts"
import type { Config } from "./config.ts"

export interface PreparedData {
  readonly classes: ReadonlyArray<string>
  readonly vocabulary: Vocabulary
  readonly train: ReadonlyArray<EncodedDoc>
  readonly validation: ReadonlyArray<EncodedDoc>
  readonly test: ReadonlyArray<EncodedDoc>
  /** Unlabeled documents only (the VAT stream adds the labeled training docs to these). */
  readonly unlabeled: ReadonlyArray<EncodedDoc>
  /** Documents dropped because no word was in the vocabulary, per split. */
  readonly skipped: Readonly<Record<string, number>>
}

/**
 * The published datasets, by `dataset.kind`: each loads its canonical archive (or extracted folder). Every kind but
 * "custom" has exactly one loader here (the literal is checked against DATASET_KINDS).
 */
const PUBLISHED = {
  rt: loadRottenTomatoes,
  imdb: loadImdb,
  dbpedia: loadDbpedia,
  "ag-news": loadAgNews,
  elec: loadElec,
  rcv1: loadRcv1
} satisfies Record<Exclude<(typeof DATASET_KINDS)[number], "custom">, (location: DataLocation) => Effect.Effect<LabeledCorpus, DataError>>

export { DATASET_KINDS, UNLABELED_SOURCES, VALIDATION_SPLITS }

/** The labeled corpus and the unlabeled source named by the config. */
export const loadSources = (
  config: Config,
  location: DataLocation
): Effect.Effect<{ readonly corpus: LabeledCorpus; readonly unlabeled: UnlabeledSource | undefined }, DataError> =>
  Effect.gen(function* () {
    const ds = config.dataset
    let corpus: LabeledCorpus
    let customUnlabeled: UnlabeledSource | undefined
    if (ds.kind !== "custom") corpus = yield* PUBLISHED[ds.kind](location)
    else {
      const custom = yield* loadCustom({ train: ds.train!, test: ds.test, unlabeled: ds.unlabeled, format: ds.format })
      corpus = custom.corpus
      customUnlabeled = custom.unlabeled
    }
    const source = config.unlabeled.source
    const unlabeled: UnlabeledSource | undefined =
      source === "imdb-sentences"
        ? imdbUnlabeled(location, { include: ["train", "unsup"], sentences: true })
        : source === "imdb-unsup"
          ? imdbUnlabeled(location, { include: ["unsup"], sentences: false })
          : source === "custom"
            ? (customUnlabeled ?? (ds.unlabeled === undefined ? undefined : unlabeledLines(ds.unlabeled)))
            : undefined
    return { corpus, unlabeled }
  })

/** Paper split for corpora without a test set (RT: random 90/10 by seed), then a validation slice carved from train. */
export function splitCorpus(
  corpus: LabeledCorpus,
  config: Config
): { readonly train: ReadonlyArray<LabeledDoc>; readonly validation: ReadonlyArray<LabeledDoc>; readonly test: ReadonlyArray<LabeledDoc> } {
  let train = corpus.train
  let test = corpus.test
  if (test === undefined) {
    const order = permutation(train.length, rng(config.seed, "test-split"))
    const nTest = Math.round(train.length * config.data.testFraction)
    const all = train
    test = Array.from(order.subarray(0, nTest), (i) => all[i])
    train = Array.from(order.subarray(nTest), (i) => all[i])
  }
  if (config.data.validationSplit === "imdb-author") {
    // The first author's IMDB split (spec A1.2): validation = train/pos ids ≥ 10621 and train/neg ids ≥ 10625.
    const pos = corpus.classes.indexOf("pos")
    const isValidation = (d: LabeledDoc) => d.id !== undefined && d.id >= (d.label === pos ? 10621 : 10625)
    return { validation: train.filter(isValidation), train: train.filter((d) => !isValidation(d)), test }
  }
  const order = permutation(train.length, rng(config.seed, "validation-split"))
  const nValidation = Math.round(train.length * config.data.validationFraction)
  return {
    validation: Array.from(order.subarray(0, nValidation), (i) => train[i]),
    train: Array.from(order.subarray(nValidation), (i) => train[i]),
    test
  }
}

const checkLabeled = (what: string, docs: ReadonlyArray<{ readonly label: number }>, classes: ReadonlyArray<string>) =>
  Effect.gen(function* () {
    if (docs.length === 0) {
      return yield* new InvalidDataset({ message: `the ${what} split is empty: there is nothing to train or evaluate on. Check the dataset files and the split fractions.` })
    }
    const present = new Set(docs.map((d) => d.label))
    if (what === "training" && present.size < 2) {
      return yield* new InvalidDataset({
        message: `the training data has only one class (${classes[[...present][0]] ?? "?"}); a classifier needs at least two. Check the label column of the dataset.`
      })
    }
  })

/** The tokenizer the data stages use: the library's by default, or a Tokenizer service's (src/pipeline/services.ts). */
export type TokenizeText = (text: string, options: TokenizeOptions) => ReadonlyArray<string>

/** What a caller may plug into the data stages in place of the config's defaults. */
export interface DataPlugs {
  readonly tokenize?: TokenizeText
  readonly loadSources?: (config: Config, location: DataLocation) => ReturnType<typeof loadSources>
}

/** The tokenize stage with a pluggable tokenizer: records with a `text` in, the same with their `tokens` out. */
const tokenized =
  (tokenizeText: TokenizeText, options: TokenizeOptions) =>
  <A extends { readonly text: string }, E, R>(docs: Stream.Stream<A, E, R>) =>
    Stream.map(docs, (doc) => ({ ...doc, tokens: tokenizeText(doc.text, options) }))

/**
 * The frequency table's sink: runs interned documents into its document counts (`addsWords`: whether they may bring
 * words into the vocabulary) and collects them.
 */
const countInto = <A, E, R>(docs: Stream.Stream<A, E, R>, table: FrequencyTable, addsWords: boolean, idsOf: (doc: A) => Int32Array) =>
  Stream.runFold(docs, (): Array<A> => [], (all, doc) => {
    table.count(idsOf(doc), addsWords)
    all.push(doc)
    return all
  })

/** Unlabeled text: streamed from its source, length-filtered (paper: RT unlabeled T < 25), interned and counted. */
const internUnlabeled = (config: Config, unlabeled: UnlabeledSource, table: FrequencyTable, tokenizeText: TokenizeText, log: (line: string) => void) =>
  Effect.gen(function* () {
    const { maxTokens, limit } = config.unlabeled
    let seen = 0
    const filtered = unlabeled().pipe(
      Stream.map((text) => ({ text })),
      tokenized(tokenizeText, { lowercase: config.data.lowercase, tokenizer: config.data.tokenizer }),
      Stream.tap(() => Effect.sync(() => (++seen % 200_000 === 0 ? log(`  unlabeled: ${seen.toLocaleString()} documents read…`) : undefined))),
      Stream.filter((doc) => doc.tokens.length > 0 && (maxTokens === 0 || doc.tokens.length < maxTokens))
    )
    // The limit comes before interning and counting, so documents past it never reach the frequency table.
    const interned = (limit > 0 ? Stream.take(filtered, limit) : filtered).pipe(Stream.map((doc) => table.intern(doc.tokens)))
    const kept = yield* countInto(interned, table, config.unlabeled.addsTokens, (ids) => ids)
    log(`  unlabeled: kept ${kept.length.toLocaleString()} of ${seen.toLocaleString()} documents` + (maxTokens > 0 ? ` (< ${maxTokens} tokens)` : ""))
    return kept
  })

/** Interned documents → encoded ones under the vocabulary, counting the ones left empty (no in-vocabulary word). */
function encodeAll<A>(vocabulary: Vocabulary, table: FrequencyTable, skipped: Record<string, number>, name: string, items: ReadonlyArray<A>, toIds: (a: A) => Int32Array, label: (a: A) => number) {
  const out: Array<EncodedDoc> = []
  for (const item of items) {
    const doc = encodeDocument(vocabulary.encodeInterned(table, toIds(item)), label(item))
    if (doc === undefined) skipped[name] = (skipped[name] ?? 0) + 1
    else out.push(doc)
  }
  return out
}

export const prepareData = (
  config: Config,
  location: DataLocation,
  log: (line: string) => void,
  plugs: DataPlugs = {}
): Effect.Effect<PreparedData, DataError> =>
  Effect.gen(function* () {
    const tokenizeText = plugs.tokenize ?? tokenize
    const { corpus, unlabeled } = yield* (plugs.loadSources ?? loadSources)(config, location)
    if (corpus.classes.length < 2) {
      return yield* new InvalidDataset({ message: `dataset ${corpus.name} has ${corpus.classes.length} class; a classifier needs at least two.` })
    }
    const split = splitCorpus(corpus, config)
    yield* checkLabeled("training", split.train, corpus.classes)
    yield* checkLabeled("test", split.test, corpus.classes)
    const table = new FrequencyTable()
    const internSplit = (docs: ReadonlyArray<LabeledDoc>) =>
      Stream.fromIterable(docs).pipe(
        tokenized(tokenizeText, { lowercase: config.data.lowercase, tokenizer: config.data.tokenizer }),
        Stream.map((doc) => ({ ids: table.intern(doc.tokens), label: doc.label }))
      )
    // Labeled training documents are counted and may add words; unlabeled ones as config.unlabeled.addsTokens says.
    const trainInterned = yield* countInto(internSplit(split.train), table, true, (d) => d.ids)
    const unlabeledInterned = unlabeled === undefined ? [] : yield* internUnlabeled(config, unlabeled, table, tokenizeText, log)
    const vocabulary = table.buildVocabulary({ minDocCount: config.data.minDocCount, maxSize: config.data.maxVocab })
    if (vocabulary.size < 2) {
      return yield* new InvalidDataset({
        message: `no word occurs in at least ${config.data.minDocCount} training documents, so the vocabulary is empty. The dataset is too small or data.minDocCount too high.`
      })
    }
    const validationInterned = yield* Stream.runCollect(internSplit(split.validation))
    const testInterned = yield* Stream.runCollect(internSplit(split.test))
    const skipped: Record<string, number> = {}
    const encode = (name: string, docs: ReadonlyArray<{ readonly ids: Int32Array; readonly label: number }>) =>
      encodeAll(vocabulary, table, skipped, name, docs, (d) => d.ids, (d) => d.label)
    const prepared: PreparedData = {
      classes: corpus.classes,
      vocabulary,
      train: encode("train", trainInterned),
      validation: encode("validation", validationInterned),
      test: encode("test", testInterned),
      unlabeled: encodeAll(vocabulary, table, skipped, "unlabeled", unlabeledInterned, (ids) => ids, () => -1),
      skipped
    }
    yield* checkLabeled("training", prepared.train, corpus.classes)
    yield* checkLabeled("test", prepared.test, corpus.classes)
    return prepared
  })
