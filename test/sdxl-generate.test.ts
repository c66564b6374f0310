// SDXL text-to-image on the tiny-sdxl generated model: generate() against the parts composed by
// hand (each proven on its own in clip-text and unet tests): tokens padded with EOS, bigG's ids
// zero after each window's EOS, both encoders' penultimate layers without the final norm joined
// per token, y = [bigG's pooled vector | sinusoidal embeddings of original size, crop and target
// size, each (h, w)], one Euler step with CFG, the VAE at SDXL's scale. With a negative prompt,
// with an empty one (zero hidden states, the empty prompt's pooled vector), and with size
// conditioning options; the options refused on SD1.x models or when malformed.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { loadAutoencoder, loadModel, type Image, type Model } from '../lib/index.js';
import { native, type NativeModel } from '../lib/native.js';
import { ClipTokenizer } from '../lib/text/clip-tokenizer.js';
import { encodePrompt } from '../lib/text/prompt-weights.js';
// @ts-expect-error: plain JavaScript module with JSDoc types
import { PRESETS, SDXL_SIZE_EMBEDDINGS, generateModel } from '../scripts/generate-model.mjs';
import { psnr } from './support/data.js';
import { EMBEDDING_WIDTH as SIZE_EMBEDDING_WIDTH, SDXL_VAE_SCALE, eulerStepAndDecode, vectorY } from './support/sdxl-compose.js';
import { tinyTaeDecoder } from './support/tiny-tae.js';
import { writeTorchCheckpoint } from './support/torch-zip.js';

interface TextConfig {
  width: number;
  positions: number;
  projectionDim?: number;
}

const config = PRESETS['tiny-sdxl'] as { unet: { admInChannels: number; contextDim: number }; clip: TextConfig; clip2: TextConfig };
const dir = mkdtempSync(join(tmpdir(), 'sdnode-sdxl-generate-'));
const sdxlPath = join(dir, 'tiny-sdxl.safetensors');
const sd1Path = join(dir, 'tiny.safetensors');
const cpu = { device: 'cpu', threads: 2 } as const;
/** The engine's internal prefix of SDXL's second encoder (native/engine/io/name_map_internal.h kText2). */
const TEXT2_PREFIX = 'cond_stage_model.1.transformer.text_model.';
const LATENT_CHANNELS = 4;

let model: Model;
let sd1: Model;
let parts: NativeModel;
let heads: { unet: { headDim: number }; clip: { numHeads: number }; clip2: { numHeads: number } };

beforeAll(async () => {
  const result = (await generateModel({ out: sdxlPath, preset: 'tiny-sdxl', dtype: 'f32', seed: 3 })) as { metadata: Record<string, string> };
  heads = JSON.parse(result.metadata['sdnode.attention_heads']!);
  await generateModel({ out: sd1Path, preset: 'tiny', dtype: 'f16', seed: 3 });
  model = await loadModel(sdxlPath, cpu);
  sd1 = await loadModel(sd1Path, cpu);
  parts = await native().NativeModel.load({ model: sdxlPath, ema: false, device: 'cpu', threads: 2, weightType: '' }).promise;
}, 120_000);

afterAll(async () => {
  await model?.dispose();
  await sd1?.dispose();
  parts?.dispose();
  rmSync(dir, { recursive: true, force: true });
});

// ---------------------------------------------------------------------------------------------
// The hand composition

const tok = ClipTokenizer.default();

/** bigG's ids: each window's tokens up to its first EOS, 0 after it (OpenCLIP pads with 0). */
function zeroAfterEos(ids: Int32Array, positions: number): Int32Array {
  const out = Int32Array.from(ids);
  for (let start = 0; start < out.length; start += positions) {
    const at = out.subarray(start, start + positions).indexOf(tok.eos);
    if (at >= 0) out.fill(0, start + at + 1, start + positions);
  }
  return out;
}

