/**
 * Serves the browser example on 127.0.0.1: the page, tfjs's browser bundles from this project's node_modules (no CDN)
 * and an export (`bun run export <run dir> --out DIR`) under /model/.
 *   bun examples/browser/serve.ts DIR [--port 8080]
 */
import { existsSync } from "node:fs"
import { join, normalize, resolve } from "node:path"

const here = import.meta.dir
const modules = resolve(here, "../../node_modules")
const VENDOR: Record<string, string> = {
  "seedrandom.min.js": join(modules, "seedrandom/seedrandom.min.js"),
  "tf-core.min.js": join(modules, "@tensorflow/tfjs-core/dist/tf-core.min.js"),
  "tf-backend-cpu.min.js": join(modules, "@tensorflow/tfjs-backend-cpu/dist/tf-backend-cpu.min.js"),
  "tf-layers.min.js": join(modules, "@tensorflow/tfjs-layers/dist/tf-layers.min.js")
}

/** A file under `root` named by a URL path, or undefined (never outside root). */
function within(root: string, path: string): string | undefined {
  const file = normalize(join(root, decodeURIComponent(path)))
  return file.startsWith(root) && existsSync(file) ? file : undefined
}

export function serveBrowserExample(exportDir: string, port = 0): ReturnType<typeof Bun.serve> {
  const model = resolve(exportDir)
  return Bun.serve({
    hostname: "127.0.0.1",
    port,
    fetch(request) {
      const path = new URL(request.url).pathname
      const file =
        path === "/" ? join(here, "index.html")
        : path.startsWith("/vendor/") ? VENDOR[path.slice("/vendor/".length)]
        : path.startsWith("/model/") ? within(model, path.slice("/model/".length))
        : path === "/app.js" ? join(here, "app.js")
        : undefined
      return file === undefined ? new Response("not found", { status: 404 }) : new Response(Bun.file(file))
    }
  })
}

if (import.meta.main) {
  const [dir, flag, value] = process.argv.slice(2)
  if (dir === undefined || !existsSync(join(dir, "model.json"))) {
    process.stderr.write("usage: bun examples/browser/serve.ts EXPORT_DIR [--port N]  (EXPORT_DIR: written by bun run export)\n")
    process.exit(2)
  }
  const server = serveBrowserExample(dir, flag === "--port" ? Number(value) : 8080)
  process.stdout.write(`serving ${dir} at ${server.url}\n`)
}
