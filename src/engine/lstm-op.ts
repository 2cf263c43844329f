/**
 * Binds the fused LSTM (src/engine/fused-lstm.ts) into tfjs as one differentiable op via tf.customGrad. The model runs
 * it when its engine (src/engine/model-engine.ts) has a BLAS, on the wasm/cpu backends; otherwise (and on tfjs-node)
 * the pure-tfjs reference LSTM runs.
 */
import * as tf from "@tensorflow/tfjs-core"
import type { Blas } from "./blas.ts"
import { type LstmDims, lstmBackward, lstmForward, type LstmGradients, type LstmTape, type LstmWeights } from "./fused-lstm.ts"

const f32 = (t: tf.Tensor): Float32Array => t.dataSync() as Float32Array

function weightsOf(inputKernel: tf.Tensor, recurrentKernel: tf.Tensor, bias: tf.Tensor): LstmWeights {
  return { inputKernel: f32(inputKernel), recurrentKernel: f32(recurrentKernel), bias: f32(bias) }
}

export interface FusedLstmInputs {
  readonly inputs: tf.Tensor3D
  readonly inputKernel: tf.Tensor2D
  readonly recurrentKernel: tf.Tensor2D
  readonly bias: tf.Tensor1D
  readonly lengths: Int32Array
  readonly initial: { readonly c: tf.Tensor2D; readonly h: tf.Tensor2D } | undefined
}

const dimsOf = (a: FusedLstmInputs): LstmDims => ({
  batch: a.inputs.shape[0],
  steps: a.inputs.shape[1],
  inputSize: a.inputs.shape[2],
  units: a.recurrentKernel.shape[0]
})

const initialOf = (a: FusedLstmInputs) => (a.initial === undefined ? undefined : { h: f32(a.initial.h), c: f32(a.initial.c) })

/** Final (c, h) without gradient (evaluation, no-gradient prefixes). */
export function fusedLstmState(blas: Blas, a: FusedLstmInputs): { c: tf.Tensor2D; h: tf.Tensor2D } {
  const dims = dimsOf(a)
  const out = lstmForward(blas, dims, f32(a.inputs), a.lengths, weightsOf(a.inputKernel, a.recurrentKernel, a.bias), initialOf(a), false)
  return { c: tf.tensor2d(out.c, [dims.batch, dims.units]), h: tf.tensor2d(out.h, [dims.batch, dims.units]) }
}

/**
 * Final h, differentiable w.r.t. the inputs and the three LSTM weights. With `weightGradients` false the backward pass
 * skips the weight GEMMs (a third of its work) and reports zeros for them: for directions such as VAT's power
 * iteration, where only ∂/∂inputs is used.
 */
export function fusedLstmOutput(blas: Blas, a: FusedLstmInputs, weightGradients = true): tf.Tensor2D {
  const dims = dimsOf(a)
  const initial = initialOf(a)
  const op = tf.customGrad(((x: tf.Tensor, wx: tf.Tensor, wh: tf.Tensor, b: tf.Tensor) => {
    const weights = weightsOf(wx, wh, b)
    const out = lstmForward(blas, dims, f32(x), a.lengths, weights, initial, true)
    const backward = once(out.tape!)
    return {
      value: tf.tensor2d(out.h, [dims.batch, dims.units]),
      gradFunc: (dy: tf.Tensor) => gradientTensors(lstmBackward(blas, backward(), weights, f32(dy), weightGradients), dims, wx, wh, b)
    }
  }) as unknown as Parameters<typeof tf.customGrad>[0])
  return op(a.inputs, a.inputKernel, a.recurrentKernel, a.bias) as tf.Tensor2D
}

/**
 * The output h after every step, [B, T, H] (zero at steps t ≥ length), differentiable w.r.t. the inputs and the three
 * LSTM weights, and the final (c, h) as plain tensors without gradient (the next window's initial state; gradients
 * stop at window boundaries). The initial state is a constant too.
 *
 * When no gradient tape is recording (evaluation), the forward pass keeps no activations and its workspace goes straight
 * back to the pool. Otherwise the tape's workspace is released by the backward pass; if that never runs (the output
 * does not reach the differentiated loss) the workspace is left to the garbage collector, as in `fusedLstmOutput`.
 */
export function fusedLstmSequence(blas: Blas, a: FusedLstmInputs): { outputs: tf.Tensor3D; final: { c: tf.Tensor2D; h: tf.Tensor2D } } {
  const dims = dimsOf(a)
  const initial = initialOf(a)
  const outputShape: [number, number, number] = [dims.batch, dims.steps, dims.units]
  const finalOf = (out: { h: Float32Array; c: Float32Array }) => ({
    c: tf.tensor2d(out.c, [dims.batch, dims.units]),
    h: tf.tensor2d(out.h, [dims.batch, dims.units])
  })
  // Exactly the test tfjs applies before recording an op on the tape (runKernelFunc): false means no gradFunc call.
  if (!tf.engine().isTapeOn()) {
    const out = lstmForward(blas, dims, f32(a.inputs), a.lengths, weightsOf(a.inputKernel, a.recurrentKernel, a.bias), initial, false, true)
    return { outputs: tf.tensor3d(out.outputs!, outputShape), final: finalOf(out) }
  }
  // Tensors made inside the customGrad function other than its value are disposed by tfjs (it runs in a tidy), so the
  // final state leaves as arrays and becomes tensors after the op.
  let final: { h: Float32Array; c: Float32Array } | undefined
  const op = tf.customGrad(((x: tf.Tensor, wx: tf.Tensor, wh: tf.Tensor, b: tf.Tensor) => {
    const weights = weightsOf(wx, wh, b)
    const out = lstmForward(blas, dims, f32(x), a.lengths, weights, initial, true, true)
    final = out
    const backward = once(out.tape!)
    return {
      value: tf.tensor3d(out.outputs!, outputShape),
      gradFunc: (dy: tf.Tensor) => gradientTensors(lstmBackward(blas, backward(), weights, undefined, true, f32(dy)), dims, wx, wh, b)
    }
  }) as unknown as Parameters<typeof tf.customGrad>[0])
  const outputs = op(a.inputs, a.inputKernel, a.recurrentKernel, a.bias) as tf.Tensor3D
  return { outputs, final: finalOf(final!) }
}

/**
 * The tape, handed out once: `lstmBackward` releases its workspace to the pool, so a second backward pass over the same
 * forward (nested tf.grads backpropagate shared tape nodes twice) would read memory another call may own by then.
 */
function once(tape: LstmTape): () => LstmTape {
  let used = false
  return () => {
    if (used) throw new Error("fused LSTM: a second backward pass over the same forward pass is not supported (higher-order gradients)")
    used = true
    return tape
  }
}

/** [dx, dWx, dWh, db] for tf.customGrad; zeros for the weights when their gradients were skipped. */
function gradientTensors(g: LstmGradients, dims: LstmDims, wx: tf.Tensor, wh: tf.Tensor, b: tf.Tensor): Array<tf.Tensor> {
  const dx = tf.tensor3d(g.inputs, [dims.batch, dims.steps, dims.inputSize])
  if (g.weights === undefined) return [dx, tf.zerosLike(wx), tf.zerosLike(wh), tf.zerosLike(b)]
  return [
    dx,
    tf.tensor2d(g.weights.inputKernel, wx.shape as [number, number]),
    tf.tensor2d(g.weights.recurrentKernel, wh.shape as [number, number]),
    tf.tensor1d(g.weights.bias)
  ]
}
