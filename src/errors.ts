/**
 * Typed errors for everything a user can get wrong. Each carries a one-paragraph `message` that the CLI prints
 * verbatim (no stack trace) and exits non-zero.
 */
import { Data } from "effect"

/** A dataset archive or folder could not be found locally and could not be downloaded. */
export class DataNotFound extends Data.TaggedError("DataNotFound")<{ readonly message: string }> {}
/** A downloaded or local archive does not match its expected sha256. */
export class ChecksumMismatch extends Data.TaggedError("ChecksumMismatch")<{ readonly message: string }> {}
/** An archive is truncated or not a gzip/tar file, or lacks the expected members. */
export class CorruptArchive extends Data.TaggedError("CorruptArchive")<{ readonly message: string }> {}
/** A text file has bytes that are not valid in its declared encoding, or a malformed record. */
export class DecodeError extends Data.TaggedError("DecodeError")<{ readonly message: string }> {}
/** A dataset that is empty, or has fewer than two classes, or no usable document after tokenization. */
export class InvalidDataset extends Data.TaggedError("InvalidDataset")<{ readonly message: string }> {}
/** A network download failed. */
export class DownloadFailed extends Data.TaggedError("DownloadFailed")<{ readonly message: string }> {}
/** The config file or a command-line override is invalid. */
export class ConfigError extends Data.TaggedError("ConfigError")<{ readonly message: string }> {}
/** The run directory (or a checkpoint in it) cannot be written or read. */
export class RunDirError extends Data.TaggedError("RunDirError")<{ readonly message: string }> {}
/** A `pretrained` run directory that cannot be restored into this model (missing, other vocabulary, other shapes). */
export class PretrainedMismatch extends Data.TaggedError("PretrainedMismatch")<{ readonly message: string }> {}
/** An explicitly requested tensor backend cannot be loaded. */
export class BackendError extends Data.TaggedError("BackendError")<{ readonly message: string }> {}
/** The loss became NaN or Inf; the last good checkpoint is kept. */
export class NonFiniteLoss extends Data.TaggedError("NonFiniteLoss")<{ readonly message: string }> {}
/** The divergence guard stopped the run (loss far above its range, or a dead hidden layer); a pre-divergence checkpoint is kept. */
export class Diverged extends Data.TaggedError("Diverged")<{ readonly message: string }> {}

export type DataError = DataNotFound | ChecksumMismatch | CorruptArchive | DecodeError | InvalidDataset | DownloadFailed
export type UserError = DataError | ConfigError | RunDirError | BackendError | NonFiniteLoss | Diverged | PretrainedMismatch

export const isUserError = (e: unknown): e is UserError => typeof e === "object" && e !== null && "_tag" in e && "message" in e

/** Print a user error as one paragraph (no stack trace) and set the exit code: 2 for config errors, else 1. */
export function reportUserError(error: UserError): void {
  process.stderr.write(`\nerror (${error._tag}): ${error.message}\n`)
  process.exitCode = error._tag === "ConfigError" ? 2 : 1
}
