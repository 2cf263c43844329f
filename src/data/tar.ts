/**
 * Minimal streaming tar / tar.gz reader. Memory stays bounded by the largest member (IMDB has ~100k small members),
 * because the archive is gunzipped chunk by chunk from a file read stream and never held whole.
 * Formats handled: POSIX ustar (with the 155-byte prefix field), GNU long names ('L'), pax headers ('x', 'g').
 */
import { createReadStream } from "node:fs"
import { open } from "node:fs/promises"
import { createGunzip } from "node:zlib"

/** Thrown for a truncated, non-gzip or otherwise unreadable archive; callers turn it into `CorruptArchive`. */
export class TarError extends Error {
  override readonly name = "TarError"
}

export interface TarEntry {
  readonly path: string
  readonly data: Uint8Array
}

export interface ReadTarOptions {
  /** Only members whose path passes are read into memory; the others are skipped without copying. */
  readonly filter?: ((path: string) => boolean) | undefined
}

const BLOCK = 512
const utf8 = new TextDecoder()

/** Pulls exact byte counts out of a chunked async source. */
class ByteReader {
  private cur: Uint8Array = new Uint8Array(0)
  private pos = 0
  constructor(private readonly src: AsyncIterator<Uint8Array>) {}

  /** Fills `dst` completely, or returns the number of bytes read before the source ended. */
  async fill(dst: Uint8Array | undefined, n: number): Promise<number> {
    let done = 0
    while (done < n) {
      if (this.pos >= this.cur.length) {
        const r = await this.src.next()
        if (r.done) return done
        this.cur = r.value
        this.pos = 0
        continue
      }
      const take = Math.min(n - done, this.cur.length - this.pos)
      // Bytes past dst.length (tar block padding) are consumed but not stored.
      if (dst && done < dst.length) dst.set(this.cur.subarray(this.pos, this.pos + Math.min(take, dst.length - done)), done)
      this.pos += take
      done += take
    }
    return done
  }
}

/** NUL-terminated string field. */
const str = (h: Uint8Array, off: number, len: number): string => {
  const f = h.subarray(off, off + len)
  const z = f.indexOf(0)
  return utf8.decode(z < 0 ? f : f.subarray(0, z))
}

/** Numeric field: octal text, or GNU base-256 when the high bit of the first byte is set (sizes >= 8 GiB). */
const num = (h: Uint8Array, off: number, len: number): number => {
  if (h[off]! & 0x80) {
    let v = h[off]! & 0x7f
    for (let i = 1; i < len; i++) v = v * 256 + h[off + i]!
    return v
  }
  const s = str(h, off, len).trim()
  return s === "" ? 0 : parseInt(s, 8)
}

/** Header checksum: byte sum with the checksum field read as spaces. Catches garbage and misaligned input. */
const checksumOk = (h: Uint8Array): boolean => {
  let sum = 0
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 32 : h[i]!
  return sum === num(h, 148, 8)
}

/** pax records are `<len> <key>=<value>\n`, where len counts the whole record in bytes. */
const parsePax = (data: Uint8Array, into: Map<string, string>): void => {
  let i = 0
  while (i < data.length) {
    const sp = data.indexOf(0x20, i)
    if (sp < 0) break
    const len = parseInt(utf8.decode(data.subarray(i, sp)), 10)
    if (!(len > 0)) throw new TarError("malformed pax extended header")
    const rec = utf8.decode(data.subarray(sp + 1, i + len - 1))
    const eq = rec.indexOf("=")
    if (eq > 0) into.set(rec.slice(0, eq), rec.slice(eq + 1))
    i += len
  }
}

/** Opens the file and returns its byte chunks, gunzipped when it starts with the gzip magic. */
async function* openChunks(path: string): AsyncGenerator<Uint8Array> {
  const fh = await open(path, "r")
  const magic = new Uint8Array(2)
  try {
    await fh.read(magic, 0, 2, 0)
  } finally {
    await fh.close()
  }
  const gz = magic[0] === 0x1f && magic[1] === 0x8b
  if (!gz && /\.(t?gz)$/i.test(path)) throw new TarError("not a gzip file (bad magic bytes)")
  const file = createReadStream(path, { highWaterMark: 1 << 16 })
  if (!gz) {
    yield* file as AsyncIterable<Uint8Array>
    return
  }
  const gunzip = createGunzip()
  // pipe() does not forward source errors; without this a read error would hang the iteration.
  file.on("error", (e) => gunzip.destroy(e))
  file.pipe(gunzip)
  try {
    for await (const chunk of gunzip as AsyncIterable<Uint8Array>) yield chunk
  } catch (e) {
    const code = (e as { code?: string }).code
    if (code === "Z_BUF_ERROR" || code === "Z_DATA_ERROR") {
      throw new TarError(code === "Z_BUF_ERROR" ? "gzip stream is truncated" : `gzip data is corrupt (${(e as Error).message})`)
    }
    throw e
  } finally {
    file.destroy()
    gunzip.destroy()
  }
}

/**
 * Streams the regular-file members of a .tar.gz / .tgz / .tar file, in archive order.
 * Throws `TarError` for truncated or malformed archives; I/O errors (ENOENT, EACCES) propagate as they are.
 */
export async function* readTarGz(path: string, options: ReadTarOptions = {}): AsyncGenerator<TarEntry> {
  const src = openChunks(path)
  const r = new ByteReader(src)
  const header = new Uint8Array(BLOCK)
  const globalPax = new Map<string, string>()
  let longName: string | undefined
  let localPax = new Map<string, string>()
  try {
    for (;;) {
      const got = await r.fill(header, BLOCK)
      // Like GNU tar, accept a missing end-of-archive marker when the stream ends on a member boundary.
      if (got === 0) return
      if (got < BLOCK) throw new TarError("archive ends inside a member header")
      if (header.every((b) => b === 0)) return // end-of-archive block
      if (!checksumOk(header)) throw new TarError("bad tar header checksum (not a tar archive, or corrupt)")

      const type = String.fromCharCode(header[156]!)
      const size = localPax.has("size") ? Number(localPax.get("size")) : num(header, 124, 12)
      const padded = Math.ceil(size / BLOCK) * BLOCK
      // Only POSIX ustar ("ustar\0") has the prefix field; old GNU ("ustar  ") stores times there.
      const posix = str(header, 257, 6) === "ustar"
      const prefix = posix ? str(header, 345, 155) : ""
      const name = str(header, 0, 100)
      const path = localPax.get("path") ?? longName ?? globalPax.get("path") ?? (prefix ? `${prefix}/${name}` : name)

      const isMeta = type === "L" || type === "x" || type === "g"
      const isFile = type === "0" || type === "\0" || type === "7"
      const wanted = isMeta || (isFile && (options.filter?.(path) ?? true))
      const data = wanted ? new Uint8Array(size) : undefined
      if ((await r.fill(data, padded)) < padded) {
        throw new TarError(`archive ends inside member '${path}'`)
      }
      if (type === "L") {
        longName = str(data!, 0, size)
        continue
      }
      if (type === "x") {
        parsePax(data!, localPax)
        continue
      }
      if (type === "g") {
        parsePax(data!, globalPax)
        continue
      }
      // GNU long link target ('K'): irrelevant here, and must not reset a pending long name.
      if (type === "K") continue
      // Long-name and local pax headers apply to the next real member only.
      longName = undefined
      localPax = new Map()
      if (data) yield { path, data }
    }
  } finally {
    await src.return(undefined)
  }
}
