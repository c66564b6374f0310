// The SD AutoencoderKL graphs (native/engine/nn/autoencoder_kl.cpp, pipeline/vae.cpp) against a
// float64 JS reference of LDM's Encoder/Decoder (ldm/modules/diffusionmodules/model.py) on the
// tiny generated model (four levels, 32/64 channels, f32 and f16 files): decoded 8-bit pixels
// and encoder moments, round-trip sizes, refused inputs, and a model without a VAE.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { native, type NativeImage, type NativeLatent, type NativeModel } from '../lib/native.js';
// @ts-expect-error: plain JavaScript module with JSDoc types
import { COMPONENT_PREFIXES, PRESETS, componentOf, generateModel, tensorBytes, tensorSpecs } from '../scripts/generate-model.mjs';
import { generatedWeights, type GeneratedWeights } from './support/generated-weights.js';
import { add, attention, conv2d, groupNorm, map, relativeError, silu, type Vec } from './support/reference-nn.js';
import { writeSafetensors } from './support/safetensors.js';

interface Spec {
  name: string;
  shape: number[];
  init: string;
}

interface VaeConfig {
  ch: number;
  chMult: number[];
  numResBlocks: number;
  zChannels: number;
  embedDim: number;
  inChannels: number;
  outChannels: number;
}

const vae = PRESETS.tiny.vae as VaeConfig;
const prefix = COMPONENT_PREFIXES.vae as string;
const specs = tensorSpecs(PRESETS.tiny) as Spec[];
const seed = 7;
const GROUPS = 32;
const EPS = 1e-6;
const SCALE = 0.18215; // SD1.x's latent scale factor
const levels = vae.chMult.length;
const factor = 2 ** (levels - 1);
const dir = mkdtempSync(join(tmpdir(), 'sdnode-vae-'));

// ---------------------------------------------------------------------------------------------
// Weights as the engine sees them

type Weights = GeneratedWeights;

/** The VAE's weights of the tiny model in `dtype`, decoded to float64 (keys without the prefix). */
function vaeWeights(dtype: 'f32' | 'f16'): Weights {
  return generatedWeights(specs, seed, dtype, prefix);
}

// ---------------------------------------------------------------------------------------------
// AutoencoderKL in float64, planar [C][H][W]

interface T {
  data: Vec;
  c: number;
  h: number;
  w: number;
}

interface RefOptions {
  /** Downsample with PyTorch's symmetric padding 1 instead of LDM's (0, 1, 0, 1): a wrong
   *  variant, to show the comparison can tell them apart. */
  symmetricDownsample?: boolean;
  /** Leave out the mid blocks' attention (another wrong variant). */
  noAttention?: boolean;
}

class Reference {
  constructor(
    private readonly wt: Weights,
    private readonly options: RefOptions = {},
  ) {}

  conv(x: T, name: string, stride = 1, pad?: number): T {
    const [oc, ic, k] = this.wt.shape(`${name}.weight`) as [number, number, number];
    if (ic !== x.c) throw new Error(`${name}: ${ic} input channels, the activation has ${x.c}`);
    const r = conv2d(x.data, x.c, x.h, x.w, this.wt.get(`${name}.weight`), this.wt.get(`${name}.bias`), oc, k, stride, pad ?? Math.floor(k / 2));
    return { data: r.data, c: oc, h: r.h, w: r.w };
  }

  norm(x: T, name: string): T {
    return { ...x, data: groupNorm(x.data, x.c, x.h * x.w, GROUPS, this.wt.get(`${name}.weight`), this.wt.get(`${name}.bias`), EPS) };
  }

  silu(x: T): T {
    return { ...x, data: map(x.data, silu) };
  }

  resnet(x: T, name: string): T {
    let h = this.conv(this.silu(this.norm(x, `${name}.norm1`)), `${name}.conv1`);
    h = this.conv(this.silu(this.norm(h, `${name}.norm2`)), `${name}.conv2`);
    const skip = h.c === x.c ? x : this.conv(x, `${name}.nin_shortcut`);
    return { ...h, data: add(skip.data, h.data) };
  }

