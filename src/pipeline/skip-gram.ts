/**
 * Skip-gram embedding pretraining (config `task: "skip-gram"`; not in the paper, an option for CPU budgets):
 *   backend → the classifier's data stages (so the vocabulary is the one a classifier of the same config builds) →
 *   skip-gram on labeled-train + unlabeled documents (never validation or test text) → checkpoint with the embedding.
 * A classifier restores it with `pretrained: <run dir>` and `pretrainedParts: "embedding"`.
 *
 * It takes minutes, so it keeps no resumable state: Ctrl-C stops it between documents and nothing is written.
 */
import * as tf from "@tensorflow/tfjs-core"
import { Effect, Exit } from "effect"
import { join } from "node:path"
import { InvalidDataset, type UserError } from "../errors.ts"
import { EMBEDDING, EMBEDDING_INIT_LIMIT } from "../model/classifier.ts"
import { CHECKPOINT } from "../model/checkpoint.ts"
import { createTrainState, disposeTrainState } from "../model/optimizer.ts"
import { rescaleToStd, skipGramSteps } from "../stages/skip-gram.ts"
import type { Config } from "./config.ts"
import { eventLoopTurn, type LoopOptions, type LoopOutcome, startRun } from "./loop.ts"
import { formatDuration } from "./progress.ts"
import { runDirError } from "./run-dir.ts"

export interface SkipGramSummary {
  readonly name: string
  readonly task: "skip-gram"
  readonly seed: number
  readonly epochs: number
  readonly trainDocuments: number
  /** Tokens per pass (EOS not counted), before subsampling. */
  readonly trainTokens: number
  readonly finalLoss: number
  readonly vocabularySize: number
  readonly wallSeconds: number
}

export type SkipGramOutcome = LoopOutcome<SkipGramSummary>

const STOPPED = "stopped; nothing written (skip-gram keeps no resumable state). Run the same command again to start over."

/** The pretrained vectors are scaled to the standard deviation of the classifier's U(−limit, limit) initial embedding. */
const INIT_STD = EMBEDDING_INIT_LIMIT / Math.sqrt(3)

export const runSkipGram = (config: Config, options: LoopOptions): Effect.Effect<SkipGramOutcome, UserError> =>
  Effect.scoped(
    Effect.gen(function* () {
      const started = performance.now()
      const { data, runDir, progress, stop, storage } = yield* startRun(config, { ...options, resume: false }, "skip-gram embedding pretraining")
      const docs = [...data.train, ...data.unlabeled].map((d) => d.ids)
      const V = data.vocabulary.size
      const eos = data.vocabulary.eosId
      const sg = config.skipGram
      const tokens = docs.reduce((a, d) => a + d.length - 1, 0)
      if (tokens === 0) return yield* new InvalidDataset({ message: "skip-gram has no training text (no labeled-train or unlabeled documents)." })
      progress.line(
        `data: ${docs.length.toLocaleString()} documents (${data.train.length} labeled-train + ${data.unlabeled.length} unlabeled), ${tokens.toLocaleString()} tokens; ` +
          `vocabulary ${V}; D ${config.model.embeddingDim}, window ${sg.window}, ${sg.negatives} negatives, ${sg.epochs} epochs`
      )
      const writeMetrics = yield* storage.metricsLog(runDir, false, 0)
      yield* Effect.addFinalizer((exit) =>
        Exit.hasInterrupts(exit) ? Effect.sync(() => progress.line(STOPPED)) : Effect.void
      )
      // Rate and ETA count from here, not from the start of data loading.
      const trainingStarted = performance.now()
      const steps = skipGramSteps(
        docs,
        V,
        eos,
        { dim: config.model.embeddingDim, seed: config.seed, ...sg },
        // ~200 reports a run (each one a chance to stop), at most one per million tokens.
        Math.max(1_000, Math.min(1_000_000, Math.floor((tokens * sg.epochs) / 200)))
      )
      let next = steps.next(true)
      while (next.done !== true) {
        const p = next.value
        const seconds = (performance.now() - started) / 1000
        const trainingSeconds = (performance.now() - trainingStarted) / 1000
        const share = p.tokensDone / p.tokensTotal
        writeMetrics({ tokens: p.tokensDone, epoch: p.epoch + 1, skipGramLoss: p.loss, learningRate: p.learningRate, wallSeconds: seconds })
        progress.status(
          `skip-gram epoch ${p.epoch + 1}/${sg.epochs} · ${(100 * share).toFixed(1)}% · loss ${p.loss.toFixed(4)} · ` +
            `${Math.round(p.tokensDone / trainingSeconds).toLocaleString()} tokens/s · ETA ${formatDuration(((1 - share) * trainingSeconds) / Math.max(share, 1e-9))}`
        )
        // Signal handlers run here, and an interruption of this fiber lands here.
        yield* eventLoopTurn
        next = steps.next(!stop.requested)
      }
      const result = next.value
      progress.done()
      if (stop.requested) {
        progress.line(STOPPED)
        return { status: "interrupted", step: 0 } as const
      }
      const wallSeconds = (performance.now() - started) / 1000
      const embedding = tf.tensor2d(rescaleToStd(result.vectors, INIT_STD), [V, config.model.embeddingDim])
      const state = createTrainState({ [EMBEDDING]: embedding })
      embedding.dispose()
      yield* Effect.try({
        try: () =>
          storage.writeCheckpoint(runDir, state, { task: "skip-gram", vocabulary: data.vocabulary.words, counts: data.vocabulary.counts, seed: config.seed, wallSeconds }, {}),
        catch: (cause) => runDirError(`cannot write checkpoint in ${runDir}: ${(cause as Error).message}`)
      }).pipe(Effect.ensuring(Effect.sync(() => disposeTrainState(state))))
      const summary: SkipGramSummary = {
        name: config.name,
        task: "skip-gram",
        seed: config.seed,
        epochs: sg.epochs,
        trainDocuments: docs.length,
        trainTokens: tokens,
        finalLoss: result.finalLoss,
        vocabularySize: V,
        wallSeconds
      }
      storage.writeSummary(runDir, summary)
      progress.line(`done in ${formatDuration(wallSeconds)}: embedding [${V} × ${config.model.embeddingDim}] in ${join(runDir, CHECKPOINT)}`)
      return { status: "completed", summary } as const
    })
  )
