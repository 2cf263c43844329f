/**
 * Texts to classify (or score) from files or standard input: `.txt` one document per line, and the custom-dataset
 * formats (JSONL with a `text` field, CSV with a `text` column, TSV `label<TAB>text`) read by the same parsers as
 * training data (src/data/sources.ts), with the label optional unless the caller needs one. UTF-8 is decoded strictly.
 */
import { Effect } from "effect"
import { extname } from "node:path"
import { toDataError } from "../data/archive.ts"
import { type CustomFormat, decodeUtf8, FORMAT_BY_EXT, numberedLines, parseRecords, readBytes } from "../data/sources.ts"
import { type DataError, InvalidDataset } from "../errors.ts"

export type InputFormat = "txt" | CustomFormat
export const INPUT_FORMATS: ReadonlyArray<InputFormat> = ["txt", "jsonl", "csv", "tsv"]

export interface InputText {
  /** The file it came from ("-" for standard input). */
  readonly source: string
  /** 1-based line of the document's start in its source. */
  readonly line: number
  /** The record's own id (JSONL `id` field, CSV `id` column), when present. */
  readonly id?: string | undefined
  readonly text: string
  /** The label as written ("" when the input has none). */
  readonly label: string
}

export interface ReadOptions {
  /** Every record must carry a label (evaluate). */
  readonly labeled: boolean
  /** Overrides the format told by each file's extension (standard input defaults to txt). */
  readonly format?: InputFormat | undefined
  /** Standard input's bytes (tests pass their own). */
  readonly stdin?: () => Promise<Uint8Array>
}

const readStdin = async (): Promise<Uint8Array> => new Uint8Array(await Bun.stdin.arrayBuffer())

const formatOf = (path: string, options: ReadOptions): InputFormat => {
  if (options.format !== undefined) return options.format
  if (path === "-") return "txt"
  const ext = extname(path).toLowerCase()
  // Anything that is not a known record format is plain text, one document per line.
  return FORMAT_BY_EXT[ext] ?? "txt"
}

async function readOne(path: string, options: ReadOptions): Promise<Array<InputText>> {
  const what = path === "-" ? "standard input" : `the input file ${path}`
  const bytes = path === "-" ? await (options.stdin ?? readStdin)() : await readBytes(path, "input")
  const text = decodeUtf8(bytes, what.charAt(0).toUpperCase() + what.slice(1))
  const format = formatOf(path, options)
  if (format === "txt") {
    if (options.labeled) {
      throw new InvalidDataset({
        message: `${what} is plain text, which has no labels to score against. Give a labeled file: JSONL {"text": ..., "label": ...}, CSV with text and label columns, or TSV label<TAB>text (or --format).`
      })
    }
    return numberedLines(text).map(([line, t]) => ({ source: path, line, text: t, label: "" }))
  }
  return parseRecords(text, path === "-" ? "standard input" : path, format, options.labeled).map((r) => ({ source: path, line: r.line, id: r.id, text: r.text, label: r.label }))
}

/** All documents of `files` in order (standard input when `files` is empty or names "-"); an empty result is an error. */
export const readInputs = (files: ReadonlyArray<string>, options: ReadOptions): Effect.Effect<Array<InputText>, DataError> =>
  Effect.tryPromise({
    try: async () => {
      const sources = files.length === 0 ? ["-"] : files
      const out: Array<InputText> = []
      for (const path of sources) out.push(...(await readOne(path, options)))
      if (out.length === 0) {
        throw new InvalidDataset({
          message: `${sources.map((s) => (s === "-" ? "standard input" : s)).join(", ")} ${sources.length === 1 ? "holds" : "hold"} no document (only blank lines, or nothing). Give at least one non-empty line of text.`
        })
      }
      return out
    },
    catch: (e) => toDataError(e, files.length === 0 ? "standard input" : files.join(", "))
  })
