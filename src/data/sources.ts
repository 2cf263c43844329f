/**
 * Dataset loaders: Rotten Tomatoes sentence polarity, IMDB (labeled and unlabeled), the paper's other datasets
 * (DBpedia, Elec, RCV1) and AG News, and user files (jsonl/csv/tsv). Archives are read straight from their .tar.gz
 * (see archive.ts for where they are looked up).
 */
import { createReadStream } from "node:fs"
import { readFile, stat } from "node:fs/promises"
import { basename, extname } from "node:path"
import { Channel, Effect, Stream } from "effect"
import type { NonEmptyReadonlyArray } from "effect/Array"
import { CorruptArchive, DataNotFound, DecodeError, InvalidDataset, type DataError } from "../errors.ts"
import {
  AG_NEWS_ARCHIVE,
  DBPEDIA_ARCHIVE,
  ELEC_ARCHIVE,
  IMDB_ARCHIVE,
  locateArchive,
  RCV1_ARCHIVE,
  readMembers,
  RT_ARCHIVE,
  sourceOf,
  toDataError,
  type ArchiveHandle,
  type ArchiveSpec,
} from "./archive.ts"
import type { DataLocation, LabeledCorpus, LabeledDoc, UnlabeledSource } from "./types.ts"

// ---------------------------------------------------------------------------------------------------------------
// Decoding helpers

const utf8Fatal = new TextDecoder("utf-8", { fatal: true })

/** Strict UTF-8 decode; on failure a `DecodeError` naming `where`, the byte offset and the line. */
export const decodeUtf8 = (bytes: Uint8Array, where: string, baseOffset = 0, baseLine = 1): string => {
  try {
    return utf8Fatal.decode(bytes)
  } catch {
    // TextDecoder does not say where it failed: binary-search the shortest failing prefix (streaming mode tolerates
    // an incomplete trailing sequence, so failure is monotone in the prefix length).
    const fails = (n: number) => {
      if (n > bytes.length) return true
      try {
        new TextDecoder("utf-8", { fatal: true }).decode(bytes.subarray(0, n), { stream: true })
        return false
      } catch {
        return true
      }
    }
    let lo = 1
    let hi = bytes.length + 1
    while (lo < hi) {
      const mid = (lo + hi) >> 1
      if (fails(mid)) hi = mid
      else lo = mid + 1
    }
    // The error shows at the first byte that cannot continue a sequence; report where that sequence began, i.e.
    // the last point before it where the prefix decodes completely.
    const detected = Math.min(lo - 1, bytes.length - 1)
    let off = detected
    for (let s = detected; s >= Math.max(0, detected - 3); s--) {
      try {
        new TextDecoder("utf-8", { fatal: true }).decode(bytes.subarray(0, s))
        off = s
        break
      } catch {}
    }
    let line = baseLine
    for (let i = 0; i < off; i++) if (bytes[i] === 0x0a) line++
    throw new DecodeError({
      message: `${where} is not valid UTF-8: invalid byte 0x${bytes[off]!.toString(16).padStart(2, "0")} at byte ` +
        `offset ${baseOffset + off} (line ${line}). Re-save the file as UTF-8 (e.g. iconv -f latin1 -t utf-8).`,
    })
  }
}

/** True ISO-8859-1 (byte n -> U+00nn); TextDecoder("latin1") would apply windows-1252 and remap 0x80-0x9f. */
const latin1 = (bytes: Uint8Array): string => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("latin1")

const onDataError = (what: string) => (e: unknown) => toDataError(e, what)
const describe = (h: ArchiveHandle, spec: ArchiveSpec) =>
  h.kind === "archive" ? `The archive ${h.path}` : `The extracted folder ${h.path}/${spec.extractedDir}`

/** Runs `f` on the located dataset, mapping anything it throws to a DataError. */
const withArchive = <A>(loc: DataLocation, spec: ArchiveSpec, f: (h: ArchiveHandle) => Promise<A>): Effect.Effect<A, DataError> =>
  Effect.flatMap(locateArchive(loc, spec), (h) => Effect.tryPromise({ try: () => f(h), catch: onDataError(describe(h, spec)) }))

