// The drawing pad: white ink on black (what MNIST digits are), sent to POST /predict as PNG,
// or, in the browser mode, preprocessed here (preprocess.js) and run by onnxruntime-web.
// A picture opened with the file button or dropped on the pad goes the same ways. Beside the
// answer, the 28x28 picture the model saw (the server sends it back as input_png).
"use strict";
const pad = document.getElementById("pad");
const ctx = pad.getContext("2d");
const seen = document.getElementById("seen");
const seenCtx = seen.getContext("2d", { willReadFrequently: true });
const answer = document.getElementById("answer");
const top3 = document.getElementById("top");
const statusLine = document.getElementById("status");
const fileInput = document.getElementById("file");
const MAX_BYTES = 1024 * 1024; // the server's limit on a body (arraynet/serve/app.py)
const MAX_PIXELS = 4096 * 4096; // and on a picture's pixels
const SENT_SIDE = 512; // a picture the server would refuse is sent scaled to this, as PNG
let drawing = false;
let inked = false;
let picture = null; // the File the pad shows, or null when it shows a drawing
let last = null;
let asked = 0; // number of the latest request: older answers are dropped
let timer = null;
let mode = "server";
let browserModel = null; // a promise of { ort, session }, made on first use
// { by, probabilities, input (784 floats), picture (file name or null) }: what the page
// showed last, for tests
window.lastAnswer = null;

function clearSeen() {
  seenCtx.fillStyle = "#000";
  seenCtx.fillRect(0, 0, seen.width, seen.height);
}

function clearPad() {
  ctx.fillStyle = "#000";
  ctx.fillRect(0, 0, pad.width, pad.height);
  inked = false;
  picture = null;
  asked += 1;
  answer.textContent = "-";
  top3.replaceChildren();
  clearSeen();
  window.lastAnswer = null;
  statusLine.textContent = "Draw to see the model's answer.";
}

// The 28x28 input (784 floats in [0, 1], white ink on black) drawn on the small canvas.
function showInput(x) {
  const image = seenCtx.createImageData(28, 28);
  for (let i = 0; i < 784; i++) {
    const v = Math.round(255 * Math.min(Math.max(x[i], 0), 1));
    image.data.set([v, v, v, 255], 4 * i);
  }
  seenCtx.putImageData(image, 0, 0);
}

// The server's input_png (a data URL) drawn on the small canvas; its 784 values, read back.
async function showInputPng(url) {
  const img = new Image();
  img.src = url;
  await img.decode();
  clearSeen();
  seenCtx.drawImage(img, 0, 0, 28, 28);
  const data = seenCtx.getImageData(0, 0, 28, 28).data;
  return Array.from({ length: 784 }, (_, i) => data[4 * i] / 255);
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
  if (picture !== null) clearPad(); // drawing starts afresh over an opened picture
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
    askBrowser(n, ctx.getImageData(0, 0, pad.width, pad.height), null);
    return;
  }
  pad.toBlob((blob) => askServer(n, blob, "image/png", null), "image/png");
}