/** A one-window prompt through both encoders: hidden states [tokens][w1 + w2] and bigG's pooled vector. */
async function encodeBoth(text: string): Promise<{ states: Float32Array; pooled: Float32Array }> {
  const p = encodePrompt(tok, text); // SDXL pads with EOS, as SD1.x
  expect(p.chunkCount).toBe(1);
  const { positions } = config.clip;
  const a = await parts.encodeTokens(p.ids, 1, { heads: heads.clip.numHeads, quickGelu: true, clipSkip: 2, finalNorm: false }).promise;
  const b = await parts.encodeTokens(zeroAfterEos(p.ids, positions), 1, {
    prefix: TEXT2_PREFIX, heads: heads.clip2.numHeads, quickGelu: false, clipSkip: 2, finalNorm: false, pooled: true,
  }).promise;
  const w1 = config.clip.width, w2 = config.clip2.width;
  const states = new Float32Array(positions * (w1 + w2));
  for (let t = 0; t < positions; t++) {
    states.set(a.hidden.subarray(t * w1, (t + 1) * w1), t * (w1 + w2));
    states.set(b.hidden.subarray(t * w2, (t + 1) * w2), t * (w1 + w2) + w1);
  }
  return { states, pooled: b.pooled! };
}

interface SizeConditioning {
  original: { width: number; height: number };
  crop: { left: number; top: number };
  target: { width: number; height: number };
}

/** sgm's vector y: pooled text, then original (h, w), crop (top, left), target (h, w). */
function sizeY(pooled: Float32Array, s: SizeConditioning): Float32Array {
  return vectorY(pooled, [s.original.height, s.original.width, s.crop.top, s.crop.left, s.target.height, s.target.width]);
}

interface Job {
  prompt: string;
  negativePrompt: string;
  seed: bigint;
  cfg: number;
  width: number;
  height: number;
  size: SizeConditioning;
  /** Use the empty negative prompt's real hidden states instead of zeros (to show the zeros matter). */
  keepEmptyStates?: boolean;
  /** Zero the negative's pooled vector too (to show the pooled vector matters). */
  zeroNegativePooled?: boolean;
}

/** tokens → both encoders → y → one Euler step with CFG (to sigma 0: the denoised latent) → VAE. */
async function composeByHand(j: Job): Promise<Image> {
  const { width: w, height: h, cfg } = j;
  const cond = await encodeBoth(j.prompt);
  const uncond = await encodeBoth(j.negativePrompt);
  if (j.negativePrompt === '' && !j.keepEmptyStates) uncond.states.fill(0); // the pooled vector stays
  if (j.zeroNegativePooled) uncond.pooled.fill(0);
  const uncondY = sizeY(uncond.pooled, j.size), condY = sizeY(cond.pooled, j.size);
  expect(uncondY.length).toBe(config.unet.admInChannels);
  const image = await eulerStepAndDecode(parts, { uncondStates: uncond.states, condStates: cond.states, uncondY, condY }, {
    seed: j.seed, width: w, height: h, cfg, tokens: config.clip.positions, headDim: heads.unet.headDim,
  });
  expect(image.channels).toBe(3);
  return image;
}

const defaults = (w: number, h: number): SizeConditioning => ({ original: { width: w, height: h }, crop: { left: 0, top: 0 }, target: { width: w, height: h } });

const measured: Record<string, { maxDiff: number; meanDiff: number; psnr: number | string }> = {};
/** Mean absolute pixel differences of the images that must differ. */
const apart: Record<string, number> = {};
afterAll(() => {
  console.log('[sdxl-generate] generate() vs the hand composition:', JSON.stringify(measured));
  console.log('[sdxl-generate] mean pixel differences of images that must differ:', JSON.stringify(apart));
});

