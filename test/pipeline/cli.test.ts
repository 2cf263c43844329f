/** The CLI as a user meets it: exit codes and one-paragraph messages, never a stack trace. */
import { describe, expect, test } from "bun:test"
import { existsSync, readFileSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { CLI, cli, configFile, noStackTrace, tempDir, writeTinyDataset } from "./fixtures.ts"

describe("cli", () => {
  const data = writeTinyDataset(tempDir(), { train: 60, test: 20 })
  const tinyDataset = `{ kind: "custom", train: ${JSON.stringify(join(data, "train.tsv"))}, test: ${JSON.stringify(join(data, "test.tsv"))} }`

  test("runs a config and prints the summary JSON", () => {
    const runDir = join(tempDir(), "run")
    const r = cli([configFile(tempDir(), tinyDataset), "--run-dir", runDir, "--set", "train.steps=4"])
    expect(r.code).toBe(0)
    const summary = JSON.parse(r.stdout.trim().split("\n").at(-1)!)
    expect(summary.steps).toBe(4)
    expect(existsSync(join(runDir, "summary.json"))).toBe(true)
    expect(r.stderr).toContain("backend")
  })

  test("runs in a fresh process with BLAS off (tfjs's own kernels)", () => {
    const r = cli([configFile(tempDir(), tinyDataset), "--run-dir", join(tempDir(), "run"), "--set", "blas=off", "--set", "train.steps=2"])
    expect(r.code).toBe(0)
    expect(r.stderr).toContain("tfjs matmul, reference LSTM")
  })

  test("a bad config lists every invalid field at once and exits 2", () => {
    const r = cli([configFile(tempDir(), tinyDataset, `seed: -1, modle: {}, method: "magic",`), "--set", "train.batchSize=0", "--set", "train.nope=1"])
    expect(r.code).toBe(2)
    for (const needle of ["seed", "modle", "method", "train.batchSize", "train.nope"]) expect(r.stderr).toContain(needle)
    noStackTrace(r.stderr)
  })

  test("an unknown flag prints the usage and exits 2 without a stack trace", () => {
    const r = cli([configFile(tempDir(), tinyDataset), "--no-such-flag", "1"])
    expect(r.code).toBe(2)
    expect(r.stderr + r.stdout).toContain("--no-such-flag")
    noStackTrace(r.stderr)
  })

  test("a missing config file or a malformed --set exits 2", () => {
    expect(cli(["/nonexistent/config.ts"]).code).toBe(2)
    const r = cli([configFile(tempDir(), tinyDataset), "--set", "no-equals-sign"])
    expect(r.code).toBe(2)
    expect(r.stderr).toContain("key=value")
  })

  test("a missing archive with downloads disabled names where it looked and how to fix it", () => {
    const empty = tempDir()
    const r = cli([configFile(tempDir(), `{ kind: "rt", download: false }`), "--data-dir", empty, "--run-dir", join(tempDir(), "r")], {
      ADVTEXT_DATA_DIR: "",
      XDG_CACHE_HOME: tempDir()
    })
    expect(r.code).toBe(1)
    expect(r.stderr).toContain("DataNotFound")
    expect(r.stderr).toContain(empty)
    expect(r.stderr).toContain("--data-dir")
    noStackTrace(r.stderr)
  })

  test("a corrupt archive that fails its SHA256SUMS check is rejected", () => {
    const dir = tempDir()
    writeFileSync(join(dir, "rt-polaritydata.tar.gz"), "not an archive")
    writeFileSync(join(dir, "SHA256SUMS"), `${"0".repeat(64)}  rt-polaritydata.tar.gz\n`)
    const r = cli([configFile(tempDir(), `{ kind: "rt", download: false }`), "--data-dir", dir, "--run-dir", join(tempDir(), "r")])
    expect(r.code).toBe(1)
    expect(r.stderr).toContain("ChecksumMismatch")
    noStackTrace(r.stderr)
  })

  test("an archive that is not gzip is reported as corrupt", () => {
    const dir = tempDir()
    writeFileSync(join(dir, "rt-polaritydata.tar.gz"), "not an archive at all, just text")
    const r = cli([configFile(tempDir(), `{ kind: "rt", download: false }`), "--data-dir", dir, "--run-dir", join(tempDir(), "r")])
    expect(r.code).toBe(1)
    expect(r.stderr).toContain("CorruptArchive")
    noStackTrace(r.stderr)
  })

  test("empty, one-class and undecodable datasets get typed errors", () => {
    const dir = tempDir()
    writeFileSync(join(dir, "empty.tsv"), "")
    writeFileSync(join(dir, "one.tsv"), "pos\tgood film\npos\tgreat film\npos\tfine film\n")
    writeFileSync(join(dir, "bad.tsv"), Buffer.concat([Buffer.from("pos\tgood "), Buffer.from([0xff, 0xfe]), Buffer.from(" film\n")]))
    const cases: Array<[string, string]> = [
      ["empty.tsv", "InvalidDataset"],
      ["one.tsv", "InvalidDataset"],
      ["bad.tsv", "DecodeError"]
    ]
    for (const [file, tag] of cases) {
      const r = cli([configFile(tempDir(), `{ kind: "custom", train: ${JSON.stringify(join(dir, file))} }`), "--run-dir", join(tempDir(), "r")])
      expect(r.code).toBe(1)
      expect(r.stderr).toContain(tag)
      noStackTrace(r.stderr)
    }
  })

  test("an unwritable run dir is a RunDirError", () => {
    const dir = tempDir()
    writeFileSync(join(dir, "a-file"), "")
    const r = cli([configFile(tempDir(), tinyDataset), "--run-dir", join(dir, "a-file", "run")])
    expect(r.code).toBe(1)
    expect(r.stderr).toContain("RunDirError")
    expect(r.stderr).toContain("--run-dir")
    noStackTrace(r.stderr)
  })

  test("an unavailable explicit backend is an error, not a silent fallback", () => {
    const r = cli([configFile(tempDir(), tinyDataset), "--set", "backend=tensorflow", "--run-dir", join(tempDir(), "r")])
    expect(r.code).toBe(1)
    expect(r.stderr).toContain("BackendError")
    noStackTrace(r.stderr)
  })

  test("SIGINT finishes the step, writes a checkpoint, exits 130; --resume completes the run", async () => {
    const runDir = join(tempDir(), "run")
    const config = configFile(tempDir(), tinyDataset)
    const child = Bun.spawn(["bun", CLI, config, "--run-dir", runDir, "--set", "train.steps=100000", "--set", "train.checkpointEvery=100000"], {
      stdout: "pipe",
      stderr: "pipe"
    })
    // Wait until training has started (the first metrics line exists), then interrupt.
    const metrics = join(runDir, "metrics.jsonl")
    const deadline = Date.now() + 60_000
    while (!(existsSync(metrics) && readFileSync(metrics, "utf8").length > 0) && Date.now() < deadline) await Bun.sleep(50)
    child.kill("SIGINT")
    expect(await child.exited).toBe(130)
    expect(existsSync(join(runDir, "checkpoint.ckpt"))).toBe(true)
    const stderr = await new Response(child.stderr).text()
    expect(stderr).toContain("--resume")
    const resumed = cli(["--resume", runDir, "--set", "train.steps=5"])
    expect(resumed.code).toBe(0)
    expect(JSON.parse(readFileSync(join(runDir, "summary.json"), "utf8")).steps).toBeGreaterThanOrEqual(5)
  })
})