/** A re-readable stream of non-empty batches produced by `gen` (batching avoids one promise per element). */
const batchedStream = <A>(gen: () => AsyncGenerator<NonEmptyReadonlyArray<A>, void>, what: string): Stream.Stream<A, DataError> =>
  Stream.fromChannel(Channel.fromAsyncIterable({ [Symbol.asyncIterator]: gen }, onDataError(what)))

// ---------------------------------------------------------------------------------------------------------------
// Rotten Tomatoes

/**
 * The v1.0 files are latin-1 with LF line ends, and byte 0x85 (NEL in latin-1) occurs inside lines, so split on
 * "\n" only. A copy re-encoded to UTF-8 also circulates; it decodes strictly as UTF-8, which the original never does.
 */
const rtLines = (bytes: Uint8Array): Array<string> => {
  let text: string
  try {
    text = utf8Fatal.decode(bytes)
  } catch {
    text = latin1(bytes)
  }
  const lines = text.split("\n")
  if (lines.at(-1) === "") lines.pop()
  return lines
}

/** RT sentence polarity: classes ["neg","pos"], all docs in `train` (neg first), no official test split. */
export const loadRottenTomatoes = (loc: DataLocation): Effect.Effect<LabeledCorpus, DataError> =>
  withArchive(loc, RT_ARCHIVE, async (h) => {
    const names = ["rt-polaritydata/rt-polarity.neg", "rt-polaritydata/rt-polarity.pos"]
    const found = new Map<string, Uint8Array>()
    for await (const m of readMembers(h, RT_ARCHIVE, (p) => names.includes(p))) found.set(m.path, m.data)
    const missing = names.filter((n) => !found.has(n))
    if (missing.length > 0) {
      throw new CorruptArchive({
        message: `${describe(h, RT_ARCHIVE)} lacks ${missing.join(" and ")}; expected the layout of ` +
          `${RT_ARCHIVE.fileName} (v1.0). Replace it with the original archive from ${RT_ARCHIVE.canonicalUrl}.`,
      })
    }
    const train: Array<LabeledDoc> = names.flatMap((n, label) => rtLines(found.get(n)!).map((text) => ({ text, label })))
    return { name: "rt", classes: ["neg", "pos"], train, test: undefined }
  })

// ---------------------------------------------------------------------------------------------------------------
// IMDB

const IMDB_MEMBER = /^aclImdb\/(train|test)\/(pos|neg|unsup)\/(\d+)_(\d+)\.txt$/

/** IMDB labeled reviews: train/{neg,pos} and test/{neg,pos}, neg=0 pos=1, sorted by split, class, file id. */
export const loadImdb = (loc: DataLocation): Effect.Effect<LabeledCorpus, DataError> =>
  withArchive(loc, IMDB_ARCHIVE, async (h) => {
    const where = describe(h, IMDB_ARCHIVE)
    const docs = { train: [] as Array<LabeledDoc>, test: [] as Array<LabeledDoc> }
    const filter = (p: string) => {
      const m = IMDB_MEMBER.exec(p)
      return m !== null && m[2] !== "unsup"
    }
    for await (const { path, data } of readMembers(h, IMDB_ARCHIVE, filter)) {
      const [, split, cls, id] = IMDB_MEMBER.exec(path)!
      docs[split as "train" | "test"].push({ text: decodeUtf8(data, `${where}, member ${path},`), label: cls === "pos" ? 1 : 0, id: Number(id) })
    }
    for (const split of ["train", "test"] as const) {
      for (const [label, cls] of ["neg", "pos"].entries()) {
        if (!docs[split].some((d) => d.label === label)) {
          throw new CorruptArchive({
            message: `${where} has no aclImdb/${split}/${cls}/<id>_<rating>.txt files; expected the layout of ` +
              `${IMDB_ARCHIVE.fileName}. Replace it with the original archive from ${IMDB_ARCHIVE.canonicalUrl}.`,
          })
        }
      }
      docs[split].sort((a, b) => a.label - b.label || a.id! - b.id!)
    }
    return { name: "imdb", classes: ["neg", "pos"], train: docs.train, test: docs.test }
  })

