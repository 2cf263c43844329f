/**
 * Paired comparison of experiment cells across grids (each results.json from `bun run experiment`):
 *   bun scripts/paired.ts <results.json>:<method> <results.json>:<method> [...]
 * The first cell is the reference; each other one is compared with it split by split (seeds present in both): mean
 * test error, the paired difference (mean ± sample std, in points) and on how many splits it is lower.
 */
import { readFileSync } from "node:fs"
import { mean, std } from "../src/pipeline/experiment.ts"

interface Summary {
  readonly method: string
  readonly seed: number
  readonly testError: number
  readonly validationError: number | null
}


function cells(spec: string): { readonly label: string; readonly bySeed: Map<number, Summary> } {
  const at = spec.lastIndexOf(":")
  if (at < 0) throw new Error(`${spec}: expected <results.json>:<method>`)
  const [path, method] = [spec.slice(0, at), spec.slice(at + 1)]
  const rows = (JSON.parse(readFileSync(path, "utf8")) as Array<Summary>).filter((r) => r.method === method)
  if (rows.length === 0) throw new Error(`${path} has no ${method} cells`)
  return { label: `${path.replace(/\/results\.json$/, "")} · ${method}`, bySeed: new Map(rows.map((r) => [r.seed, r])) }
}

const specs = process.argv.slice(2)
if (specs.length < 2) {
  console.error("usage: bun scripts/paired.ts <results.json>:<method> <results.json>:<method> [...]")
  process.exit(2)
}
const [reference, ...others] = specs.map(cells)
const pct = (x: number) => (100 * x).toFixed(2)
console.log(`| cell | test error % (mean ± std) | validation % | seeds | Δ vs ${reference.label}, paired (pt) | lower on | per seed |`)
console.log("|---|---|---|---|---|---|---|")
for (const c of [reference, ...others]) {
  const seeds = [...c.bySeed.keys()].sort((a, b) => a - b)
  const errors = seeds.map((s) => c.bySeed.get(s)!.testError)
  const validation = seeds.map((s) => c.bySeed.get(s)!.validationError).filter((v): v is number => v !== null)
  const shared = seeds.filter((s) => reference.bySeed.has(s))
  const deltas = shared.map((s) => 100 * (c.bySeed.get(s)!.testError - reference.bySeed.get(s)!.testError))
  const delta = c === reference ? "—" : `${mean(deltas) >= 0 ? "+" : ""}${mean(deltas).toFixed(2)} ± ${std(deltas).toFixed(2)}`
  const lower = c === reference ? "—" : `${deltas.filter((d) => d < 0).length} of ${deltas.length}`
  const perSeed = seeds.map((s) => `${s}: ${pct(c.bySeed.get(s)!.testError)}`).join(", ")
  console.log(
    `| ${c.label} | ${pct(mean(errors))} ± ${pct(std(errors))} | ${validation.length ? pct(mean(validation)) : "—"} | ${seeds.length} | ${delta} | ${lower} | ${perSeed} |`
  )
}
