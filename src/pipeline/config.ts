/**
 * Experiment configuration: plain typed data with defaults (an experiment is a config file, not a code fork).
 * A config file exports `defineConfig({...})` with only what differs from the defaults; the CLI merges it with the
 * defaults and `--set key=value` overrides, then validates the whole object at once, listing every invalid or unknown
 * field and every broken rule between fields in one message. The schema below is the one source of each field's
 * type, range and default.
 */
import { type } from "arktype"
import { BACKENDS, ENGINE_CHOICES } from "../engine/backend.ts"
import { ConfigError } from "../errors.ts"
import { OPTIMIZER_DEFAULTS } from "../model/optimizer.ts"
import { CUSTOM_FORMATS } from "../data/sources.ts"
import { TOKENIZERS } from "../stages/tokenize.ts"
import { DEFAULT_PERTURBATION, METHODS } from "../method/method.ts"
import { DATASET_KINDS, UNLABELED_SOURCES, VALIDATION_SPLITS } from "../data/types.ts"
import { PRETRAINED_PARTS } from "./restore.ts"

/**
 * What a config runs: a classifier (the paper's Section 4.2), the language-model pretraining (Section 4.1), or a
 * skip-gram embedding pretraining (not in the paper; src/stages/skip-gram.ts).
 */
export const TASKS = ["classifier", "language-model", "skip-gram"] as const

/** One of the code's constant lists as a schema type, with its default value. */
const oneOf = <const T extends string>(values: ReadonlyArray<T>, fallback: NoInfer<T>) => [type.enumerated(...values), "=", fallback] as const

/**
 * The schema is the one place that states each field's type, range and default; the string unions are the owning
 * modules' constant lists, and numeric defaults owned by a module (the paper's perturbation and optimizer settings)
 * come from its constants. `DEFAULTS` below is derived from it.
 */
