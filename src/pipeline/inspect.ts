/**
 * Reading run directories and experiment roots after (or during) training: what `neighbors` and `report` show.
 * Every problem a user can cause (a path that is not a run, a missing or corrupt metrics.jsonl or checkpoint) is a
 * RunDirError with one readable paragraph.
 */
import * as tf from "@tensorflow/tfjs-core"
import { Effect } from "effect"
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs"
import { join } from "node:path"
import { REFERENCE_ENGINE } from "../engine/model-engine.ts"
import { RunDirError } from "../errors.ts"
import { CHECKPOINT, readCheckpoint } from "../model/checkpoint.ts"
import { EMBEDDING } from "../model/classifier.ts"
import { type Neighbor, nearestNeighbors } from "../model/neighbors.ts"
import { withTable } from "../stages/evaluate.ts"
import { tokenize } from "../stages/tokenize.ts"
import { METHODS } from "../method/method.ts"
import { EOS, Vocabulary } from "../stages/vocabulary.ts"
import { type Config, resolveConfig } from "./config.ts"

/** The words the report shows neighbours of when none are chosen (sentiment words, as in the paper's Table 3). */
export const DEFAULT_WORDS: ReadonlyArray<string> = ["good", "bad", "great", "terrible", "excellent", "poor"]

export const METRICS = "metrics.jsonl"

export interface RunInfo {
  readonly dir: string
  readonly config: Config
  /** "adversarial · seed 0", "language model · seed 2"; made unique across the runs shown together. */
  readonly label: string
}

const isDir = (path: string) => existsSync(path) && statSync(path).isDirectory()
/** A run dir is what `pipeline` writes first: its resolved config.json. */
export const isRunDir = (path: string): boolean => isDir(path) && existsSync(join(path, "config.json"))

const subdirs = (dir: string) =>
  readdirSync(dir, { withFileTypes: true })
    .filter((e) => e.isDirectory())
    .map((e) => join(dir, e.name))

/** The run dirs of an experiment root: <root>/<method>/seed<k> (classifier grids) or <root>/seed<k> (pretraining). */
export function experimentRunDirs(root: string): Array<string> {
  if (!isDir(root) || isRunDir(root)) return []
  return subdirs(root).flatMap((d) => (isRunDir(d) ? [d] : subdirs(d).filter(isRunDir)))
}

const runDirError = (message: string) => new RunDirError({ message })

function readRunInfo(dir: string): Omit<RunInfo, "label"> {
  const path = join(dir, "config.json")
  try {
    return { dir, config: resolveConfig(JSON.parse(readFileSync(path, "utf8")), [], path) }
  } catch (cause) {
    throw runDirError(`${path} is not a readable run config (${(cause as Error).message.split("\n")[0]}); was the run written by another version of advtext?`)
  }
}

/** What a run trained: its method for a classifier, else the pretraining task. */
export const taskLabel = (config: Config): string =>
  config.task === "classifier" ? config.method : config.task === "language-model" ? "language model" : "skip-gram embedding"
const baseLabel = (config: Config) => `${taskLabel(config)} · seed ${config.seed}`
const methodRank = (config: Config) => (config.task === "classifier" ? METHODS.indexOf(config.method) : -1)

/**
 * The runs named by `paths` (run dirs or experiment roots, in the order given; an experiment's runs by method, then
 * seed), labelled for display. Throws a RunDirError for a path that is neither.
 */
export function resolveRuns(paths: ReadonlyArray<string>): Array<RunInfo> {
  const runs: Array<Omit<RunInfo, "label">> = []
  for (const path of paths) {
    if (isRunDir(path)) {
      runs.push(readRunInfo(path))
      continue
    }
    const dirs = experimentRunDirs(path)
    if (dirs.length === 0) {
      throw runDirError(
        !existsSync(path)
          ? `${path} does not exist. Pass a run directory (holding config.json, metrics.jsonl, checkpoint.ckpt) or an experiment root (made by bun run experiment).`
          : `${path} is neither a run directory (it has no config.json) nor an experiment root (no run directories in <root>/<method>/seed<k> or <root>/seed<k>).`
      )
    }
    const infos = dirs.map(readRunInfo)
    infos.sort((a, b) => methodRank(a.config) - methodRank(b.config) || a.config.seed - b.config.seed || (a.dir < b.dir ? -1 : 1))
    runs.push(...infos)
  }
  const counts = new Map<string, number>()
  for (const r of runs) counts.set(baseLabel(r.config), (counts.get(baseLabel(r.config)) ?? 0) + 1)
  return runs.map((r) => ({ ...r, label: counts.get(baseLabel(r.config))! > 1 ? `${baseLabel(r.config)} (${r.dir})` : baseLabel(r.config) }))
}

export interface MetricsLog {
  readonly records: ReadonlyArray<Record<string, unknown>>
  /** A last line cut short (the run is being written, or was killed mid-line): left out. */
  readonly partialLastLine: boolean
}

/**
 * The run's metrics.jsonl. A torn last line (a run still writing, or killed mid-write) is tolerated and left out; a
 * missing file, an empty one or a bad line before the last is a RunDirError.
 */
