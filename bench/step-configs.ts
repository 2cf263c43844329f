/**
 * The step types `bench/step.ts` times, shared by our worker (bench/step-worker.ts) and PyTorch's
 * (bench/torch_step.py, which receives each spec as JSON): sizes, and the per-row lengths both sides use.
 */
import { rng } from "../src/random.ts"

export interface ClassifierSpec {
  readonly task: "classifier"
  readonly V: number
  readonly E: number
  readonly H: number
  /** Token counts (EOS included) of the labeled and unlabeled rows: the batch is padded to the longest. */
  readonly labeledLengths: ReadonlyArray<number>
  readonly unlabeledLengths: ReadonlyArray<number>
}

export interface LmSpec {
  readonly task: "lm"
  readonly V: number
  readonly D: number
  readonly H: number
  /** Slots × positions per step (every position has a target). */
  readonly B: number
  readonly T: number
  /** Sampled-softmax negatives per step. */
  readonly K: number
  readonly bidirectional: boolean
}

export type StepSpec = ClassifierSpec | LmSpec

export const CLASSIFIER_KINDS = ["supervised", "adversarial", "virtual"] as const
export const LM_KINDS = ["step"] as const
export const kindsOf = (spec: StepSpec): ReadonlyArray<string> => (spec.task === "lm" ? LM_KINDS : CLASSIFIER_KINDS)

const fixed = (n: number, length: number) => Array.from({ length: n }, () => length)

/**
 * IMDB-like review lengths: log-normal around 230 tokens (the train set's median is ~230 words), cut to the
 * 400-token window as training does, at least 10.
 */
function imdbLengths(n: number, seed: string): Array<number> {
  const random = rng(0, "bench-lengths", seed)
  return Array.from({ length: n }, () => {
    const gaussian = Math.sqrt(-2 * Math.log(1 - random.uniform())) * Math.cos(2 * Math.PI * random.uniform())
    return Math.max(10, Math.min(400, Math.round(Math.exp(Math.log(230) + 0.6 * gaussian))))
  })
}

export const SPECS: Record<string, StepSpec> = {
  small: { task: "classifier", V: 20_000, E: 128, H: 256, labeledLengths: fixed(32, 25), unlabeledLengths: fixed(128, 25) },
  "paper-rt": { task: "classifier", V: 20_000, E: 512, H: 1024, labeledLengths: fixed(64, 25), unlabeledLengths: fixed(512, 25) },
  /** IMDB at a CPU size: the paper's IMDB vocabulary, D 256, LSTM 512, 64 + 64 windows of up to 400 tokens. */
  imdb: { task: "classifier", V: 86_934, E: 256, H: 512, labeledLengths: imdbLengths(64, "labeled"), unlabeledLengths: imdbLengths(64, "unlabeled") },
  /** configs/rt-cpu-pretrain.ts's LM step. */
  lm: { task: "lm", V: 15_468, D: 128, H: 256, B: 128, T: 18, K: 1024, bidirectional: false },
  "lm-bidirectional": { task: "lm", V: 15_468, D: 128, H: 256, B: 128, T: 18, K: 1024, bidirectional: true },
  /** configs/rt-cpu-methods.ts's sizes (vocabulary and a typical padded RT batch length); not in the default set. */
  "rt-cpu": { task: "classifier", V: 15_500, E: 128, H: 256, labeledLengths: fixed(64, 40), unlabeledLengths: fixed(64, 40) }
}

export const DEFAULT_SPECS = ["small", "paper-rt", "imdb", "lm", "lm-bidirectional"]

/** Zipf-like unigram counts (count of word i ∝ 1/(i+1)), so the LM's sampler and the ids behave as on text. */
export const zipfCounts = (V: number): Array<number> => Array.from({ length: V }, (_, i) => Math.max(1, Math.round(1e6 / (i + 1))))

/** The tokens one LM step trains on (every position has a target; both directions count once). */
export const lmTokens = (spec: LmSpec) => spec.B * spec.T
