// The drawing pad: white ink on black (what MNIST digits are), sent to POST /predict as PNG,
// or, in the browser mode, preprocessed here (preprocess.js) and run by onnxruntime-web.
"use strict";
const pad = document.getElementById("pad");
const ctx = pad.getContext("2d");
const answer = document.getElementById("answer");
const top3 = document.getElementById("top");
const statusLine = document.getElementById("status");
let drawing = false;
let inked = false;
let last = null;
let asked = 0; // number of the latest request: older answers are dropped
let timer = null;
let mode = "server";
let browserModel = null; // a promise of { ort, session }, made on first use
window.lastAnswer = null; // { by, probabilities, input }: what the page showed last, for tests

function clearPad() {
  ctx.fillStyle = "#000";
  ctx.fillRect(0, 0, pad.width, pad.height);
  inked = false;
  asked += 1;
  answer.textContent = "-";
  top3.replaceChildren();
  window.lastAnswer = null;
  statusLine.textContent = "Draw to see the model's answer.";
}

function point(e) {
  const r = pad.getBoundingClientRect();
  return { x: ((e.clientX - r.left) * pad.width) / r.width, y: ((e.clientY - r.top) * pad.height) / r.height };
}

function stroke(a, b) {
  ctx.strokeStyle = "#fff";
  ctx.lineWidth = 22;
  ctx.lineCap = "round";
  ctx.lineJoin = "round";
  ctx.beginPath();
  ctx.moveTo(a.x, a.y);
  ctx.lineTo(b.x, b.y);
  ctx.stroke();
  inked = true;
}

pad.addEventListener("pointerdown", (e) => {
  e.preventDefault();
  pad.setPointerCapture(e.pointerId);
  drawing = true;
  last = point(e);
  stroke(last, last);
});

pad.addEventListener("pointermove", (e) => {
  if (!drawing) return;
  const p = point(e);
  stroke(last, p);
  last = p;
  if (timer === null) timer = setTimeout(() => { timer = null; ask(); }, 250);
});

function endStroke() {
  if (!drawing) return;
  drawing = false;
  ask();
}
pad.addEventListener("pointerup", endStroke);
pad.addEventListener("pointercancel", endStroke);

function show(probs) {
  const order = probs.map((p, d) => [p, d]).sort((a, b) => b[0] - a[0]).slice(0, 3);
  answer.textContent = String(order[0][1]);
  top3.replaceChildren(...order.map(([p, d]) => {
    const li = document.createElement("li");
    li.dataset.digit = String(d);
    const label = document.createElement("span");
    label.textContent = String(d);
    const bar = document.createElement("div");
    bar.className = "bar";
    const fill = document.createElement("span");
    fill.style.width = `${(100 * p).toFixed(1)}%`;
    bar.append(fill);
    const pct = document.createElement("span");
    pct.className = "pct";
    pct.textContent = `${(100 * p).toFixed(1)} %`;
    li.append(label, bar, pct);
    return li;
  }));
}

function ask() {
  if (!inked) return;
  const n = ++asked;
  if (mode === "browser") {
    askBrowser(n);
    return;
  }
  pad.toBlob(async (blob) => {
    try {
      const res = await fetch("/predict", { method: "POST", headers: { "Content-Type": "image/png" }, body: blob });
      const body = await res.json();
      if (n !== asked) return;
      if (!res.ok) {
        statusLine.textContent = `The server refused the drawing: ${body.error}`;
        return;
      }
      show(body.probabilities);
      window.lastAnswer = { by: "server", probabilities: body.probabilities, input: null };
      statusLine.textContent = "Answered by the server (arraynet).";
    } catch (err) {
      if (n === asked) statusLine.textContent = `No answer from the server: ${err}`;
    }
  }, "image/png");
}

function loadBrowserModel() {
  if (browserModel === null) {
    browserModel = (async () => {
      const ort = await import("/static/ort/ort.wasm.bundle.min.mjs");
      ort.env.wasm.wasmPaths = { wasm: "/static/ort/ort-wasm-simd-threaded.wasm" }; // the .mjs is in the bundle
      ort.env.wasm.numThreads = 1;
      const session = await ort.InferenceSession.create("/model.onnx", { executionProviders: ["wasm"] });
      return { ort, session };
    })();
    browserModel.catch(() => { browserModel = null; });
  }
  return browserModel;
}

async function askBrowser(n) {
  try {
    const x = arraynetPreprocess(ctx.getImageData(0, 0, pad.width, pad.height));
    if (x === null) {
      if (n === asked) statusLine.textContent = "No digit found (the drawing is blank).";
      return;
    }
    const { ort, session } = await loadBrowserModel();
    const out = await session.run({ [session.inputNames[0]]: new ort.Tensor("float32", x, [1, 28, 28, 1]) });
    const probs = Array.from(out[session.outputNames[0]].data);
    if (n !== asked) return;
    show(probs);
    window.lastAnswer = { by: "browser", probabilities: probs, input: Array.from(x) };
    statusLine.textContent = "Answered in this browser (onnxruntime-web).";
  } catch (err) {
    if (n === asked) statusLine.textContent = `The browser could not answer: ${err}`;
  }
}

for (const radio of document.querySelectorAll('input[name="mode"]')) {
  radio.addEventListener("change", () => {
    mode = radio.value;
    ask();
  });
}

fetch("/healthz").then((r) => r.json()).then((h) => {
  document.getElementById("modes").hidden = !h.browser;
}).catch(() => {});

document.getElementById("clear").addEventListener("click", clearPad);
clearPad();
