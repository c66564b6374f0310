// Live previews during sampling on a tiny generated SD1.x model and a tiny TAESD-format decoder:
// when they come (every previewInterval steps of each image, and its last), their size, what
// they show (the denoised estimate: at the last step, the final latent — so the last 'tae'
// preview is the vae: 'tae' image and the last 'latent2rgb' one the webui's projection of the
// returned latent), and the options refused before anything is queued.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { AbortError, loadModel, type Model, type Progress } from '../lib/index.js';
import { PREVIEW_INTERVAL } from '../lib/generate-options.js';
import { native, type NativeModel } from '../lib/native.js';
import { ClipTokenizer } from '../lib/text/clip-tokenizer.js';
import { encodePrompt } from '../lib/text/prompt-weights.js';
// @ts-expect-error: plain JavaScript module with JSDoc types
import { generateModel } from '../scripts/generate-model.mjs';
import { tinyTaeDecoder } from './support/tiny-tae.js';
import { writeTorchCheckpoint } from './support/torch-zip.js';

const dir = mkdtempSync(join(tmpdir(), 'sdnode-previews-'));
const path = join(dir, 'tiny.safetensors');
const taePath = join(dir, 'taesd_decoder.pth');
const cpu = { device: 'cpu', threads: 2 } as const;
let model: Model;  // with a TAE
let plain: Model;  // without
let parts: NativeModel;

beforeAll(async () => {
  await generateModel({ out: path, preset: 'tiny', dtype: 'f32', seed: 3 });
  writeTorchCheckpoint(taePath, tinyTaeDecoder({ latentChannels: 4, width: 8, blocks: 1, stages: 3, pool: false }));
  model = await loadModel({ model: path, tae: taePath }, cpu);
  plain = await loadModel(path, cpu);
  parts = await native().NativeModel.load({ model: path, ema: false, device: 'cpu', threads: 2, weightType: '' }).promise;
}, 60_000);

afterAll(async () => {
  await model?.dispose();
  await plain?.dispose();
  parts?.dispose();
});

/** Every progress event of a job, in order. */
function recorder() {
  const events: Progress[] = [];
  return { events, onProgress: (p: Progress) => void events.push(p), withPreview: () => events.filter((e) => e.preview).map((e) => e.step) };
}

function maxDiff(a: Uint8Array, b: Uint8Array): number {
  expect(a.length).toBe(b.length);
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i]! - b[i]!));
  return max;
}

// stable-diffusion-webui's "Approx cheap" factors (modules/sd_vae_approx.py): RGB per latent channel.
const FACTORS = [
  [0.298, 0.207, 0.208],
  [0.187, 0.286, 0.173],
  [-0.158, 0.189, 0.264],
  [-0.184, -0.271, -0.473],
];

/** The projection computed here: RGB in [-1, 1] per latent cell, to 8 bits, each cell an 8×8 block. */
function latentToRgb(latent: { channels: number; width: number; height: number; data: Float32Array }): Uint8Array {
  const { width: lw, height: lh, data } = latent;
  const out = new Uint8Array(lw * 8 * lh * 8 * 3);
  for (let y = 0; y < lh * 8; y++) {
    for (let x = 0; x < lw * 8; x++) {
      const cell = Math.floor(y / 8) * lw + Math.floor(x / 8);
      for (let c = 0; c < 3; c++) {
        let v = 0;
        for (let l = 0; l < 4; l++) v += data[l * lw * lh + cell]! * FACTORS[l]![c]!;
        out[(y * lw * 8 + x) * 3 + c] = Math.round(Math.min(1, Math.max(0, (v + 1) / 2)) * 255);
      }
    }
  }
  return out;
}