/** The pixel differences, held to txt2img's tolerance: float rounding in the Euler update may move a pixel across a rounding edge. */
function expectSame(label: string, got: Image, want: Image) {
  expect(got).toMatchObject({ width: want.width, height: want.height, channels: 3 });
  let max = 0, sum = 0;
  for (let i = 0; i < want.data.length; i++) {
    const d = Math.abs(want.data[i]! - got.data[i]!);
    max = Math.max(max, d);
    sum += d;
  }
  const db = psnr(got, want);
  measured[label] = { maxDiff: max, meanDiff: sum / want.data.length, psnr: Number.isFinite(db) ? db : 'identical' };
  expect(max).toBeLessThanOrEqual(1);
  expect(sum / want.data.length).toBeLessThan(0.05);
}

/** Mean absolute pixel difference of two images that must differ (recorded as `label`). */
function meanDiff(label: string, a: Image, b: Image): number {
  let sum = 0;
  for (let i = 0; i < a.data.length; i++) sum += Math.abs(a.data[i]! - b.data[i]!);
  return (apart[label] = sum / a.data.length);
}

// ---------------------------------------------------------------------------------------------

describe('SDXL generate (tiny-sdxl, CPU)', () => {
  const base = { width: 64, height: 64, steps: 1, sampler: 'euler', cfgScale: 7 } as const;

  it('the test setup: an SDXL model, y as wide as pooled + six size embeddings', () => {
    expect(model.info.family).toBe('sdxl');
    expect(sd1.info.family).toBe('sd1');
    expect(config.unet.admInChannels).toBe(config.clip2.projectionDim! + 6 * SIZE_EMBEDDING_WIDTH);
    expect(SDXL_SIZE_EMBEDDINGS).toBe(6 * SIZE_EMBEDDING_WIDTH);
    expect(config.unet.contextDim).toBe(config.clip.width + config.clip2.width);
  });

  it('(a) with a negative prompt: equals the parts composed by hand', async () => {
    const job: Job = { prompt: 'a lovely cat', negativePrompt: 'blurry', seed: 5n, cfg: 7, width: 64, height: 64, size: defaults(64, 64) };
    const r = await model.generate({ ...base, prompt: job.prompt, negativePrompt: job.negativePrompt, seed: job.seed });
    expect(r.images).toHaveLength(1);
    expect(r.seed).toBe(5n);
    expectSame('a-negative', r.images[0]!, await composeByHand(job));
  });

  it("(b) negativePrompt '': zero hidden states, the empty prompt's pooled vector in y", async () => {
    const job: Job = { prompt: 'a house by the sea', negativePrompt: '', seed: 11n, cfg: 7, width: 64, height: 64, size: defaults(64, 64) };
    const r = await model.generate({ ...base, prompt: job.prompt, negativePrompt: '', seed: job.seed });
    expectSame('b-empty-negative', r.images[0]!, await composeByHand(job));
    // The zeros matter: the empty prompt's real hidden states give another image.
    const unzeroed = await composeByHand({ ...job, keepEmptyStates: true });
    expect(meanDiff('b-vs-unzeroed-states', r.images[0]!, unzeroed)).toBeGreaterThan(0.5);
    // And the pooled vector stays: zeroing it too gives another image.
    const nothing = await composeByHand({ ...job, zeroNegativePooled: true });
    expect(meanDiff('b-vs-zeroed-pooled', r.images[0]!, nothing)).toBeGreaterThan(0.5);
    // The default negative prompt is ''.
    const omitted = await model.generate({ ...base, prompt: job.prompt, seed: job.seed });
    expect(Array.from(omitted.images[0]!.data)).toEqual(Array.from(r.images[0]!.data));
  });

  it('(c) originalSize 1024×768 and cropCoords (16, 32): another image, the hand composition with those values', async () => {
    const job: Job = {
      prompt: 'a lovely cat', negativePrompt: 'blurry', seed: 5n, cfg: 7, width: 64, height: 64,
      size: { original: { width: 1024, height: 768 }, crop: { left: 16, top: 32 }, target: { width: 64, height: 64 } },
    };
    const plain = await model.generate({ ...base, prompt: job.prompt, negativePrompt: job.negativePrompt, seed: job.seed });
    const r = await model.generate({
      ...base, prompt: job.prompt, negativePrompt: job.negativePrompt, seed: job.seed,
      originalSize: { width: 1024, height: 768 }, cropCoords: { left: 16, top: 32 },
    });
    expect(meanDiff('c-vs-defaults', r.images[0]!, plain.images[0]!)).toBeGreaterThan(0.5);
    expectSame('c-original-crop', r.images[0]!, await composeByHand(job));
    // (h, w) and (top, left) in that order: the swapped values give another image.
    const swapped = await composeByHand({ ...job, size: { ...job.size, original: { width: 768, height: 1024 }, crop: { left: 32, top: 16 } } });
    expect(meanDiff('c-vs-swapped', r.images[0]!, swapped)).toBeGreaterThan(0.5);
  });

  it('(d) targetSize 512×256: the hand composition with (h, w) = (256, 512)', async () => {
    const job: Job = {
      prompt: 'a lovely cat', negativePrompt: 'blurry', seed: 5n, cfg: 7, width: 64, height: 64,
      size: { original: { width: 64, height: 64 }, crop: { left: 0, top: 0 }, target: { width: 512, height: 256 } },
    };
    const r = await model.generate({ ...base, prompt: job.prompt, negativePrompt: job.negativePrompt, seed: job.seed, targetSize: { width: 512, height: 256 } });
    expectSame('d-target', r.images[0]!, await composeByHand(job));
    const swapped = await composeByHand({ ...job, size: { ...job.size, target: { width: 256, height: 512 } } });
    expect(meanDiff('d-vs-swapped', r.images[0]!, swapped)).toBeGreaterThan(0.5);
  });

  it('options refused: size conditioning on an SD1.x model, sizes out of range, unknown keys', () => {
    expect(() => sd1.generate({ prompt: 'x', originalSize: { width: 64, height: 64 } })).toThrow(TypeError);
    expect(() => sd1.generate({ prompt: 'x', targetSize: { width: 64, height: 64 } })).toThrow(TypeError);
    expect(() => sd1.generate({ prompt: 'x', cropCoords: { left: 0, top: 0 } })).toThrow(TypeError);
    expect(() => model.generate({ prompt: 'x', originalSize: { width: 0, height: 64 } })).toThrow(RangeError);
    expect(() => model.generate({ prompt: 'x', targetSize: { width: 64, height: -1 } })).toThrow(RangeError);
    expect(() => model.generate({ prompt: 'x', cropCoords: { left: -1, top: 0 } })).toThrow(RangeError);
    expect(() => model.generate({ prompt: 'x', originalSize: { width: 64, height: 64, depth: 1 } as never })).toThrow(TypeError);
    expect(() => model.generate({ prompt: 'x', cropCoords: { x: 0, y: 0 } as never })).toThrow(TypeError);
    expect(() => model.generate({ prompt: 'x', originalSize: 1024 as never })).toThrow(TypeError);
  });
});

