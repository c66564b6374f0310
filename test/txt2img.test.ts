// Text-to-image on a tiny generated SD1.x model: the pipeline composed from the parts each
// proven on its own (tokenizer, text encoder, sampler, UNet, VAE) — checked against the same
// parts called one by one — plus seeds, batches, progress, cancellation and refused options.
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { AbortError, ModelCompatibilityError, SAMPLERS, SCHEDULERS, loadModel, type Model } from '../lib/index.js';
import { native, type NativeModel } from '../lib/native.js';
import { ClipTokenizer } from '../lib/text/clip-tokenizer.js';
import { encodePrompt } from '../lib/text/prompt-weights.js';
// @ts-expect-error: plain JavaScript module with JSDoc types
import { generateModel } from '../scripts/generate-model.mjs';
import { taeDecoder } from './support/data.js';
import { tinyTaeDecoder } from './support/tiny-tae.js';
import { writeTorchCheckpoint } from './support/torch-zip.js';

const dir = mkdtempSync(join(tmpdir(), 'sdnode-txt2img-'));
const path = join(dir, 'tiny.safetensors');
const cpu = { device: 'cpu', threads: 2 } as const;
const small = { width: 64, height: 64, steps: 2 } as const;
let model: Model;
let parts: NativeModel;

beforeAll(async () => {
  await generateModel({ out: path, preset: 'tiny', dtype: 'f32', seed: 3 });
  model = await loadModel(path, cpu);
  parts = await native().NativeModel.load({ model: path, ema: false, device: 'cpu', threads: 2, weightType: '' }).promise;
}, 60_000);

afterAll(async () => {
  await model?.dispose();
  parts?.dispose();
});

const same = (a: Uint8Array, b: Uint8Array) => a.length === b.length && a.every((v, i) => v === b[i]);

