/**
 * Property tests on the loss math of the perturbation methods (paper §3, spec A3).
 */
import { beforeAll, describe, expect, test } from "bun:test"
import * as tf from "@tensorflow/tfjs-core"
import { Effect } from "effect"
import fc from "fast-check"
import { selectBackend } from "../../src/engine/backend.ts"
import { head, initialParams, lstm, type Params } from "../../src/model/classifier.ts"
import { createTrainState, disposeTrainState, OPTIMIZER_DEFAULTS } from "../../src/model/optimizer.ts"
import { rng } from "../../src/random.ts"
import { makeBatch } from "../../src/stages/batch.ts"
import {
  adversarialPerturbation,
  beforeEosMask,
  classificationLoss,
  gaussian,
  klDivergence,
  scaleL2,
  virtualAdversarialPerturbation,
  type Method
} from "../../src/method/method.ts"
import { type StepOptions, stepGradients, trainStep } from "../../src/stages/train.ts"
import { tidy } from "../../src/engine/tidy.ts"
import { selectInBeforeAll } from "../helpers.ts"

const backend = selectInBeforeAll(() => Effect.runPromise(selectBackend("auto")))

const norms = (x: tf.Tensor): Array<number> =>
  tidy(() => Array.from(tf.sqrt(tf.sum(tf.square(tf.cast(x, "float32")), x.shape.map((_, i) => i).slice(1))).dataSync()))

describe("scaleL2", () => {
  test("has norm ε per example for any nonzero x (magnitudes 1e-20…1e20), maps zero rows to zero, never NaN/Inf", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 4 }),
        fc.integer({ min: 1, max: 6 }),
        fc.integer({ min: 1, max: 5 }),
        fc.integer({ min: -20, max: 20 }),
        fc.double({ min: 0.01, max: 10, noNaN: true }),
        fc.integer({ min: 0, max: 1 << 30 }),
        (B, T, D, exponent, epsilon, seed) => {
          const random = rng(seed, "scale")
          const values = new Float32Array(B * T * D)
          const zeroRow = B > 1 ? random.int(B) : -1
          for (let i = 0; i < values.length; i++) {
            if (Math.floor(i / (T * D)) === zeroRow) continue
            values[i] = random.normal() * 10 ** exponent * (random.uniform() < 0.3 ? 0 : 1)
          }
          // make sure every non-zero row has at least one nonzero entry
          for (let b = 0; b < B; b++) if (b !== zeroRow) values[b * T * D] = 10 ** exponent
          tidy(() => {
            const out = scaleL2(tf.tensor3d(values, [B, T, D]), epsilon)
            const data = out.dataSync()
            for (const v of data) expect(Number.isFinite(v)).toBe(true)
            norms(out).forEach((n, b) => (b === zeroRow ? expect(n).toBe(0) : expect(Math.abs(n - epsilon) / epsilon).toBeLessThan(1e-5)))
          })
        }
      ),
      { numRuns: 150 }
    )
  })

  test("keeps the direction", () => {
    tidy(() => {
      const x = tf.tensor3d([3, 4, 0, 0], [1, 2, 2])
      expect(Array.from(scaleL2(x, 10).dataSync())).toEqual([6, 8, 0, 0])
    })
  })
})

describe("KL divergence", () => {
  const logitsArb = (classes: number) => fc.array(fc.double({ min: -30, max: 30, noNaN: true }), { minLength: classes, maxLength: classes })

  test("KL ≥ 0 for any logits, = 0 for equal distributions (Bernoulli and categorical)", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 5 }), fc.integer({ min: 0, max: 1e9 }), (classes, seed) => {
        const random = rng(seed, "kl")
        const C = classes === 2 ? 3 : classes // 1 logit (Bernoulli) or ≥ 3 (categorical)
        const q = Array.from({ length: 4 * C }, () => random.normal() * 8)
        const p = Array.from({ length: 4 * C }, () => random.normal() * 8)
        tidy(() => {
          const kl = klDivergence(tf.tensor2d(q, [4, C]), tf.tensor2d(p, [4, C])).dataSync()
          for (const v of kl) expect(v).toBeGreaterThanOrEqual(-1e-6)
          const same = klDivergence(tf.tensor2d(q, [4, C]), tf.tensor2d(q, [4, C])).dataSync()
          for (const v of same) expect(Math.abs(v)).toBeLessThan(1e-6)
        })
      }),
      { numRuns: 100 }
    )
  })

  test("KL = 0 only when the distributions are equal", () => {
    fc.assert(
      fc.property(logitsArb(1), logitsArb(1), ([q], [p]) => {
        fc.pre(Math.abs(q - p) > 1e-2 && Math.abs(q) < 15 && Math.abs(p) < 15)
        tidy(() => expect(klDivergence(tf.tensor2d([[q]]), tf.tensor2d([[p]])).dataSync()[0]).toBeGreaterThan(0))
      }),
      { numRuns: 100 }
    )
  })

  test("the Bernoulli form (one logit z) equals the categorical form (logits [0, z]) for 2 classes", () => {
    fc.assert(
      fc.property(logitsArb(1), logitsArb(1), ([q], [p]) => {
        tidy(() => {
          const bern = klDivergence(tf.tensor2d([[q]]), tf.tensor2d([[p]])).dataSync()[0]
          const cat = klDivergence(tf.tensor2d([[0, q]]), tf.tensor2d([[0, p]])).dataSync()[0]
          expect(Math.abs(bern - cat)).toBeLessThan(1e-4 * Math.max(1, Math.abs(cat)))
        })
      }),
      { numRuns: 200 }
    )
  })
})

