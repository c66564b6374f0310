/**
 * RRDBNet (BasicSR's rrdbnet_arch) in float64, for the upscaler's tests: planar [C][H][W]
 * values, weights by BasicSR name as scripts/generator/esrgan.mjs returns them.
 */
import { conv2d } from './reference-nn.js';

type Weights = Map<string, { shape: number[]; values: Float32Array }>;
interface Planar {
  data: Float64Array;
  c: number;
  h: number;
  w: number;
}

const leaky = (x: Float64Array) => x.map((v) => (v < 0 ? 0.2 * v : v));

function conv(weights: Weights, name: string, x: Planar): Planar {
  const w = weights.get(`${name}.weight`)!;
  const b = weights.get(`${name}.bias`)?.values;
  const [oc, , k] = w.shape as [number, number, number];
  const y = conv2d(x.data, x.c, x.h, x.w, w.values, b, oc, k);
  return { data: Float64Array.from(y.data), c: oc, h: y.h, w: y.w };
}

const concat = (a: Planar, b: Planar): Planar => {
  const data = new Float64Array(a.data.length + b.data.length);
  data.set(a.data);
  data.set(b.data, a.data.length);
  return { data, c: a.c + b.c, h: a.h, w: a.w };
};

const axpy = (scale: number, x: Planar, y: Planar): Planar => ({ ...y, data: y.data.map((v, i) => scale * x.data[i]! + v) });

function upsample2x(x: Planar): Planar {
  const h = x.h * 2, w = x.w * 2, data = new Float64Array(x.c * h * w);
  for (let c = 0; c < x.c; c++)
    for (let y = 0; y < h; y++) for (let i = 0; i < w; i++) data[(c * h + y) * w + i] = x.data[(c * x.h + (y >> 1)) * x.w + (i >> 1)]!;
  return { data, c: x.c, h, w };
}

/** PyTorch's pixel_unshuffle(f). */
function unshuffle(x: Planar, f: number): Planar {
  const h = x.h / f, w = x.w / f, c = x.c * f * f, data = new Float64Array(c * h * w);
  for (let ch = 0; ch < x.c; ch++)
    for (let i = 0; i < f; i++)
      for (let j = 0; j < f; j++)
        for (let y = 0; y < h; y++)
          for (let xx = 0; xx < w; xx++) data[(((ch * f + i) * f + j) * h + y) * w + xx] = x.data[(ch * x.h + y * f + i) * x.w + xx * f + j]!;
  return { data, c, h, w };
}

/** Reflect padding on the right and bottom to multiples of f (numpy's 'reflect'). */
function padReflect(x: Planar, f: number): Planar {
  const h = Math.ceil(x.h / f) * f, w = Math.ceil(x.w / f) * f;
  const r = (n: number, size: number) => (n < size ? n : 2 * (size - 1) - n);
  const data = new Float64Array(x.c * h * w);
  for (let c = 0; c < x.c; c++)
    for (let y = 0; y < h; y++) for (let i = 0; i < w; i++) data[(c * h + y) * w + i] = x.data[(c * x.h + r(y, x.h)) * x.w + r(i, x.w)]!;
  return { data, c: x.c, h, w };
}

/**
 * The network on an 8-bit RGB image (interleaved, `channels` per pixel, alpha ignored): the
 * planar float output [3][h·s][w·s], before clamping and rounding.
 */
export function rrdbnetReference(weights: Weights, image: { width: number; height: number; channels: number; data: Uint8Array }): Planar {
  const unshuffleFactor = Math.round(Math.sqrt(weights.get('conv_first.weight')!.shape[1]! / 3));
  const plane = image.width * image.height;
  let x: Planar = { data: new Float64Array(3 * plane), c: 3, h: image.height, w: image.width };
  for (let i = 0; i < plane; i++) for (let c = 0; c < 3; c++) x.data[c * plane + i] = image.data[i * image.channels + c]! / 255;
  x = unshuffle(padReflect(x, unshuffleFactor), unshuffleFactor);

  const features = conv(weights, 'conv_first', x);
  let trunk = features;
  for (let b = 0; weights.has(`body.${b}.rdb1.conv1.weight`); b++) {
    let h = trunk;
    for (let k = 1; k <= 3; k++) {
      let inputs = h;
      for (let m = 1; m <= 4; m++) {
        const grown = conv(weights, `body.${b}.rdb${k}.conv${m}`, inputs);
        inputs = concat(inputs, { ...grown, data: leaky(grown.data) });
      }
      h = axpy(0.2, conv(weights, `body.${b}.rdb${k}.conv5`, inputs), h);
    }
    trunk = axpy(0.2, h, trunk);
  }
  let h = axpy(1, conv(weights, 'conv_body', trunk), features);
  for (let u = 1; weights.has(`conv_up${u}.weight`); u++) {
    const y = conv(weights, `conv_up${u}`, upsample2x(h));
    h = { ...y, data: leaky(y.data) };
  }
  const hr = conv(weights, 'conv_hr', h);
  const out = conv(weights, 'conv_last', { ...hr, data: leaky(hr.data) });
  // Crop the padding's share of the output.
  const s = out.w / x.w / unshuffleFactor;
  const ow = image.width * s, oh = image.height * s;
  const data = new Float64Array(3 * ow * oh);
  for (let c = 0; c < 3; c++) for (let y = 0; y < oh; y++) for (let i = 0; i < ow; i++) data[(c * oh + y) * ow + i] = out.data[(c * out.h + y) * out.w + i]!;
  return { data, c: 3, h: oh, w: ow };
}

/** Planar [3][h][w] in [0, 1] -> interleaved 8-bit, clamped and rounded (as the engine writes images). */
export function toPixels(x: Planar): Uint8Array {
  const plane = x.h * x.w, out = new Uint8Array(plane * 3);
  for (let i = 0; i < plane; i++) for (let c = 0; c < 3; c++) out[i * 3 + c] = Math.round(Math.min(1, Math.max(0, x.data[c * plane + i]!)) * 255);
  return out;
}
