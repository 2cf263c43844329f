/**
 * Divergence guard: stops a run whose loss has blown up (long before it reaches NaN) or whose hidden layer has died,
 * and makes sure the checkpoint left behind predates the first bad step, so `--resume` never starts from a diverged
 * state. The rules (config section `guard`, 0 disables each):
 *   - the clean loss above `lossFactor` × chance loss (ln classes; for an LM ln V per direction): no healthy run gets
 *     there, while learning rates of 1e6+ reach 1e5…1e14 within a step or two;
 *   - after `warmup` steps, the total loss above `spikeFactor` × the median of the last `window` steps and above twice
 *     the chance loss (a noisy batch of a well-fit model is not a divergence);
 *   - every hidden unit dead (zero on the whole batch) for `deadSteps` consecutive steps: the classifier then outputs a
 *     constant.
 */
import { existsSync, linkSync, renameSync, rmSync } from "node:fs"
import { join } from "node:path"
import { CHECKPOINT, previousCheckpoint, readCheckpointHeader } from "../model/checkpoint.ts"

export interface GuardConfig {
  readonly lossFactor: number
  readonly spikeFactor: number
  readonly warmup: number
  readonly window: number
  readonly deadSteps: number
}

export interface GuardedMetrics {
  readonly step: number
  /** Total loss (what is optimized). */
  readonly loss: number
  /** The clean loss alone (the classifier's ℓ; an LM's loss). */
  readonly nll: number
  /** Hidden units dead on the batch; undefined where the model has no such layer. */
  readonly deadUnits?: number
}

export class DivergenceGuard {
  private readonly recent: Array<number> = []
  private deadStreak = 0

  /**
   * @param chanceLoss the clean loss of a uniform prediction (ln classes), the scale of the absolute rule
   * @param hiddenUnits the classifier's hidden units (0: no dead-unit rule)
   */
  constructor(
    private readonly config: GuardConfig,
    private readonly chanceLoss: number,
    private readonly hiddenUnits: number
  ) {}

  /** Record a step's metrics; returns why the run has diverged, or undefined. */
  observe(m: GuardedMetrics): string | undefined {
    const { lossFactor, spikeFactor, warmup, window, deadSteps } = this.config
    const median = this.median()
    this.recent.push(m.loss)
    if (this.recent.length > window) this.recent.shift()
    this.deadStreak = m.deadUnits !== undefined && this.hiddenUnits > 0 && m.deadUnits >= this.hiddenUnits ? this.deadStreak + 1 : 0
    if (lossFactor > 0 && m.nll > lossFactor * this.chanceLoss) {
      return `the loss ${fmt(m.nll)} is above guard.lossFactor × chance loss = ${lossFactor} × ${fmt(this.chanceLoss)}`
    }
    if (spikeFactor > 0 && median !== undefined && m.step > warmup && m.loss > spikeFactor * median && m.loss > 2 * this.chanceLoss) {
      return `the loss ${fmt(m.loss)} is above guard.spikeFactor × its median over the previous ${window} steps = ${spikeFactor} × ${fmt(median)}`
    }
    if (deadSteps > 0 && this.deadStreak >= deadSteps) {
      return `all ${this.hiddenUnits} hidden units have been dead (zero on the whole batch) for ${this.deadStreak} consecutive steps (guard.deadSteps ${deadSteps})`
    }
    return undefined
  }

  private median(): number | undefined {
    if (this.config.window <= 0 || this.recent.length < this.config.window) return undefined
    const sorted = [...this.recent].sort((a, b) => a - b)
    const mid = sorted.length >> 1
    return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
  }
}

const fmt = (x: number) => (Math.abs(x) >= 1e4 || (x !== 0 && Math.abs(x) < 1e-3) ? x.toExponential(3) : x.toFixed(4))

/**
 * After a divergence first seen in the loss computed from the weights of step `firstBadWeights` (the weights after
 * that many updates), make the run dir's checkpoint one written before them: keep it when it is older, else fall back
 * to the previous checkpoint, else move it aside. The diverged checkpoint is never deleted: it stays as
 * `checkpoint.diverged.ckpt` for inspection. Returns a sentence for the error message.
 */
export function keepCheckpointBefore(runDir: string, firstBadWeights: number): string {
  const path = join(runDir, CHECKPOINT)
  if (!existsSync(path)) return "no checkpoint had been written yet"
  const step = readCheckpointHeader(path).step
  if (step < firstBadWeights) return `the checkpoint ${path} (step ${step}) predates it and is kept; --resume continues from it`
  const aside = join(runDir, "checkpoint.diverged.ckpt")
  rmSync(aside, { force: true })
  const prev = previousCheckpoint(path)
  const prevStep = existsSync(prev) ? readCheckpointHeader(prev).step : undefined
  if (prevStep !== undefined && prevStep < firstBadWeights) {
    // link, then rename over: checkpoint.ckpt is a complete checkpoint at every moment.
    linkSync(path, aside)
    renameSync(prev, path)
    return `the checkpoint of step ${step} already held diverged weights (moved to ${aside}); the one of step ${prevStep} is back as ${path}, and --resume continues from it`
  }
  renameSync(path, aside)
  return `the only checkpoint (step ${step}) already held diverged weights; it was moved to ${aside}, so this run has no checkpoint to resume`
}