const definition = {
  "+": "reject",
  name: "string = 'experiment'",
  task: oneOf(TASKS, "classifier"),
  seed: "number.integer >= 0 = 0",
  pretrained: "string = ''",
  pretrainedParts: oneOf(PRETRAINED_PARTS, "embedding+lstm"),
  backend: oneOf(BACKENDS, "auto"),
  blas: oneOf(ENGINE_CHOICES, "auto"),
  fusedLstm: oneOf(ENGINE_CHOICES, "auto"),
  method: oneOf(METHODS, "baseline"),
  perturbation: [{
    "+": "reject",
    epsilon: ["number >= 0", "=", DEFAULT_PERTURBATION.epsilon],
    xi: ["number > 0", "=", DEFAULT_PERTURBATION.xi],
    powerIterations: ["number.integer >= 1", "=", DEFAULT_PERTURBATION.powerIterations],
    lambda: ["number >= 0", "=", DEFAULT_PERTURBATION.lambda],
    vatMicroBatch: ["number.integer >= 0", "=", DEFAULT_PERTURBATION.vatMicroBatch],
    evalEpsilon: ["number >= 0", "=", DEFAULT_PERTURBATION.epsilon]
  }, "=", () => ({})],
  dataset: [{
    "+": "reject",
    kind: oneOf(DATASET_KINDS, "rt"),
    "download?": "boolean",
    "train?": "string",
    "test?": "string",
    "unlabeled?": "string",
    "format?": type.enumerated(...CUSTOM_FORMATS)
  }, "=", () => ({})],
  data: [{
    "+": "reject",
    lowercase: "boolean = true",
    tokenizer: oneOf(TOKENIZERS, "ascii"),
    testFraction: ["0 < number < 1", "=", 0.1],
    validationFraction: ["0 <= number < 1", "=", 0.1],
    validationSplit: oneOf(VALIDATION_SPLITS, "random"),
    maxVocab: "number.integer >= 1 = 100000",
    minDocCount: "number.integer >= 1 = 2",
    window: "number.integer >= 1 = 400"
  }, "=", () => ({})],
  unlabeled: [{
    "+": "reject",
    source: oneOf(UNLABELED_SOURCES, "none"),
    maxTokens: "number.integer >= 0 = 0",
    addsTokens: "boolean = true",
    limit: "number.integer >= 0 = 0"
  }, "=", () => ({})],
  model: [{
    "+": "reject",
    embeddingDim: "number.integer >= 1 = 512",
    lstmUnits: "number.integer >= 1 = 1024",
    hiddenUnits: "number.integer >= 1 = 30",
    embeddingKeepProb: ["0 < number <= 1", "=", 0.5],
    normalizeEmbeddings: "boolean = true",
    bidirectional: "boolean = false",
    centeredHead: "boolean = false"
  }, "=", () => ({})],
  lm: [{
    "+": "reject",
    candidateSamples: "number.integer >= 0 = 1024",
    validationDocs: "number.integer >= 0 = 0"
  }, "=", () => ({})],
  skipGram: [{
    "+": "reject",
    window: "number.integer >= 1 = 5",
    negatives: "number.integer >= 1 = 5",
    epochs: "number.integer >= 1 = 5",
    subsample: ["number >= 0", "=", 1e-4],
    learningRate: ["number > 0", "=", 0.025]
  }, "=", () => ({})],
  guard: [{
    "+": "reject",
    lossFactor: "number >= 0 = 20",
    spikeFactor: "number >= 0 = 10",
    warmup: "number.integer >= 0 = 100",
    window: "number.integer >= 1 = 100",
    deadSteps: "number.integer >= 0 = 100"
  }, "=", () => ({})],
  train: [{
    "+": "reject",
    steps: "number.integer >= 1 = 10000",
    batchSize: "number.integer >= 1 = 64",
    unlabeledBatchSize: "number.integer >= 1 = 512",
    learningRate: ["number > 0", "=", OPTIMIZER_DEFAULTS.learningRate],
    learningRateDecay: ["0 < number <= 1", "=", OPTIMIZER_DEFAULTS.learningRateDecay],
    maxGradNorm: ["number > 0", "=", OPTIMIZER_DEFAULTS.maxGradNorm],
    beta1: ["0 <= number < 1", "=", OPTIMIZER_DEFAULTS.beta1],
    beta2: ["0 <= number < 1", "=", OPTIMIZER_DEFAULTS.beta2],
    adamEpsilon: ["number > 0", "=", OPTIMIZER_DEFAULTS.adamEpsilon],
    emaDecay: ["0 <= number < 1", "=", OPTIMIZER_DEFAULTS.emaDecay],
    logEvery: "number.integer >= 1 = 50",
    evalEvery: "number.integer >= 0 = 500",
    checkpointEvery: "number.integer >= 1 = 500",
    evalBatchSize: "number.integer >= 1 = 256"
  }, "=", () => ({})]
} as const

const Config = type(definition)

export type Config = typeof Config.infer
/** What a config file writes: any subset of the fields (absent ones take their defaults). */
export type ConfigInput = typeof Config.inferIn

function isPlainObject(x: unknown): x is Record<string, unknown> {
  return typeof x === "object" && x !== null && !Array.isArray(x)
}

/** `value` with its keys in the order `definition` declares them (arktype sorts its output), for a readable config.json. */
function inDeclaredOrder(value: unknown, def: unknown): unknown {
  const shape = Array.isArray(def) ? def[0] : def
  if (!isPlainObject(value) || !isPlainObject(shape)) return value
  const declared = Object.keys(shape).filter((k) => k !== "+").map((k) => k.replace(/\?$/, ""))
  const keys = [...declared.filter((k) => k in value), ...Object.keys(value).filter((k) => !declared.includes(k))]
  return Object.fromEntries(keys.map((k) => [k, inDeclaredOrder(value[k], shape[k] ?? shape[`${k}?`])]))
}