  /** AttnBlock: one head over the H·W positions, 1×1 conv projections. */
  attn(x: T, name: string): T {
    const n = x.h * x.w;
    const h = this.norm(x, `${name}.norm`);
    const tokens = (t: T) => transpose(t.data, t.c, n); // [C][N] -> [N][C]
    const q = tokens(this.conv(h, `${name}.q`));
    const k = tokens(this.conv(h, `${name}.k`));
    const v = tokens(this.conv(h, `${name}.v`));
    const o: T = { ...x, data: transpose(attention(q, k, v, n, n, x.c), n, x.c) };
    return { ...x, data: add(x.data, this.conv(o, `${name}.proj_out`).data) };
  }

  /** Downsample: F.pad(x, (0, 1, 0, 1)), then a 3×3 conv with stride 2 and no padding. */
  downsample(x: T, name: string): T {
    if (this.options.symmetricDownsample) return this.conv(x, `${name}.conv`, 2, 1);
    const ph = x.h + 1, pw = x.w + 1;
    const p = new Float64Array(x.c * ph * pw);
    for (let c = 0; c < x.c; c++)
      for (let y = 0; y < x.h; y++)
        for (let i = 0; i < x.w; i++) p[(c * ph + y) * pw + i] = x.data[(c * x.h + y) * x.w + i]!;
    return this.conv({ data: p, c: x.c, h: ph, w: pw }, `${name}.conv`, 2, 0);
  }

  /** Upsample: nearest ×2, then a same-size 3×3 conv. */
  upsample(x: T, name: string): T {
    const h = x.h * 2, w = x.w * 2;
    const u = new Float64Array(x.c * h * w);
    for (let c = 0; c < x.c; c++)
      for (let y = 0; y < h; y++)
        for (let i = 0; i < w; i++) u[(c * h + y) * w + i] = x.data[(c * x.h + (y >> 1)) * x.w + (i >> 1)]!;
    return this.conv({ data: u, c: x.c, h, w }, `${name}.conv`);
  }

  mid(x: T, name: string): T {
    x = this.resnet(x, `${name}.block_1`);
    if (!this.options.noAttention) x = this.attn(x, `${name}.attn_1`);
    return this.resnet(x, `${name}.block_2`);
  }

  /** Encoder + quant_conv: image in [-1, 1] -> moments [2·z][h/f][w/f]. */
  encode(x: T): T {
    x = this.conv(x, 'encoder.conv_in');
    for (let level = 0; level < levels; level++) {
      for (let b = 0; b < vae.numResBlocks; b++) x = this.resnet(x, `encoder.down.${level}.block.${b}`);
      if (level !== levels - 1) x = this.downsample(x, `encoder.down.${level}.downsample`);
    }
    x = this.mid(x, 'encoder.mid');
    x = this.conv(this.silu(this.norm(x, 'encoder.norm_out')), 'encoder.conv_out');
    return this.conv(x, 'quant_conv');
  }

  /** post_quant_conv + Decoder: latent (already divided by the scale factor) -> image about [-1, 1]. */
  decode(z: T): T {
    let x = this.conv(this.conv(z, 'post_quant_conv'), 'decoder.conv_in');
    x = this.mid(x, 'decoder.mid');
    for (let level = levels - 1; level >= 0; level--) {
      for (let b = 0; b <= vae.numResBlocks; b++) x = this.resnet(x, `decoder.up.${level}.block.${b}`);
      if (level !== 0) x = this.upsample(x, `decoder.up.${level}.upsample`);
    }
    return this.conv(this.silu(this.norm(x, 'decoder.norm_out')), 'decoder.conv_out');
  }
}

/** [rows][cols] -> [cols][rows]. */
function transpose(x: ArrayLike<number>, rows: number, cols: number): Vec {
  const y = new Float64Array(rows * cols);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) y[c * rows + r] = x[r * cols + c]!;
  return y;
}

