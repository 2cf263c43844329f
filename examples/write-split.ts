/**
 * Writes one split of a run's labeled data as TSV (label<TAB>text), e.g. the held-out test split to score with
 * `bun run evaluate`: the split is the run's own (same config, same seed), so the error matches its summary.json.
 *   bun examples/write-split.ts runs/rt-cpu test rt-test.tsv [--data-dir ../shared/data]
 */
import { Effect } from "effect"
import { readFileSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { loadCustom, loadImdb, loadRottenTomatoes, resolveConfig, splitCorpus } from "../src/index.ts"

const [runDir, split, out, flag, dataDir] = process.argv.slice(2)
if (runDir === undefined || (split !== "train" && split !== "validation" && split !== "test") || out === undefined) {
  process.stderr.write("usage: bun examples/write-split.ts RUN_DIR train|validation|test OUT.tsv [--data-dir DIR]\n")
  process.exit(2)
}
const config = resolveConfig(JSON.parse(readFileSync(join(runDir, "config.json"), "utf8")))
const location = { dataDir: flag === "--data-dir" ? dataDir : undefined, download: false }
const ds = config.dataset
const corpus = await Effect.runPromise(
  ds.kind === "rt" ? loadRottenTomatoes(location)
  : ds.kind === "imdb" ? loadImdb(location)
  : Effect.map(loadCustom({ train: ds.train!, test: ds.test, format: ds.format }), (c) => c.corpus)
)
const docs = splitCorpus(corpus, config)[split]
// TSV holds one document per line: tabs and line breaks inside a text become spaces (the tokenizer splits on them anyway).
writeFileSync(out, docs.map((d) => `${corpus.classes[d.label]}\t${d.text.replace(/[\t\r\n]+/g, " ")}\n`).join(""))
process.stderr.write(`${out}: ${docs.length} ${split} documents\n`)