/** A tiny random model and an embedded window for it. */
function tinyModel(seed: number, shape = { vocabSize: 12, embeddingDim: 3, lstmUnits: 4, hiddenUnits: 5, numClasses: 2 }) {
  const params = initialParams(shape, rng(seed, "tiny-init")) as Params
  return params
}

describe("adversarial direction", () => {
  test("first-order loss increase ≈ ε‖g‖, and it beats random directions of the same norm", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 1e9 }), (seed) => {
        const params = tinyModel(seed)
        tidy(() => {
          const random = rng(seed, "adv")
          const B = 3
          const T = 4
          const lengths = Int32Array.from([4, 3, 2])
          const e = gaussian([B, T, 3], random) as tf.Tensor3D
          const labels = tf.tensor1d([0, 1, 1], "int32")
          const loss = (x: tf.Tensor3D) => classificationLoss(head(params, lstm(backend().engine, params, x, lengths, undefined).h).logits, labels)
          const g = tf.grad((x: tf.Tensor) => loss(x as tf.Tensor3D))(e) as tf.Tensor3D
          const epsilon = 1e-3
          // The model is smooth except at the ReLU kinks; a linearization only holds where no hidden unit switches
          // on or off within ±r, so such draws are skipped.
          const activePattern = (x: tf.Tensor) => Array.from(head(params, lstm(backend().engine, params, x as tf.Tensor3D, lengths, undefined).h).hidden.dataSync(), (v) => v > 0)
          const smoothAlong = (r: tf.Tensor) => {
            const at = activePattern(e)
            return [tf.add(e, r), tf.sub(e, r)].every((x) => activePattern(x).every((v, i) => v === at[i]))
          }
          // The first-order change along r, by a central difference (the second-order term cancels).
          const firstOrder = (r: tf.Tensor) => (loss(tf.add(e, r) as tf.Tensor3D).dataSync()[0] - loss(tf.sub(e, r) as tf.Tensor3D).dataSync()[0]) / 2
          const rAdv = adversarialPerturbation(g, epsilon)
          fc.pre(smoothAlong(rAdv))
          const increase = firstOrder(rAdv)
          // Σ_b ε‖g_b‖: the norm is per example; g already carries the mean's 1/B.
          const predicted = norms(g).reduce((a, n) => a + epsilon * n, 0)
          fc.pre(predicted > 1e-5)
          expect(Math.abs(increase - predicted) / predicted).toBeLessThan(0.05)
          for (let k = 0; k < 5; k++) expect(firstOrder(scaleL2(gaussian([B, T, 3], random), epsilon))).toBeLessThan(increase)
        })
        tf.dispose(Object.values(params))
      }),
      { numRuns: 25 }
    )
  })
})

/** Symmetric eigen-decomposition's dominant eigenvector by many power iterations on a small matrix. */
function dominantEigenvector(h: Array<Array<number>>): Array<number> {
  // Shift to make the spectrum positive so power iteration finds the largest eigenvalue (the Hessian is PSD at d = 0).
  let v = h.map((_, i) => 1 + i * 0.1)
  for (let it = 0; it < 2000; it++) {
    const w = h.map((row) => row.reduce((a, x, j) => a + x * v[j], 0))
    const n = Math.hypot(...w)
    v = w.map((x) => x / n)
  }
  return v
}

