/**
 * Checkpoints: one file holding the weights, Adam slots, EMA shadows, step and any JSON metadata (vocabulary, classes,
 * config). Layout: "ADVTEXT1" | u32 header length | JSON header | float32 data. Written to a temporary file, fsynced and
 * renamed over the old one, so a crash or Ctrl-C mid-write never leaves a torn checkpoint.
 *
 * The header carries a CRC-32 of every tensor's bytes and of the metadata, verified on load, so a damaged file is
 * refused instead of trained on. Checkpoints written before the checksums existed still load (unverified; `verified`
 * says which).
 */
import * as tf from "@tensorflow/tfjs-core"
import { closeSync, copyFileSync, existsSync, fsyncSync, linkSync, openSync, readFileSync, readSync, renameSync, rmSync, writeSync } from "node:fs"
import { createTrainState, type TrainState } from "./optimizer.ts"

const MAGIC = "ADVTEXT1"

/** The checkpoint's file name inside a run directory. */
export const CHECKPOINT = "checkpoint.ckpt"

interface TensorEntry {
  readonly name: string
  readonly shape: ReadonlyArray<number>
  readonly offset: number
  readonly length: number
  /** CRC-32 of the tensor's float32 bytes (absent in checkpoints written before checksums). */
  readonly crc32?: number
}

const crc32 = (bytes: Uint8Array): number => Bun.hash.crc32(bytes)
const bytesOf = (a: Float32Array) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength)
const metaCrc = (meta: unknown) => crc32(new TextEncoder().encode(JSON.stringify(meta)))

/** Where `writeCheckpoint(..., { keepPrevious: true })` keeps the checkpoint it replaced. */
export const previousCheckpoint = (path: string): string => `${path}.prev`

const groups = ["params", "adamM", "adamV", "ema"] as const

/**
 * `extra` holds run state that is not a trainable weight (e.g. the LM's carried LSTM state), stored as "extra/<name>"
 * and read back with `extraOf`.
 */
export function writeCheckpoint(
  path: string,
  state: TrainState,
  meta: Readonly<Record<string, unknown>>,
  extra: Readonly<Record<string, { readonly shape: ReadonlyArray<number>; readonly data: Float32Array }>> = {},
  options: { readonly keepPrevious?: boolean } = {}
): void {
  const entries: Array<TensorEntry> = []
  const chunks: Array<Float32Array> = []
  let offset = 0
  const add = (name: string, shape: ReadonlyArray<number>, data: Float32Array) => {
    entries.push({ name, shape, offset, length: data.length, crc32: crc32(bytesOf(data)) })
    chunks.push(data)
    offset += data.length
  }
  for (const group of groups) {
    for (const [name, v] of Object.entries(state[group])) add(`${group}/${name}`, v.shape, v.dataSync() as Float32Array)
  }
  for (const [name, t] of Object.entries(extra)) add(`extra/${name}`, t.shape, t.data)
  const header = new TextEncoder().encode(JSON.stringify({ step: state.step, meta, metaCrc32: metaCrc(meta), tensors: entries }))
  const prefix = new Uint8Array(MAGIC.length + 4)
  prefix.set(new TextEncoder().encode(MAGIC), 0)
  new DataView(prefix.buffer).setUint32(MAGIC.length, header.length, true)
  const tmp = `${path}.tmp`
  const fd = openSync(tmp, "w")
  try {
    writeSync(fd, prefix)
    writeSync(fd, header)
    // Align the float data to 4 bytes so it can be viewed in place when read.
    const pad = (4 - ((prefix.length + header.length) % 4)) % 4
    if (pad > 0) writeSync(fd, new Uint8Array(pad))
    for (const c of chunks) writeSync(fd, new Uint8Array(c.buffer, c.byteOffset, c.byteLength))
    fsyncSync(fd)
  } finally {
    closeSync(fd)
  }
  if (options.keepPrevious === true && existsSync(path)) {
    // The replaced checkpoint stays as <path>.prev (a hard link, so no copy): a run that diverges right after a
    // checkpoint can fall back to it. Every moment of this sequence leaves <path> a complete checkpoint.
    const prev = previousCheckpoint(path)
    rmSync(prev, { force: true })
    try {
      linkSync(path, prev)
    } catch {
      copyFileSync(path, prev)
    }
  }
  renameSync(tmp, path)
}

export interface LoadedCheckpoint {
  readonly step: number
  readonly meta: Record<string, unknown>
  /** Tensors by "group/name"; caller owns them. */
  readonly tensors: Map<string, tf.Tensor>
  /** False for a checkpoint written before checksums existed (loaded without verification). */
  readonly verified: boolean
}