export function readMetrics(runDir: string): MetricsLog {
  const path = join(runDir, METRICS)
  if (!existsSync(path)) throw runDirError(`${path} does not exist: the run has not logged a step yet (or this is not a run directory).`)
  const lines = readFileSync(path, "utf8").split("\n")
  const records: Array<Record<string, unknown>> = []
  let partialLastLine = false
  for (let i = 0; i < lines.length; i++) {
    if (lines[i].trim() === "") continue
    let record: unknown
    try {
      record = JSON.parse(lines[i])
    } catch {
      record = undefined
    }
    const ok = typeof record === "object" && record !== null && typeof (record as { step?: unknown }).step === "number"
    if (ok) records.push(record as Record<string, unknown>)
    else if (i === lines.length - 1) partialLastLine = true
    else throw runDirError(`${path} is corrupt at line ${i + 1} (not a JSON record with a step): ${JSON.stringify(lines[i].slice(0, 80))}.`)
  }
  if (records.length === 0) throw runDirError(`${path} holds no complete record yet: the run has not logged a step.`)
  return { records, partialLastLine }
}

/** Which weights to read: the EMA shadows (what evaluation and the report's other numbers use) or the raw trained ones. */
export type Weights = "ema" | "raw"

export type WordNeighbors =
  | { readonly query: string; readonly word: string; readonly neighbors: ReadonlyArray<{ readonly word: string; readonly similarity: number }> }
  | { readonly query: string; readonly note: string }

/**
 * The k nearest neighbours of each query word in a run's embedding, as the model sees it: the EMA weights (what
 * evaluation uses; `weights: "raw"` reads the trained variables, which lead the EMA early in a run and are what a
 * classifier restores from a pretraining run), Eq. 1 normalized with the run's unigram frequencies when the run
 * normalizes. A query is tokenized as the run's data were (e.g. lowercased); one that is not a single in-vocabulary
 * token gets a note instead. EOS is never a neighbour. The backend must be selected. Throws a RunDirError when the
 * checkpoint cannot be read.
 */
export function runNeighbors(run: RunInfo, queries: ReadonlyArray<string>, k: number, weights: Weights = "ema"): Array<WordNeighbors> {
  const path = join(run.dir, CHECKPOINT)
  if (!existsSync(path)) throw runDirError(`${run.dir} has no ${CHECKPOINT} yet (it is written every train.checkpointEvery steps and at the end), so it has no embedding to read.`)
  let ckpt
  try {
    ckpt = readCheckpoint(path)
  } catch (cause) {
    throw runDirError(`cannot read ${path}: ${(cause as Error).message}.`)
  }
  const { tensors, meta } = ckpt
  try {
    const words = meta.vocabulary as ReadonlyArray<string> | undefined
    const counts = meta.counts as ReadonlyArray<number> | undefined
    const embedding = tensors.get(`${weights === "ema" ? "ema" : "params"}/${EMBEDDING}`)
    if (words === undefined || counts === undefined || words.at(-1) !== EOS || embedding === undefined || embedding.shape[0] !== words.length) {
      throw runDirError(`${path} lacks the vocabulary, its counts or the ${weights === "ema" ? "EMA" : "raw"} embedding (or they disagree in size); it cannot be inspected.`)
    }
    const vocabulary = new Vocabulary(words, counts)
    const { index, eosId: eos } = vocabulary
    const { lowercase, tokenizer } = run.config.data
    const resolved = queries.map((query): { query: string; id: number } | { query: string; note: string } => {
      const tokens = tokenize(query, { lowercase, tokenizer })
      // The query heads the table, so a note need not repeat it.
      if (tokens.length !== 1) return { query, note: tokens.length === 0 ? "no token for this run's tokenizer" : `${tokens.length} tokens for this run's tokenizer (${tokens.join(" ")})` }
      const id = index.get(tokens[0])
      return id === undefined || id === eos ? { query, note: `not in this run's vocabulary (${words.length.toLocaleString("en-US")} words)` } : { query, id }
    })
    const ids = resolved.flatMap((r) => ("id" in r ? [r.id] : []))
    const frequencies = tf.tensor1d(vocabulary.frequencies())
    let found: Array<Array<Neighbor>>
    try {
      // One Eq. (1) pass for a similarity ranking: the reference op (the fused one computes the same, faster per step).
      const normalization = { engine: REFERENCE_ENGINE, normalizeEmbeddings: run.config.model.normalizeEmbeddings }
      found = withTable({ [EMBEDDING]: embedding }, frequencies, normalization, (table) => nearestNeighbors(table as tf.Tensor2D, ids, k, new Set([eos])))
    } finally {
      frequencies.dispose()
    }
    let next = 0
    return resolved.map((r) =>
      "id" in r ? { query: r.query, word: words[r.id], neighbors: found[next++].map((n) => ({ word: words[n.id], similarity: n.similarity })) } : r
    )
  } finally {
    for (const t of tensors.values()) t.dispose()
  }
}

/** Runs `f` as an Effect: a RunDirError it throws is the failure; anything else is a defect (a bug). */
export const attempt = <A>(f: () => A): Effect.Effect<A, RunDirError> =>
  Effect.suspend(() => {
    try {
      return Effect.succeed(f())
    } catch (cause) {
      if (cause instanceof RunDirError) return Effect.fail(cause)
      throw cause
    }
  })

/** `runNeighbors` for each run, as an Effect (the backend must be selected). */
export const neighborsOfRuns = (
  runs: ReadonlyArray<RunInfo>,
  queries: ReadonlyArray<string>,
  k: number,
  weights: Weights = "ema"
): Effect.Effect<Array<Array<WordNeighbors>>, RunDirError> => attempt(() => runs.map((run) => runNeighbors(run, queries, k, weights)))