describe("virtual adversarial direction", () => {
  test("power iteration approaches the dominant eigenvector of the KL Hessian (computed exactly on a tiny model)", () => {
    const seeds = [1, 2, 3, 4]
    for (const seed of seeds) {
      const params = tinyModel(seed, { vocabSize: 8, embeddingDim: 2, lstmUnits: 3, hiddenUnits: 4, numClasses: 3 })
      tidy(() => {
        const random = rng(seed, "vat")
        const T = 3
        const lengths = Int32Array.from([T])
        const e = tf.mul(gaussian([1, T, 2], random), 2) as tf.Tensor3D
        const logits = (x: tf.Tensor3D) => head(params, lstm(backend().engine, params, x, lengths, undefined).h).logits
        const q = logits(e)
        const kl = (d: tf.Tensor3D) => tf.sum(klDivergence(q, logits(tf.add(e, d) as tf.Tensor3D))) as tf.Scalar
        const gradAt = (d: Array<number>) => Array.from(tf.grad((x: tf.Tensor) => kl(x as tf.Tensor3D))(tf.tensor3d(d, [1, T, 2])).dataSync())
        // Coordinates the probe may use: all but the EOS step (mask_by_length) → t = 0, 1.
        const free = [0, 1, 2, 3]
        const n = T * 2
        const h = 1e-2
        const hessian = free.map((k) => {
          const plus = new Array(n).fill(0)
          const minus = new Array(n).fill(0)
          plus[k] = h
          minus[k] = -h
          const gp = gradAt(plus)
          const gm = gradAt(minus)
          return free.map((j) => (gp[j] - gm[j]) / (2 * h))
        })
        const symmetric = hessian.map((row, i) => row.map((x, j) => (x + hessian[j][i]) / 2))
        const v = dominantEigenvector(symmetric)
        const r = virtualAdversarialPerturbation(e.shape, lengths, { epsilon: 1, xi: 1e-2, iterations: 30 }, kl, gaussian([1, T, 2], random) as tf.Tensor3D)
        const masked = Array.from(tf.mul(r, beforeEosMask(lengths, T)).dataSync()).slice(0, 4)
        const cos = Math.abs(masked.reduce((a, x, i) => a + x * v[i], 0)) / Math.hypot(...masked)
        expect(cos).toBeGreaterThan(0.98)
      })
      tf.dispose(Object.values(params))
    }
  })
})

/** A tiny training setup: a labeled and an unlabeled batch, a state, options for `method`. */
function setup(method: Method, seed = 5, extra: Partial<StepOptions> = {}, window = 5) {
  const random = rng(seed, "setup")
  const V = 15
  const docs = (n: number, labeled: boolean) =>
    Array.from({ length: n }, (_, i) => ({ ids: Int32Array.from({ length: 2 + random.int(6) }, (_, k, ) => (k === 0 ? 1 + random.int(V - 2) : 1 + random.int(V - 2))).map((x, k, a) => (k === a.length - 1 ? V - 1 : x)), label: labeled ? i % 2 : -1 }))
  const labeled = makeBatch(docs(6, true), window)
  const unlabeled = makeBatch(docs(10, false), window)
  const initial = initialParams({ vocabSize: V, embeddingDim: 4, lstmUnits: 5, hiddenUnits: 6, numClasses: 2 }, rng(seed, "init"))
  const state = createTrainState(initial)
  tf.dispose(Object.values(initial))
  const frequencies = tf.tensor1d(Array.from({ length: V }, (_, i) => (i + 1) / ((V * (V + 1)) / 2)))
  const options: StepOptions = {
    engine: backend().engine,
    seed,
    embeddingKeepProb: 0.7,
    normalizeEmbeddings: true,
    optimizer: { ...OPTIMIZER_DEFAULTS, learningRate: 0.01, learningRateDecay: 1 },
    method,
    perturbation: { epsilon: 0.5, xi: 0.1, powerIterations: 1, lambda: 1, vatMicroBatch: 0 },
    ...extra
  }
  return { state, frequencies, options, batches: { step: 0, labeled, unlabeled }, dispose: () => (disposeTrainState(state), frequencies.dispose()) }
}

