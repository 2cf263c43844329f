/**
 * Training-step benchmark, ours vs PyTorch on the same machine, in one invocation:
 *   bun bench/step.ts [--reps N] [--configs small,paper-rt,imdb,lm,lm-bidirectional] [--no-torch]
 *                     [--torch-settings blas1-omp2,blas2-omp2,blas1-omp1[,blas1-omp2-packed]] [--blas off] [--fused-lstm off]
 *
 * Each (config, step kind) runs in its own processes — ours (bench/step-worker.ts) and one PyTorch twin
 * (bench/torch_step.py) per setting: OPENBLAS_NUM_THREADS ∈ {1, 2} with torch's 2 intra-op threads, and 1 BLAS thread
 * with 1 torch thread; a `-packed` setting runs the classifier's LSTM over a PackedSequence (skipping padding) — so
 * every side's peak RSS is its own. After two warm-up steps each, the reps are interleaved (ours, torch A, torch B;
 * the order rotates every rep), so machine noise hits every side alike. Reported: median and minimum of the reps;
 * the ratio is ours / the fastest PyTorch setting (by median). The last line is one JSON object with every time,
 * ratio, peak RSS, LM tokens/s and `worstRatio`.
 */
import { resolve } from "node:path"
import { DEFAULT_SPECS, kindsOf, lmTokens, SPECS } from "./step-configs.ts"

const args = process.argv.slice(2)
const flag = (name: string) => {
  const i = args.indexOf(name)
  return i >= 0 ? args[i + 1] : undefined
}
const reps = Number(flag("--reps") ?? 7)
const specNames = (flag("--configs") ?? DEFAULT_SPECS.join(",")).split(",")
for (const name of specNames) if (SPECS[name] === undefined) throw new Error(`unknown config ${name}; known: ${Object.keys(SPECS).join(", ")}`)
const torchSettings = args.includes("--no-torch") ? [] : (flag("--torch-settings") ?? "blas1-omp2,blas2-omp2,blas1-omp1").split(",")
const ourFlags = ["--blas", "--fused-lstm", "--backend"].flatMap((f) => (flag(f) === undefined ? [] : [f, flag(f)!]))

console.log(
  `OpenBLAS environment: OPENBLAS_CORETYPE=${process.env.OPENBLAS_CORETYPE ?? "(unset)"} OPENBLAS_L2_SIZE=${process.env.OPENBLAS_L2_SIZE ?? "(unset)"} ` +
    `OPENBLAS_NUM_THREADS=${process.env.OPENBLAS_NUM_THREADS ?? "(unset)"} (ours); PyTorch settings: ${torchSettings.join(", ") || "none"}`
)

/** A worker process answering one JSON line per command. */
class Worker {
  private readonly lines: AsyncIterator<string>
  private constructor(
    readonly name: string,
    private readonly proc: ReturnType<typeof Bun.spawn<"pipe", "pipe", "pipe">>
  ) {
    this.lines = readLines(proc.stdout)
  }

  static async start(name: string, cmd: Array<string>, env: Record<string, string> = {}): Promise<Worker | string> {
    const proc = Bun.spawn(cmd, { stdin: "pipe", stdout: "pipe", stderr: "pipe", env: { ...process.env, ...env } })
    const worker = new Worker(name, proc)
    const first = await worker.lines.next()
    if (first.done || first.value.trim() !== "ready") {
      const err = (await new Response(proc.stderr).text()).trim().split("\n").slice(-3).join(" | ")
      proc.kill()
      return `${name} failed to start: ${err || first.value}`
    }
    return worker
  }

  async ask(command: string): Promise<Record<string, number>> {
    this.proc.stdin.write(`${command}\n`)
    await this.proc.stdin.flush()
    const line = await this.lines.next()
    if (line.done) throw new Error(`${this.name} exited: ${(await new Response(this.proc.stderr).text()).trim().split("\n").at(-1)}`)
    return JSON.parse(line.value)
  }

  async stop(): Promise<void> {
    this.proc.stdin.end()
    await this.proc.exited
  }
}

async function* readLines(stream: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  const decoder = new TextDecoder()
  let buffered = ""
  const reader = stream.getReader()
  for (;;) {
    const { done, value } = await reader.read()
    if (done) return
    buffered += decoder.decode(value, { stream: true })
    let newline: number
    while ((newline = buffered.indexOf("\n")) >= 0) {
      const line = buffered.slice(0, newline)
      buffered = buffered.slice(newline + 1)
      if (line.trim().startsWith("{") || line.trim() === "ready") yield line
    }
  }
}

const torchEnv = (setting: string) => {
  const m = /^blas(\d+)-omp(\d+)(-packed)?$/.exec(setting)
  if (m === null) throw new Error(`torch setting ${setting}: expected blas<N>-omp<M>[-packed]`)
  return { env: { OPENBLAS_NUM_THREADS: m[1] }, args: [m[2], ...(m[3] === undefined ? [] : ["packed"])] }
}

