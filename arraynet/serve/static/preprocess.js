// The preprocessing of arraynet/io/images.py (digit_from_bytes) for a canvas's pixels, step
// by step, so that the page's in-browser model sees what the server's sees: greyscale,
// inverted when dark-on-light, cropped to the ink, scaled (Pillow's Lanczos on 8-bit pixels)
// so the longer side is 20 pixels, centred by the centre of mass in 28x28. Float32 steps
// are rounded as NumPy rounds them (Math.fround).
"use strict";

const f32 = Math.fround;

function pyRound(x) { // Python's round(): halves go to the even neighbour
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 ? 2 * Math.round(x / 2) : r;
}

function pairwiseSum(a, lo, n, round) { // NumPy's pairwise summation (blocks of 128, 8 lanes)
  if (n < 8) {
    let s = -0.0;
    for (let i = lo; i < lo + n; i++) s = round(s + a[i]);
    return s;
  }
  if (n <= 128) {
    const r = [];
    for (let j = 0; j < 8; j++) r.push(a[lo + j]);
    let i = 8;
    for (; i < n - (n % 8); i += 8) for (let j = 0; j < 8; j++) r[j] = round(r[j] + a[lo + i + j]);
    let s = round(round(round(r[0] + r[1]) + round(r[2] + r[3])) + round(round(r[4] + r[5]) + round(r[6] + r[7])));
    for (; i < n; i++) s = round(s + a[lo + i]);
    return s;
  }
  let n2 = Math.floor(n / 2);
  n2 -= n2 % 8;
  return round(pairwiseSum(a, lo, n2, round) + pairwiseSum(a, lo + n2, n - n2, round));
}

function lanczos(x) {
  const sinc = (t) => (t === 0 ? 1 : Math.sin(t * Math.PI) / (t * Math.PI));
  return x >= -3 && x < 3 ? sinc(x) * sinc(x / 3) : 0;
}

function coefficients(inSize, outSize) { // Pillow's precompute_coeffs + normalize_coeffs_8bpc
  const scale = inSize / outSize;
  const filterscale = Math.max(scale, 1);
  const support = 3 * filterscale;
  const rows = [];
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    const ss = 1 / filterscale;
    const xmin = Math.max(Math.trunc(center - support + 0.5), 0);
    const xmax = Math.min(Math.trunc(center + support + 0.5), inSize) - xmin;
    const k = [];
    let ww = 0;
    for (let x = 0; x < xmax; x++) {
      const w = lanczos((x + xmin - center + 0.5) * ss);
      k.push(w);
      ww += w;
    }
    const fixed = k.map((w) => {
      const v = ww !== 0 ? w / ww : w;
      return Math.trunc(v < 0 ? -0.5 + v * 4194304 : 0.5 + v * 4194304); // 1 << 22
    });
    rows.push({ xmin, k: fixed });
  }
  return rows;
}

function clip8(v) {
  if (v >= 255 * 4194304) return 255;
  if (v <= 0) return 0;
  return Math.floor(v / 4194304);
}

function resize8(src, w, h, nw, nh) { // Image.resize(..., LANCZOS) of an 8-bit picture
  let cur = src;
  let cw = w;
  if (nw !== w) {
    const co = coefficients(w, nw);
    const out = new Uint8Array(nw * h);
    for (let y = 0; y < h; y++) {
      for (let xx = 0; xx < nw; xx++) {
        const { xmin, k } = co[xx];
        let s = 2097152; // 1 << 21
        for (let x = 0; x < k.length; x++) s += cur[y * cw + x + xmin] * k[x];
        out[y * nw + xx] = clip8(s);
      }
    }
    cur = out;
    cw = nw;
  }
  if (nh !== h) {
    const co = coefficients(h, nh);
    const out = new Uint8Array(cw * nh);
    for (let yy = 0; yy < nh; yy++) {
      const { xmin: ymin, k } = co[yy];
      for (let x = 0; x < cw; x++) {
        let s = 2097152;
        for (let y = 0; y < k.length; y++) s += cur[(y + ymin) * cw + x] * k[y];
        out[yy * cw + x] = clip8(s);
      }
    }
    cur = out;
  }
  return cur;
}