describe("gradient flow of the total loss", () => {
  /**
   * Finite differences of the total loss with the perturbation r (AT) or the clean distribution q and r (VAT) frozen
   * at their current values must match the step's gradient: no gradient flows through their construction.
   */
  for (const method of ["adversarial", "virtual"] as const) {
    test(`${method}: the step gradient equals finite differences with the stop-gradient parts frozen`, () => {
      // A window longer than every document: no prefix state, so `frozen` below sees exactly the step's inputs.
      const s = setup(method, 11, { embeddingKeepProb: 1, normalizeEmbeddings: false }, 400)
      const name = "head/hiddenKernel"
      tidy(() => {
        const g = stepGradients(s.state, s.batches, s.frequencies, s.options)
        const analytic = Array.from(g.grads[name].dataSync())
        const params = s.state.params as Params
        // Frozen pieces, computed at the current weights exactly as the step does.
        const lab = s.batches.labeled
        const embedOf = (p: Params, b: typeof lab) => tf.reshape(tf.gather(p.embedding, tf.reshape(tf.tensor2d(b.ids, [b.size, b.steps], "int32"), [-1])), [b.size, b.steps, -1]) as tf.Tensor3D
        const labels = tf.tensor1d(lab.labels, "int32")
        const loss = (p: Params, e: tf.Tensor3D) => classificationLoss(head(p, lstm(backend().engine, p, e, lab.lengths, undefined).h).logits, labels)
        let frozen: (p: Params) => number
        if (method === "adversarial") {
          const e0 = embedOf(params, lab)
          const r = adversarialPerturbation(tf.grad((x: tf.Tensor) => loss(params, x as tf.Tensor3D))(e0) as tf.Tensor3D, 0.5)
          frozen = (p) => loss(p, embedOf(p, lab)).dataSync()[0] + loss(p, tf.add(embedOf(p, lab), r) as tf.Tensor3D).dataSync()[0]
        } else {
          const u = s.batches.unlabeled
          const eu = embedOf(params, u)
          const logitsU = (p: Params, e: tf.Tensor3D) => head(p, lstm(backend().engine, p, e, u.lengths, undefined).h).logits
          const q = logitsU(params, eu)
          const noise = gaussian(eu.shape, rng(11, "kl-noise", 0)) as tf.Tensor3D
          const r = virtualAdversarialPerturbation(eu.shape, u.lengths, { epsilon: 0.5, xi: 0.1, iterations: 1 }, (d) => tf.sum(klDivergence(q, logitsU(params, tf.add(eu, d) as tf.Tensor3D))) as tf.Scalar, noise)
          frozen = (p) => loss(p, embedOf(p, lab)).dataSync()[0] + tf.mean(klDivergence(q, logitsU(p, tf.add(embedOf(p, u), r) as tf.Tensor3D))).dataSync()[0]
        }
        const base = params[name].dataSync()
        const h = 2e-3
        let checked = 0
        for (let k = 0; k < base.length && checked < 6; k++) {
          if (Math.abs(analytic[k]) < 1e-3) continue
          const at = (delta: number) => {
            const v = Float32Array.from(base)
            v[k] += delta
            return tidy(() => frozen({ ...params, [name]: tf.tensor(v, params[name].shape) }))
          }
          const numeric = (at(h) - at(-h)) / (2 * h)
          expect(Math.abs(numeric - analytic[k])).toBeLessThan(0.05 * Math.abs(analytic[k]) + 2e-4)
          checked++
        }
        expect(checked).toBeGreaterThan(0)
      })
      s.dispose()
    })
  }
})

describe("training steps", () => {
  test("micro-batched VAT equals the whole-batch computation", () => {
    const whole = setup("virtual", 21)
    const micro = setup("virtual", 21, { perturbation: { epsilon: 0.5, xi: 0.1, powerIterations: 1, lambda: 1, vatMicroBatch: 3 } })
    tidy(() => {
      const a = stepGradients(whole.state, whole.batches, whole.frequencies, whole.options)
      const b = stepGradients(micro.state, micro.batches, micro.frequencies, micro.options)
      expect(Math.abs((b.virtualLoss ?? 0) - (a.virtualLoss ?? 0))).toBeLessThan(1e-6)
      for (const [name, g] of Object.entries(a.grads)) {
        const x = g.dataSync()
        const y = b.grads[name].dataSync()
        const scale = Math.max(1e-6, ...Array.from(x, Math.abs))
        for (let i = 0; i < x.length; i++) expect(Math.abs(x[i] - y[i])).toBeLessThan(1e-4 * scale)
      }
    })
    whole.dispose()
    micro.dispose()
  })

  for (const method of ["baseline", "random", "random-unlabeled", "adversarial", "virtual", "adversarial+virtual"] as const) {
    test(`${method}: same seed ⇒ identical losses for 20 steps; numTensors flat`, () => {
      const run = () => {
        const s = setup(method, 31)
        const losses: Array<number> = []
        const before = tf.memory().numTensors
        for (let i = 0; i < 20; i++) {
          const r = trainStep(s.state, { ...s.batches, step: i }, s.frequencies, s.options)
          expect(r.ok).toBe(true)
          if (r.ok) losses.push(r.metrics.loss)
          if (i === 0) expect(tf.memory().numTensors).toBe(before)
        }
        expect(tf.memory().numTensors).toBe(before)
        s.dispose()
        return losses
      }
      const a = run()
      expect(run()).toEqual(a)
    })
  }
})
