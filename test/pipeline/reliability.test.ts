/**
 * Issue 13's audit cases, re-run as a user runs them: each gets a one-paragraph error (or the documented behaviour)
 * with the README's exit code, and nothing on disk is lost or left inconsistent.
 */
import { describe, expect, test } from "bun:test"
import { Effect } from "effect"
import { appendFileSync, existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { CHECKPOINT } from "../../src/model/checkpoint.ts"
import { silentProgress } from "../../src/pipeline/progress.ts"
import { interruptible, runPipeline, type StopSignal } from "../../src/pipeline/run.ts"
import { CLI, cli, configFile, metricLines, noStackTrace, tempDir, tinyConfig, writeTinyDataset } from "./fixtures.ts"

describe("--resume refuses what it cannot honour", () => {
  const data = writeTinyDataset(tempDir(), { train: 60, test: 20 })
  const tinyDataset = `{ kind: "custom", train: ${JSON.stringify(join(data, "train.tsv"))}, test: ${JSON.stringify(join(data, "test.tsv"))} }`
  // One finished 3-step run, copied by each test that resumes it.
  const base = join(tempDir(), "run")
  const first = cli([configFile(tempDir(), tinyDataset), "--run-dir", base])
  const snapshot = (runDir: string) => ({ config: readFileSync(join(runDir, "config.json"), "utf8"), ckpt: readFileSync(join(runDir, CHECKPOINT)) })
  const copyRun = () => {
    const dir = join(tempDir(), "copy")
    Bun.spawnSync(["cp", "-r", base, dir])
    return dir
  }

  test("the base run completed and left no .write-test behind (case 8)", () => {
    expect(first.code).toBe(0)
    expect(readdirSync(base).filter((f) => f.startsWith(".write-test"))).toEqual([])
  })

  test("changed model sizes are refused with one message naming every changed key; config.json and the checkpoint are untouched (case 1)", () => {
    const runDir = copyRun()
    const before = snapshot(runDir)
    const r = cli(["--resume", runDir, "--set", "model.lstmUnits=32", "--set", "model.embeddingDim=16", "--set", "model.hiddenUnits=5", "--set", "train.steps=6"])
    expect(r.code).toBe(2)
    expect(r.stderr).toContain("ConfigError")
    for (const key of ["model.lstmUnits: 8 → 32", "model.embeddingDim: 8 → 16", "model.hiddenUnits: 4 → 5"]) expect(r.stderr).toContain(key)
    expect(r.stderr).not.toContain("train.steps:")
    noStackTrace(r.stderr)
    expect(snapshot(runDir)).toEqual(before)
  })

  test("model.bidirectional on resume is a config error, not an internal one (case 7)", () => {
    const runDir = copyRun()
    const r = cli(["--resume", runDir, "--set", "model.bidirectional=true"])
    expect(r.code).toBe(2)
    expect(r.stderr).toContain("model.bidirectional: false → true")
    expect(r.stderr).not.toContain("internal error")
  })

  test("steps and reporting intervals may change and are recorded in config.json", () => {
    const runDir = copyRun()
    const r = cli(["--resume", runDir, "--set", "train.steps=5", "--set", "train.logEvery=2", "--set", "train.evalBatchSize=7"])
    expect(r.code).toBe(0)
    expect(r.stderr).toContain("resuming with train.evalBatchSize: 256 → 7; train.logEvery: 1 → 2; train.steps: 3 → 5 (recorded in config.json)")
    const saved = JSON.parse(readFileSync(join(runDir, "config.json"), "utf8"))
    expect(saved.train).toMatchObject({ steps: 5, logEvery: 2, evalBatchSize: 7 })
    expect(JSON.parse(r.stdout.trim().split("\n").at(-1)!).steps).toBe(5)
  })

  test("a training file that now has 3 classes (same vocabulary) is refused, the checkpoint kept (case 2)", () => {
    const runDir = copyRun()
    const before = snapshot(runDir)
    const train = readFileSync(join(data, "train.tsv"), "utf8")
    // Same texts, so the same vocabulary; a few documents relabelled into a third class.
    const relabelled = train.split("\n").map((l, i) => (i % 10 === 0 && l ? l.replace(/^\w+\t/, "meh\t") : l)).join("\n")
    writeFileSync(join(data, "train3.tsv"), relabelled)
    const saved = JSON.parse(before.config)
    saved.dataset.train = join(data, "train3.tsv")
    writeFileSync(join(runDir, "config.json"), JSON.stringify(saved))
    const r = cli(["--resume", runDir, "--set", "train.steps=6"])
    expect(r.code).toBe(1)
    expect(r.stderr).toContain('trained on classes 2 ("neg", "pos") but the data has classes 3 ("meh", "neg", "pos")')
    noStackTrace(r.stderr)
    expect(readFileSync(join(runDir, CHECKPOINT))).toEqual(before.ckpt)
  })

  test("--resume of a missing directory is a run-dir error, exit 1 (case 8)", () => {
    const r = cli(["--resume", join(tempDir(), "nothing-here")])
    expect(r.code).toBe(1)
    expect(r.stderr).toContain("RunDirError")
    expect(r.stderr).toContain("no such directory")
  })

  test("a partial last line in metrics.jsonl (a kill mid-append) is dropped on --resume (case 7)", () => {
    const clean = copyRun()
    const runDir = copyRun()
    appendFileSync(join(runDir, "metrics.jsonl"), '{"step":4,"loss":0.6')
    const r = cli(["--resume", runDir, "--set", "train.steps=5"])
    expect(r.code).toBe(0)
    expect(cli(["--resume", clean, "--set", "train.steps=5"]).code).toBe(0)
    expect(metricLines(runDir)).toEqual(metricLines(clean))
    expect(metricLines(runDir).filter((m) => "loss" in m).map((m) => m.step)).toEqual([1, 2, 3, 4, 5])
  })

  test("a damaged checkpoint is refused with exit 1 and never trained on (case 3)", () => {
    const runDir = copyRun()
    const path = join(runDir, CHECKPOINT)
    const bytes = readFileSync(path)
    bytes[bytes.length - 9] ^= 0x10 // one bit of the last tensor's data: a finite, plausible value
    writeFileSync(path, bytes)
    const r = cli(["--resume", runDir, "--set", "train.steps=6"])
    expect(r.code).toBe(1)
    expect(r.stderr).toContain("is damaged: tensor ema/")
    expect(r.stderr).toContain("fails its CRC-32 check")
    noStackTrace(r.stderr)
    expect(readFileSync(path)).toEqual(bytes)
    expect(existsSync(join(runDir, "metrics.jsonl")) && metricLines(runDir).every((m) => (m.step as number) <= 3)).toBe(true)
  })
})

describe("config and data mistakes", () => {
  const data = writeTinyDataset(tempDir(), { train: 60, test: 20 })
  const tinyDataset = `{ kind: "custom", train: ${JSON.stringify(join(data, "train.tsv"))} }`

  test("a non-finite number (1e400) is refused at validation, exit 2 (case 6)", () => {
    const r = cli([configFile(tempDir(), tinyDataset), "--run-dir", join(tempDir(), "r"), "--set", "train.learningRate=1e400"])
    expect(r.code).toBe(2)
    expect(r.stderr).toContain("train.learningRate must be a finite number (was Infinity")
  })

  test("a config with a syntax error reports file:line:column and the parser's message, exit 2 (case 7)", () => {
    const path = configFile(tempDir(), tinyDataset, "seed: 3,,")
    const r = cli([path, "--run-dir", join(tempDir(), "r")])
    expect(r.code).toBe(2)
    expect(r.stderr).toMatch(new RegExp(`syntax error at ${path.replaceAll("/", "\\/").replaceAll(".", "\\.")}:7:\\d+: Expected`))
    expect(r.stderr).toContain("seed: 3,,")
    noStackTrace(r.stderr)
  })

  test("a failed download says to retry it, not to allow it (case 8)", () => {
    // An unreachable proxy makes the download fail at once, network or not.
    const proxy = "http://127.0.0.1:9"
    const r = cli([configFile(tempDir(), `{ kind: "rt" }`), "--data-dir", tempDir(), "--run-dir", join(tempDir(), "r")], {
      ADVTEXT_DATA_DIR: "",
      XDG_CACHE_HOME: tempDir(),
      HTTP_PROXY: proxy,
      HTTPS_PROXY: proxy,
      http_proxy: proxy,
      https_proxy: proxy
    })
    expect(r.code).toBe(1)
    expect(r.stderr).toContain("error (DownloadFailed): Could not download")
    expect(r.stderr).toContain("or retry once the network (or the site) is reachable")
    expect(r.stderr).not.toContain("allow the download")
  })

  test('labels 1 and "1" in one JSONL file are refused instead of merged (case 8)', () => {
    const dir = tempDir()
    const file = join(dir, "mixed.jsonl")
    writeFileSync(file, ['{"text":"good film","label":1}', '{"text":"bad film","label":0}', '{"text":"great film","label":"1"}'].join("\n") + "\n")
    const r = cli([configFile(tempDir(), `{ kind: "custom", train: ${JSON.stringify(file)} }`), "--run-dir", join(tempDir(), "r")])
    expect(r.code).toBe(1)
    expect(r.stderr).toContain(`${file}:3: label "1" is a string here but a number on line 1`)
  })
})

describe("evaluation honours a stop request (case 10)", () => {
  const data = writeTinyDataset(tempDir(), { train: 60, test: 150 })
  const dataset = `{ kind: "custom", train: ${JSON.stringify(join(data, "train.tsv"))}, test: ${JSON.stringify(join(data, "test.tsv"))} }`
  // One document per evaluation batch: the final evaluation (test, Figure-2 losses, validation) takes a while.
  const args = ["--set", "train.evalBatchSize=1", "--set", "train.steps=4"]

  test("SIGTERM during the final evaluation exits 130 within seconds, keeping the checkpoint; --resume finishes with the uninterrupted summary", async () => {
    const straight = cli([configFile(tempDir(), dataset), "--run-dir", join(tempDir(), "straight"), ...args])
    expect(straight.code).toBe(0)
    const runDir = join(tempDir(), "run")
    const child = Bun.spawn(["bun", CLI, configFile(tempDir(), dataset), "--run-dir", runDir, ...args], { stdout: "pipe", stderr: "pipe" })
    let stderr = ""
    let signalled: number | undefined
    const decoder = new TextDecoder()
    // Read stderr to its end (a closed pipe would kill the child), signalling once the final evaluation begins.
    for await (const chunk of child.stderr) {
      stderr += decoder.decode(chunk)
      if (signalled === undefined && stderr.includes("evaluating on 150 test documents")) {
        signalled = performance.now()
        child.kill("SIGTERM")
      }
    }
    expect(await child.exited).toBe(130)
    expect(performance.now() - signalled!).toBeLessThan(5_000)
    expect(stderr).toContain("stopped during the final evaluation; the checkpoint (step 4) is kept")
    expect(existsSync(join(runDir, "summary.json"))).toBe(false)
    const resumed = cli(["--resume", runDir])
    expect(resumed.code).toBe(0)
    const [a, b] = [straight, resumed].map((r) => JSON.parse(r.stdout.trim().split("\n").at(-1)!))
    for (const key of ["testLoss", "testError", "testAdversarialLoss", "testVirtualAdversarialLoss", "validationError", "steps"]) expect(b[key]).toBe(a[key])
  }, 120_000)

  test("a stop during a periodic validation leaves it out of the log; --resume runs it first, so the log equals the uninterrupted run's", async () => {
    const config = tinyConfig(writeTinyDataset(tempDir(), { train: 120, test: 40 }), { train: { steps: 8, evalEvery: 3 } })
    const straight = join(tempDir(), "straight")
    expect((await Effect.runPromise(runPipeline(config, { runDir: straight, progress: silentProgress }))).status).toBe("completed")
    const runDir = join(tempDir(), "stopped")
    const stop: StopSignal = { requested: false }
    // onStep runs before the step's validation: the stop arrives as the validation of step 6 begins.
    const first = await Effect.runPromise(runPipeline(config, { runDir, progress: silentProgress, stop, onStep: (m) => void (m.step === 6 && (stop.requested = true)) }))
    expect(first).toEqual({ status: "interrupted", step: 6 })
    expect(metricLines(runDir).some((m) => m.step === 6 && "validationError" in m)).toBe(false)
    expect((await Effect.runPromise(runPipeline(config, { runDir, progress: silentProgress, resume: true }))).status).toBe("completed")
    expect(metricLines(runDir)).toEqual(metricLines(straight))
  })
})

test("a pretrained restore from a classifier run checks its classes too (case 2)", async () => {
  const data = writeTinyDataset(tempDir(), { train: 80, test: 20 })
  const source = join(tempDir(), "source")
  expect((await Effect.runPromise(runPipeline(tinyConfig(data, { train: { steps: 2 } }), { runDir: source, progress: silentProgress }))).status).toBe("completed")
  // The same texts (so the same vocabulary), some relabelled into a third class.
  const train = readFileSync(join(data, "train.tsv"), "utf8")
  writeFileSync(join(data, "train3.tsv"), train.split("\n").map((l, i) => (i % 10 === 0 && l ? l.replace(/^\w+\t/, "meh\t") : l)).join("\n"))
  const config = tinyConfig(data, { pretrained: source, dataset: { train: join(data, "train3.tsv") }, train: { steps: 2 } })
  const outcome = await Effect.runPromise(Effect.result(runPipeline(config, { runDir: join(tempDir(), "r"), progress: silentProgress })))
  expect(outcome._tag).toBe("Failure")
  if (outcome._tag === "Failure") {
    expect(outcome.failure._tag).toBe("PretrainedMismatch")
    expect(outcome.failure.message).toContain('trained on classes 2 ("neg", "pos") but the data has classes 3 ("meh", "neg", "pos")')
  }
})

describe("interruptible evaluation passes", () => {
  /** A pass of `n` batches taking `ms` each; `released` turns true when its finally block runs. */
  function* slowPass(n: number, ms: number, state: { released: boolean }) {
    try {
      for (let i = 1; i <= n; i++) {
        Bun.sleepSync(ms)
        yield i
      }
      return "done"
    } finally {
      state.released = true
    }
  }
  const recording = () => {
    const statuses: Array<string> = []
    return { statuses, progress: { ...silentProgress, status: (text: string) => void statuses.push(text) } }
  }

  test("a pass longer than 3 s shows its progress and ETA; a short one stays quiet", async () => {
    const long = recording()
    const state = { released: false }
    expect(await Effect.runPromise(interruptible("test evaluation", slowPass(40, 100, state), 40, { requested: false }, long.progress))).toBe("done")
    expect(state.released).toBe(true)
    expect(long.statuses.length).toBeGreaterThan(0)
    expect(long.statuses.at(-1)).toMatch(/^test evaluation: batch 40\/40 {2}ETA 0s$/)
    expect(long.statuses[0]).toMatch(/^test evaluation: batch \d+\/40 {2}ETA \d+s$/)
    const short = recording()
    expect(await Effect.runPromise(interruptible("validation", slowPass(5, 1, { released: false }), 5, { requested: false }, short.progress))).toBe("done")
    expect(short.statuses).toEqual([])
  })

  test("a stop request ends the pass between batches, releasing it", async () => {
    const stop: StopSignal = { requested: false }
    const state = { released: false }
    setTimeout(() => (stop.requested = true), 50)
    expect(await Effect.runPromise(interruptible("test evaluation", slowPass(1000, 5, state), 1000, stop, silentProgress))).toBeUndefined()
    expect(state.released).toBe(true)
  })
})
