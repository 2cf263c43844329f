/**
 * Checkpoints: one file holding the weights, Adam slots, EMA shadows, step and any JSON metadata (vocabulary, classes,
 * config). Layout: "ADVTEXT1" | u32 header length | JSON header | float32 data. Written to a temporary file, fsynced and
 * renamed over the old one, so a crash or Ctrl-C mid-write never leaves a torn checkpoint.
 */
import * as tf from "@tensorflow/tfjs-core"
import { closeSync, fsyncSync, openSync, readFileSync, renameSync, writeSync } from "node:fs"
import { createTrainState, type TrainState } from "./optimizer.ts"

const MAGIC = "ADVTEXT1"

/** The checkpoint's file name inside a run directory. */
export const CHECKPOINT = "checkpoint.ckpt"

interface TensorEntry {
  readonly name: string
  readonly shape: ReadonlyArray<number>
  readonly offset: number
  readonly length: number
}

const groups = ["params", "adamM", "adamV", "ema"] as const

/**
 * `extra` holds run state that is not a trainable weight (e.g. the LM's carried LSTM state), stored as "extra/<name>"
 * and read back with `extraOf`.
 */
export function writeCheckpoint(
  path: string,
  state: TrainState,
  meta: Readonly<Record<string, unknown>>,
  extra: Readonly<Record<string, { readonly shape: ReadonlyArray<number>; readonly data: Float32Array }>> = {}
): void {
  const entries: Array<TensorEntry> = []
  const chunks: Array<Float32Array> = []
  let offset = 0
  const add = (name: string, shape: ReadonlyArray<number>, data: Float32Array) => {
    entries.push({ name, shape, offset, length: data.length })
    chunks.push(data)
    offset += data.length
  }
  for (const group of groups) {
    for (const [name, v] of Object.entries(state[group])) add(`${group}/${name}`, v.shape, v.dataSync() as Float32Array)
  }
  for (const [name, t] of Object.entries(extra)) add(`extra/${name}`, t.shape, t.data)
  const header = new TextEncoder().encode(JSON.stringify({ step: state.step, meta, tensors: entries }))
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
  renameSync(tmp, path)
}

export interface LoadedCheckpoint {
  readonly step: number
  readonly meta: Record<string, unknown>
  /** Tensors by "group/name"; caller owns them. */
  readonly tensors: Map<string, tf.Tensor>
}

/** Throws a plain Error with a readable message on a missing, foreign or truncated file. */
export function readCheckpoint(path: string): LoadedCheckpoint {
  const bytes = readFileSync(path)
  const magic = new TextDecoder().decode(bytes.subarray(0, MAGIC.length))
  if (magic !== MAGIC) throw new Error(`${path} is not an advtext checkpoint`)
  const headerStart = MAGIC.length + 4
  const headerLength = bytes.length >= headerStart ? new DataView(bytes.buffer, bytes.byteOffset).getUint32(MAGIC.length, true) : -1
  if (headerLength < 0 || bytes.length < headerStart + headerLength) throw new Error(`${path} is truncated (inside its header)`)
  let header: { step: number; meta: Record<string, unknown>; tensors: Array<TensorEntry> }
  try {
    header = JSON.parse(new TextDecoder().decode(bytes.subarray(headerStart, headerStart + headerLength)))
  } catch {
    throw new Error(`${path} is corrupt: its header is not valid JSON`)
  }
  const dataStart = headerStart + headerLength + ((4 - ((headerStart + headerLength) % 4)) % 4)
  const total = header.tensors.reduce((a, e) => a + e.length, 0)
  if (bytes.length < dataStart + total * 4) throw new Error(`${path} is truncated`)
  const floats = new Float32Array(bytes.buffer.slice(bytes.byteOffset + dataStart, bytes.byteOffset + dataStart + total * 4))
  const tensors = new Map<string, tf.Tensor>()
  for (const e of header.tensors) tensors.set(e.name, tf.tensor(floats.subarray(e.offset, e.offset + e.length), [...e.shape]))
  return { step: header.step, meta: header.meta, tensors }
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
