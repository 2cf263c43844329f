/**
 * Pretrained weights → classifier (spec A2.6). `pretrained: <run dir>` in a classifier config copies the pretraining
 * run's **raw** embedding matrix and LSTM weights (and the reverse LSTM for a bidirectional model) into the freshly
 * initialized classifier. Not restored: the LM head, the classifier head, the step (so the learning-rate decay
 * restarts), Adam slots and EMA shadows. It happens only when a run starts, never on `--resume`.
 *
 * The vocabulary must be the same word list in the same order: a pretraining run with the same dataset, seed, split
 * and unlabeled settings builds it (its `data` and `unlabeled` config sections should equal the classifier's).
 */
import * as tf from "@tensorflow/tfjs-core"
import { existsSync } from "node:fs"
import { join } from "node:path"
import { PretrainedMismatch } from "../errors.ts"
import { EMBEDDING } from "../model/classifier.ts"
import { CHECKPOINT, classesMismatch, readCheckpoint } from "../model/checkpoint.ts"
import { firstVocabularyDifference } from "../stages/vocabulary.ts"

/** What a classifier takes from a pretraining run: the paper's embedding and LSTM(s), or the embedding alone (ablation). */
export const PRETRAINED_PARTS = ["embedding+lstm", "embedding"] as const
export type PretrainedParts = (typeof PRETRAINED_PARTS)[number]

/** The parameter names a classifier takes from a pretraining run. */
export function pretrainedNames(bidirectional: boolean, parts: PretrainedParts = "embedding+lstm"): Array<string> {
  if (parts === "embedding") return [EMBEDDING]
  const lstm = (prefix: string) => [`${prefix}/inputKernel`, `${prefix}/recurrentKernel`, `${prefix}/bias`]
  return [EMBEDDING, ...lstm("lstm"), ...(bidirectional ? lstm("lstmReverse") : [])]
}

/** `pretrained` with "{seed}" replaced, so one config serves a seed grid of per-split pretraining runs. */
export const pretrainedDir = (template: string, seed: number): string => template.replaceAll("{seed}", String(seed))

/**
 * Replace the pretrained entries of `params` (fresh initial values, owned by the caller) with the run's raw weights.
 * Returns the names restored. Throws PretrainedMismatch with a readable message on any mismatch.
 */
export function restorePretrained(
  params: Record<string, tf.Tensor>,
  runDir: string,
  vocabulary: ReadonlyArray<string>,
  bidirectional: boolean,
  parts: PretrainedParts = "embedding+lstm",
  classes?: ReadonlyArray<string>
): Array<string> {
  const fail = (why: string) => new PretrainedMismatch({ message: `cannot restore pretrained weights from ${runDir}: ${why}` })
  const path = join(runDir, CHECKPOINT)
  if (!existsSync(path)) throw fail(`there is no ${CHECKPOINT} in it. Run the pretraining config first (bun run pipeline configs/<dataset>-pretrain.ts --run-dir ${runDir}).`)
  let ckpt
  try {
    ckpt = readCheckpoint(path)
  } catch (cause) {
    throw fail((cause as Error).message)
  }
  const loaded = ckpt.tensors
  try {
    const words = ckpt.meta.vocabulary as Array<string> | undefined
    if (words === undefined) throw fail("its checkpoint has no vocabulary.")
    const first = firstVocabularyDifference(words, vocabulary)
    if (first >= 0) {
      throw fail(
        `its vocabulary (${words.length} words) differs from the one this config builds (${vocabulary.length} words` +
          (first < words.length && first < vocabulary.length ? `; first difference at #${first}: "${words[first]}" vs "${vocabulary[first]}"` : "") +
          `). Pretrain with the same dataset, seed, data and unlabeled settings as the classifier (a "{seed}" in pretrained names one run per seed).`
      )
    }
    // A classifier run restored into another classifier: its classes must be this data's (one check for every load).
    const classProblem = classes === undefined ? undefined : classesMismatch(ckpt, classes)
    if (classProblem !== undefined) throw fail(`${classProblem}. Restore from a run on the same classes, or from a language-model run.`)
    const names = pretrainedNames(bidirectional, parts)
    for (const name of names) {
      const value = loaded.get(`params/${name}`)
      if (value === undefined) {
        throw fail(`it has no ${name}${name.startsWith("lstmReverse") ? " (the classifier is bidirectional; pretrain with model.bidirectional: true)" : ""}.`)
      }
      const want = params[name].shape
      if (value.shape.length !== want.length || value.shape.some((d, i) => d !== want[i])) {
        throw fail(`${name} has shape [${value.shape}] there but [${want}] here: model.embeddingDim and model.lstmUnits must match the pretraining run.`)
      }
    }
    for (const name of names) {
      params[name].dispose()
      params[name] = tf.clone(loaded.get(`params/${name}`)!)
    }
    return names
  } finally {
    for (const t of loaded.values()) t.dispose()
  }
}
