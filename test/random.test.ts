import { expect, test } from "bun:test"
import fc from "fast-check"
import { permutation, rng } from "../src/random.ts"

test("same (seed, keys) ⇒ same stream; a different seed or key ⇒ a different stream", () => {
  fc.assert(
    fc.property(fc.nat(), fc.nat(), fc.string(), (s, t, key) => {
      const draw = (seed: number, k: string) => Array.from({ length: 4 }, ((r) => () => r.uniform())(rng(seed, k)))
      expect(draw(s, key)).toEqual(draw(s, key))
      if (s !== t) expect(draw(s, key)).not.toEqual(draw(t, key))
      expect(draw(s, key)).not.toEqual(draw(s, key + "x"))
    }),
    { numRuns: 300 }
  )
})

test("uniform and normal draws have the right moments; permutations are permutations", () => {
  const r = rng(42, "moments")
  const n = 200_000
  let su = 0
  let sn = 0
  let sn2 = 0
  for (let i = 0; i < n; i++) {
    const u = r.uniform()
    expect(u >= 0 && u < 1).toBe(true)
    su += u
    const z = r.normal()
    sn += z
    sn2 += z * z
  }
  expect(Math.abs(su / n - 0.5)).toBeLessThan(0.005)
  expect(Math.abs(sn / n)).toBeLessThan(0.01)
  expect(Math.abs(sn2 / n - 1)).toBeLessThan(0.02)
  const p = permutation(1000, rng(1, "perm"))
  expect([...p].sort((a, b) => a - b)).toEqual(Array.from({ length: 1000 }, (_, i) => i))
})
