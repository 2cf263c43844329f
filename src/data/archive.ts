/**
 * Finding a dataset archive: the data folder, then the download cache, then (optionally) a download of the canonical
 * URL. Also the member iteration shared by the loaders, over either the archive or its extracted folder.
 */
import { createReadStream, createWriteStream } from "node:fs"
import { mkdir, readdir, readFile, rename, stat, unlink } from "node:fs/promises"
import { homedir } from "node:os"
import { basename, dirname, join, relative, sep } from "node:path"
import { Effect } from "effect"
import {
  ChecksumMismatch,
  CorruptArchive,
  DataNotFound,
  DecodeError,
  DownloadFailed,
  InvalidDataset,
  type DataError,
} from "../errors.ts"
import { readTarGz, TarError, type TarEntry } from "./tar.ts"
import type { DataLocation } from "./types.ts"

export interface ArchiveSpec {
  /** Human name used in messages, e.g. "IMDB". */
  readonly title: string
  readonly fileName: string
  /** Top-level folder inside the archive (and name of an extracted copy). */
  readonly extractedDir: string
  /** Where the published archive is downloaded from; undefined when it cannot be (see `obtain`). */
  readonly canonicalUrl: string | undefined
  /**
   * The published archive's sha256; undefined where no checksum was published or could be verified here. A download
   * is then kept unverified with a note giving its sha256, and a local copy is checked against SHA256SUMS only.
   */
  readonly canonicalSha256: string | undefined
  /** The published archive's size, for download progress (the server's Content-Length wins). */
  readonly canonicalBytes: number | undefined
  /** How to get the data where there is no download, for messages (RCV1's text is licensed, not redistributed). */
  readonly obtain?: string
}

/** A located dataset: a (verified) archive file, or the folder that *contains* `extractedDir`. */
export type ArchiveHandle =
  | { readonly kind: "archive"; readonly path: string }
  | { readonly kind: "dir"; readonly path: string }

export const RT_ARCHIVE: ArchiveSpec = {
  title: "Rotten Tomatoes sentence polarity (rt-polaritydata v1.0)",
  fileName: "rt-polaritydata.tar.gz",
  extractedDir: "rt-polaritydata",
  canonicalUrl: "http://www.cs.cornell.edu/people/pabo/movie-review-data/rt-polaritydata.tar.gz",
  canonicalSha256: "a05befe52aafda71d458d188a1c54506a998b1308613ba76bbda2e5029409ce9",
  canonicalBytes: 487_770,
}

/** Where the data of `spec` comes from, for messages: its URL or how to obtain it. */
export const sourceOf = (spec: ArchiveSpec): string => spec.canonicalUrl ?? spec.obtain ?? spec.fileName

export const IMDB_ARCHIVE: ArchiveSpec = {
  title: "IMDB Large Movie Review Dataset (aclImdb v1)",
  fileName: "aclImdb_v1.tar.gz",
  extractedDir: "aclImdb",
  canonicalUrl: "http://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz",
  canonicalSha256: "c40f74a18d3b61f90feba1e17730e0d38e8b97c05fde7008942e91923d1658fe",
  canonicalBytes: 84_125_825,
}

/**
 * Zhang, Zhao & LeCun (2015)'s text-classification archives, as published on Google Drive. No sha256 of them is
 * published (their common mirrors give MD5 only), so a download is kept unverified with a note; pin a copy with
 * SHA256SUMS. Google Drive may answer with a confirmation page instead of the file: download it in a browser then.
 */
export const DBPEDIA_ARCHIVE: ArchiveSpec = {
  title: "DBpedia ontology classification (Zhang et al. 2015, dbpedia_csv)",
  fileName: "dbpedia_csv.tar.gz",
  extractedDir: "dbpedia_csv",
  canonicalUrl: "https://drive.google.com/uc?export=download&id=0Bz8a_Dbh9QhbQ2Vic1kxMmZZQ1k",
  canonicalSha256: undefined,
  canonicalBytes: undefined,
}

