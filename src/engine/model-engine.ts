/**
 * How the model's heavy ops run: as the CPU engine's fused ops on a BLAS (the LSTM, src/engine/lstm-op.ts; Eq. 1's
 * normalization, normalize-op.ts; the LM's sampled softmax, sampled-softmax-op.ts) or as the tfjs reference ops. It is
 * a value, passed explicitly to everything that runs the model, not process state: a run takes the one its backend
 * selection made (`ActiveBackend.engine`), and `REFERENCE_ENGINE` asks for the reference ops on purpose (tfjs-node,
 * `fusedLstm: "off"`, tests that compare the two).
 */
import type { Blas } from "./blas.ts"

export interface ModelEngine {
  /** The BLAS the fused ops run on; undefined: the reference ops. */
  readonly fused: Blas | undefined
}

/** The tfjs reference ops (the definition the fused ops are tested against). */
export const REFERENCE_ENGINE: ModelEngine = Object.freeze({ fused: undefined })

/** The fused ops on `blas`. */
export const fusedEngine = (blas: Blas): ModelEngine => Object.freeze({ fused: blas })
