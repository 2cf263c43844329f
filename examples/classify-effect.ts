/**
 * Classifying with a trained run from Effect code: `loadClassifier` is a scoped resource, so the model's tensors are
 * released when the scope closes, however the program ends.
 *   bun examples/classify-effect.ts runs/rt-cpu "a gorgeous, moving film" "a tedious mess"
 */
import { Effect } from "effect"
import { loadClassifier } from "../src/index.ts"

export const classifyEffect = (runDir: string, texts: ReadonlyArray<string>) =>
  Effect.scoped(
    Effect.gen(function* () {
      const classifier = yield* loadClassifier(runDir)
      return classifier.classify(texts).map((p, i) => ({ text: texts[i]!, label: p.label, probabilities: p.probabilities }))
    })
  )

if (import.meta.main) {
  const [runDir, ...texts] = process.argv.slice(2)
  for (const r of await Effect.runPromise(classifyEffect(runDir!, texts))) console.log(`${r.label}\t${r.probabilities.map((p) => p.toFixed(3)).join(" ")}\t${r.text}`)
}