describe('SDXL latent2rgb previews', () => {
  // stable-diffusion.cpp's SDXL projection (latent-preview.h): rgb = Σ latent·w + bias, in [-1, 1].
  const W = [
    [0.258303, 0.27764, 0.329699],
    [-0.299701, 0.105446, 0.014194],
    [0.050522, 0.186163, -0.143257],
    [-0.211938, -0.149892, -0.080036],
  ];
  const BIAS = [0.144381, -0.033313, 0.007061];
  const SD1_W = [
    [0.298, 0.207, 0.208],
    [0.187, 0.286, 0.173],
    [-0.158, 0.189, 0.264],
    [-0.184, -0.271, -0.473],
  ];
  /** The preview of a planar latent with one factor set, 8×8 pixels per cell. */
  function project(latent: { width: number; height: number; data: Float32Array }, w: number[][], bias: number[]): Uint8Array {
    const cells = latent.width * latent.height, out = new Uint8Array(cells * 64 * 3), width = latent.width * 8;
    for (let y = 0; y < latent.height * 8; y++)
      for (let x = 0; x < width; x++) {
        const i = (y >> 3) * latent.width + (x >> 3);
        for (let c = 0; c < 3; c++) {
          let v = bias[c]!;
          for (let l = 0; l < LATENT_CHANNELS; l++) v += latent.data[l * cells + i]! * w[l]![c]!;
          out[(y * width + x) * 3 + c] = Math.round(Math.min(1, Math.max(0, (v + 1) / 2)) * 255);
        }
      }
    return out;
  }

  it("'latent2rgb' of the final latent uses SDXL's factors, not SD1.x's; vae: 'tae' decodes that latent", async () => {
    const tokens = (text: string) => {
      const p = encodePrompt(tok, text);
      return { ids: p.ids, ids2: zeroAfterEos(p.ids, 77), weights: p.weights, windows: p.chunkCount };
    };
    const events: Array<{ step: number; preview?: { data: Uint8Array } }> = [];
    const r = await parts.generate(
      {
        prompt: tokens('a lovely cat'), negative: tokens('blurry'), empty: tokens(''),
        textEncoders: [
          { heads: heads.clip.numHeads, quickGelu: true, clipSkip: 2, finalNorm: false },
          { prefix: TEXT2_PREFIX, heads: heads.clip2.numHeads, quickGelu: false, clipSkip: 2, finalNorm: false, pooled: true },
        ],
        size: { originalWidth: 64, originalHeight: 32, cropLeft: 0, cropTop: 0, targetWidth: 64, targetHeight: 32 },
        unetHeads: 0, unetHeadDim: heads.unet.headDim, prediction: 'epsilon', width: 64, height: 32, steps: 2, sampler: 'euler',
        scheduler: 'discrete', cfgScale: 7, vaeScale: SDXL_VAE_SCALE, seed: 11n, rng: 'cuda', batchCount: 1, decode: false,
        preview: 'latent2rgb', previewInterval: 1, latentFormat: 'sdxl',
      },
      (p) => events.push(p),
    ).promise;
    const latent = r.latents[0]!;
    const last = events.at(-1)!.preview!.data;
    const expected = project(latent, W, BIAS);
    let off = 0;
    for (let i = 0; i < expected.length; i++) off = Math.max(off, Math.abs(last[i]! - expected[i]!));
    expect(off).toBeLessThanOrEqual(1);
    // SD1.x's factors would give another picture.
    const sd1 = project(latent, SD1_W, [0, 0, 0]);
    let differs = 0;
    for (let i = 0; i < sd1.length; i++) differs += Math.abs(last[i]! - sd1[i]!) > 2 ? 1 : 0;
    expect(differs / sd1.length).toBeGreaterThan(0.2);

    // vae: 'tae' with a TAESDXL-shaped decoder decodes that same latent as the sampler leaves it
    // (TAESDXL takes SDXL's scaled latents as TAESD takes SD1's: nothing family-specific in between).
    const taePath = join(dir, 'taesdxl_decoder.pth');
    writeTorchCheckpoint(taePath, tinyTaeDecoder({ latentChannels: 4, width: 8, blocks: 1, stages: 3, pool: false }));
    await using tae = await loadAutoencoder({ decoder: taePath }, cpu);
    await using withTae = await loadModel({ model: sdxlPath, tae: taePath }, cpu);
    const fast = await withTae.generate({ prompt: 'a lovely cat', negativePrompt: 'blurry', width: 64, height: 32, steps: 2, sampler: 'euler', cfgScale: 7, seed: 11n, vae: 'tae' });
    const direct = await tae.decode({ channels: latent.channels, width: latent.width, height: latent.height, data: latent.data });
    let taeOff = 0;
    for (let i = 0; i < direct.data.length; i++) taeOff = Math.max(taeOff, Math.abs(fast.images[0]!.data[i]! - direct.data[i]!));
    expect(taeOff).toBeLessThanOrEqual(1);
  });

  it('an unknown latent format is refused', async () => {
    const p = encodePrompt(tok, 'x');
    const t = { ids: p.ids, weights: p.weights, windows: p.chunkCount };
    const params = {
      prompt: t, negative: t, empty: t, textEncoders: [{ heads: heads.clip.numHeads, quickGelu: true, clipSkip: 1 }], unetHeads: 0, unetHeadDim: 32,
      prediction: 'epsilon', width: 32, height: 32, steps: 1, sampler: 'euler', scheduler: 'discrete', cfgScale: 7, vaeScale: 0.18215,
      seed: 1n, rng: 'cuda', batchCount: 1, decode: false, preview: 'latent2rgb', latentFormat: 'flux',
    };
    await expect(parts.generate(params as never).promise).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
  });
});

