import type { Stream } from "effect"
import type { DataError } from "../errors.ts"

/** `dataset.kind`: the published datasets (src/pipeline/data.ts loads each), or the user's own files. */
export const DATASET_KINDS = ["rt", "imdb", "dbpedia", "ag-news", "elec", "rcv1", "custom"] as const
/** `unlabeled.source`: IMDB's sentences (train + unsup, the RT setting), IMDB's unsup reviews, or the user's file. */
export const UNLABELED_SOURCES = ["none", "imdb-sentences", "imdb-unsup", "custom"] as const
/** `data.validationSplit`: a seeded random slice, or the IMDB first author's id-based slice (spec A1.2). */
export const VALIDATION_SPLITS = ["random", "imdb-author"] as const

/** One labeled document; `label` indexes `LabeledCorpus.classes`. */
export interface LabeledDoc {
  readonly text: string
  readonly label: number
  /** Source-specific document id when the dataset has one (IMDB: the `<id>` of `<id>_<rating>.txt`). */
  readonly id?: number
}

/** What a data source yields. `test` undefined means: no official test set, split by seed (RT: 90/10). */
export interface LabeledCorpus {
  readonly name: string
  /** Class names; index = label id. Stored with the model. */
  readonly classes: ReadonlyArray<string>
  readonly train: ReadonlyArray<LabeledDoc>
  readonly test: ReadonlyArray<LabeledDoc> | undefined
}

/** Unlabeled documents, one string per document, re-readable (each call streams from the start). */
export type UnlabeledSource = () => Stream.Stream<string, DataError>

/** Where to look for archives and where to cache downloads. */
export interface DataLocation {
  /** Folder holding the published archives (or their extracted folders), e.g. ../shared/data. */
  readonly dataDir?: string | undefined
  /** Download cache; default $XDG_CACHE_HOME/advtext or ~/.cache/advtext. */
  readonly cacheDir?: string | undefined
  /** Allow downloading the canonical archive when it is not found locally (default true). */
  readonly download?: boolean | undefined
}