describe('generate previews', () => {
  it('arrive every previewInterval steps and at the last one, RGB at the requested size', async () => {
    const a = recorder();
    await model.generate({ prompt: 'a cat', width: 64, height: 48, steps: 5, seed: 1, preview: 'latent2rgb', previewInterval: 2, onProgress: a.onProgress });
    expect(a.events.map((e) => e.step)).toEqual([1, 2, 3, 4, 5]);
    expect(a.withPreview()).toEqual([2, 4, 5]);
    for (const e of a.events.filter((e) => e.preview)) {
      expect(e.preview).toMatchObject({ width: 64, height: 48, channels: 3 });
      expect(e.preview!.data).toBeInstanceOf(Uint8Array);
      expect(e.preview!.data.length).toBe(64 * 48 * 3);
    }

    const b = recorder();
    await model.generate({ prompt: 'a cat', width: 32, height: 32, steps: 7, seed: 1, preview: 'tae', previewInterval: 3, onProgress: b.onProgress });
    expect(b.withPreview()).toEqual([3, 6, 7]);
    for (const e of b.events.filter((e) => e.preview)) expect(e.preview).toMatchObject({ width: 32, height: 32, channels: 3 });

    // Defaults: every step for latent2rgb, every PREVIEW_INTERVAL.tae steps for the TAE.
    const c = recorder(), d = recorder();
    await model.generate({ prompt: 'a cat', width: 32, height: 32, steps: 3, seed: 1, preview: 'latent2rgb', onProgress: c.onProgress });
    await model.generate({ prompt: 'a cat', width: 32, height: 32, steps: 9, seed: 1, preview: 'tae', onProgress: d.onProgress });
    expect(c.withPreview()).toEqual([1, 2, 3]);
    const every = PREVIEW_INTERVAL.tae;
    expect(d.withPreview()).toEqual([...Array.from({ length: Math.floor(9 / every) }, (_, i) => (i + 1) * every).filter((s) => s < 9), 9]);
  }, 60_000);

  it('none without the option, or with preview: none', async () => {
    for (const extra of [{}, { preview: 'none' as const }, { preview: 'none' as const, previewInterval: 1 }]) {
      const r = recorder();
      await model.generate({ prompt: 'a cat', width: 32, height: 32, steps: 3, seed: 1, ...extra, onProgress: r.onProgress });
      expect(r.events.map((e) => e.step)).toEqual([1, 2, 3]);
      expect(r.events.every((e) => !('preview' in e))).toBe(true);
    }
  });

  it("'tae' previews come from the TAE: the last one is the vae: 'tae' image (final sigma 0: the last denoised estimate is the final latent)", async () => {
    for (const sampler of ['euler_a', 'euler'] as const) {
      const r = recorder();
      const settings = { prompt: 'a lovely cat', width: 48, height: 32, steps: 4, seed: 7, sampler, batchCount: 2 } as const;
      const withPreviews = await model.generate({ ...settings, vae: 'tae', preview: 'tae', previewInterval: 1, onProgress: r.onProgress });
      const fast = await model.generate({ ...settings, vae: 'tae' });
      // Previews change nothing in the result.
      expect(maxDiff(withPreviews.images[0]!.data, fast.images[0]!.data)).toBe(0);
      const previews = r.events.map((e) => e.preview!);
      expect(previews).toHaveLength(8);
      // Each image's last step: its final image (an ulp in the last Euler update may move a pixel by one).
      expect(maxDiff(previews[3]!.data, fast.images[0]!.data), sampler).toBeLessThanOrEqual(1);
      expect(maxDiff(previews[7]!.data, fast.images[1]!.data), sampler).toBeLessThanOrEqual(1);
      // Earlier estimates are other pictures.
      expect(maxDiff(previews[0]!.data, fast.images[0]!.data), sampler).toBeGreaterThan(1);
      // And the TAE's, not the projection's: the TAE's pixels are not constant over 8×8 blocks.
      const p = previews[3]!;
      let blocky = true;
      for (let i = 0; i < p.width * p.height * 3 && blocky; i++) {
        const x = Math.floor(i / 3) % p.width, y = Math.floor(i / 3 / p.width);
        blocky = p.data[i] === p.data[((y - (y % 8)) * p.width + (x - (x % 8))) * 3 + (i % 3)];
      }
      expect(blocky).toBe(false);
    }
  }, 60_000);

  it("'latent2rgb' of the final latent equals the webui's factor projection computed here", async () => {
    const tok = ClipTokenizer.default();
    const tokens = (text: string) => {
      const p = encodePrompt(tok, text);
      return { ids: p.ids, weights: p.weights, windows: p.chunkCount };
    };
    const events: Array<{ step: number; preview?: { width: number; height: number; channels: number; data: Uint8Array } }> = [];
    const r = await parts.generate(
      {
        prompt: tokens('a lovely cat'), negative: tokens(''), empty: tokens(''),
        textEncoders: [{ heads: 2, quickGelu: true, clipSkip: 1 }], unetHeads: 0, unetHeadDim: 32, prediction: 'epsilon',
        width: 64, height: 48, steps: 3, sampler: 'euler', scheduler: 'discrete', cfgScale: 7, vaeScale: 0.18215,
        seed: 11n, rng: 'cuda', batchCount: 1, decode: false, preview: 'latent2rgb', previewInterval: 1,
      },
      (p) => events.push(p),
    ).promise;
    expect(events.map((e) => e.step)).toEqual([1, 2, 3]);
    const latent = r.latents[0]!;
    expect(latent).toMatchObject({ channels: 4, width: 8, height: 6 });
    const expected = latentToRgb(latent);
    const last = events[2]!.preview!;
    expect(last).toMatchObject({ width: 64, height: 48, channels: 3 });
    expect(maxDiff(last.data, expected)).toBeLessThanOrEqual(1);
    let equal = 0;
    for (let i = 0; i < expected.length; i++) equal += last.data[i] === expected[i] ? 1 : 0;
    expect(equal / expected.length).toBeGreaterThan(0.99);
    // The projection is not trivial here: the picture has more than one colour.
    expect(new Set(expected).size).toBeGreaterThan(10);
  });

  it('batchCount 2 gives each image its previews, counted per image', async () => {
    const r = recorder();
    await model.generate({ prompt: 'a cat', width: 32, height: 32, steps: 3, seed: 5, batchCount: 2, preview: 'latent2rgb', previewInterval: 2, onProgress: r.onProgress });
    expect(r.events.map((e) => e.step)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(r.events.every((e) => e.steps === 6)).toBe(true);
    // Image 0: its steps 2 and 3; image 1: its steps 2 and 3 (job steps 5 and 6).
    expect(r.withPreview()).toEqual([2, 3, 5, 6]);
    const byStep = new Map(r.events.map((e) => [e.step, e.preview]));
    expect(maxDiff(byStep.get(3)!.data, byStep.get(6)!.data)).toBeGreaterThan(0);  // seeds 5 and 6
  });

  it('an abort at a preview step rejects with AbortError, the job stopping early', async () => {
    const controller = new AbortController();
    const r = recorder();
    const job = model.generate({
      prompt: 'a cat', width: 32, height: 32, steps: 20, seed: 1, preview: 'tae', previewInterval: 1, signal: controller.signal,
      onProgress: (p) => { r.onProgress(p); if (p.preview) controller.abort(); },
    });
    await expect(job).rejects.toBeInstanceOf(AbortError);
    // Steps already reported when the abort came still arrive; the job ends well before 20.
    expect(r.events.length).toBeGreaterThan(0);
    expect(r.events.length).toBeLessThan(5);
  });

  it('bad options are TypeError/RangeError before anything is queued', () => {
    const base = { prompt: 'x', width: 32, height: 32, steps: 1, preview: 'latent2rgb' } as const;
    for (const previewInterval of [0, -1, 1.5, 1001]) {
      expect(() => model.generate({ ...base, previewInterval }), String(previewInterval)).toThrow(RangeError);
    }
    expect(() => model.generate({ ...base, previewInterval: 'x' as never })).toThrow(TypeError);
    expect(() => model.generate({ ...base, previewInterval: 0 })).toThrow(/previewInterval.*\[1, 1000\].*got 0/);
    expect(() => model.generate({ ...base, preview: 'x' as never })).toThrow(RangeError);
    expect(() => model.generate({ ...base, preview: 3 as never })).toThrow(TypeError);
    expect(() => plain.generate({ ...base, preview: 'tae' })).toThrow(TypeError);
    expect(() => plain.generate({ ...base, preview: 'tae' })).toThrow(/tae/);
  });

  it('the engine refuses what lib/ would have: an unknown method, interval 0, tae without a decoder', async () => {
    const tok = ClipTokenizer.default();
    const t = encodePrompt(tok, 'x');
    const tokens = { ids: t.ids, weights: t.weights, windows: t.chunkCount };
    const params = {
      prompt: tokens, negative: tokens, empty: tokens, textEncoders: [{ heads: 2, quickGelu: true, clipSkip: 1 }], unetHeads: 0, unetHeadDim: 32,
      prediction: 'epsilon', width: 32, height: 32, steps: 1, sampler: 'euler', scheduler: 'discrete', cfgScale: 7, vaeScale: 0.18215,
      seed: 1n, rng: 'cuda', batchCount: 1, decode: false,
    } as const;
    for (const bad of [{ preview: 'x' }, { preview: 'latent2rgb', previewInterval: 0 }, { preview: 'tae' }]) {
      await expect(parts.generate({ ...params, ...bad } as never).promise, JSON.stringify(bad)).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
    }
    expect(() => parts.generate({ ...params, preview: 'tae', tae: {} as never })).toThrow(TypeError);
  });
});
