import { loadBlas } from "./src/engine/blas.ts"
import { lstmForward, lstmBackward } from "./src/engine/fused-lstm.ts"
const blas = loadBlas()!
const [B, T, D, H] = (process.argv[2] ?? "32,50,128,256").split(",").map(Number)
const rnd = (n: number, s = 0.1) => Float32Array.from({ length: n }, () => (Math.random() * 2 - 1) * s)
const w = { inputKernel: rnd(D * 4 * H), recurrentKernel: rnd(H * 4 * H), bias: rnd(4 * H) }
const x = rnd(B * T * D, 1)
const lengths = Int32Array.from({ length: B }, (_, b) => T - (b % 5))
for (let k = 0; k < 4; k++) {
  let t0 = performance.now()
  const out = lstmForward(blas, { batch: B, steps: T, inputSize: D, units: H }, x, lengths, w, undefined, true)
  const t1 = performance.now()
  lstmBackward(blas, out.tape!, w, rnd(B * H))
  const t2 = performance.now()
  console.log(`fwd ${(t1 - t0).toFixed(1)} ms  bwd ${(t2 - t1).toFixed(1)} ms`)
}
let t0 = performance.now(); const a = rnd(B*H), c = new Float32Array(B*4*H)
for (let i = 0; i < 100; i++) blas.sgemm(false, false, B, 4*H, H, 1, a, H, w.recurrentKernel, 4*H, 1, c, 4*H)
console.log("small gemm us", ((performance.now() - t0) * 10).toFixed(1))
