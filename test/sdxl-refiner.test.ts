// The SDXL refiner on the generated tiny-sdxl-refiner model: generate() against the parts
// composed by hand. The refiner has one text encoder, OpenCLIP bigG (sgm's embedders.0 in
// sd_xl_refiner.yaml): its penultimate layer without the final norm is the whole context, its
// pooled output opens y, and y's rest is five 256-wide sinusoidal embeddings — original size
// (h, w), crop (top, left) and the aesthetic score, the prompt's (default 6) for the
// conditional half and the negative prompt's (2.5) for the unconditional one. Ids pad with 0
// after EOS (OpenCLIP's pad); the empty negative prompt is encoded as text (diffusers' refiner
// and ComfyUI; no zeroing). Also image-to-image, the refiner's real use, and the options a
// refiner takes or refuses.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { loadModel, type Image, type Model } from '../lib/index.js';
import { native, type NativeModel } from '../lib/native.js';
import { ClipTokenizer } from '../lib/text/clip-tokenizer.js';
import { encodePrompt } from '../lib/text/prompt-weights.js';
// @ts-expect-error: plain JavaScript module with JSDoc types
import { PRESETS, REFINER_SIZE_EMBEDDINGS, generateModel } from '../scripts/generate-model.mjs';
import { psnr } from './support/data.js';
import { EMBEDDING_WIDTH, eulerStepAndDecode, vectorY } from './support/sdxl-compose.js';

const config = PRESETS['tiny-sdxl-refiner'] as { unet: { admInChannels: number; contextDim: number }; clip: { width: number; positions: number; projectionDim: number } };
const dir = mkdtempSync(join(tmpdir(), 'sdnode-sdxl-refiner-'));
const path = join(dir, 'tiny-sdxl-refiner.safetensors');
const sdxlPath = join(dir, 'tiny-sdxl.safetensors');
const cpu = { device: 'cpu', threads: 2 } as const;
/** Where the engine keeps the refiner's bigG: the second encoder's place (native/engine/io/name_map.h). */
const TEXT2_PREFIX = 'cond_stage_model.1.transformer.text_model.';

let model: Model;
let sdxl: Model;
let parts: NativeModel;
let heads: { unet: { headDim: number }; clip: { numHeads: number } };

beforeAll(async () => {
  const result = (await generateModel({ out: path, preset: 'tiny-sdxl-refiner', dtype: 'f32', seed: 4 })) as { metadata: Record<string, string> };
  heads = JSON.parse(result.metadata['sdnode.attention_heads']!);
  await generateModel({ out: sdxlPath, preset: 'tiny-sdxl', dtype: 'f16', seed: 4 });
  model = await loadModel(path, cpu);
  sdxl = await loadModel(sdxlPath, cpu);
  parts = await native().NativeModel.load({ model: path, ema: false, device: 'cpu', threads: 2, weightType: '' }).promise;
}, 120_000);

afterAll(async () => {
  await model?.dispose();
  await sdxl?.dispose();
  parts?.dispose();
  rmSync(dir, { recursive: true, force: true });
});

const tok = ClipTokenizer.default();

/** One window through bigG: hidden states [tokens][width] and the pooled vector. */
async function encode(text: string): Promise<{ states: Float32Array; pooled: Float32Array }> {
  const p = encodePrompt(tok, text, { padId: 0 });
  expect(p.chunkCount).toBe(1);
  const e = await parts.encodeTokens(p.ids, 1, { prefix: TEXT2_PREFIX, heads: heads.clip.numHeads, quickGelu: false, clipSkip: 2, finalNorm: false, pooled: true }).promise;
  return { states: e.hidden, pooled: e.pooled! };
}

interface Conditioning {
  original: { width: number; height: number };
  crop: { left: number; top: number };
  score: number;
  negativeScore: number;
}

/** sgm's refiner y: pooled, original (h, w), crop (top, left), aesthetic score. */
function refinerY(pooled: Float32Array, c: Conditioning, score: number): Float32Array {
  return vectorY(pooled, [c.original.height, c.original.width, c.crop.top, c.crop.left, score]);
}

/** tokens → bigG → y → one Euler step with CFG (to sigma 0) → VAE. */
async function composeByHand(prompt: string, negative: string, seed: bigint, c: Conditioning, w = 64, h = 64, cfg = 7): Promise<Image> {
  const cond = await encode(prompt), uncond = await encode(negative);
  const uncondY = refinerY(uncond.pooled, c, c.negativeScore), condY = refinerY(cond.pooled, c, c.score);
  expect(uncondY.length).toBe(config.unet.admInChannels);
  return eulerStepAndDecode(parts, { uncondStates: uncond.states, condStates: cond.states, uncondY, condY }, {
    seed, width: w, height: h, cfg, tokens: config.clip.positions, headDim: heads.unet.headDim,
  });
}

