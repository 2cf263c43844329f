/**
 * Building the engine's WebAssembly kernels from their AssemblyScript sources (src/engine/assembly/*.ts) with the npm
 * `assemblyscript` compiler on first use; the .wasm is cached in build/ and rebuilt when its source is newer.
 */
import { existsSync, mkdirSync, readFileSync, statSync } from "node:fs"
import { dirname, resolve } from "node:path"

export async function assemblyBinary(name: string): Promise<Uint8Array<ArrayBuffer>> {
  const source = resolve(import.meta.dir, `assembly/${name}.ts`)
  const output = resolve(import.meta.dir, `../../build/${name}.wasm`)
  const stale = !existsSync(output) || (existsSync(source) && statSync(source).mtimeMs > statSync(output).mtimeMs)
  if (stale) {
    mkdirSync(dirname(output), { recursive: true })
    // A computed specifier keeps tsc from loading AssemblyScript's own global declarations (they redefine console).
    const ascModule = "assemblyscript/asc"
    const asc = ((await import(ascModule)) as { default: { main(args: Array<string>, options: unknown): Promise<{ error: Error | null }> } }).default
    const result = await asc.main([source, "-O3", "--noAssert", "--runtime", "stub", "--importMemory", "--enable", "simd", "--outFile", output], {
      stdout: { write: () => true },
      stderr: { write: () => true }
    })
    if (result.error) throw result.error
  }
  return Uint8Array.from(readFileSync(output))
}

/** Whether a WebAssembly binary has a data section with segments (statics it would write into its memory). */
export function hasDataSegments(binary: Uint8Array): boolean {
  let at = 8 // magic + version
  const leb = () => {
    let value = 0
    let shift = 0
    for (;;) {
      const byte = binary[at++]
      value += (byte & 0x7f) * 2 ** shift
      if ((byte & 0x80) === 0) return value
      shift += 7
    }
  }
  while (at < binary.length) {
    const id = binary[at++]
    const size = leb()
    const start = at
    if (id === 11 && leb() > 0) return true
    at = start + size
  }
  return false
}