/** What decode_latent does around the network: latent / scale in, (x + 1) / 2 clamped, 8-bit out. */
function referenceDecode(ref: Reference, latent: NativeLatent, scale: number): { image: NativeImage; unclamped: number } {
  const z: T = { data: Float64Array.from(latent.data, (v) => v / scale), c: latent.channels, h: latent.height, w: latent.width };
  const x = ref.decode(z);
  const plane = x.h * x.w;
  const data = new Uint8Array(plane * 3);
  let unclamped = 0;
  for (let i = 0; i < plane; i++) {
    for (let c = 0; c < 3; c++) {
      const v = (x.data[c * plane + i]! + 1) / 2;
      if (v > 0 && v < 1) unclamped++;
      data[i * 3 + c] = Math.round(Math.min(1, Math.max(0, v)) * 255);
    }
  }
  return { image: { width: x.w, height: x.h, channels: 3, data }, unclamped: unclamped / data.length };
}

/** What encode_image_moments does around the network: 8-bit RGB(A) -> [-1, 1] planar. */
function referenceMoments(ref: Reference, image: NativeImage): Vec {
  const plane = image.width * image.height;
  const x = new Float64Array(3 * plane);
  for (let i = 0; i < plane; i++) for (let c = 0; c < 3; c++) x[c * plane + i] = (image.data[i * image.channels + c]! / 255) * 2 - 1;
  return ref.encode({ data: x, c: 3, h: image.height, w: image.width }).data;
}

// ---------------------------------------------------------------------------------------------
// Inputs: deterministic pseudo-random latents and smooth-ish images