const stats = (xs: Array<number>) => {
  const s = [...xs].sort((a, b) => a - b)
  return { median: s[Math.floor(s.length / 2)], min: s[0] }
}
const round = (x: number, digits = 1) => Number(x.toFixed(digits))
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

const summary: Record<string, unknown> = { reps, torchSettings, date: new Date().toISOString().slice(0, 10) }
let worstRatio = 0
for (const name of specNames) {
  const spec = SPECS[name]
  const sizes =
    spec.task === "lm"
      ? `V ${spec.V}, D ${spec.D}, H ${spec.H}, ${spec.B} slots × ${spec.T} tokens, K ${spec.K}${spec.bidirectional ? ", bidirectional" : ""}`
      : `V ${spec.V}, E ${spec.E}, H ${spec.H}, B ${spec.labeledLengths.length} (T ≤ ${Math.max(...spec.labeledLengths)}), U ${spec.unlabeledLengths.length} (T ≤ ${Math.max(...spec.unlabeledLengths)})`
  console.log(`\n${name}: ${sizes}; median (min) of ${reps} interleaved reps, ms`)
  console.log(`  ${"step".padEnd(12)} ${"ours".padStart(16)} ${torchSettings.map((s) => `torch ${s}`.padStart(20)).join(" ")} ${"ratio".padStart(6)} ${"peak RSS MiB ours/torch".padStart(24)}`)
  for (const kind of kindsOf(spec)) {
    const specJson = JSON.stringify(spec)
    const workers: Array<Worker> = []
    const failures: Array<string> = []
    for (const [label, cmd, env] of [
      ["ours", ["bun", resolve(import.meta.dir, "step-worker.ts"), name, kind, ...ourFlags], {}] as const,
      ...torchSettings.map((s) => [s, ["/usr/bin/python3", resolve(import.meta.dir, "torch_step.py"), specJson, kind, ...torchEnv(s).args], torchEnv(s).env] as const)
    ]) {
      const w = await Worker.start(label, [...cmd], env)
      if (typeof w === "string") failures.push(w)
      else workers.push(w)
    }
    for (const f of failures) console.log(`  ${f}`)
    if (workers[0]?.name !== "ours") throw new Error(failures[0])
    const times = new Map(workers.map((w) => [w.name, [] as Array<number>]))
    for (let r = 0; r < reps; r++) {
      for (let i = 0; i < workers.length; i++) {
        const w = workers[(r + i) % workers.length]
        times.get(w.name)!.push((await w.ask("step")).ms)
        await sleep(50) // let the previous side's BLAS / OpenMP threads go idle
      }
    }
    const rss = new Map<string, number>()
    for (const w of workers) {
      rss.set(w.name, (await w.ask("rss")).peakRssMiB)
      await w.stop()
    }
    const ours = stats(times.get("ours")!)
    const theirs = workers.slice(1).map((w) => ({ setting: w.name, ...stats(times.get(w.name)!) }))
    const best = theirs.reduce<(typeof theirs)[number] | undefined>((b, t) => (b === undefined || t.median < b.median ? t : b), undefined)
    const ratio = best === undefined ? undefined : ours.median / best.median
    if (ratio !== undefined) worstRatio = Math.max(worstRatio, ratio)
    const key = `${name}.${kind}`
    summary[`${key}.oursMs`] = round(ours.median)
    summary[`${key}.oursMinMs`] = round(ours.min)
    summary[`${key}.oursPeakRssMiB`] = Math.round(rss.get("ours")!)
    for (const t of theirs) {
      summary[`${key}.torch.${t.setting}.ms`] = round(t.median)
      summary[`${key}.torch.${t.setting}.minMs`] = round(t.min)
      summary[`${key}.torch.${t.setting}.peakRssMiB`] = Math.round(rss.get(t.setting)!)
    }
    if (best !== undefined) {
      summary[`${key}.torchBest`] = best.setting
      summary[`${key}.ratio`] = round(ratio!, 3)
    }
    if (spec.task === "lm") {
      const tokens = lmTokens(spec)
      summary[`${key}.oursTokensPerSecond`] = Math.round((tokens / ours.median) * 1000)
      if (best !== undefined) summary[`${key}.torchBestTokensPerSecond`] = Math.round((tokens / best.median) * 1000)
    }
    const cell = (s: { median: number; min: number }) => `${s.median.toFixed(1)} (${s.min.toFixed(1)})`
    const rssText = [rss.get("ours")!, ...theirs.map((t) => rss.get(t.setting)!)].map((x) => Math.round(x)).join(" / ")
    console.log(
      `  ${kind.padEnd(12)} ${cell(ours).padStart(16)} ${theirs.map((t) => cell(t).padStart(20)).join(" ")} ${(ratio === undefined ? "-" : ratio.toFixed(2)).padStart(6)} ${rssText.padStart(24)}`
    )
  }
}
summary.worstRatio = torchSettings.length === 0 ? null : round(worstRatio, 3)
console.log(JSON.stringify(summary))