/** Splits a review into sentences at `.`, `!` or `?` followed by whitespace; `<br />` counts as a space. */
export const imdbSentences = (text: string): Array<string> =>
  text
    .replace(/<br\s*\/?>/gi, " ")
    .split(/(?<=[.!?])\s+/)
    .map((s) => s.trim())
    .filter((s) => s.length > 0)

/**
 * IMDB texts (labels ignored) of the chosen folders, streamed from the archive in archive order:
 * "train" = train/{pos,neg}, "unsup" = train/unsup, "test" = test/{pos,neg}. Each run re-reads the archive.
 */
export const imdbUnlabeled = (
  loc: DataLocation,
  opts: { readonly include: ReadonlyArray<"train" | "unsup" | "test">; readonly sentences: boolean },
): UnlabeledSource => {
  const wanted = (split: string, cls: string) =>
    cls === "unsup" ? opts.include.includes("unsup") : opts.include.includes(split as "train" | "test")
  const filter = (p: string) => {
    const m = IMDB_MEMBER.exec(p)
    return m !== null && wanted(m[1]!, m[2]!)
  }
  return () =>
    Stream.unwrap(
      Effect.map(locateArchive(loc, IMDB_ARCHIVE), (h) => {
        const where = describe(h, IMDB_ARCHIVE)
        return batchedStream(async function* () {
          for await (const { path, data } of readMembers(h, IMDB_ARCHIVE, filter)) {
            const text = decodeUtf8(data, `${where}, member ${path},`)
            const out = opts.sentences ? imdbSentences(text) : [text]
            if (out.length > 0) yield out as unknown as NonEmptyReadonlyArray<string>
          }
        }, where)
      }),
    )
}

// ---------------------------------------------------------------------------------------------------------------
// The paper's other datasets, and AG News

/** Reads the named members of a located dataset (`optional` ones may be absent); a missing one is a CorruptArchive. */
const readRequired = async (
  h: ArchiveHandle,
  spec: ArchiveSpec,
  required: ReadonlyArray<string>,
  optional: ReadonlyArray<string> = [],
): Promise<Map<string, Uint8Array>> => {
  const wanted = new Set([...required, ...optional])
  const found = new Map<string, Uint8Array>()
  for await (const m of readMembers(h, spec, (p) => wanted.has(p))) found.set(m.path, m.data)
  const missing = required.filter((n) => !found.has(n))
  if (missing.length > 0) {
    throw new CorruptArchive({
      message: `${describe(h, spec)} lacks ${missing.join(", ")}; expected the layout of ${spec.fileName}. ` +
        (spec.canonicalUrl === undefined ? `To build it: ${sourceOf(spec)}.` : `Replace it with the original archive from ${spec.canonicalUrl}.`),
    })
  }
  return found
}

/** Lines of a text file, CR stripped; a final newline does not make an empty last line. Empty lines are kept. */
const fileLines = (text: string): Array<string> => {
  const lines = text.split("\n").map((l) => (l.endsWith("\r") ? l.slice(0, -1) : l))
  if (lines.at(-1) === "") lines.pop()
  return lines
}

/**
 * Zhang, Zhao & LeCun (2015)'s CSV layout (DBpedia, AG News): `"class","title","content"` rows without a header,
 * RFC 4180 quoting ("" for a quote, newlines inside quotes), class = a 1-based line of classes.txt. The document is
 * title + " " + content, as the reference code builds it (spec A1.2); the text is kept as published.
 */