describe("SDXL's VAE in f16: inputs scaled around every convolution", () => {
  // A latent whose values, divided by SDXL's scale factor, pass f16's 65504 at the decoder's
  // first convolution: unfolded in f16 (what GPUs do), they become infinite unless scaled
  // (test/device-parity.test.ts checks that on the device). The CPU unfolds in f32
  // (Conv2d::f32_columns), where neither overflow nor scale changes anything.
  const latent = { channels: 4, width: 4, height: 4, data: Float32Array.from({ length: 64 }, (_, i) => (i % 2 ? 1 : -1) * (9000 + 37 * i)) };

  it("on the CPU: finite and the f32 file's image with or without the scale", async () => {
    const f16Path = join(dir, 'tiny-sdxl-f16.safetensors');
    await generateModel({ out: f16Path, preset: 'tiny-sdxl', dtype: 'f16', seed: 3 });
    const load = (path: string) => native().NativeModel.load({ model: path, ema: false, device: 'cpu', threads: 2, weightType: '' }).promise;
    const [f16, f32] = [await load(f16Path), await load(sdxlPath)];
    try {
      const decode = (m: NativeModel) => m.decodeLatent(latent, SDXL_VAE_SCALE).promise;
      const reference = await decode(f32);
      const unscaled = await decode(f16);
      f16.setVaeConvInputScale(1 / 32);
      const scaledImage = await decode(f16);
      const ref = { ...reference, channels: 3 } as Image;
      console.log(`SDXL f16 VAE vs f32 on the CPU: scaled ${psnr(scaledImage as Image, ref).toFixed(1)} dB, unscaled ${psnr(unscaled as Image, ref).toFixed(1)} dB`);
      expect(psnr(scaledImage as Image, ref)).toBeGreaterThan(35);
      expect(psnr(unscaled as Image, ref)).toBeGreaterThan(35);
      expect(Buffer.compare(Buffer.from(unscaled.data), Buffer.from(scaledImage.data))).toBe(0);
      expect(() => f16.setVaeConvInputScale(0)).toThrow(RangeError);
    } finally {
      f16.dispose();
      f32.dispose();
    }
  }, 120_000);

  it('lib/ sets it for SDXL files without a separate VAE', async () => {
    // The loaded SDXL model decodes the same latent as the scaled native handle does.
    const f16Path = join(dir, 'tiny-sdxl-f16.safetensors');
    const m = await loadModel(f16Path, cpu);
    try {
      const viaLib = await m.decodeLatent(latent);
      const parts16 = await native().NativeModel.load({ model: f16Path, ema: false, device: 'cpu', threads: 2, weightType: '' }).promise;
      parts16.setVaeConvInputScale(1 / 32);
      const direct = await parts16.decodeLatent(latent, SDXL_VAE_SCALE).promise;
      parts16.dispose();
      expect(Buffer.compare(Buffer.from(viaLib.data), Buffer.from(direct.data))).toBe(0);
    } finally {
      await m.dispose();
    }
  }, 120_000);
});
