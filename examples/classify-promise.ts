/**
 * Classifying with a trained run without Effect: `openClassifier` returns the classifier and `close()`, which
 * releases its tensors.
 *   bun examples/classify-promise.ts runs/rt-cpu "a gorgeous, moving film" "a tedious mess"
 */
import { openClassifier } from "../src/index.ts"

export async function classifyPromise(runDir: string, texts: ReadonlyArray<string>) {
  const classifier = await openClassifier(runDir)
  try {
    return classifier.classify(texts).map((p, i) => ({ text: texts[i]!, label: p.label, probabilities: p.probabilities }))
  } finally {
    await classifier.close()
  }
}

if (import.meta.main) {
  const [runDir, ...texts] = process.argv.slice(2)
  for (const r of await classifyPromise(runDir!, texts)) console.log(`${r.label}\t${r.probabilities.map((p) => p.toFixed(3)).join(" ")}\t${r.text}`)
}
