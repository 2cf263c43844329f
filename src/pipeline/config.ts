/**
 * Experiment configuration: plain typed data with defaults (an experiment is a config file, not a code fork).
 * A config file exports `defineConfig({...})` with only what differs from `DEFAULTS`; the CLI merges it with the
 * defaults and `--set key=value` overrides, then validates the whole object at once, listing every invalid or unknown
 * field in one message.
 */
import { type } from "arktype"
import { ConfigError } from "../errors.ts"

const Config = type({
  "+": "reject",
  name: "string",
  task: "'classifier' | 'language-model' | 'skip-gram'",
  seed: "number.integer >= 0",
  pretrained: "string",
  pretrainedParts: "'embedding+lstm' | 'embedding'",
  backend: "'auto' | 'tensorflow' | 'wasm' | 'cpu'",
  blas: "'auto' | 'off'",
  fusedLstm: "'auto' | 'off'",
  method: "'baseline' | 'random' | 'random-unlabeled' | 'adversarial' | 'virtual' | 'adversarial+virtual'",
  perturbation: {
    "+": "reject",
    epsilon: "number >= 0",
    xi: "number > 0",
    powerIterations: "number.integer >= 1",
    lambda: "number >= 0",
    vatMicroBatch: "number.integer >= 0",
    evalEpsilon: "number >= 0"
  },
  dataset: {
    "+": "reject",
    kind: "'rt' | 'imdb' | 'custom'",
    "download?": "boolean",
    "train?": "string",
    "test?": "string",
    "unlabeled?": "string",
    "format?": "'jsonl' | 'csv' | 'tsv'"
  },
  data: {
    "+": "reject",
    lowercase: "boolean",
    tokenizer: "'ascii' | 'unicode'",
    testFraction: "0 < number < 1",
    validationFraction: "0 <= number < 1",
    validationSplit: "'random' | 'imdb-author'",
    maxVocab: "number.integer >= 1",
    minDocCount: "number.integer >= 1",
    window: "number.integer >= 1"
  },
  unlabeled: {
    "+": "reject",
    source: "'none' | 'imdb-sentences' | 'imdb-unsup' | 'custom'",
    maxTokens: "number.integer >= 0",
    addsTokens: "boolean",
    limit: "number.integer >= 0"
  },
  model: {
    "+": "reject",
    embeddingDim: "number.integer >= 1",
    lstmUnits: "number.integer >= 1",
    hiddenUnits: "number.integer >= 1",
    embeddingKeepProb: "0 < number <= 1",
    normalizeEmbeddings: "boolean",
    bidirectional: "boolean",
    centeredHead: "boolean"
  },
  lm: {
    "+": "reject",
    candidateSamples: "number.integer >= 0",
    validationDocs: "number.integer >= 0"
  },
  skipGram: {
    "+": "reject",
    window: "number.integer >= 1",
    negatives: "number.integer >= 1",
    epochs: "number.integer >= 1",
    subsample: "number >= 0",
    learningRate: "number > 0"
  },
  guard: {
    "+": "reject",
    lossFactor: "number >= 0",
    spikeFactor: "number >= 0",
    warmup: "number.integer >= 0",
    window: "number.integer >= 1",
    deadSteps: "number.integer >= 0"
  },
  train: {
    "+": "reject",
    steps: "number.integer >= 1",
    batchSize: "number.integer >= 1",
    unlabeledBatchSize: "number.integer >= 1",
    learningRate: "number > 0",
    learningRateDecay: "0 < number <= 1",
    maxGradNorm: "number > 0",
    beta1: "0 <= number < 1",
    beta2: "0 <= number < 1",
    adamEpsilon: "number > 0",
    emaDecay: "0 <= number < 1",
    logEvery: "number.integer >= 1",
    evalEvery: "number.integer >= 0",
    checkpointEvery: "number.integer >= 1",
    evalBatchSize: "number.integer >= 1"
  }
})

export type Config = typeof Config.infer
type DeepPartial<T> = { [K in keyof T]?: T[K] extends object ? DeepPartial<T[K]> : T[K] }
export type ConfigInput = DeepPartial<Config>