export const AG_NEWS_ARCHIVE: ArchiveSpec = {
  title: "AG News topic classification (Zhang et al. 2015, ag_news_csv)",
  fileName: "ag_news_csv.tar.gz",
  extractedDir: "ag_news_csv",
  canonicalUrl: "https://drive.google.com/uc?export=download&id=0Bz8a_Dbh9QhbUDNpeUdjb0wxRms",
  canonicalSha256: undefined,
  canonicalBytes: undefined,
}

/** Johnson & Zhang's Elec (Amazon electronics reviews) with duplicates removed: the copy the paper used (its note 3). */
export const ELEC_ARCHIVE: ArchiveSpec = {
  title: "Elec (Johnson & Zhang's Amazon electronics reviews, elec2)",
  fileName: "elec2.tar.gz",
  extractedDir: "elec",
  canonicalUrl: "http://riejohnson.com/software/elec2.tar.gz",
  canonicalSha256: undefined,
  canonicalBytes: undefined,
}

/**
 * Johnson & Zhang's RCV1 single-label second-level-topic task. Reuters' licence forbids redistributing the text, so
 * there is no download: their scripts (riejohnson.com/cnn_data.html) build the token and label files from a licensed
 * RCV1 copy, into a folder `rcv1_data/` (or an archive of it).
 */
export const RCV1_ARCHIVE: ArchiveSpec = {
  title: "RCV1 second-level topics (Johnson & Zhang's split)",
  fileName: "rcv1_data.tar.gz",
  extractedDir: "rcv1_data",
  canonicalUrl: undefined,
  canonicalSha256: undefined,
  canonicalBytes: undefined,
  obtain:
    "Reuters' licence forbids redistributing RCV1's text, so build rcv1_data/ (rcv1-1m-train.txt.tok, rcv1-1m-train.lvl2, " +
    "rcv1-1m-test.txt.tok, rcv1-1m-test.lvl2, plus rcv1_stopword.txt) from a licensed RCV1 copy with Johnson & Zhang's " +
    "scripts (http://riejohnson.com/cnn_data.html)",
}

/** `$XDG_CACHE_HOME/advtext`, else `~/.cache/advtext`. */
export const defaultCacheDir = (): string =>
  process.env.XDG_CACHE_HOME ? join(process.env.XDG_CACHE_HOME, "advtext") : join(homedir(), ".cache", "advtext")

/** The data folder: explicit setting, else env ADVTEXT_DATA_DIR. */
export const resolveDataDir = (loc: DataLocation): string | undefined => loc.dataDir ?? process.env.ADVTEXT_DATA_DIR

const isFile = (p: string) => stat(p).then((s) => s.isFile(), () => false)
const isDir = (p: string) => stat(p).then((s) => s.isDirectory(), () => false)

export const sha256File = async (path: string): Promise<string> => {
  const h = new Bun.CryptoHasher("sha256")
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) h.update(chunk as Uint8Array)
  return h.digest("hex")
}

// Hashing IMDB costs ~0.2 s; remember verified files (by path, size, mtime) for the life of the process.
const verified = new Set<string>()

/** Checks a local archive against `SHA256SUMS` in its folder when that file lists it; otherwise accepts it. */
const verifyLocal = async (path: string): Promise<void> => {
  const st = await stat(path)
  const key = `${path}\0${st.size}\0${st.mtimeMs}`
  if (verified.has(key)) return
  const sums = await readFile(join(dirname(path), "SHA256SUMS"), "utf8").catch(() => undefined)
  const name = basename(path)
  const expected = sums
    ?.split("\n")
    .map((l) => l.trim().match(/^([0-9a-fA-F]{64})\s+\*?(.+)$/))
    .find((m) => m !== null && basename(m[2]!) === name)?.[1]
    ?.toLowerCase()
  if (expected !== undefined) {
    const actual = await sha256File(path)
    if (actual !== expected) {
      throw new ChecksumMismatch({
        message: `The archive ${path} has sha256 ${actual}, but ${join(dirname(path), "SHA256SUMS")} lists ${expected}. ` +
          `The file is damaged or was replaced; delete it and copy or download it again (${name}).`,
      })
    }
  }
  verified.add(key)
}

