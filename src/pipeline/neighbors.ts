/**
 * `bun run neighbors <run dir | experiment root> [more run dirs …] [WORD …] [--k 10]`
 *
 * Prints each word's k nearest neighbours (cosine over the embedding the model reads: EMA weights, Eq. 1 normalized)
 * as a terminal table, one column per run: the paper's Table 3 (baseline vs AT vs VAT) for any runs. The first
 * argument is always a run dir; later ones are run dirs when they are folders or contain a "/", words otherwise
 * (default words: good, bad, great, terrible, excellent, poor). Exit 1 with one paragraph for a bad run dir, 2 for a
 * bad flag. `--weights raw` reads the trained variables instead of their EMA.
 */
import { Effect } from "effect"
import { Argument, Command, Flag } from "effect/cli"
import { existsSync, statSync } from "node:fs"
import { selectBackend } from "../engine/backend.ts"
import { ConfigError } from "../errors.ts"
import { attempt, DEFAULT_WORDS, neighborsOfRuns, resolveRuns, type RunInfo, type WordNeighbors } from "./inspect.ts"
import { reportingUserErrors, runMain } from "./main.ts"

/** Splits the positional arguments: the first is a run dir; then folders and anything with a "/" are, words are not. */
export function splitPathsAndWords(args: ReadonlyArray<string>): { paths: Array<string>; words: Array<string> } {
  const isPath = (a: string, i: number) => i === 0 || a.includes("/") || (existsSync(a) && statSync(a).isDirectory())
  return { paths: args.filter(isPath), words: args.filter((a, i) => !isPath(a, i)) }
}

/**
 * The neighbours as plain-text tables, one block per query word, one column per run: "word  similarity" by rank, or
 * the run's note when the word is not in its vocabulary.
 */
export function formatNeighbors(runs: ReadonlyArray<RunInfo>, results: ReadonlyArray<ReadonlyArray<WordNeighbors>>, queries: ReadonlyArray<string>): string {
  const blocks = queries.map((query, q) => {
    const columns = runs.map((run, r) => {
      const result = results[r][q]
      if ("note" in result) return [run.label, result.note]
      const wordWidth = Math.max(0, ...result.neighbors.map((n) => n.word.length))
      const cells = result.neighbors.map((n) => `${n.word.padEnd(wordWidth)}  ${n.similarity.toFixed(3)}`)
      return [run.label, ...cells]
    })
    const tokens = new Set(results.flatMap((rs) => ("word" in rs[q] ? [rs[q].word] : [])))
    const heading = tokens.size === 1 && !tokens.has(query) ? `${query} → ${[...tokens][0]}` : query
    const rows = Math.max(...columns.map((c) => c.length))
    const widths = columns.map((c) => Math.max(...c.map((cell) => cell.length)))
    const rankWidth = String(rows - 1).length
    const lines = Array.from({ length: rows }, (_, i) =>
      ["  " + (i === 0 ? "#".padStart(rankWidth) : String(i).padStart(rankWidth)), ...columns.map((c, j) => (c[i] ?? "").padEnd(widths[j]))].join("   ").trimEnd()
    )
    return [heading, ...lines].join("\n")
  })
  return blocks.join("\n\n") + "\n"
}

const neighbors = Command.make(
  "neighbors",
  {
    args: Argument.String("run-dir-and-words").pipe(
      Argument.withDescription("run dir(s) or experiment root(s), then the words (default: good bad great terrible excellent poor)"),
      Argument.atLeast(1)
    ),
    k: Flag.Int("k").pipe(Flag.withDescription("neighbours per word"), Flag.withDefault(10)),
    weights: Flag.Literals("weights", ["ema", "raw"]).pipe(Flag.withDescription("the EMA weights (what evaluation uses) or the raw trained ones"), Flag.withDefault("ema"))
  },
  (args) =>
    reportingUserErrors(
      Effect.gen(function* () {
        if (args.k < 1) return yield* new ConfigError({ message: `--k must be at least 1 (got ${args.k}).` })
        const { paths, words } = splitPathsAndWords(args.args)
        const queries = words.length > 0 ? words : [...DEFAULT_WORDS]
        const runs = yield* attempt(() => resolveRuns(paths))
        yield* selectBackend("cpu")
        process.stderr.write(`reading the embeddings of ${runs.length} run${runs.length > 1 ? "s" : ""}…\n`)
        const results = yield* neighborsOfRuns(runs, queries, args.k, args.weights)
        process.stdout.write(formatNeighbors(runs, results, queries))
      })
    )
)

if (import.meta.main) await runMain(neighbors)