const loadZhangCsv = (loc: DataLocation, spec: ArchiveSpec, name: string): Effect.Effect<LabeledCorpus, DataError> =>
  withArchive(loc, spec, async (h) => {
    const dir = spec.extractedDir
    const [classesFile, trainFile, testFile] = [`${dir}/classes.txt`, `${dir}/train.csv`, `${dir}/test.csv`]
    const found = await readRequired(h, spec, [classesFile, trainFile, testFile])
    const where = (member: string) => `${describe(h, spec)}, member ${member},`
    const classes = fileLines(decodeUtf8(found.get(classesFile)!, where(classesFile))).map((l) => l.trim()).filter((l) => l !== "")
    if (classes.length < 2) {
      throw new InvalidDataset({ message: `${where(classesFile)} names ${classes.length} class; expected one class name per line (at least two).` })
    }
    const docs = (member: string): Array<LabeledDoc> =>
      parseCsvRows(decodeUtf8(found.get(member)!, where(member)), member).map(({ fields, line }) => {
        if (fields.length !== 3) throw malformed(member, line, `expected 3 fields "class","title","content", found ${fields.length}.`)
        const k = Number(fields[0])
        if (!Number.isInteger(k) || k < 1 || k > classes.length) {
          throw malformed(member, line, `class ${JSON.stringify(fields[0])} is not a line number 1..${classes.length} of ${classesFile}.`)
        }
        return { text: `${fields[1]} ${fields[2]}`, label: k - 1 }
      })
    return { name, classes, train: docs(trainFile), test: docs(testFile) }
  })

/** DBpedia ontology classes (14): dbpedia_csv/{classes.txt,train.csv,test.csv}; the paper's purely supervised task. */
export const loadDbpedia = (loc: DataLocation): Effect.Effect<LabeledCorpus, DataError> => loadZhangCsv(loc, DBPEDIA_ARCHIVE, "dbpedia")

/** AG News topics (4): ag_news_csv/{classes.txt,train.csv,test.csv}. Not in the paper; read like DBpedia. */
export const loadAgNews = (loc: DataLocation): Effect.Effect<LabeledCorpus, DataError> => loadZhangCsv(loc, AG_NEWS_ARCHIVE, "ag-news")

/**
 * Johnson & Zhang's layout (Elec, RCV1): per split a text file, one document per line, and a label file, one label
 * per line in step with it. Class names are the label strings: `classNames` when the release lists them, else the
 * labels of both splits, sorted (numerically when all are numbers).
 */
const pairedSplits = (
  h: ArchiveHandle,
  spec: ArchiveSpec,
  found: ReadonlyMap<string, Uint8Array>,
  splits: Readonly<Record<"train" | "test", { readonly text: string; readonly labels: string }>>,
  classNames: ReadonlyArray<string> | undefined,
  transform: (text: string) => string = (t) => t,
): { classes: ReadonlyArray<string>; train: Array<LabeledDoc>; test: Array<LabeledDoc> } => {
  const where = (member: string) => `${describe(h, spec)}, member ${member},`
  const read = (split: "train" | "test") => {
    const { text, labels } = splits[split]
    const docs = fileLines(decodeUtf8(found.get(text)!, where(text)))
    const labs = fileLines(decodeUtf8(found.get(labels)!, where(labels))).map((l) => l.trim())
    if (docs.length !== labs.length) {
      throw new InvalidDataset({
        message: `${where(text)} has ${docs.length} lines but ${labels} has ${labs.length}; the two files pair line by line ` +
          `(a document and its label), so they are damaged or come from different releases.`,
      })
    }
    const empty = labs.findIndex((l) => l === "")
    if (empty >= 0) throw malformed(labels, empty + 1, "the label is empty.")
    return { docs, labs }
  }
  const train = read("train")
  const test = read("test")
  const classes = classNames ?? sortLabels([...train.labs, ...test.labs])
  const index = new Map(classes.map((c, i) => [c, i]))
  const toDocs = ({ docs, labs }: { docs: Array<string>; labs: Array<string> }, labels: string) =>
    docs.map((text, i): LabeledDoc => {
      const label = index.get(labs[i]!)
      if (label === undefined) throw malformed(labels, i + 1, `label ${JSON.stringify(labs[i])} is not one of the ${classes.length} classes of the release.`)
      return { text: transform(text), label }
    })
  return { classes, train: toDocs(train, splits.train.labels), test: toDocs(test, splits.test.labels) }
}

