/**
 * The training run's plug points, as Effect services with the library's behaviour as their defaults (so
 * `runPipeline` needs nothing provided). Replace one by providing a layer:
 *
 *   runPipeline(config, { runDir }).pipe(Effect.provide(tokenizerLayer((text) => myTokens(text))))
 *
 *   Tokenizer    text → tokens, for every split (default: the config's data.tokenizer / data.lowercase)
 *   DataSources  the labeled corpus and the unlabeled source (default: the config's dataset and unlabeled sections)
 *   RunProgress  progress lines when RunOptions has no `progress` (default: the console, on stderr)
 *   RunStorage   the run directory: config, metrics log, checkpoints, summary (default: files, src/pipeline/run-dir.ts)
 *
 * What the run gets from the rest stays the same: validation, checkpoints, metrics, the divergence guard and resume
 * work with any tokenizer or source, since they only see token ids.
 */
import { Context, type Effect, Layer } from "effect"
import type { DataLocation, LabeledCorpus, UnlabeledSource } from "../data/types.ts"
import type { DataError } from "../errors.ts"
import { tokenize, type TokenizeOptions } from "../stages/tokenize.ts"
import type { Config } from "./config.ts"
import { loadSources } from "./data.ts"
import { consoleProgress, type Progress } from "./progress.ts"
import { fileRunStorage, type RunStorageShape } from "./run-dir.ts"

export interface TokenizerShape {
  /** The tokens of one document; `options` are the config's data.lowercase and data.tokenizer. */
  readonly tokenize: (text: string, options: TokenizeOptions) => ReadonlyArray<string>
}

export const Tokenizer: Context.Reference<TokenizerShape> = Context.Reference<TokenizerShape>("advtext/Tokenizer", { defaultValue: () => ({ tokenize }) })

/** A layer replacing the tokenizer of every split (training, unlabeled, validation, test). */
export const tokenizerLayer = (tokenizeText: TokenizerShape["tokenize"]): Layer.Layer<never> => Layer.succeed(Tokenizer, { tokenize: tokenizeText })

export interface DataSourcesShape {
  readonly load: (
    config: Config,
    location: DataLocation
  ) => Effect.Effect<{ readonly corpus: LabeledCorpus; readonly unlabeled: UnlabeledSource | undefined }, DataError>
}

export const DataSources: Context.Reference<DataSourcesShape> = Context.Reference<DataSourcesShape>("advtext/DataSources", { defaultValue: () => ({ load: loadSources }) })

/** A layer replacing where the labeled corpus and the unlabeled text come from (splitting and the stages stay the library's). */
export const dataSourcesLayer = (load: DataSourcesShape["load"]): Layer.Layer<never> => Layer.succeed(DataSources, { load })

export const RunProgress: Context.Reference<Progress> = Context.Reference<Progress>("advtext/RunProgress", { defaultValue: () => consoleProgress() })

export const progressLayer = (progress: Progress): Layer.Layer<never> => Layer.succeed(RunProgress, progress)

export const RunStorage: Context.Reference<RunStorageShape> = Context.Reference<RunStorageShape>("advtext/RunStorage", { defaultValue: () => fileRunStorage })

/** A layer replacing where the run keeps its config, metrics, checkpoints and summary (see RunStorageShape). */
export const runStorageLayer = (storage: RunStorageShape): Layer.Layer<never> => Layer.succeed(RunStorage, storage)
