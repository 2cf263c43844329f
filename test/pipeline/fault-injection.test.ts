/**
 * Fault injection (issue 13): a tiny run killed with SIGKILL at random moments — in data loading, mid-step, mid-append
 * to metrics.jsonl, mid-checkpoint-write, in the final evaluation — always continues (with --resume when a checkpoint
 * exists, else by starting again) and ends with the uninterrupted run's summary and metrics log.
 */
import { expect, test } from "bun:test"
import { existsSync, statSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { CHECKPOINT } from "../../src/model/checkpoint.ts"
import { rng } from "../../src/random.ts"
import { CLI, cli, configFile, metricLines, tempDir, writeTinyDataset } from "./fixtures.ts"

const KILLS = 20

const metricsLength = (runDir: string) => {
  try {
    return statSync(join(runDir, "metrics.jsonl")).size
  } catch {
    return -1
  }
}

test(`${KILLS}+ SIGKILLs at random moments: every run resumes and ends with the uninterrupted summary and log`, async () => {
  const data = writeTinyDataset(tempDir(), { train: 120, test: 40 })
  const dataset = `{ kind: "custom", train: ${JSON.stringify(join(data, "train.tsv"))}, test: ${JSON.stringify(join(data, "test.tsv"))} }`
  const config = configFile(tempDir(), dataset, `method: "adversarial",`)
  // A checkpoint every step, so kills land in checkpoint writes too; a validation every 5 steps.
  const args = ["--set", "train.steps=24", "--set", "train.checkpointEvery=1", "--set", "train.evalEvery=5", "--set", "train.logEvery=1000"]
  const reference = join(tempDir(), "reference")
  const straight = cli([config, "--run-dir", reference, ...args])
  expect(straight.code).toBe(0)
  const expected = JSON.parse(straight.stdout.trim().split("\n").at(-1)!)
  const withoutWall = ({ wallSeconds: _w, ...rest }: Record<string, unknown>) => rest

  const random = rng(11, "fault-injection")
  let kills = 0
  let rounds = 0
  let resumes = 0
  while (kills < KILLS) {
    rounds++
    const runDir = join(tempDir(), `round-${rounds}`)
    for (;;) {
      const resume = existsSync(join(runDir, CHECKPOINT))
      if (resume) resumes++
      // What a kill inside writeCheckpoint leaves: a torn temporary file next to the intact checkpoint.
      if (resume && random.uniform() < 0.2) writeFileSync(join(runDir, `${CHECKPOINT}.tmp`), "ADVTEXT1 torn")
      const child = Bun.spawn(["bun", CLI, ...(resume ? ["--resume", runDir] : [config, "--run-dir", runDir, ...args])], { stdout: "pipe", stderr: "pipe" })
      const stdout = new Response(child.stdout).text()
      const stderr = new Response(child.stderr).text()
      if (kills < KILLS) {
        // A third of the kills at a random moment from the start (startup, data loading, early steps); the rest at a
        // random moment after the child has logged a new step (training, checkpoint writes, evaluations).
        const logged = metricsLength(runDir)
        const fromStart = random.uniform() < 1 / 3
        const delay = fromStart ? random.int(2000) : random.int(600)
        const exited = child.exited.then(() => true)
        if (!fromStart) while (metricsLength(runDir) <= logged && !(await Promise.race([exited, Bun.sleep(20).then(() => false)]))) {}
        if (!(await Promise.race([exited, Bun.sleep(delay).then(() => false)]))) {
          child.kill("SIGKILL")
          await child.exited
          kills++
          continue
        }
      }
      await child.exited
      const why = `round ${rounds} after ${kills} kills: ${await stderr}`
      expect({ code: child.exitCode, why }).toEqual({ code: 0, why })
      expect(withoutWall(JSON.parse((await stdout).trim().split("\n").at(-1)!))).toEqual(withoutWall(expected))
      expect(metricLines(runDir)).toEqual(metricLines(reference))
      break
    }
  }
  expect(kills).toBeGreaterThanOrEqual(KILLS)
  // Most kills land after a checkpoint: the runs really were resumed, not just restarted.
  expect(resumes).toBeGreaterThan(KILLS / 2)
}, 600_000)