// POST /predict with `body` (a Blob of `type`); `name`: the picture's file name, or null
// for the drawing.
async function askServer(n, body, type, name) {
  const what = name === null ? "the drawing" : name;
  try {
    const res = await fetch("/predict", { method: "POST", headers: { "Content-Type": type }, body });
    const reply = await res.json();
    if (n !== asked) return;
    if (!res.ok) {
      statusLine.textContent = `The server refused ${what}: ${reply.error}`;
      return;
    }
    const input = await showInputPng(reply.input_png);
    if (n !== asked) return;
    show(reply.probabilities);
    window.lastAnswer = { by: "server", probabilities: reply.probabilities, input, picture: name };
    statusLine.textContent = "Answered by the server (arraynet)." + (name === null ? "" : ` Picture: ${name}.`);
  } catch (err) {
    if (n === asked) statusLine.textContent = `No answer from the server: ${err}`;
  }
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

// `image`: ImageData of the drawing or of a picture (`name`: its file name, else null).
async function askBrowser(n, image, name) {
  try {
    const x = arraynetPreprocess(image);
    if (x === null) {
      if (n === asked) statusLine.textContent = `No digit found (the ${name === null ? "drawing" : "picture"} is blank).`;
      return;
    }
    const { ort, session } = await loadBrowserModel();
    const out = await session.run({ [session.inputNames[0]]: new ort.Tensor("float32", x, [1, 28, 28, 1]) });
    const probs = Array.from(out[session.outputNames[0]].data);
    if (n !== asked) return;
    showInput(x);
    show(probs);
    window.lastAnswer = { by: "browser", probabilities: probs, input: Array.from(x), picture: name };
    statusLine.textContent = "Answered in this browser (onnxruntime-web)." + (name === null ? "" : ` Picture: ${name}.`);
  } catch (err) {
    if (n === asked) statusLine.textContent = `The browser could not answer: ${err}`;
  }
}

// A picture's pixels, or null when this browser cannot decode it.
async function decodePicture(file) {
  try {
    return await createImageBitmap(file);
  } catch {
    return null;
  }
}

// The pad shows the picture, scaled to fit, on black.
function showOnPad(bitmap) {
  ctx.fillStyle = "#000";
  ctx.fillRect(0, 0, pad.width, pad.height);
  if (bitmap === null) return;
  const s = Math.min(pad.width / bitmap.width, pad.height / bitmap.height);
  const w = bitmap.width * s, h = bitmap.height * s;
  ctx.drawImage(bitmap, (pad.width - w) / 2, (pad.height - h) / 2, w, h);
}

function canvasOf(bitmap, w, h) {
  const c = document.createElement("canvas");
  c.width = w;
  c.height = h;
  c.getContext("2d", { willReadFrequently: true }).drawImage(bitmap, 0, 0, w, h);
  return c;
}

// A picture from the file button or dropped on the pad: answered as a drawing is. The
// server gets the file itself when it takes it (a PNG or JPEG within its limits), else the
// picture as this browser decodes it, scaled to at most SENT_SIDE pixels a side, as PNG.
async function openPicture(file) {
  if (!file) return;
  clearPad();
  picture = file;
  const n = asked;
  statusLine.textContent = `Reading ${file.name}...`;
  const bitmap = await decodePicture(file);
  if (n !== asked) return;
  showOnPad(bitmap);
  if (mode === "browser") {
    if (bitmap === null || bitmap.width * bitmap.height > MAX_PIXELS) {
      statusLine.textContent = `The browser could not answer: ${file.name} is ${bitmap === null ? "not a picture it reads" : "too large"}.`;
      return;
    }
    const c = canvasOf(bitmap, bitmap.width, bitmap.height);
    askBrowser(n, c.getContext("2d").getImageData(0, 0, c.width, c.height), file.name);
    return;
  }
  const direct = (file.type === "image/png" || file.type === "image/jpeg") && file.size <= MAX_BYTES;
  if (direct || bitmap === null) { // (a picture the browser cannot read: the server says why)
    askServer(n, file, file.type || "application/octet-stream", file.name);
    return;
  }
  const s = Math.min(1, SENT_SIDE / Math.max(bitmap.width, bitmap.height));
  const c = canvasOf(bitmap, Math.max(1, Math.round(bitmap.width * s)), Math.max(1, Math.round(bitmap.height * s)));
  c.toBlob((blob) => askServer(n, blob, "image/png", file.name), "image/png");
}

fileInput.addEventListener("change", () => {
  const file = fileInput.files[0];
  fileInput.value = ""; // the same file can be opened again
  openPicture(file);
});

const hasFiles = (e) => Array.from(e.dataTransfer?.types || []).includes("Files");
for (const type of ["dragenter", "dragover"]) {
  pad.addEventListener(type, (e) => {
    if (!hasFiles(e)) return;
    e.preventDefault();
    e.dataTransfer.dropEffect = "copy";
    pad.classList.add("dropping");
  });
}
pad.addEventListener("dragleave", () => pad.classList.remove("dropping"));
pad.addEventListener("drop", (e) => {
  pad.classList.remove("dropping");
  if (!hasFiles(e)) return;
  e.preventDefault();
  openPicture(e.dataTransfer.files[0]);
});
// A picture dropped beside the pad is not opened by the browser in place of the page.
for (const type of ["dragover", "drop"]) {
  window.addEventListener(type, (e) => { if (hasFiles(e)) e.preventDefault(); });
}

for (const radio of document.querySelectorAll('input[name="mode"]')) {
  radio.addEventListener("change", () => {
    mode = radio.value;
    if (picture !== null) openPicture(picture);
    else ask();
  });
}

fetch("/healthz").then((r) => r.json()).then((h) => {
  document.getElementById("modes").hidden = !h.browser;
}).catch(() => {});

document.getElementById("clear").addEventListener("click", clearPad);
clearPad();
