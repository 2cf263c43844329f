// Loads an advtext export (`bun run export <run dir> --out DIR`, served under ./model/) and classifies what is typed.
// tf (tfjs-core + cpu backend + tfjs-layers) is the global the <script> tags in index.html define.
/* global tf */
const base = new URLSearchParams(location.search).get("model") ?? "model"
const status = document.getElementById("status")
const textarea = document.getElementById("text")

async function load() {
  await tf.setBackend("cpu")
  const [model, vocabulary, tokenizer] = await Promise.all([
    tf.loadLayersModel(`${base}/model.json`),
    fetch(`${base}/vocabulary.json`).then((r) => r.json()),
    import(new URL(`${base}/tokenizer.js`, location.href).href)
  ])
  const encode = tokenizer.encoder(vocabulary)
  /** The probability of every class for one text (the whole document in one pass; see src/use/export.ts). */
  const classify = (text) => {
    const ids = encode(text)
    const row = (a) => tf.tensor2d(a, [1, a.length], "int32")
    const inputs = vocabulary.bidirectional ? [row(ids), row(tokenizer.reversed(ids))] : row(ids)
    const out = model.predict(inputs)
    const probabilities = Array.from(out.dataSync())
    tf.dispose([out, inputs])
    const index = probabilities.indexOf(Math.max(...probabilities))
    return { label: vocabulary.classes[index], probabilities, words: ids.length - 1 }
  }
  return { classify, vocabulary }
}

function show(result, classes) {
  document.getElementById("result").hidden = false
  document.getElementById("label").textContent = result.label
  document.getElementById("bars").replaceChildren(
    ...classes.map((c, k) => {
      const row = document.createElement("div")
      row.className = "row"
      const p = result.probabilities[k]
      row.innerHTML = `<span></span><div class="bar"><div style="width:${(p * 100).toFixed(1)}%"></div></div><span class="num">${p.toFixed(4)}</span>`
      row.firstChild.textContent = c
      return row
    })
  )
  document.getElementById("words").textContent = `${result.words} word${result.words === 1 ? "" : "s"} in the vocabulary`
  // For tests: the exact numbers behind the bars.
  document.getElementById("result").dataset.probabilities = JSON.stringify(result.probabilities)
}

load().then(
  ({ classify, vocabulary }) => {
    status.textContent = `${vocabulary.words.length.toLocaleString()} words · classes ${vocabulary.classes.join(", ")} · step ${vocabulary.step} · tfjs ${tf.version_core}`
    textarea.disabled = false
    textarea.addEventListener("input", () => show(classify(textarea.value), vocabulary.classes))
    window.advtext = { classify }
    document.body.dataset.ready = "true"
  },
  (error) => {
    status.textContent = `could not load the model from ${base}/: ${error.message}`
    status.className = "meta error"
    document.body.dataset.ready = "error"
  }
)
