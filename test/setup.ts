// Preloaded by bunfig.toml for every test file: these tests train small models, so they get more than bun's 5 s.
import { setDefaultTimeout } from "bun:test"

setDefaultTimeout(120_000)
