import { expect, test } from "bun:test"
import { assemblyBinary, hasDataSegments } from "../../src/engine/assembly.ts"

const header = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00]
const memorySection = [0x05, 0x03, 0x01, 0x00, 0x01]

test("hasDataSegments finds an active data segment and nothing in a module without one", async () => {
  // (memory 1) (data (i32.const 0) "x")
  const withData = new Uint8Array([...header, ...memorySection, 0x0b, 0x07, 0x01, 0x00, 0x41, 0x00, 0x0b, 0x01, 0x78])
  expect(new WebAssembly.Module(withData)).toBeDefined()
  expect(hasDataSegments(withData)).toBe(true)
  expect(hasDataSegments(new Uint8Array([...header, ...memorySection]))).toBe(false)
  // The heap kernels run inside tfjs's memory: their build must never carry statics.
  expect(hasDataSegments(await assemblyBinary("heap-kernels"))).toBe(false)
})