/** Downloads to a temp file in cacheDir, verifies the canonical sha256, then renames into place. */
const download = async (spec: ArchiveSpec & { readonly canonicalUrl: string }, cacheDir: string, searched: ReadonlyArray<string>, signal?: AbortSignal): Promise<string> => {
  const dest = join(cacheDir, spec.fileName)
  const tmp = `${dest}.part-${process.pid}-${Date.now()}`
  const failed = (why: string) =>
    new DownloadFailed({
      message: `Could not download the ${spec.title} archive from ${spec.canonicalUrl} (${why}). ` +
        `It was not found locally either (searched: ${searched.join(", ")}). ${howToProvide(spec, true)}`,
    })
  try {
    await mkdir(cacheDir, { recursive: true })
  } catch (e) {
    throw failed(`cannot create the cache folder ${cacheDir}: ${(e as Error).message}`)
  }
  const hasher = new Bun.CryptoHasher("sha256")
  let done = 0
  try {
    const res = await fetch(spec.canonicalUrl, { redirect: "follow", signal })
    if (!res.ok || !res.body) throw failed(`HTTP ${res.status} ${res.statusText}`)
    // Google Drive answers a large file's URL with a confirmation page instead of the file.
    if ((res.headers.get("content-type") ?? "").startsWith("text/html")) {
      await res.body.cancel().catch(() => {})
      throw failed("the server sent a web page, not the archive; open the URL in a browser, confirm the download and save the file")
    }
    const total = Number(res.headers.get("content-length")) || spec.canonicalBytes || 0
    const out = createWriteStream(tmp)
    const mb = (n: number) => (n / 1e6).toFixed(1)
    let last = Date.now()
    process.stderr.write(`advtext: downloading ${spec.canonicalUrl} to ${dest} (${mb(total)} MB)\n`)
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      hasher.update(chunk)
      done += chunk.length
      // Respect backpressure so a slow disk does not buffer the whole archive in memory.
      if (!out.write(chunk)) await new Promise((r) => out.once("drain", r))
      if (Date.now() - last > 3000) {
        last = Date.now()
        process.stderr.write(`advtext: ${spec.fileName}: ${mb(done)} / ${mb(total)} MB\n`)
      }
    }
    await new Promise<void>((resolve, reject) => out.end((e?: Error | null) => (e ? reject(e) : resolve())))
  } catch (e) {
    await unlink(tmp).catch(() => {})
    throw e instanceof DownloadFailed ? e : failed((e as Error).message ?? String(e))
  }
  const actual = hasher.digest("hex")
  if (spec.canonicalSha256 === undefined) {
    process.stderr.write(
      `advtext: note: no published sha256 is known for ${spec.fileName}, so this download (${done} bytes) is unverified; ` +
        `its sha256 is ${actual}. To pin it, add the line "${actual}  ${spec.fileName}" to a SHA256SUMS file next to it.\n`,
    )
  } else if (actual !== spec.canonicalSha256) {
    await unlink(tmp).catch(() => {})
    throw new ChecksumMismatch({
      message: `The download of ${spec.canonicalUrl} (${done} bytes) has sha256 ${actual}, expected ${spec.canonicalSha256}; ` +
        `the file was deleted. The server may have changed the file or the transfer was corrupted: retry, or place a ` +
        `copy of ${spec.fileName} in a folder passed with --data-dir DIR (or env ADVTEXT_DATA_DIR).`,
    })
  }
  await rename(tmp, dest)
  process.stderr.write(`advtext: saved ${dest}\n`)
  return dest
}

/** `downloadTried`: the download was allowed and failed, so the advice is to retry it, not to allow it. */
const howToProvide = (spec: ArchiveSpec, downloadTried = false) =>
  `Put ${spec.fileName} (or its extracted ${spec.extractedDir}/ folder) in a folder and pass it with --data-dir DIR ` +
  `or env ADVTEXT_DATA_DIR, ` +
  (spec.canonicalUrl === undefined
    ? `after building it: ${spec.obtain ?? "it cannot be downloaded"}.`
    : `or ${downloadTried ? "retry once the network (or the site) is reachable" : "allow the download"} (${spec.canonicalUrl}).`)