/**
 * Elec (Amazon electronics reviews, 2 classes): Johnson & Zhang's elec2 release, the one without duplicates the paper
 * used (24,792 train, 24,897 test): elec/elec-25k-train.{txt.tok,cat} and elec/elec-test.{txt.tok,cat}, labels "1"
 * and "2". The tokenized text is read, as for RCV1 (the tokenizer then treats its punctuation tokens as spaces).
 */
export const loadElec = (loc: DataLocation): Effect.Effect<LabeledCorpus, DataError> =>
  withArchive(loc, ELEC_ARCHIVE, async (h) => {
    const splits = {
      train: { text: "elec/elec-25k-train.txt.tok", labels: "elec/elec-25k-train.cat" },
      test: { text: "elec/elec-test.txt.tok", labels: "elec/elec-test.cat" },
    }
    const found = await readRequired(h, ELEC_ARCHIVE, Object.values(splits).flatMap((s) => [s.text, s.labels]))
    return { name: "elec", ...pairedSplits(h, ELEC_ARCHIVE, found, splits, undefined) }
  })

/**
 * RCV1 second-level topics (55 classes), Johnson & Zhang's single-label split (15,564 train, 49,838 test):
 * rcv1_data/rcv1-1m-{train,test}.{txt.tok,lvl2}, class names from rcv1-lvl2.catdic when present. The paper removes
 * the stop words of Lewis et al. (2004), so rcv1_data/rcv1_stopword.txt (one word per line, as ConText ships it) is
 * required and its words are dropped, case-insensitively, from every document.
 */
export const loadRcv1 = (loc: DataLocation): Effect.Effect<LabeledCorpus, DataError> =>
  withArchive(loc, RCV1_ARCHIVE, async (h) => {
    const dir = RCV1_ARCHIVE.extractedDir
    const splits = {
      train: { text: `${dir}/rcv1-1m-train.txt.tok`, labels: `${dir}/rcv1-1m-train.lvl2` },
      test: { text: `${dir}/rcv1-1m-test.txt.tok`, labels: `${dir}/rcv1-1m-test.lvl2` },
    }
    const [stopFile, catdic] = [`${dir}/rcv1_stopword.txt`, `${dir}/rcv1-lvl2.catdic`]
    const found = await readRequired(h, RCV1_ARCHIVE, [...Object.values(splits).flatMap((s) => [s.text, s.labels]), stopFile], [catdic])
    const where = (member: string) => `${describe(h, RCV1_ARCHIVE)}, member ${member},`
    const lines = (member: string) => fileLines(decodeUtf8(found.get(member)!, where(member))).map((l) => l.trim()).filter((l) => l !== "")
    const stopWords = new Set(lines(stopFile).map((w) => w.toLowerCase()))
    const dropStopWords = (text: string) =>
      text
        .split(/\s+/)
        .filter((w) => w !== "" && !stopWords.has(w.toLowerCase()))
        .join(" ")
    const classNames = found.has(catdic) ? lines(catdic) : undefined
    return { name: "rcv1", ...pairedSplits(h, RCV1_ARCHIVE, found, splits, classNames, dropStopWords) }
  })

// ---------------------------------------------------------------------------------------------------------------
// Custom files

export const CUSTOM_FORMATS = ["jsonl", "csv", "tsv"] as const
export type CustomFormat = (typeof CUSTOM_FORMATS)[number]

export interface CustomSpec {
  readonly train: string
  readonly test?: string | undefined
  readonly unlabeled?: string | undefined
  readonly format?: CustomFormat | undefined
}

/** One record of a custom file; `label` is "" where labels are optional and absent (prediction inputs). */
export interface RawRecord {
  readonly text: string
  readonly label: string
  /** 1-based line of the record's start in its file. */
  readonly line: number
  /** The record's own `id` (JSONL field or CSV column), when it has one. */
  readonly id?: string
}

