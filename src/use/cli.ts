/**
 * Using a trained run from the command line:
 *
 *   bun run predict <run dir> [FILE ...] [--output FILE] [--format txt|jsonl|csv|tsv]   JSON lines, one per document
 *   bun run evaluate <run dir> FILE [--json] [--format jsonl|csv|tsv]                  error, P/R/F1, confusion matrix
 *   bun run export <run dir> --out DIR                                                 tfjs LayersModel + tokenizer
 *
 * Exit codes as the pipeline's: 0 done · 1 a bad run dir, input or checkpoint (one paragraph, no stack trace) · 2 a
 * command-line mistake.
 */
import { Effect, Option } from "effect"
import { Argument, Command, Flag } from "effect/cli"
import { createWriteStream, mkdirSync } from "node:fs"
import { dirname } from "node:path"
import { InvalidDataset, reportUserError, type UserError } from "../errors.ts"
import { runMain } from "../pipeline/main.ts"
import { consoleProgress } from "../pipeline/progress.ts"
import { type Classifier, loadClassifier } from "./classifier.ts"
import { exportRun } from "./export.ts"
import { INPUT_FORMATS, type InputFormat, type InputText, readInputs } from "./inputs.ts"
import { formatScores, score } from "./scores.ts"

/** Inputs at least this long get a progress line on stderr. */
const PROGRESS_FROM = 2_000

const runDirArg = Argument.String("run-dir").pipe(Argument.withDescription("a classifier run directory (written by bun run pipeline)"))
const formatFlag = Flag.Literals("format", INPUT_FORMATS).pipe(
  Flag.withDescription("input format (default: from each file's extension; unknown extensions and stdin: txt, one document per line)"),
  Flag.optional
)

/** Runs `body` with the run's classifier; a user error (bad run dir, bad input) is printed as one paragraph, exit 1. */
const withClassifier = <A>(runDir: string, body: (classifier: Classifier) => Effect.Effect<A, UserError>) =>
  Effect.scoped(Effect.flatMap(loadClassifier(runDir), body)).pipe(Effect.catch((error) => Effect.sync(() => reportUserError(error))))

/** The texts of the inputs, after checking they hold any; classifies with a progress line on long inputs. */
const classifyInputs = (classifier: Classifier, inputs: ReadonlyArray<InputText>) => {
  const progress = consoleProgress()
  const started = performance.now()
  const predictions = classifier.classify(
    inputs.map((d) => d.text),
    inputs.length >= PROGRESS_FROM
      ? (done, total) =>
          progress.status(`classified ${done.toLocaleString()}/${total.toLocaleString()} documents · ${((done / (performance.now() - started)) * 1000).toFixed(0)} docs/s`, done === total)
      : undefined
  )
  progress.done()
  return predictions
}

const predict = Command.make(
  "predict",
  {
    runDir: runDirArg,
    files: Argument.String("file").pipe(Argument.withDescription("texts to classify (none or -: standard input)"), Argument.variadic()),
    output: Flag.String("output").pipe(Flag.withDescription("write the JSON lines here instead of stdout"), Flag.optional),
    format: formatFlag
  },
  (args) =>
    withClassifier(args.runDir, (classifier) =>
      Effect.gen(function* () {
        const inputs = yield* readInputs(args.files, { labeled: false, format: Option.getOrUndefined(args.format) as InputFormat | undefined })
        const predictions = classifyInputs(classifier, inputs)
        const lines = inputs.map((d, i) => {
          const p = predictions[i]!
          const probabilities = Object.fromEntries(classifier.classes.map((c, k) => [c, p.probabilities[k]]))
          return JSON.stringify({ ...(d.id !== undefined ? { id: d.id } : {}), file: d.source, line: d.line, label: p.label, probabilities, words: p.words }) + "\n"
        })
        const output = Option.getOrUndefined(args.output)
        if (output === undefined) {
          for (const line of lines) process.stdout.write(line)
          return
        }
        yield* Effect.tryPromise({
          try: () =>
            new Promise<void>((resolve, reject) => {
              mkdirSync(dirname(output), { recursive: true })
              const out = createWriteStream(output)
              out.on("error", reject)
              for (const line of lines) out.write(line)
              out.end(resolve)
            }),
          catch: (e) => new InvalidDataset({ message: `cannot write --output ${output}: ${(e as Error).message}. Choose a writable path.` })
        })
        process.stderr.write(`wrote ${lines.length} predictions to ${output}\n`)
      })
    )
)

const evaluate = Command.make(
  "evaluate",
  {
    runDir: runDirArg,
    file: Argument.String("file").pipe(Argument.withDescription("labeled documents: JSONL {text,label}, CSV text,label, or TSV label<TAB>text")),
    json: Flag.Boolean("json").pipe(Flag.withDescription("print the scores as one JSON object instead of a table"), Flag.withDefault(false)),
    format: formatFlag
  },
  (args) =>
    withClassifier(args.runDir, (classifier) =>
      Effect.gen(function* () {
        const inputs = yield* readInputs([args.file], { labeled: true, format: Option.getOrUndefined(args.format) as InputFormat | undefined })
        const index = new Map(classifier.classes.map((c, k) => [c, k]))
        const unknown = inputs.find((d) => !index.has(d.label))
        if (unknown !== undefined) {
          return yield* new InvalidDataset({
            message: `${args.file}:${unknown.line}: label '${unknown.label}' is not one of the run's classes (${classifier.classes.map((c) => `'${c}'`).join(", ")}). Fix the label, or evaluate a run trained on these classes.`
          })
        }
        const scores = score(classifier.classes, inputs.map((d) => index.get(d.label)!), classifyInputs(classifier, inputs))
        if (args.json) process.stdout.write(JSON.stringify({ runDir: args.runDir, step: classifier.step, file: args.file, ...scores }) + "\n")
        else process.stdout.write(`${args.runDir} (step ${classifier.step}) on ${args.file}\n${formatScores(scores)}\n`)
      })
    )
)

const exportCommand = Command.make(
  "export",
  {
    runDir: runDirArg,
    out: Flag.String("out").pipe(Flag.withDescription("folder to write model.json, its weights, vocabulary.json and tokenizer.js to"))
  },
  (args) =>
    exportRun(args.runDir, args.out).pipe(
      Effect.flatMap((files) => Effect.sync(() => void process.stdout.write(files.map((f) => f + "\n").join("")))),
      Effect.catch((error) => Effect.sync(() => reportUserError(error)))
    )
)

const advtext = Command.make("advtext").pipe(Command.withSubcommands([predict, evaluate, exportCommand]))

if (import.meta.main) await runMain(advtext)
