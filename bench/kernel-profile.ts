/** Shared by the profile scripts: tf.profile's kernels summed by name, the slowest first. */
import type * as tf from "@tensorflow/tfjs-core"

type ProfileInfo = Awaited<ReturnType<typeof tf.profile>>

export function printKernelTimes(info: ProfileInfo, rows = 16): void {
  const byName = new Map<string, { n: number; ms: number }>()
  for (const k of info.kernels) {
    const a = byName.get(k.name) ?? { n: 0, ms: 0 }
    a.n++
    a.ms += k.kernelTimeMs as number
    byName.set(k.name, a)
  }
  const total = [...byName.values()].reduce((s, a) => s + a.ms, 0)
  const sorted = [...byName.entries()].sort((a, b) => b[1].ms - a[1].ms).slice(0, rows)
  console.log(sorted.map(([k, v]) => `${k.padEnd(20)} n=${String(v.n).padStart(5)} ${v.ms.toFixed(1).padStart(8)} ms`).join("\n"))
  console.log(`kernel total ${total.toFixed(1)} ms`)
}
