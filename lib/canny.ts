/**
 * Canny edge detection, as OpenCV's cv2.Canny(image, low, high) computes it (what the webui's
 * ControlNet "canny" preprocessor calls, with low 100 and high 200): luminance (BT.601, rounded
 * to 8 bits as cv2.cvtColor does), 3×3 Sobel derivatives with OpenCV's default border
 * (reflect-101), L1 gradient magnitude |dx| + |dy|, non-maximum suppression along the gradient
 * direction in four sectors (tan 22.5° boundaries; ties kept on the left / upper side, as
 * OpenCV does), then hysteresis: pixels above `high` are edges, pixels above `low` are edges
 * when 8-connected to one. No blur first (cv2.Canny does none). Written here rather than taken
 * from a package: none on the registry is maintained and dependency-free, and this is ~100 lines.
 */
import { checkImage, type Image } from './image.js';
import { checkFinite, checkKeys, checkObject } from './validate.js';

/** Options of canny(). */
export interface CannyOptions {
  /** Gradient magnitude (|dx| + |dy| of 8-bit luminance, up to 2040) below which nothing is an edge. Default 100. */
  low?: number;
  /** Magnitude above which a pixel is an edge; pixels between low and high are edges when connected to one. Default 200. */
  high?: number;
}

/** The webui's ControlNet canny defaults. */
export const CANNY_DEFAULTS = { low: 100, high: 200 } as const;

/** Edges of an RGB(A) image (alpha ignored) as a 3-channel image: 255 on edges, 0 elsewhere. */
export function canny(image: Image, options?: CannyOptions): Image & { channels: 3 } {
  checkImage('image', image);
  const o = checkObject('options', options);
  checkKeys('options', o, ['low', 'high']);
  const low = o.low === undefined ? CANNY_DEFAULTS.low : checkFinite('options.low', o.low, 0, 4096);
  const high = o.high === undefined ? CANNY_DEFAULTS.high : checkFinite('options.high', o.high, 0, 4096);
  if (low > high) throw new RangeError(`options.low (${low}) must not exceed options.high (${high})`);
  const { width: w, height: h, channels, data } = image;

  const gray = new Float64Array(w * h);
  for (let i = 0; i < w * h; i++) {
    const p = i * channels;
    gray[i] = Math.round(0.299 * data[p]! + 0.587 * data[p + 1]! + 0.114 * data[p + 2]!);
  }
  // Reflect-101 (…, 2, 1 | 0, 1, 2, … | n-2, n-3, …): OpenCV's default border.
  const reflect = (i: number, n: number) => (n === 1 ? 0 : i < 0 ? -i : i >= n ? 2 * n - 2 - i : i);
  const at = (x: number, y: number) => gray[reflect(y, h) * w + reflect(x, w)]!;
  const dx = new Float64Array(w * h), dy = new Float64Array(w * h), mag = new Float64Array(w * h);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const gx = at(x + 1, y - 1) + 2 * at(x + 1, y) + at(x + 1, y + 1) - at(x - 1, y - 1) - 2 * at(x - 1, y) - at(x - 1, y + 1);
      const gy = at(x - 1, y + 1) + 2 * at(x, y + 1) + at(x + 1, y + 1) - at(x - 1, y - 1) - 2 * at(x, y - 1) - at(x + 1, y - 1);
      const i = y * w + x;
      dx[i] = gx;
      dy[i] = gy;
      mag[i] = Math.abs(gx) + Math.abs(gy);
    }
  }
  // Non-maximum suppression: 0 = not a candidate, 1 = weak, 2 = strong.
  const TAN22 = Math.tan(Math.PI / 8);
  const m = (x: number, y: number) => (x < 0 || y < 0 || x >= w || y >= h ? 0 : mag[y * w + x]!);
  const state = new Uint8Array(w * h);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const i = y * w + x;
      const v = mag[i]!;
      if (v <= low) continue;
      const ax = Math.abs(dx[i]!), ay = Math.abs(dy[i]!);
      let keep: boolean;
      if (ay <= ax * TAN22) keep = v > m(x - 1, y) && v >= m(x + 1, y);  // horizontal gradient: compare left/right
      else if (ay >= ax / TAN22) keep = v > m(x, y - 1) && v >= m(x, y + 1);  // vertical gradient: up/down
      else {
        const s = dx[i]! * dy[i]! < 0 ? -1 : 1;  // diagonal: the neighbours along the gradient
        keep = v > m(x - s, y - 1) && v > m(x + s, y + 1);
      }
      if (keep) state[i] = v > high ? 2 : 1;
    }
  }
  // Hysteresis: grow the strong edges through 8-connected weak ones.
  const stack: number[] = [];
  for (let i = 0; i < w * h; i++) if (state[i] === 2) stack.push(i);
  while (stack.length > 0) {
    const i = stack.pop()!;
    const x = i % w, y = (i - x) / w;
    for (let ny = y - 1; ny <= y + 1; ny++) {
      for (let nx = x - 1; nx <= x + 1; nx++) {
        if (nx < 0 || ny < 0 || nx >= w || ny >= h) continue;
        const j = ny * w + nx;
        if (state[j] === 1) {
          state[j] = 2;
          stack.push(j);
        }
      }
    }
  }
  const out = new Uint8Array(w * h * 3);
  for (let i = 0; i < w * h; i++) if (state[i] === 2) out.fill(255, i * 3, i * 3 + 3);
  return { width: w, height: h, channels: 3, data: out };
}
