/**
 * Deterministic randomness. One config seed drives everything; each consumer derives its own independent stream from
 * (seed, purpose, index...) so that, e.g., the dropout masks of step 812 are the same whether or not the run was
 * resumed at step 800, and changing the batch size does not change the split.
 */

/** 32-bit FNV-1a style mixing of the seed and keys into one state word; `basis` gives independent words. */
function mixKeys(basis: number, seed: number, keys: ReadonlyArray<string | number>): number {
  let h = basis >>> 0
  const feed = (x: number) => {
    h = Math.imul(h ^ (x & 0xff), 0x01000193) >>> 0
  }
  for (let b = 0; b < 4; b++) feed((seed >>> 0) >>> (8 * b))
  for (const key of keys) {
    const s = String(key)
    for (let i = 0; i < s.length; i++) {
      const c = s.charCodeAt(i)
      feed(c)
      feed(c >>> 8)
    }
    feed(0x1f)
  }
  return h
}

export interface Rng {
  /** Uniform in [0, 1). */
  uniform(): number
  /** Standard normal (Box–Muller). */
  normal(): number
  /** Integer in [0, n). */
  int(n: number): number
}

/** A sfc32-style generator seeded from (seed, keys). */
export function rng(seed: number, ...keys: ReadonlyArray<string | number>): Rng {
  let a = mixKeys(0x811c9dc5, seed, keys)
  let b = mixKeys(0x9e3779b9, seed, keys)
  let c = mixKeys(0x85ebca6b, seed, keys)
  let d = 1
  const next = (): number => {
    const t = (((a + b) >>> 0) + d) >>> 0
    d = (d + 1) >>> 0
    a = b ^ (b >>> 9)
    b = (c + (c << 3)) >>> 0
    c = ((c << 21) | (c >>> 11)) >>> 0
    c = (c + t) >>> 0
    return t
  }
  for (let i = 0; i < 12; i++) next()
  const uniform = () => next() / 4294967296
  let spare: number | undefined
  return {
    uniform,
    int: (n) => Math.floor(uniform() * n),
    normal: () => {
      if (spare !== undefined) {
        const s = spare
        spare = undefined
        return s
      }
      let u = 0
      while (u === 0) u = uniform()
      const v = uniform()
      const r = Math.sqrt(-2 * Math.log(u))
      spare = r * Math.sin(2 * Math.PI * v)
      return r * Math.cos(2 * Math.PI * v)
    }
  }
}

/** A Fisher–Yates permutation of 0..n-1. */
export function permutation(n: number, random: Rng): Int32Array {
  const p = new Int32Array(n)
  for (let i = 0; i < n; i++) p[i] = i
  for (let i = n - 1; i > 0; i--) {
    const j = random.int(i + 1)
    const t = p[i]
    p[i] = p[j]
    p[j] = t
  }
  return p
}