const locate = async (loc: DataLocation, spec: ArchiveSpec, signal?: AbortSignal): Promise<ArchiveHandle> => {
  const dataDir = resolveDataDir(loc)
  const cacheDir = loc.cacheDir ?? defaultCacheDir()
  const folders = [...new Set([dataDir, cacheDir].filter((d): d is string => d !== undefined))]
  for (const dir of folders) {
    const archive = join(dir, spec.fileName)
    if (await isFile(archive)) {
      await verifyLocal(archive)
      return { kind: "archive", path: archive }
    }
    if (await isDir(join(dir, spec.extractedDir))) return { kind: "dir", path: dir }
    // The folder given may itself be the extracted folder.
    if (basename(dir) === spec.extractedDir && (await isDir(dir))) return { kind: "dir", path: dirname(dir) }
  }
  if (loc.download === false || spec.canonicalUrl === undefined) {
    throw new DataNotFound({
      message: `The ${spec.title} data was not found: no ${spec.fileName} or ${spec.extractedDir}/ in ` +
        `${folders.join(", ")}${dataDir === undefined ? " (no data folder was given)" : ""}, and ` +
        `${spec.canonicalUrl === undefined ? "it has no public download" : "downloading is disabled"}. ` +
        howToProvide(spec),
    })
  }
  return { kind: "archive", path: await download({ ...spec, canonicalUrl: spec.canonicalUrl }, cacheDir, folders, signal) }
}

/** Maps anything thrown while reading data to a `DataError` (typed errors pass through). */
export const toDataError = (e: unknown, what: string): DataError => {
  if (
    e instanceof DataNotFound || e instanceof ChecksumMismatch || e instanceof CorruptArchive ||
    e instanceof DecodeError || e instanceof InvalidDataset || e instanceof DownloadFailed
  ) return e
  if (e instanceof TarError) {
    return new CorruptArchive({
      message: `${what} is not a readable tar.gz archive: ${e.message}. It is probably an incomplete download or a ` +
        `different file; delete it and provide the archive again.`,
    })
  }
  const err = e as { code?: string; message?: string }
  if (err?.code === "ENOENT") return new DataNotFound({ message: `${what} does not exist (${err.message}). Check the path.` })
  return new CorruptArchive({ message: `${what} could not be read: ${err?.message ?? String(e)}.` })
}

/** Locates the dataset (see module doc); typed errors name the folders searched and how to fix it. */
export const locateArchive = (loc: DataLocation, spec: ArchiveSpec): Effect.Effect<ArchiveHandle, DataError> =>
  // The signal aborts an in-flight download when the effect is interrupted (the temp file is then removed).
  Effect.tryPromise({ try: (signal) => locate(loc, spec, signal), catch: (e) => toDataError(e, `The ${spec.title} archive`) })

/** Recursively lists files under `root`, in sorted order so that extracted folders read deterministically. */
async function* walk(root: string): AsyncGenerator<string> {
  const entries = (await readdir(root, { withFileTypes: true })).sort((a, b) => (a.name < b.name ? -1 : 1))
  for (const e of entries) {
    const p = join(root, e.name)
    if (e.isDirectory()) yield* walk(p)
    else if (e.isFile()) yield p
  }
}

/** Members of a located dataset as archive paths (`aclImdb/train/pos/0_9.txt`); `filter` avoids reading others. */
export async function* readMembers(handle: ArchiveHandle, spec: ArchiveSpec, filter: (path: string) => boolean): AsyncGenerator<TarEntry> {
  if (handle.kind === "archive") {
    yield* readTarGz(handle.path, { filter })
    return
  }
  for await (const file of walk(join(handle.path, spec.extractedDir))) {
    const path = relative(handle.path, file).split(sep).join("/")
    if (filter(path)) yield { path, data: await readFile(file) }
  }
}