function rng(state: number): () => number {
  return () => {
    state = (state + 0x6d2b79f5) | 0;
    let t = Math.imul(state ^ (state >>> 15), 1 | state);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A latent as a sampler leaves it: ~N(0, 1) values (z · scale), planar. */
function makeLatent(channels: number, height: number, width: number, s: number): NativeLatent {
  const r = rng(s);
  const data = new Float32Array(channels * height * width);
  for (let i = 0; i < data.length; i++) data[i] = Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r());
  return { channels, height, width, data };
}

/** Gradients plus noise, so every level sees structure. */
function makeImage(width: number, height: number, channels: number, s: number): NativeImage {
  const r = rng(s);
  const data = new Uint8Array(width * height * channels);
  for (let y = 0; y < height; y++)
    for (let x = 0; x < width; x++)
      for (let c = 0; c < channels; c++) {
        const base = c === 0 ? (255 * x) / width : c === 1 ? (255 * y) / height : 128 + 100 * Math.sin((x + y) / 3);
        data[(y * width + x) * channels + c] = Math.max(0, Math.min(255, Math.round(base + 60 * (r() - 0.5))));
      }
  return { width, height, channels, data };
}

function maxPixelDiff(a: NativeImage, b: NativeImage): { max: number; over1: number } {
  expect(a.data.length).toBe(b.data.length);
  let max = 0, over1 = 0;
  for (let i = 0; i < a.data.length; i++) {
    const d = Math.abs(a.data[i]! - b.data[i]!);
    max = Math.max(max, d);
    if (d > 1) over1++;
  }
  return { max, over1 };
}

// ---------------------------------------------------------------------------------------------
// The engine

let f32Model: NativeModel;
let f16Model: NativeModel;
const f32 = vaeWeights('f32');
const f16 = vaeWeights('f16');

const load = (path: string) =>
  native().NativeModel.load({ model: path, ema: false, device: 'cpu', threads: 2, weightType: '' }).promise;

const decode = (model: NativeModel, latent: NativeLatent, scale = SCALE, onProgress?: (p: { step: number }) => void) =>
  model.decodeLatent(latent, scale, undefined, onProgress).promise;
const encode = (model: NativeModel, image: NativeImage) => model.encodeImageMoments(image).promise;

// Latent 4 × 6 × 5 (C × H × W) -> image 40 × 48; image 40 × 24 (W × H) -> moments 8 × 3 × 5.
const latent = makeLatent(vae.embedDim, 6, 5, 1);
const image = makeImage(40, 24, 3, 2);

beforeAll(async () => {
  const f32Path = join(dir, 'tiny-f32.safetensors');
  const f16Path = join(dir, 'tiny-f16.safetensors');
  await generateModel({ out: f32Path, preset: 'tiny', dtype: 'f32', seed });
  await generateModel({ out: f16Path, preset: 'tiny', dtype: 'f16', seed });
  f32Model = await load(f32Path);
  f16Model = await load(f16Path);
}, 120_000);

afterAll(() => {
  f32Model?.dispose();
  f16Model?.dispose();
  rmSync(dir, { recursive: true, force: true });
});

describe('AutoencoderKL (tiny model, CPU)', () => {
  const measured: Record<string, number> = {};
  afterAll(() => console.log('vae measured errors:', measured));

  it('decoder, f32 weights: 8-bit pixels within ±1 of the reference, with progress', async () => {
    const steps: number[] = [];
    const out = await decode(f32Model, latent, SCALE, (p) => steps.push(p.step));
    expect([out.width, out.height, out.channels]).toEqual([latent.width * factor, latent.height * factor, 3]);
    const ref = referenceDecode(new Reference(f32), latent, SCALE);
    // The comparison means something only where the output is not clamped.
    expect(ref.unclamped).toBeGreaterThan(0.3);
    measured.decodeUnclampedFraction = ref.unclamped;
    const { max, over1 } = maxPixelDiff(out, ref.image);
    measured.decodeMaxPixelDiffF32 = max;
    expect(over1).toBe(0);
    expect(max).toBeLessThanOrEqual(1);
    expect(steps.length).toBeGreaterThan(0);
  });

  it('decoder: the comparison tells a wrong network apart (no mid attention, another scale factor)', async () => {
    const out = await decode(f32Model, latent);
    const noAttn = referenceDecode(new Reference(f32, { noAttention: true }), latent, SCALE).image;
    expect(maxPixelDiff(out, noAttn).over1).toBeGreaterThan(out.data.length / 20);
    const otherScale = await decode(f32Model, latent, SCALE * 1.5);
    expect(maxPixelDiff(out, otherScale).over1).toBeGreaterThan(out.data.length / 20);
  });

  it('encoder, f32 weights: moments within 1e-4 relative of the reference', async () => {
    const moments = await encode(f32Model, image);
    expect([moments.channels, moments.height, moments.width]).toEqual([2 * vae.embedDim, image.height / factor, image.width / factor]);
    const err = relativeError(moments.data, referenceMoments(new Reference(f32), image));
    measured.momentsRelErrF32 = err;
    expect(err).toBeLessThan(1e-4);
    // LDM's asymmetric downsample padding matters: the symmetric variant is far off.
    const wrong = relativeError(moments.data, referenceMoments(new Reference(f32, { symmetricDownsample: true }), image));
    measured.momentsRelErrSymmetricPadVariant = wrong;
    expect(wrong).toBeGreaterThan(1e-2);
  });

  it('encoder: an RGBA image gives the same moments as its RGB (alpha ignored)', async () => {
    const rgba = makeImage(image.width, image.height, 4, 3);
    const rgb = new Uint8Array(image.width * image.height * 3);
    for (let i = 0; i < image.width * image.height; i++) for (let c = 0; c < 3; c++) rgb[i * 3 + c] = rgba.data[i * 4 + c]!;
    const a = await encode(f32Model, rgba);
    const b = await encode(f32Model, { ...rgba, channels: 3, data: rgb });
    expect(relativeError(a.data, b.data)).toBe(0);
  });

  it('f16 weights: decoder and encoder match the reference on the same f16 values, looser', async () => {
    const out = await decode(f16Model, latent);
    const ref = referenceDecode(new Reference(f16), latent, SCALE);
    const { max, over1 } = maxPixelDiff(out, ref.image);
    measured.decodeMaxPixelDiffF16 = max;
    measured.decodePixelsOver1F16 = over1;
    // The CPU unfolds the convolutions' inputs in f32 (Conv2d::f32_columns) whatever the
    // kernels' type: only the f16 kernels and the attention's f16 products round. With f16
    // columns the moments were 1.1e-3 off; now 3.3e-4.
    expect(max).toBeLessThanOrEqual(1);
    expect(over1).toBe(0);
    const moments = await encode(f16Model, image);
    const err = relativeError(moments.data, referenceMoments(new Reference(f16), image));
    measured.momentsRelErrF16 = err;
    expect(err).toBeLessThan(6e-4);
  });

  it('round trip: image -> moments -> mean · scale -> image of the same size', async () => {
    const moments = await encode(f32Model, image);
    const z = vae.embedDim;
    const plane = moments.width * moments.height;
    const mean = Float32Array.from(moments.data.subarray(0, z * plane), (v) => v * SCALE);
    const out = await decode(f32Model, { channels: z, width: moments.width, height: moments.height, data: mean });
    expect([out.width, out.height, out.channels]).toEqual([image.width, image.height, 3]);
    expect(out.data.length).toBe(image.width * image.height * 3);
  });
});

describe('refused inputs', () => {
  const invalid = { code: 'ERR_INVALID_ARGUMENT' };

  it('a latent with the wrong channel count', async () => {
    await expect(decode(f32Model, makeLatent(vae.embedDim - 1, 6, 5, 3))).rejects.toMatchObject({
      ...invalid,
      message: expect.stringMatching(/channels/),
    });
    await expect(decode(f32Model, makeLatent(2 * vae.embedDim, 6, 5, 3))).rejects.toMatchObject(invalid);
  });

  it('a scale factor that is not a positive finite number', async () => {
    await expect(decode(f32Model, latent, 0)).rejects.toMatchObject(invalid);
    await expect(decode(f32Model, latent, -1)).rejects.toMatchObject(invalid);
    await expect(decode(f32Model, latent, Number.NaN)).rejects.toMatchObject(invalid);
  });

  it(`image sides that are not multiples of ${factor}; 1- or 2-channel images`, async () => {
    await expect(encode(f32Model, makeImage(factor * 5 - factor / 2, 24, 3, 4))).rejects.toMatchObject({
      ...invalid,
      message: expect.stringContaining(`multiples of ${factor}`),
    });
    await expect(encode(f32Model, makeImage(40, 20, 3, 4))).rejects.toMatchObject(invalid);
    await expect(encode(f32Model, makeImage(40, 24, 2, 4))).rejects.toMatchObject(invalid);
    await expect(encode(f32Model, makeImage(40, 24, 1, 4))).rejects.toMatchObject(invalid);
  });

  it('a buffer shorter than its sides say: refused by the addon before any job (RangeError)', () => {
    expect(() => f32Model.decodeLatent({ ...latent, data: latent.data.subarray(1) }, SCALE)).toThrow(RangeError);
    expect(() => f32Model.encodeImageMoments({ ...image, data: image.data.subarray(3) })).toThrow(RangeError);
  });

  it('absurd sizes: refused before allocating', async () => {
    // 256 × 256 latent cells: the mid attention alone would hold 65536² scores.
    const big = makeLatent(vae.embedDim, 256, 256, 5);
    await expect(decode(f32Model, big)).rejects.toMatchObject({ code: 'ERR_RESOURCE', message: expect.stringMatching(/too large/) });
    // A strip whose decoded width would pass 65536 pixels.
    const strip = makeLatent(vae.embedDim, 1, 65536 / factor + 1, 6);
    await expect(decode(f32Model, strip)).rejects.toMatchObject(invalid);
  });

  it('the engine still works after the refusals', async () => {
    const out = await decode(f32Model, latent);
    expect(maxPixelDiff(out, referenceDecode(new Reference(f32), latent, SCALE).image).max).toBeLessThanOrEqual(1);
  });

  it('a model without a VAE: ERR_MODEL_COMPATIBILITY naming what is missing', async () => {
    const path = join(dir, 'no-vae.safetensors');
    writeSafetensors(
      path,
      specs
        .filter((s) => componentOf(s.name) !== 'vae')
        .map((s) => ({
          name: s.name,
          dtype: s.init === 'position_ids' ? ('I64' as const) : ('F16' as const),
          shape: s.shape,
          data: tensorBytes(s, seed, 'f16') as Uint8Array,
        })),
    );
    const model = await load(path);
    try {
      await expect(decode(model, latent)).rejects.toMatchObject({
        code: 'ERR_MODEL_COMPATIBILITY',
        message: expect.stringContaining(`${prefix}decoder.conv_in.weight`),
      });
      await expect(encode(model, image)).rejects.toMatchObject({
        code: 'ERR_MODEL_COMPATIBILITY',
        message: expect.stringContaining(`${prefix}encoder.conv_in.weight`),
      });
    } finally {
      model.dispose();
    }
  });
});