export const FORMAT_BY_EXT: Record<string, CustomFormat> = { ".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".tsv": "tsv", ".tab": "tsv" }

export const readBytes = async (path: string, role: string): Promise<Uint8Array> => {
  try {
    return await readFile(path)
  } catch (e) {
    const code = (e as { code?: string }).code
    throw new DataNotFound({
      message: code === "ENOENT"
        ? `The ${role} file ${path} does not exist. Check the path given for the ${role} data.`
        : `The ${role} file ${path} cannot be read (${(e as Error).message}). Check that it is a readable file.`,
    })
  }
}

/** Lines with 1-based numbers, CR stripped, blank lines skipped. */
export const numberedLines = (text: string): Array<[number, string]> =>
  text.split("\n").flatMap((l, i): Array<[number, string]> => {
    const line = l.endsWith("\r") ? l.slice(0, -1) : l
    return line.trim() === "" ? [] : [[i + 1, line]]
  })

const malformed = (file: string, line: number, what: string) =>
  new DecodeError({ message: `${file}:${line}: ${what}` })

const idOf = (v: unknown): string | undefined => (typeof v === "string" || typeof v === "number" ? String(v) : undefined)

/** `labeled` false: the label is optional (texts to classify), so only "text" is required. */
const parseJsonl = (text: string, file: string, labeled = true): Array<RawRecord> => {
  // Labels are compared as strings, so 1 and "1" would silently merge into one class: refuse the mix instead.
  const labelTypes = new Map<string, { readonly type: string; readonly line: number }>()
  return numberedLines(text).map(([n, line]) => {
    const expected = labeled
      ? `each line must be a JSON object like {"text": "a review", "label": "pos"} (label: string or number).`
      : `each line must be a JSON object with a string "text" field, like {"text": "a review"}.`
    let v: unknown
    try {
      v = JSON.parse(line)
    } catch (e) {
      throw malformed(file, n, `not valid JSON (${(e as Error).message}); ${expected}`)
    }
    const o = v as { text?: unknown; label?: unknown; id?: unknown }
    const okLabel = (typeof o?.label === "string" && o.label.trim() !== "") || (typeof o?.label === "number" && Number.isFinite(o.label))
    if (typeof v !== "object" || v === null || typeof o.text !== "string" || (labeled && !okLabel)) {
      throw malformed(file, n, `missing or wrongly typed "text"${labeled ? ' or "label"' : ""}; ${expected}`)
    }
    const label = okLabel ? String(o.label).trim() : ""
    if (okLabel) {
      const seen = labelTypes.get(label)
      if (seen === undefined) labelTypes.set(label, { type: typeof o.label, line: n })
      else if (seen.type !== typeof o.label) {
        throw malformed(
          file,
          n,
          `label ${JSON.stringify(o.label)} is a ${typeof o.label} here but a ${seen.type} on line ${seen.line}; ` +
            `they would merge into one class. Write every label of a class the same way (all numbers or all strings).`
        )
      }
    }
    return { text: o.text as string, label, line: n, id: idOf(o.id) }
  })
}

/** RFC 4180: quoted fields may hold commas, newlines and doubled quotes; rows carry their first line number. */
const parseCsvRows = (text: string, file: string): Array<{ fields: Array<string>; line: number }> => {
  const rows: Array<{ fields: Array<string>; line: number }> = []
  let fields: Array<string> = []
  let field = ""
  let line = 1
  let rowLine = 1
  let state: "start" | "plain" | "quoted" | "closed" = "start"
  const endRow = () => {
    fields.push(field)
    if (!(fields.length === 1 && fields[0]!.trim() === "")) rows.push({ fields, line: rowLine })
    fields = []
    field = ""
    state = "start"
  }
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!
    if (state === "quoted") {
      if (c === '"') {
        if (text[i + 1] === '"') {
          field += '"'
          i++
        } else state = "closed"
      } else {
        if (c === "\n") line++
        field += c
      }
    } else if (c === ",") {
      fields.push(field)
      field = ""
      state = "start"
    } else if (c === "\n" || (c === "\r" && text[i + 1] === "\n")) {
      if (c === "\r") i++
      endRow()
      line++
      rowLine = line
    } else if (state === "closed") {
      throw malformed(file, line, `unexpected character ${JSON.stringify(c)} after a closing quote; inside a quoted field write a quote as "".`)
    } else if (c === '"' && state === "start") {
      state = "quoted"
    } else {
      field += c
      state = "plain"
    }
  }
  if (state === "quoted") throw malformed(file, rowLine, "a quoted field is never closed (missing \" before the end of the file).")
  if (field !== "" || fields.length > 0) endRow()
  return rows
}

