/**
 * Scores of a classifier on labeled documents (the `evaluate` command): error, accuracy, mean loss, per-class
 * precision / recall / F1 and the confusion matrix, from one `classify` pass.
 */
import type { Prediction } from "./classifier.ts"

export interface ClassScores {
  readonly label: string
  readonly precision: number
  readonly recall: number
  readonly f1: number
  /** Documents whose true class this is. */
  readonly support: number
}

export interface Scores {
  readonly examples: number
  readonly accuracy: number
  readonly error: number
  /** Mean −log p(true class): the training loss (sigmoid / softmax cross-entropy) on these documents. */
  readonly loss: number
  readonly classes: ReadonlyArray<ClassScores>
  /** confusion[t][p]: documents of true class t predicted as p. */
  readonly confusion: ReadonlyArray<ReadonlyArray<number>>
}

const ratio = (a: number, b: number) => (b === 0 ? 0 : a / b)

export function score(classes: ReadonlyArray<string>, labels: ReadonlyArray<number>, predictions: ReadonlyArray<Prediction>): Scores {
  const C = classes.length
  const confusion = Array.from({ length: C }, () => new Array<number>(C).fill(0))
  let loss = 0
  labels.forEach((t, i) => {
    const p = predictions[i]!
    confusion[t]![p.index]!++
    // Float32 probabilities can round to 0; the floor keeps one confident mistake from making the mean infinite.
    loss -= Math.log(Math.max(p.probabilities[t]!, 1e-30))
  })
  const correct = confusion.reduce((a, row, k) => a + row[k]!, 0)
  const n = labels.length
  const perClass = classes.map((label, k): ClassScores => {
    const tp = confusion[k]![k]!
    const predicted = confusion.reduce((a, row) => a + row[k]!, 0)
    const support = confusion[k]!.reduce((a, b) => a + b, 0)
    const precision = ratio(tp, predicted)
    const recall = ratio(tp, support)
    return { label, precision, recall, f1: ratio(2 * precision * recall, precision + recall), support }
  })
  const accuracy = ratio(correct, n)
  return { examples: n, accuracy, error: 1 - accuracy, loss: ratio(loss, n), classes: perClass, confusion }
}

/** The scores as a terminal table. */
export function formatScores(s: Scores): string {
  const names = s.classes.map((c) => c.label)
  const w = Math.max(5, ...names.map((c) => c.length)) + 2
  const pad = (text: string, width: number) => text.padEnd(width)
  const num = (v: number) => v.toFixed(4).padStart(9)
  const lines = [
    `documents ${s.examples}  error ${(s.error * 100).toFixed(2)}%  accuracy ${(s.accuracy * 100).toFixed(2)}%  loss ${s.loss.toFixed(4)}`,
    "",
    `${pad("class", w)}${"precision".padStart(9)}${"recall".padStart(9)}${"F1".padStart(9)}${"support".padStart(9)}`,
    ...s.classes.map((c) => `${pad(c.label, w)}${num(c.precision)}${num(c.recall)}${num(c.f1)}${String(c.support).padStart(9)}`),
    "",
    "confusion matrix (rows: true class, columns: predicted)",
    `${pad("", w)}${names.map((c) => c.padStart(Math.max(8, c.length + 1))).join("")}`,
    ...s.confusion.map((row, t) => `${pad(names[t]!, w)}${row.map((v, k) => String(v).padStart(Math.max(8, names[k]!.length + 1))).join("")}`)
  ]
  return lines.join("\n")
}