describe('generate', () => {
  it('equals the parts composed by hand: tokens → text encoder → one Euler step with CFG → VAE', async () => {
    const seed = 5n, cfg = 7, h = 64, w = 64;
    const r = await model.generate({ prompt: 'a lovely cat', negativePrompt: 'blurry', width: w, height: h, steps: 1, sampler: 'euler', cfgScale: cfg, seed });

    const tok = ClipTokenizer.default();
    const encode = (text: string) => parts.encodeTokens(encodePrompt(tok, text).ids, 1, { heads: 2, quickGelu: true, clipSkip: 1 }).promise.then((e) => e.hidden);
    const [cond, uncond] = [await encode('a lovely cat'), await encode('blurry')];
    const s = native().sampling;
    const [sigma] = s.sigmas('discrete', 1);
    const n = 4 * (h / 8) * (w / 8);
    const x = s.randn('cuda', seed, n).map((v) => v * sigma!);
    const cIn = 1 / Math.sqrt(sigma! * sigma! + 1);
    const xin = new Float32Array(2 * n);
    for (let i = 0; i < n; i++) xin[i] = xin[n + i] = x[i]! * cIn;
    const t = s.sigmaToTimestep(sigma!);
    const context = new Float32Array(cond.length * 2);
    context.set(uncond, 0);
    context.set(cond, cond.length);
    const eps = await parts.runUnet({ x: xin, batch: 2, channels: 4, height: h / 8, width: w / 8, timesteps: Float32Array.of(t, t), context, contextTokens: 77, headDim: 32 }).promise;
    const latent = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      const du = x[i]! - sigma! * eps[i]!, dc = x[i]! - sigma! * eps[n + i]!;
      latent[i] = du + cfg * (dc - du); // one Euler step to sigma 0 lands on the denoised latent
    }
    const image = await parts.decodeLatent({ channels: 4, width: w / 8, height: h / 8, data: latent }, 0.18215).promise;

    expect(r.images).toHaveLength(1);
    expect(r.images[0]).toMatchObject({ width: w, height: h, channels: 3 });
    let max = 0, sum = 0;
    for (let i = 0; i < image.data.length; i++) {
      const d = Math.abs(image.data[i]! - r.images[0]!.data[i]!);
      max = Math.max(max, d);
      sum += d;
    }
    // Float rounding in the Euler update may move a pixel across a rounding edge.
    expect(max).toBeLessThanOrEqual(1);
    expect(sum / image.data.length).toBeLessThan(0.05);
    expect(r.seed).toBe(seed);
    expect(r.timings.samplingMs).toBeGreaterThan(0);
  });

  it('same seed, same image; another seed or RNG, another image; batchCount n uses seed + i', async () => {
    const a = await model.generate({ prompt: 'a house', ...small, seed: 42, batchCount: 2 });
    const b = await model.generate({ prompt: 'a house', ...small, seed: 42 });
    const c = await model.generate({ prompt: 'a house', ...small, seed: 43 });
    const d = await model.generate({ prompt: 'a house', ...small, seed: 42, rng: 'cpu' });
    expect(a.images).toHaveLength(2);
    expect(a.seed).toBe(42);
    expect(same(a.images[0]!.data, b.images[0]!.data)).toBe(true);
    expect(same(a.images[1]!.data, c.images[0]!.data)).toBe(true);
    expect(same(b.images[0]!.data, c.images[0]!.data)).toBe(false);
    expect(same(b.images[0]!.data, d.images[0]!.data)).toBe(false);
    const random = await model.generate({ prompt: 'a house', ...small, steps: 1 });
    expect(typeof random.seed).toBe('number');
    const again = await model.generate({ prompt: 'a house', ...small, steps: 1, seed: random.seed });
    expect(same(random.images[0]!.data, again.images[0]!.data)).toBe(true);
  });

  it('prompt weights, long prompts (several windows) and cfgScale 1 change what they should', async () => {
    const base = await model.generate({ prompt: 'a cat', ...small, seed: 1 });
    const weighted = await model.generate({ prompt: '(a cat:1.5)', ...small, seed: 1 });
    const long = await model.generate({ prompt: Array.from({ length: 100 }, (_, i) => `word${i}`).join(' '), ...small, seed: 1 });
    const unguided = await model.generate({ prompt: 'a cat', ...small, seed: 1, cfgScale: 1 });
    for (const r of [weighted, long, unguided]) expect(same(base.images[0]!.data, r.images[0]!.data)).toBe(false);
  });

  it('every sampler × scheduler gives a real image; progress comes once per step, in order', async () => {
    for (const sampler of SAMPLERS) {
      for (const scheduler of SCHEDULERS) {
        const steps: number[] = [];
        const r = await model.generate({ prompt: 'x', ...small, steps: 3, sampler, scheduler, seed: 9, batchCount: 2, onProgress: (p) => steps.push(p.step) });
        // heun and dpm2 evaluate the UNet twice per step and still report each step once.
        expect(steps, `${sampler}/${scheduler}`).toEqual([1, 2, 3, 4, 5, 6]);
        const data = r.images[0]!.data;
        // A NaN latent decodes to one flat colour; a real one does not.
        expect(data.some((v) => v !== data[0]), `${sampler}/${scheduler}`).toBe(true);
      }
    }
  }, 300_000);

  it("a sampler without a scheduler runs with its own (lcm: lcm, ddim_trailing: simple, else discrete); a schedule's step limit is a RangeError", async () => {
    const same = async (sampler: (typeof SAMPLERS)[number], scheduler: (typeof SCHEDULERS)[number]) => {
      const a = await model.generate({ prompt: 'x', ...small, steps: 3, cfgScale: 1, sampler, seed: 4 });
      const b = await model.generate({ prompt: 'x', ...small, steps: 3, cfgScale: 1, sampler, scheduler, seed: 4 });
      return Buffer.compare(Buffer.from(a.images[0]!.data), Buffer.from(b.images[0]!.data)) === 0;
    };
    expect(await same('lcm', 'lcm')).toBe(true);
    expect(await same('ddim_trailing', 'simple')).toBe(true);
    expect(await same('euler', 'discrete')).toBe(true);
    // and the defaults are not all alike: lcm under its own scheduler differs from lcm under discrete
    expect(await same('lcm', 'discrete')).toBe(false);
    expect(() => model.generate({ prompt: 'x', steps: 51, sampler: 'lcm' })).toThrow(/options\.steps.*50/);
    expect(() => model.generate({ prompt: 'x', steps: 51, scheduler: 'lcm' })).toThrow(RangeError);
  });

  it('an abort during sampling rejects with AbortError', async () => {
    const controller = new AbortController();
    const p = model.generate({ prompt: 'x', ...small, steps: 50, seed: 1, signal: controller.signal, onProgress: () => controller.abort() });
    await expect(p).rejects.toBeInstanceOf(AbortError);
    // The model is still usable.
    expect((await model.generate({ prompt: 'x', ...small, steps: 1, seed: 1 })).images).toHaveLength(1);
  });

  it('tokenize gives CLIP ids with BOS and EOS', () => {
    expect(model.tokenize('a lovely cat')).toEqual([49406, 320, 2165, 2368, 49407]);
  });

  it('bad options throw before anything is queued', () => {
    expect(() => model.generate({} as never)).toThrow(TypeError);
    expect(() => model.generate({ prompt: 'x', width: 63 })).toThrow(RangeError);
    expect(() => model.generate({ prompt: 'x', steps: 0 })).toThrow(RangeError);
    expect(() => model.generate({ prompt: 'x', sampler: 'euler_b' as never })).toThrow(RangeError);
    expect(() => model.generate({ prompt: 'x', seed: -2 })).toThrow(RangeError);
    expect(() => model.generate({ prompt: 'x', seed: 2n ** 64n })).toThrow(RangeError);
    expect(() => model.generate({ prompt: 'x', seed: 1.5 })).toThrow(RangeError);
    expect(() => model.generate({ prompt: 'x', cfgScale: Number.NaN })).toThrow(TypeError);
    expect(() => model.generate({ prompt: 'x', batchCount: 0 })).toThrow(RangeError);
    expect(() => model.generate({ prompt: 'x', promt: 'y' } as never)).toThrow(/prompt/);
  });

  it('concurrent generate() calls queue in order and give what they give alone', async () => {
    const alone = await model.generate({ prompt: 'a tree', ...small, seed: 7 });
    const order: number[] = [];
    const runs = [7, 8, 7].map((seed, i) =>
      model.generate({ prompt: 'a tree', ...small, seed, onProgress: (p) => p.step === 1 && order.push(i) }),
    );
    const [a, b, c] = await Promise.all(runs);
    expect(order).toEqual([0, 1, 2]);
    expect(same(a!.images[0]!.data, alone.images[0]!.data)).toBe(true);
    expect(same(c!.images[0]!.data, alone.images[0]!.data)).toBe(true);
    expect(same(b!.images[0]!.data, alone.images[0]!.data)).toBe(false);
  });

  it('hostile prompts and sizes: huge, odd Unicode, over budget', async () => {
    expect(() => model.generate({ prompt: 'a '.repeat(50_000), ...small })).toThrow(RangeError);
    expect(() => model.generate({ prompt: 'x', width: 8192, height: 8192 })).toThrow(RangeError);
    const odd = await model.generate({ prompt: '\uD800 \u0000 🐈‍⬛ é́́ (((((', ...small, steps: 1, seed: 1 });
    const again = await model.generate({ prompt: '\uD800 \u0000 🐈‍⬛ é́́ (((((', ...small, steps: 1, seed: 1 });
    expect(same(odd.images[0]!.data, again.images[0]!.data)).toBe(true);
  });

  it('a model whose weights hold NaN still finishes', async () => {
    const bad = join(dir, 'nan.safetensors');
    await generateModel({ out: bad, preset: 'tiny', dtype: 'f32', seed: 3 });
    const bytes = readFileSync(bad);
    const headerLength = Number(bytes.readBigUInt64LE(0));
    for (let i = 8 + headerLength + 4096; i < bytes.length; i += 40_000) bytes.writeFloatLE(Number.NaN, i - (i % 4));
    writeFileSync(bad, bytes);
    await using m = await loadModel(bad, cpu);
    const r = await m.generate({ prompt: 'x', ...small, steps: 1, seed: 1 });
    expect(r.images[0]!.data).toHaveLength(64 * 64 * 3);
  });

  it('dispose() waits for a running job, then refuses', async () => {
    const m = await loadModel(path, cpu);
    const running = m.generate({ prompt: 'x', ...small, seed: 1 });
    const disposed = m.dispose();
    expect((await running).images).toHaveLength(1);
    await disposed;
    await expect(m.generate({ prompt: 'x', ...small })).rejects.toThrow(/disposed/);
  });

  it("vae: 'tae' decodes with a TAESD decoder given at load", async () => {
    const taePath = join(dir, 'taesd_decoder.pth');
    writeTorchCheckpoint(taePath, tinyTaeDecoder({ latentChannels: 4, width: 8, blocks: 1, stages: 3, pool: false }));
    await using m = await loadModel({ model: path, tae: taePath }, cpu);
    const full = await m.generate({ prompt: 'x', ...small, seed: 4 });
    const fast = await m.generate({ prompt: 'x', ...small, seed: 4, vae: 'tae' });
    const again = await m.generate({ prompt: 'x', ...small, seed: 4, vae: 'tae' });
    expect(fast.images[0]).toMatchObject({ width: 64, height: 64, channels: 3 });
    expect(same(fast.images[0]!.data, again.images[0]!.data)).toBe(true);
    expect(same(fast.images[0]!.data, full.images[0]!.data)).toBe(false);
    expect(() => model.generate({ prompt: 'x', vae: 'tae' })).toThrow(TypeError);
    await expect(loadModel({ model: path, tae: taeDecoder }, cpu)).rejects.toBeInstanceOf(ModelCompatibilityError);
  });
});