const parseCsv = (text: string, file: string, labeled = true): Array<RawRecord> => {
  const [header, ...rows] = parseCsvRows(text, file)
  if (header === undefined) return []
  const names = header.fields.map((f) => f.trim().toLowerCase())
  const ti = names.indexOf("text")
  const li = names.indexOf("label")
  const ii = names.indexOf("id")
  if (ti < 0 || (labeled && li < 0)) {
    throw new InvalidDataset({
      message: `${file}: the CSV header must have columns named "text"${labeled ? ' and "label"' : ""}, found ${JSON.stringify(header.fields)}. ` +
        `Add a header line such as label,text (or use TSV: label<TAB>text without header).`,
    })
  }
  return rows.map(({ fields, line }) => {
    if (fields.length !== names.length) {
      throw malformed(file, line, `expected ${names.length} fields as in the header, found ${fields.length}; quote fields that contain commas or newlines.`)
    }
    const label = li < 0 ? "" : fields[li]!.trim()
    if (labeled && label === "") throw malformed(file, line, "the label field is empty.")
    return { text: fields[ti]!, label, line, id: ii < 0 ? undefined : fields[ii] }
  })
}

/** Unlabeled (`labeled` false), a line without a tab is all text. */
const parseTsv = (text: string, file: string, labeled = true): Array<RawRecord> =>
  numberedLines(text).map(([n, line]) => {
    const tab = line.indexOf("\t")
    const label = tab < 0 ? "" : line.slice(0, tab).trim()
    if (labeled && label === "") throw malformed(file, n, "expected label<TAB>text (a non-empty label, a tab, then the text; no header line).")
    return { text: line.slice(tab + 1), label, line: n }
  })

const NUMERIC = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/

/** Numeric labels sort numerically (so "10" follows "9"), otherwise by code unit order (locale-independent). */
const sortLabels = (labels: Iterable<string>): Array<string> => {
  const all = [...new Set(labels)]
  const numeric = all.every((l) => NUMERIC.test(l))
  return all.sort((a, b) => (numeric ? Number(a) - Number(b) : 0) || (a < b ? -1 : a > b ? 1 : 0))
}

/** Records of already decoded custom-format text; `labeled` false makes the label optional (texts to classify). */
export const parseRecords = (text: string, path: string, format: CustomFormat, labeled = true): Array<RawRecord> =>
  format === "jsonl" ? parseJsonl(text, path, labeled) : format === "csv" ? parseCsv(text, path, labeled) : parseTsv(text, path, labeled)

const loadLabeledFile = async (path: string, role: string, format: CustomFormat): Promise<Array<RawRecord>> => {
  const text = decodeUtf8(await readBytes(path, role), `The ${role} file ${path}`)
  const records = parseRecords(text, path, format)
  if (records.length === 0) {
    throw new InvalidDataset({
      message: `The ${role} file ${path} has no records. Expected ${format === "jsonl" ? 'JSON lines {"text": ..., "label": ...}' : format === "csv" ? "a header with text and label columns, then one row per document" : "lines of label<TAB>text"}.`,
    })
  }
  return records
}