/** The reference code's classifier defaults (spec A4), sized for the paper's RT setting unless a config says otherwise. */
export const DEFAULTS: Config = {
  name: "experiment",
  task: "classifier",
  seed: 0,
  pretrained: "",
  pretrainedParts: "embedding+lstm",
  backend: "auto",
  blas: "auto",
  fusedLstm: "auto",
  method: "baseline",
  perturbation: { epsilon: 5, xi: 0.1, powerIterations: 1, lambda: 1, vatMicroBatch: 0, evalEpsilon: 5 },
  dataset: { kind: "rt" },
  data: {
    lowercase: true,
    tokenizer: "ascii",
    testFraction: 0.1,
    validationFraction: 0.1,
    validationSplit: "random",
    maxVocab: 100_000,
    minDocCount: 2,
    window: 400
  },
  unlabeled: { source: "none", maxTokens: 0, addsTokens: true, limit: 0 },
  model: { embeddingDim: 512, lstmUnits: 1024, hiddenUnits: 30, embeddingKeepProb: 0.5, normalizeEmbeddings: true, bidirectional: false, centeredHead: false },
  lm: { candidateSamples: 1024, validationDocs: 0 },
  skipGram: { window: 5, negatives: 5, epochs: 5, subsample: 1e-4, learningRate: 0.025 },
  guard: { lossFactor: 20, spikeFactor: 10, warmup: 100, window: 100, deadSteps: 100 },
  train: {
    steps: 10_000,
    batchSize: 64,
    unlabeledBatchSize: 512,
    learningRate: 5e-4,
    learningRateDecay: 0.9998,
    maxGradNorm: 1.0,
    beta1: 0.9,
    beta2: 0.999,
    adamEpsilon: 1e-8,
    emaDecay: 0.999,
    logEvery: 50,
    evalEvery: 500,
    checkpointEvery: 500,
    evalBatchSize: 256
  }
}

/** Identity with types: what config files export. */
export const defineConfig = (config: ConfigInput): ConfigInput => config

const isPlainObject = (x: unknown): x is Record<string, unknown> => typeof x === "object" && x !== null && !Array.isArray(x)

export function deepMerge(base: unknown, override: unknown): unknown {
  if (!isPlainObject(base) || !isPlainObject(override)) return override === undefined ? base : override
  const out: Record<string, unknown> = { ...base }
  for (const [k, v] of Object.entries(override)) out[k] = deepMerge(base[k], v)
  return out
}

/** `--set a.b=value`: value parsed as JSON when it is valid JSON (numbers, booleans, quoted strings), else a string. */
export function applyOverrides(config: unknown, overrides: ReadonlyArray<string>): unknown {
  const problems: Array<string> = []
  let out = config
  for (const item of overrides) {
    const eq = item.indexOf("=")
    if (eq <= 0) {
      problems.push(`--set ${item}: expected key=value, e.g. --set train.steps=100`)
      continue
    }
    const path = item.slice(0, eq).split(".")
    const raw = item.slice(eq + 1)
    let value: unknown = raw
    try {
      value = JSON.parse(raw)
    } catch {
      // a bare string such as --set backend=wasm
    }
    const patch = path.reduceRight<unknown>((acc, key) => ({ [key]: acc }), value)
    out = deepMerge(out, patch)
  }
  if (problems.length > 0) throw new ConfigError({ message: problems.join("\n") })
  return out
}

/** Merge user input over the defaults and validate; every problem is listed in one ConfigError. */
export function resolveConfig(input: unknown, overrides: ReadonlyArray<string> = [], source = "config"): Config {
  if (!isPlainObject(input)) {
    throw new ConfigError({ message: `${source}: expected an object (export default defineConfig({...})), got ${typeof input}.` })
  }
  const merged = applyOverrides(deepMerge(DEFAULTS, input), overrides)
  // JSON and TS both turn 1e400 into Infinity, which the schema's ranges accept and config.json would store as null.
  const nonFinite = [...configLeaves(merged)]
    .filter(([, v]) => typeof v === "number" && !Number.isFinite(v))
    .map(([k, v]) => `  - ${k} must be a finite number (was ${v}${v === Infinity || v === -Infinity ? ": beyond the float64 range" : ""})`)
  const out = Config(merged)
  if (out instanceof type.errors || nonFinite.length > 0) {
    const lines = [
      ...nonFinite,
      ...(out instanceof type.errors ? out.map((e) => `  - ${e.message.replace(/ must be removed$/, " is not a config field (unknown key)")}`) : [])
    ]
    throw new ConfigError({ message: `${source} is invalid (${lines.length} problem${lines.length > 1 ? "s" : ""}):\n${lines.join("\n")}` })
  }
  const config = out as Config
  if (config.dataset.kind === "custom" && config.dataset.train === undefined) {
    throw new ConfigError({ message: `${source} is invalid:\n  - dataset.train must be set (a JSONL, CSV or TSV file) when dataset.kind is "custom"` })
  }
  if (config.unlabeled.source === "custom" && config.dataset.unlabeled === undefined) {
    throw new ConfigError({ message: `${source} is invalid:\n  - unlabeled.source "custom" needs dataset.unlabeled (a text file, one document per line)` })
  }
  return config
}

