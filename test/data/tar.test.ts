import { afterAll, describe, expect, test } from "bun:test"
import { readFileSync, symlinkSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { readTarGz, TarError } from "../../src/data/tar.ts"
import { cleanupTemp, makeTar, tempDir, writeTree } from "./fixtures.ts"

afterAll(cleanupTemp)

const collect = async (path: string, filter?: (p: string) => boolean) => {
  const out: Record<string, string> = {}
  for await (const e of readTarGz(path, { filter })) out[e.path] = new TextDecoder().decode(e.data)
  return out
}

// Longer than the 100-byte name field and than the 155-byte ustar prefix's last component limit allows unsplit.
const longDir = `d/${"a".repeat(60)}/${"b".repeat(60)}`
const longName = `${longDir}/${"c".repeat(90)}.txt`
const files = {
  "d/small.txt": "hello\n",
  "d/empty.txt": "",
  "d/block.bin": "x".repeat(512), // exactly one block: no padding
  [longName]: "long name content",
  "d/ünïcode.txt": "utf-8 name",
}

const build = (flags: Array<string>, ext = "tar.gz") => {
  const root = tempDir()
  writeTree(root, files)
  symlinkSync("small.txt", join(root, "d/link.txt"))
  const out = join(tempDir(), `fixture.${ext}`)
  makeTar(out, root, ["d"], flags)
  return out
}

describe("readTarGz", () => {
  for (const [label, flags] of [
    ["gnu (long names via 'L')", ["--format=gnu"]],
    ["pax (long names via 'x')", ["--format=posix"]],
    ["ustar (prefix field)", ["--format=ustar"]],
  ] as const) {
    test(`reads regular files only, ${label}`, async () => {
      const got = await collect(build([...flags]))
      expect(longName.length).toBeGreaterThan(100)
      expect(got).toEqual(files)
    })
  }

  test("reads a plain .tar and honours the filter", async () => {
    const got = await collect(build(["--format=gnu"], "tar"), (p) => p.endsWith("small.txt"))
    expect(got).toEqual({ "d/small.txt": "hello\n" })
  })

  test("a pax global header is consumed, not yielded", async () => {
    const root = tempDir()
    writeTree(root, { "x.txt": "data" })
    const out = join(tempDir(), "g.tar")
    makeTar(out, root, ["x.txt"], ["--format=posix", "--pax-option=globexthdr.name=gh,comment=hi"])
    expect(await collect(out)).toEqual({ "x.txt": "data" })
  })

  test("truncated archive throws TarError", async () => {
    const bytes = readFileSync(build(["--format=gnu"]))
    const cut = join(tempDir(), "cut.tar.gz")
    writeFileSync(cut, bytes.subarray(0, Math.floor(bytes.length / 2)))
    await expect(collect(cut)).rejects.toBeInstanceOf(TarError)
  })

  test("truncated plain tar (inside a member) throws TarError", async () => {
    const bytes = readFileSync(build(["--format=gnu"], "tar"))
    const cut = join(tempDir(), "cut.tar")
    writeFileSync(cut, bytes.subarray(0, 512 + 100))
    await expect(collect(cut)).rejects.toBeInstanceOf(TarError)
  })

  test("non-gzip .tar.gz and garbage .tar throw TarError", async () => {
    const dir = tempDir()
    writeFileSync(join(dir, "a.tar.gz"), "this is not gzip at all")
    writeFileSync(join(dir, "b.tar"), "x".repeat(2048))
    await expect(collect(join(dir, "a.tar.gz"))).rejects.toThrow(/not a gzip file/)
    await expect(collect(join(dir, "b.tar"))).rejects.toThrow(/checksum/)
  })
})
