/**
 * Binds the fused LSTM (src/engine/fused-lstm.ts) into tfjs as one differentiable op via tf.customGrad. Used on the
 * wasm/cpu backends when a BLAS is loaded; otherwise (and on tfjs-node) the pure-tfjs reference LSTM runs.
 */
import * as tf from "@tensorflow/tfjs-core"
import type { Blas } from "./blas.ts"
import { type LstmDims, lstmBackward, lstmForward, type LstmWeights } from "./fused-lstm.ts"

let engine: Blas | undefined

/** Route `lstm` (src/model/classifier.ts) through the fused op, or back to the reference when undefined. */
export function useFusedLstm(blas: Blas | undefined): void {
  engine = blas
}

export const fusedLstmEngine = (): Blas | undefined => engine

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
    return {
      value: tf.tensor2d(out.h, [dims.batch, dims.units]),
      gradFunc: (dy: tf.Tensor) => {
        const g = lstmBackward(blas, out.tape!, weights, f32(dy), weightGradients)
        const dx = tf.tensor3d(g.inputs, [dims.batch, dims.steps, dims.inputSize])
        if (g.weights === undefined) return [dx, tf.zerosLike(wx), tf.zerosLike(wh), tf.zerosLike(b)]
        return [
          dx,
          tf.tensor2d(g.weights.inputKernel, wx.shape as [number, number]),
          tf.tensor2d(g.weights.recurrentKernel, wh.shape as [number, number]),
          tf.tensor1d(g.weights.bias)
        ]
      }
    }
  }) as unknown as Parameters<typeof tf.customGrad>[0])
  return op(a.inputs, a.inputKernel, a.recurrentKernel, a.bias) as tf.Tensor2D
}