const measured: Record<string, number | string> = {};
afterAll(() => console.log('[sdxl-refiner] generate() vs the hand composition, PSNR dB (or mean pixel difference where they must differ):', JSON.stringify(measured)));

function expectSame(label: string, got: Image, want: Image) {
  let max = 0;
  for (let i = 0; i < want.data.length; i++) max = Math.max(max, Math.abs(want.data[i]! - got.data[i]!));
  const db = psnr(got, want);
  measured[label] = Number.isFinite(db) ? Number(db.toFixed(2)) : 'identical';
  expect(max).toBeLessThanOrEqual(1);
}

function meanDiff(label: string, a: Image, b: Image): number {
  let sum = 0;
  for (let i = 0; i < a.data.length; i++) sum += Math.abs(a.data[i]! - b.data[i]!);
  const d = sum / a.data.length;
  measured[label] = Number(d.toFixed(3));
  return d;
}

const defaults: Conditioning = { original: { width: 64, height: 64 }, crop: { left: 0, top: 0 }, score: 6, negativeScore: 2.5 };

describe('the SDXL refiner (tiny-sdxl-refiner, CPU)', () => {
  const base = { width: 64, height: 64, steps: 1, sampler: 'euler', cfgScale: 7 } as const;

  it('loads as the refiner: bigG alone in the second place, y = pooled + 5 × 256', () => {
    expect(model.info).toMatchObject({ family: 'sdxl-refiner', components: { unet: true, vae: true, textEncoder: false, textEncoder2: true } });
    expect(REFINER_SIZE_EMBEDDINGS).toBe(5 * EMBEDDING_WIDTH);
    expect(config.unet.admInChannels).toBe(config.clip.projectionDim + REFINER_SIZE_EMBEDDINGS);
  });

  it('default aesthetic scores (6, 2.5) and an empty negative prompt encoded as text: the hand composition', async () => {
    const r = await model.generate({ ...base, prompt: 'a lovely cat', seed: 5 });
    expectSame('defaults', r.images[0]!, await composeByHand('a lovely cat', '', 5n, defaults));
  });

  it('aestheticScore, negativeAestheticScore, originalSize and cropCoords each reach y in their place', async () => {
    const c: Conditioning = { original: { width: 1024, height: 768 }, crop: { left: 16, top: 32 }, score: 8.5, negativeScore: 1 };
    const r = await model.generate({
      ...base, prompt: 'a lovely cat', negativePrompt: 'blurry', seed: 7, aestheticScore: 8.5, negativeAestheticScore: 1,
      originalSize: { width: 1024, height: 768 }, cropCoords: { left: 16, top: 32 },
    });
    expectSame('all-set', r.images[0]!, await composeByHand('a lovely cat', 'blurry', 7n, c));
    // Each changes the image: the defaults, the scores swapped between the halves.
    const plain = await model.generate({ ...base, prompt: 'a lovely cat', negativePrompt: 'blurry', seed: 7 });
    expect(meanDiff('vs-defaults', r.images[0]!, plain.images[0]!)).toBeGreaterThan(0.5);
    const swapped = await composeByHand('a lovely cat', 'blurry', 7n, { ...c, score: 1, negativeScore: 8.5 });
    expect(meanDiff('vs-scores-swapped', r.images[0]!, swapped)).toBeGreaterThan(0.5);
  });

  it("image-to-image from another image (the refiner's use): runs the strength's last steps", async () => {
    const first = await sdxl.generate({ ...base, prompt: 'a lovely cat', seed: 3 });
    const steps: number[] = [];
    const r = await model.generate({ prompt: 'a lovely cat', initImage: first.images[0]!, strength: 0.3, steps: 10, seed: 3, onProgress: (p) => steps.push(p.step) });
    expect(steps).toEqual([1, 2, 3]);
    expect(r.images[0]).toMatchObject({ width: 64, height: 64, channels: 3 });
  });

  it('options: targetSize is the base model’s, the aesthetic scores the refiner’s; scores are 0–10', () => {
    expect(() => model.generate({ prompt: 'x', targetSize: { width: 64, height: 64 } })).toThrow(/targetSize applies to SDXL models \(not the refiner\)/);
    expect(() => sdxl.generate({ prompt: 'x', aestheticScore: 6 })).toThrow(/aestheticScore applies to the SDXL refiner; this one is sdxl/);
    expect(() => sdxl.generate({ prompt: 'x', negativeAestheticScore: 2 })).toThrow(TypeError);
    expect(() => model.generate({ prompt: 'x', aestheticScore: 11 })).toThrow(RangeError);
    expect(() => model.generate({ prompt: 'x', negativeAestheticScore: Number.NaN })).toThrow(/negativeAestheticScore/);
    expect(() => model.generate({ prompt: 'x', aestheticScore: '6' as never })).toThrow(TypeError);
  });
});