/** A config's leaves as "a.b.c" → value (arrays and other non-objects are leaves). */
export function configLeaves(config: unknown, prefix = ""): Map<string, unknown> {
  const out = new Map<string, unknown>()
  if (!isPlainObject(config)) return out.set(prefix, config)
  for (const [k, v] of Object.entries(config)) for (const [p, x] of configLeaves(v, prefix === "" ? k : `${prefix}.${k}`)) out.set(p, x)
  return out
}

/**
 * Fields `--resume` may change: they decide how long to train, what to log, evaluate and checkpoint, and how to run
 * the arithmetic, never what has been learned (evaluation batch size and ε of the Figure-2 losses change only reports;
 * the backend choices may change the last bits of the numbers, never the model; the divergence guard only decides
 * when to stop).
 */
export const RESUMABLE_FIELDS: ReadonlyArray<string> = [
  "train.steps",
  "train.logEvery",
  "train.evalEvery",
  "train.checkpointEvery",
  "train.evalBatchSize",
  "perturbation.evalEpsilon",
  "backend",
  "blas",
  "fusedLstm",
  "guard.*"
]

const resumable = (key: string) => RESUMABLE_FIELDS.some((f) => f === key || (f.endsWith(".*") && key.startsWith(f.slice(0, -1))))

/**
 * What a resumed config changes relative to the run's saved one: `allowed` (in RESUMABLE_FIELDS) and `refused`
 * (everything else), each as "key: old → new".
 */
export function resumeChanges(saved: Config, config: Config): { readonly allowed: Array<string>; readonly refused: Array<string> } {
  const a = configLeaves(saved)
  const b = configLeaves(config)
  const allowed: Array<string> = []
  const refused: Array<string> = []
  for (const key of [...new Set([...a.keys(), ...b.keys()])].sort()) {
    const [x, y] = [a.get(key), b.get(key)]
    if (JSON.stringify(x) === JSON.stringify(y)) continue
    const change = `${key}: ${JSON.stringify(x) ?? "unset"} → ${JSON.stringify(y) ?? "unset"}`
    ;(resumable(key) ? allowed : refused).push(change)
  }
  return { allowed, refused }
}

/** Load a config module (default export, or export `config`), resolve and validate it. */
export async function loadConfigFile(path: string, overrides: ReadonlyArray<string>): Promise<Config> {
  let mod: Record<string, unknown>
  try {
    mod = (await import(path)) as Record<string, unknown>
  } catch (cause) {
    throw new ConfigError({ message: `cannot load config file ${path}: ${loadFailure(cause)}` })
  }
  return resolveConfig(mod.default ?? mod.config, overrides, path)
}

interface BuildMessage {
  readonly message: string
  readonly position?: { readonly file: string; readonly line: number; readonly column: number; readonly lineText: string } | null
}

/**
 * Why a config module failed to load, as one paragraph. Bun reports a syntax error as an AggregateError
 * ("N errors building …") of BuildMessages; the first is the real one (the rest follow from it): file:line:column,
 * the parser's message and the offending line.
 */
function loadFailure(cause: unknown): string {
  const first = (cause as { errors?: ReadonlyArray<BuildMessage> }).errors?.[0]
  const at = first?.position
  if (first !== undefined && at) {
    return `syntax error at ${at.file}:${at.line}:${at.column}: ${first.message}\n    ${at.lineText.trim()}`
  }
  return cause instanceof Error ? cause.message.split("\n")[0] : String(cause)
}