/** Throws a plain Error with a readable message on a missing, foreign or truncated file. */
export function readCheckpoint(path: string): LoadedCheckpoint {
  const bytes = readFileSync(path)
  const magic = new TextDecoder().decode(bytes.subarray(0, MAGIC.length))
  if (magic !== MAGIC) throw new Error(`${path} is not an advtext checkpoint`)
  const headerStart = MAGIC.length + 4
  const headerLength = bytes.length >= headerStart ? new DataView(bytes.buffer, bytes.byteOffset).getUint32(MAGIC.length, true) : -1
  if (headerLength < 0 || bytes.length < headerStart + headerLength) throw new Error(`${path} is truncated (inside its header)`)
  let header: { step: number; meta: Record<string, unknown>; metaCrc32?: number; tensors: Array<TensorEntry> }
  try {
    header = JSON.parse(new TextDecoder().decode(bytes.subarray(headerStart, headerStart + headerLength)))
  } catch {
    throw new Error(`${path} is corrupt: its header is not valid JSON`)
  }
  const dataStart = headerStart + headerLength + ((4 - ((headerStart + headerLength) % 4)) % 4)
  const total = header.tensors.reduce((a, e) => a + e.length, 0)
  if (bytes.length < dataStart + total * 4) throw new Error(`${path} is truncated`)
  const floats = new Float32Array(bytes.buffer.slice(bytes.byteOffset + dataStart, bytes.byteOffset + dataStart + total * 4))
  const damaged = (what: string) =>
    new Error(
      `${path} is damaged: ${what} fails its CRC-32 check (the file changed after it was written: a disk or copy error, ` +
        `or an edit). It is not used; restore the run directory from a copy` +
        (existsSync(previousCheckpoint(path)) ? `, or move ${previousCheckpoint(path)} (the checkpoint before it) over it` : "") +
        `, or start a new run`
    )
  if (header.metaCrc32 !== undefined && header.metaCrc32 !== metaCrc(header.meta)) throw damaged("its metadata")
  for (const e of header.tensors) {
    if (e.crc32 !== undefined && e.crc32 !== crc32(bytesOf(floats.subarray(e.offset, e.offset + e.length)))) throw damaged(`tensor ${e.name}`)
  }
  const verified = header.metaCrc32 !== undefined && header.tensors.every((e) => e.crc32 !== undefined)
  const tensors = new Map<string, tf.Tensor>()
  for (const e of header.tensors) tensors.set(e.name, tf.tensor(floats.subarray(e.offset, e.offset + e.length), [...e.shape]))
  return { step: header.step, meta: header.meta, tensors, verified }
}

/**
 * Why a classifier checkpoint cannot serve data whose classes are `classes` (undefined when it can): its head has one
 * output per class of the data it was trained on, in that order. For every load of a classifier checkpoint (resume,
 * pretrained restore, predict). A checkpoint without classes (an LM) has no head to mismatch.
 */
export function classesMismatch(ckpt: Pick<LoadedCheckpoint, "meta">, classes: ReadonlyArray<string>): string | undefined {
  const saved = ckpt.meta.classes as ReadonlyArray<string> | undefined
  if (saved === undefined || (saved.length === classes.length && saved.every((c, i) => c === classes[i]))) return undefined
  const list = (cs: ReadonlyArray<string>) => `${cs.length} (${cs.map((c) => JSON.stringify(c)).join(", ")})`
  return `the checkpoint's classifier was trained on classes ${list(saved)} but the data has classes ${list(classes)}: its head cannot score them`
}

/** A checkpoint's step and metadata, without reading its tensors (unverified: for decisions, not for training). */
export function readCheckpointHeader(path: string): { readonly step: number; readonly meta: Record<string, unknown> } {
  const fd = openSync(path, "r")
  try {
    const prefix = new Uint8Array(MAGIC.length + 4)
    if (readSync(fd, prefix, 0, prefix.length, 0) < prefix.length || new TextDecoder().decode(prefix.subarray(0, MAGIC.length)) !== MAGIC) {
      throw new Error(`${path} is not an advtext checkpoint`)
    }
    const header = new Uint8Array(new DataView(prefix.buffer).getUint32(MAGIC.length, true))
    if (readSync(fd, header, 0, header.length, prefix.length) < header.length) throw new Error(`${path} is truncated (inside its header)`)
    const { step, meta } = JSON.parse(new TextDecoder().decode(header)) as { step: number; meta: Record<string, unknown> }
    return { step, meta }
  } finally {
    closeSync(fd)
  }
}

/** A copy of an "extra" entry's values (undefined when absent). Call before `trainStateFromCheckpoint` disposes them. */
export const extraOf = (ckpt: LoadedCheckpoint, name: string): Float32Array | undefined =>
  ckpt.tensors.get(`extra/${name}`)?.dataSync().slice() as Float32Array | undefined

/** Rebuild a TrainState from a checkpoint (takes ownership of its tensors). */
export function trainStateFromCheckpoint(ckpt: LoadedCheckpoint): TrainState {
  const params: Record<string, tf.Tensor> = {}
  for (const [key, t] of ckpt.tensors) if (key.startsWith("params/")) params[key.slice("params/".length)] = t
  const state = createTrainState(params, ckpt.step)
  for (const group of ["adamM", "adamV", "ema"] as const) {
    for (const name of Object.keys(params)) {
      const t = ckpt.tensors.get(`${group}/${name}`)
      if (t === undefined) throw new Error(`checkpoint lacks ${group}/${name}`)
      state[group][name].assign(t)
    }
  }
  for (const t of ckpt.tensors.values()) t.dispose()
  return state
}
