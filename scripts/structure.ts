/**
 * Structure checks anyone can rerun (issue "one training loop…"): import cycles among src/ modules (type-only imports
 * count too: they are erased at run time, but a cycle through types is still two modules that cannot be read apart),
 * and functions longer than a limit in src/pipeline.
 *   bun scripts/structure.ts [--max-lines 80]
 * Prints what it finds and exits 1 if anything is over.
 */
import { readdirSync, readFileSync, statSync } from "node:fs"
import { dirname, join, relative, resolve } from "node:path"
import ts from "typescript"

const root = resolve(import.meta.dir, "..")
const maxLinesArg = process.argv.indexOf("--max-lines")
const maxLines = maxLinesArg >= 0 ? Number(process.argv[maxLinesArg + 1]) : 80

const files = (dir: string): Array<string> =>
  readdirSync(dir).flatMap((name) => {
    const path = join(dir, name)
    if (statSync(path).isDirectory()) return name === "assembly" ? [] : files(path)
    return path.endsWith(".ts") ? [path] : []
  })

const sources = files(join(root, "src"))
const graph = new Map<string, Array<string>>()
const longFunctions: Array<string> = []

for (const file of sources) {
  const source = ts.createSourceFile(file, readFileSync(file, "utf8"), ts.ScriptTarget.Latest, true)
  const edges: Array<string> = []
  for (const statement of source.statements) {
    const isImport = ts.isImportDeclaration(statement)
    const isReexport = ts.isExportDeclaration(statement) && statement.moduleSpecifier !== undefined
    if (!isImport && !isReexport) continue
    const specifier = (statement as ts.ImportDeclaration | ts.ExportDeclaration).moduleSpecifier
    if (specifier === undefined || !ts.isStringLiteral(specifier) || !specifier.text.startsWith(".")) continue
    edges.push(resolve(dirname(file), specifier.text))
  }
  graph.set(file, edges)
  if (relative(root, file).startsWith(join("src", "pipeline"))) {
    const visit = (node: ts.Node): void => {
      if (ts.isFunctionDeclaration(node) || ts.isFunctionExpression(node) || ts.isArrowFunction(node) || ts.isMethodDeclaration(node)) {
        const start = source.getLineAndCharacterOfPosition(node.getStart()).line
        const end = source.getLineAndCharacterOfPosition(node.getEnd()).line
        const lines = end - start + 1
        const name = (ts.isFunctionDeclaration(node) || ts.isMethodDeclaration(node)) && node.name !== undefined ? node.name.getText() : "(anonymous)"
        if (lines > maxLines) longFunctions.push(`${relative(root, file)}:${start + 1} ${name}: ${lines} lines`)
      }
      ts.forEachChild(node, visit)
    }
    visit(source)
  }
}

// Strongly connected components (Tarjan): every component with more than one module, or a self-import, is a cycle.
const index = new Map<string, number>()
const low = new Map<string, number>()
const onStack = new Set<string>()
const stack: Array<string> = []
const cycles: Array<Array<string>> = []
let counter = 0
const connect = (v: string): void => {
  index.set(v, counter)
  low.set(v, counter++)
  stack.push(v)
  onStack.add(v)
  for (const w of graph.get(v) ?? []) {
    if (!graph.has(w)) continue
    if (!index.has(w)) {
      connect(w)
      low.set(v, Math.min(low.get(v)!, low.get(w)!))
    } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!))
  }
  if (low.get(v) === index.get(v)) {
    const component: Array<string> = []
    let w: string
    do {
      w = stack.pop()!
      onStack.delete(w)
      component.push(w)
    } while (w !== v)
    if (component.length > 1 || (graph.get(v) ?? []).includes(v)) cycles.push(component)
  }
}
for (const v of graph.keys()) if (!index.has(v)) connect(v)

console.log(`${sources.length} modules under src/`)
console.log(cycles.length === 0 ? "import cycles: none" : `import cycles (${cycles.length}):\n${cycles.map((c) => `  ${c.map((f) => relative(root, f)).join(" ↔ ")}`).join("\n")}`)
console.log(longFunctions.length === 0 ? `functions over ${maxLines} lines in src/pipeline: none` : `functions over ${maxLines} lines in src/pipeline (${longFunctions.length}):\n${longFunctions.map((l) => `  ${l}`).join("\n")}`)
process.exit(cycles.length > 0 || longFunctions.length > 0 ? 1 : 0)