/** Streams the lines of a text file as documents (blank lines skipped), decoding UTF-8 strictly line by line. */
export const unlabeledLines = (path: string): UnlabeledSource => () =>
  batchedStream(async function* () {
    let carry: Uint8Array = new Uint8Array(0)
    let offset = 0 // byte offset of `carry`'s start in the file
    let line = 1
    const emit = (bytes: Uint8Array, out: Array<string>) => {
      const s = decodeUtf8(bytes, `The unlabeled file ${path}`, offset, line)
      const l = s.endsWith("\r") ? s.slice(0, -1) : s
      if (l.trim() !== "") out.push(l)
    }
    for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 }) as AsyncIterable<Uint8Array>) {
      const buf = carry.length === 0 ? chunk : Buffer.concat([carry, chunk])
      const out: Array<string> = []
      let start = 0
      for (let nl = buf.indexOf(0x0a); nl >= 0; nl = buf.indexOf(0x0a, start)) {
        emit(buf.subarray(start, nl), out)
        offset += nl + 1 - start
        line++
        start = nl + 1
      }
      carry = buf.subarray(start)
      if (out.length > 0) yield out as unknown as NonEmptyReadonlyArray<string>
    }
    const out: Array<string> = []
    if (carry.length > 0) emit(carry, out)
    if (out.length > 0) yield out as unknown as NonEmptyReadonlyArray<string>
  }, `The unlabeled file ${path}`)

/**
 * User data: `train` (and optional `test`) as JSONL `{"text","label"}`, CSV with a text/label header, or TSV
 * `label<TAB>text`; format from the extension unless given. Classes are the distinct train labels, sorted.
 * `unlabeled` is a plain text file, one document per line, streamed.
 */
export const loadCustom = (
  spec: CustomSpec,
): Effect.Effect<{ corpus: LabeledCorpus; unlabeled: UnlabeledSource | undefined }, DataError> =>
  Effect.tryPromise({
    try: async () => {
      const format = spec.format ?? FORMAT_BY_EXT[extname(spec.train).toLowerCase()]
      if (format === undefined) {
        throw new InvalidDataset({
          message: `Cannot tell the format of ${spec.train} from its extension; name it .jsonl, .csv or .tsv, or set the format explicitly (jsonl, csv or tsv).`,
        })
      }
      const train = await loadLabeledFile(spec.train, "training", format)
      const test = spec.test === undefined ? undefined : await loadLabeledFile(spec.test, "test", spec.format ?? FORMAT_BY_EXT[extname(spec.test).toLowerCase()] ?? format)
      const classes = sortLabels(train.map((r) => r.label))
      if (classes.length < 2) {
        throw new InvalidDataset({
          message: `The training file ${spec.train} needs at least two classes, found only '${classes[0]}'. A classifier needs examples of every class; check the label column.`,
        })
      }
      const index = new Map(classes.map((c, i) => [c, i]))
      const unseen = test?.find((r) => !index.has(r.label))
      if (unseen !== undefined) {
        throw new InvalidDataset({
          message: `The test file ${spec.test} has label '${unseen.label}', which never occurs in the training file ${spec.train} (classes: ${classes.map((c) => `'${c}'`).join(", ")}). Fix the label or add training examples of that class.`,
        })
      }
      const toDocs = (rs: Array<RawRecord>) => rs.map((r): LabeledDoc => ({ text: r.text, label: index.get(r.label)! }))
      if (spec.unlabeled !== undefined) {
        const st = await stat(spec.unlabeled).catch(() => undefined)
        if (!st?.isFile()) {
          throw new DataNotFound({ message: `The unlabeled file ${spec.unlabeled} does not exist or is not a file. Check the path, or leave the unlabeled data out.` })
        }
      }
      const corpus: LabeledCorpus = { name: basename(spec.train, extname(spec.train)), classes, train: toDocs(train), test: test && toDocs(test) }
      return { corpus, unlabeled: spec.unlabeled === undefined ? undefined : unlabeledLines(spec.unlabeled) }
    },
    catch: onDataError(`The training file ${spec.train}`),
  })