/** The reference code's classifier defaults (spec A4), sized for the paper's RT setting: the schema applied to `{}`. */
export const DEFAULTS: Config = inDeclaredOrder(Config.assert({}), definition) as Config

/** Identity with types: what config files export. */
export const defineConfig = (config: ConfigInput): ConfigInput => config

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

/**
 * Rules between fields, checked on the merged config even when some fields are invalid, so that one message lists
 * every problem. Each takes the merged (not yet validated) object; a field of the wrong type simply fails its rule's
 * comparison and is reported by the schema instead.
 */
const CROSS_FIELD_RULES: ReadonlyArray<(c: MergedConfig) => string | undefined> = [
  (c) =>
    c.dataset?.kind === "custom" && c.dataset.train === undefined
      ? `dataset.train must be set (a JSONL, CSV or TSV file) when dataset.kind is "custom"`
      : undefined,
  (c) => {
    if (c.dataset?.kind === "custom") return undefined
    const set = (["train", "test", "format"] as const).filter((k) => c.dataset?.[k] !== undefined).map((k) => `dataset.${k}`)
    return set.length === 0
      ? undefined
      : `${set.join(", ")} only appl${set.length > 1 ? "y" : "ies"} when dataset.kind is "custom" (it is ${JSON.stringify(c.dataset?.kind)}): remove ${set.length > 1 ? "them" : "it"}, or set dataset.kind "custom"`
  },
  (c) =>
    c.unlabeled?.source === "custom" && c.dataset?.unlabeled === undefined
      ? `unlabeled.source "custom" needs dataset.unlabeled (a text file, one document per line)`
      : undefined,
  (c) =>
    c.data?.validationSplit === "imdb-author" && c.dataset?.kind !== "imdb"
      ? `data.validationSplit "imdb-author" is IMDB's id-based slice and needs dataset.kind "imdb" (it is ${JSON.stringify(c.dataset?.kind)}); use "random"`
      : undefined
]

/** The merged input before validation: the config's shape, any leaf possibly of the wrong type. */
type MergedConfig = { readonly [K in keyof Config]?: Config[K] extends object ? { readonly [F in keyof Config[K]]?: unknown } : unknown }

/** Merge user input over the defaults and validate; every problem (field and cross-field) is listed in one ConfigError. */
export function resolveConfig(input: unknown, overrides: ReadonlyArray<string> = [], source = "config"): Config {
  if (!isPlainObject(input)) {
    throw new ConfigError({ message: `${source}: expected an object (export default defineConfig({...})), got ${typeof input}.` })
  }
  // Defaults first (the schema would add them too), so that the cross-field rules see every field.
  const merged = applyOverrides(deepMerge(DEFAULTS, input), overrides)
  // JSON and TS both turn 1e400 into Infinity, which the schema's ranges accept and config.json would store as null.
  const nonFinite = [...configLeaves(merged)]
    .filter(([, v]) => typeof v === "number" && !Number.isFinite(v))
    .map(([k, v]) => `${k} must be a finite number (was ${v}${v === Infinity || v === -Infinity ? ": beyond the float64 range" : ""})`)
  const out = Config(merged)
  const fieldProblems = out instanceof type.errors ? out.map((e) => e.message.replace(/ must be removed$/, " is not a config field (unknown key)")) : []
  const view = (isPlainObject(merged) ? merged : {}) as MergedConfig
  const crossField = CROSS_FIELD_RULES.map((rule) => rule(view)).filter((p): p is string => p !== undefined)
  const problems = [...nonFinite, ...fieldProblems, ...crossField]
  if (problems.length > 0) {
    throw new ConfigError({
      message: `${source} is invalid (${problems.length} problem${problems.length > 1 ? "s" : ""}):\n${problems.map((p) => `  - ${p}`).join("\n")}`
    })
  }
  return inDeclaredOrder(out, definition) as Config
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