// ImageData (RGBA) -> Float32Array(784), the (1, 28, 28, 1) input; null when blank.
function arraynetPreprocess(image) {
  const { width: W, height: H, data } = image;
  const n = W * H;
  const lum = new Float32Array(n);
  const alpha = new Float32Array(n);
  let weight = 0;
  let inkSum = 0;
  for (let i = 0; i < n; i++) {
    const [r, g, b, a] = [data[4 * i], data[4 * i + 1], data[4 * i + 2], data[4 * i + 3]];
    lum[i] = f32(((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16) / 255);
    alpha[i] = f32(a / 255);
    weight += alpha[i];
    inkSum += lum[i] * alpha[i];
  }
  const bgShade = (weight > 0 ? inkSum / weight : 1) < 0.5 ? 1 : 0;
  let grey = new Float32Array(n);
  for (let i = 0; i < n; i++) grey[i] = f32(f32(lum[i] * alpha[i]) + f32(bgShade * f32(1 - alpha[i])));
  const border = [];
  for (let x = 0; x < W; x++) border.push(grey[x]);
  for (let x = 0; x < W; x++) border.push(grey[(H - 1) * W + x]);
  for (let y = 0; y < H; y++) border.push(grey[y * W]);
  for (let y = 0; y < H; y++) border.push(grey[y * W + W - 1]);
  border.sort((a, b) => a - b);
  const m = border.length >> 1;
  let bg = border.length % 2 ? border[m] : f32(f32(border[m - 1] + border[m]) / 2);
  if (bg > 0.5) {
    grey = grey.map((v) => f32(1 - v));
    bg = 1 - bg;
  }
  const fbg = f32(bg);
  const div = f32(Math.max(1 - bg, 1e-6));
  let top = H, bottom = -1, left = W, right = -1;
  const tenth = f32(0.1);
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      const i = y * W + x;
      const v = Math.min(Math.max(f32(f32(grey[i] - fbg) / div), 0), 1);
      grey[i] = v;
      if (v > tenth) {
        top = Math.min(top, y); bottom = Math.max(bottom, y);
        left = Math.min(left, x); right = Math.max(right, x);
      }
    }
  }
  if (bottom < 0) return null;
  const h = bottom - top + 1, w = right - left + 1;
  const crop = new Uint8Array(h * w);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) crop[y * w + x] = Math.trunc(f32(grey[(top + y) * W + left + x] * 255));
  }
  const scale = 20 / Math.max(h, w);
  const nh = Math.max(1, pyRound(h * scale)), nw = Math.max(1, pyRound(w * scale));
  const small = resize8(crop, w, h, nw, nh);
  const frame = new Float32Array(784);
  const t0 = (28 - nh) >> 1, l0 = (28 - nw) >> 1;
  for (let y = 0; y < nh; y++) {
    for (let x = 0; x < nw; x++) frame[(t0 + y) * 28 + l0 + x] = f32(small[y * nw + x] / 255);
  }
  const total = pairwiseSum(frame, 0, 784, f32);
  if (!(total > 0)) return frame;
  const wy = new Float64Array(784), wx = new Float64Array(784);
  for (let i = 0; i < 784; i++) { wy[i] = Math.floor(i / 28) * frame[i]; wx[i] = (i % 28) * frame[i]; }
  const same = (v) => v;
  const dy = pyRound(13.5 - pairwiseSum(wy, 0, 784, same) / total);
  const dx = pyRound(13.5 - pairwiseSum(wx, 0, 784, same) / total);
  const out = new Float32Array(784);
  for (let y = 0; y < 28; y++) {
    for (let x = 0; x < 28; x++) {
      const sy = y - dy, sx = x - dx;
      if (sy >= 0 && sy < 28 && sx >= 0 && sx < 28) out[y * 28 + x] = frame[sy * 28 + sx];
    }
  }
  return out;
}
