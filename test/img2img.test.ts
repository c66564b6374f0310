// Image-to-image and inpainting on tiny generated SD1.x models (standard and 9-channel): the
// strength's step count and effect, the VAE round trip at strength 0, the mask keeping pixels
// outside it exact, resizing, and refused options.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { loadModel, readImage, type Image, type Model } from '../lib/index.js';
import { resizeImage } from '../lib/resize.js';
// @ts-expect-error: plain JavaScript module with JSDoc types
import { generateModel } from '../scripts/generate-model.mjs';
import { imagePath } from './support/data.js';
import { tinyTaeDecoder } from './support/tiny-tae.js';
import { writeTorchCheckpoint } from './support/torch-zip.js';

const dir = mkdtempSync(join(tmpdir(), 'sdnode-img2img-'));
const cpu = { device: 'cpu', threads: 2 } as const;
const W = 64, H = 64;
let model: Model;
let inpaintModel: Model;
let photo: Image & { channels: 3 };

beforeAll(async () => {
  const path = join(dir, 'tiny.safetensors');
  const inpaintPath = join(dir, 'tiny-inpaint.safetensors');
  await generateModel({ out: path, preset: 'tiny', dtype: 'f32', seed: 3 });
  await generateModel({ out: inpaintPath, preset: 'tiny-inpaint', dtype: 'f32', seed: 3 });
  model = await loadModel(path, cpu);
  inpaintModel = await loadModel(inpaintPath, cpu);
  photo = await resizeImage(await readImage(imagePath('chelsea.png')), W, H);
}, 60_000);

afterAll(async () => {
  await model?.dispose();
  await inpaintModel?.dispose();
});

const same = (a: Uint8Array, b: Uint8Array) => a.length === b.length && a.every((v, i) => v === b[i]);
const meanAbsDiff = (a: Uint8Array, b: Uint8Array) => {
  let sum = 0;
  for (let i = 0; i < a.length; i++) sum += Math.abs(a[i]! - b[i]!);
  return sum / a.length;
};

/** A white rectangle [x0, x1) × [y0, y1) on black, single channel. */
function rectMask(x0: number, y0: number, x1: number, y1: number) {
  const data = new Uint8Array(W * H);
  for (let y = y0; y < y1; y++) data.fill(255, y * W + x0, y * W + x1);
  return { width: W, height: H, channels: 1 as const, data };
}

/** Distance in pixels (Chebyshev) from (x, y) to the rectangle. */
const distance = (x: number, y: number, [x0, y0, x1, y1]: number[]) =>
  Math.max(x0! - x, 0, x - (x1! - 1), y0! - y, 0, y - (y1! - 1));

describe('image-to-image', () => {
  it('strength 0 is the init image through one VAE round trip (the seeded posterior sample), without steps', async () => {
    const steps: number[] = [];
    const r = await model.generate({ prompt: 'a cat', initImage: photo, strength: 0, steps: 10, seed: 7, onProgress: (p) => steps.push(p.step) });
    expect(steps).toEqual([]);
    const latent = await model.encodeImage(photo, { seed: 7 });
    const roundTrip = await model.decodeLatent(latent);
    expect(r.images[0]).toMatchObject({ width: W, height: H, channels: 3 });
    expect(same(r.images[0]!.data, roundTrip.data)).toBe(true);
  });

  it('runs ⌈steps × strength⌉ steps, and moves further from the init image as strength grows', async () => {
    const base = (await model.generate({ prompt: 'a cat', initImage: photo, strength: 0, seed: 11 })).images[0]!.data;
    const distances: number[] = [];
    for (const [strength, expected] of [[0.25, 3], [0.5, 5], [0.75, 8], [1, 10]] as const) {
      const steps: number[] = [];
      const r = await model.generate({ prompt: 'a cat', initImage: photo, strength, steps: 10, sampler: 'euler', seed: 11, onProgress: (p) => steps.push(p.steps) });
      expect(steps, `strength ${strength}`).toEqual(Array(expected).fill(expected));
      distances.push(meanAbsDiff(base, r.images[0]!.data));
    }
    for (let i = 1; i < distances.length; i++) expect(distances[i], distances.join(', ')).toBeGreaterThan(distances[i - 1]!);
    expect(distances[0]).toBeGreaterThan(0);
    // 20 × 0.35 is 7.000001 in floating point: still 7 steps.
    const steps: number[] = [];
    await model.generate({ prompt: 'a cat', initImage: photo, strength: 0.35, steps: 20, seed: 1, cfgScale: 1, onProgress: (p) => steps.push(p.step) });
    expect(steps).toHaveLength(7);
  }, 60_000);

  it('same seed, same image; progress counts every image of a batch', async () => {
    const opts = { prompt: 'a cat', initImage: photo, strength: 0.5, steps: 4, seed: 21 } as const;
    const events: number[] = [];
    const a = await model.generate({ ...opts, batchCount: 2, onProgress: (p) => events.push(p.step) });
    const b = await model.generate(opts);
    expect(events).toEqual([1, 2, 3, 4]);
    expect(same(a.images[0]!.data, b.images[0]!.data)).toBe(true);
    expect(same(a.images[0]!.data, a.images[1]!.data)).toBe(false);
    expect(b.timings.imageEncodeMs).toBeGreaterThan(0);
  });

  it('an init image of another size is stretched to width × height; by default to its own size, rounded down to multiples of 8', async () => {
    const big = await resizeImage(photo, 100, 116);
    const r = await model.generate({ prompt: 'x', initImage: big, strength: 0.5, steps: 2, seed: 1 });
    expect(r.images[0]).toMatchObject({ width: 96, height: 112 });
    const sized = await model.generate({ prompt: 'x', initImage: big, width: 64, height: 64, strength: 0.5, steps: 2, seed: 1 });
    expect(sized.images[0]).toMatchObject({ width: 64, height: 64 });
    const direct = await model.generate({ prompt: 'x', initImage: await resizeImage(big, 64, 64), strength: 0.5, steps: 2, seed: 1 });
    expect(same(sized.images[0]!.data, direct.images[0]!.data)).toBe(true);
  });
});

describe('inpainting', () => {
  const rect = [24, 20, 40, 44];
  const mask = rectMask(24, 20, 40, 44);

  for (const which of ['standard', '9-channel'] as const) {
    it(`${which} model: pixels beyond the blurred mask keep their bytes exactly; inside they change`, async () => {
      const m = which === 'standard' ? model : inpaintModel;
      const blur = 4;
      const r = await m.generate({ prompt: 'a dog', initImage: photo, mask, maskBlur: blur, strength: 1, steps: 3, seed: 5 });
      const out = r.images[0]!.data;
      let outsideChanged = 0, insideDiff = 0, inside = 0;
      for (let y = 0; y < H; y++) {
        for (let x = 0; x < W; x++) {
          const d = distance(x, y, rect);
          for (let c = 0; c < 3; c++) {
            const i = (y * W + x) * 3 + c;
            if (d > blur && out[i] !== photo.data[i]) outsideChanged++;
            if (d === 0) {
              insideDiff += Math.abs(out[i]! - photo.data[i]!);
              inside++;
            }
          }
        }
      }
      expect(outsideChanged).toBe(0);
      expect(insideDiff / inside).toBeGreaterThan(2);
      // The blur reaches past the edge: some pixels just outside differ from the init image.
      let ringChanged = 0;
      for (let x = 0; x < W; x++) ringChanged += Number(out[(18 * W + x) * 3] !== photo.data[(18 * W + x) * 3]);
      expect(ringChanged).toBeGreaterThan(0);
    }, 60_000);
  }

  it("with vae: 'tae' the TAE's image is composited the same way", async () => {
    const taePath = join(dir, 'taesd_decoder.pth');
    writeTorchCheckpoint(taePath, tinyTaeDecoder({ latentChannels: 4, width: 8, blocks: 1, stages: 3, pool: false }));
    await using m = await loadModel({ model: join(dir, 'tiny.safetensors'), tae: taePath }, cpu);
    const opts = { prompt: 'a dog', initImage: photo, mask, maskBlur: 2, strength: 1, steps: 2, seed: 4 } as const;
    const fast = await m.generate({ ...opts, vae: 'tae' });
    const full = await m.generate(opts);
    expect(same(fast.images[0]!.data, full.images[0]!.data)).toBe(false);
    for (let y = 0; y < H; y++) {
      for (let x = 0; x < W; x++) {
        const i = (y * W + x) * 3;
        if (distance(x, y, rect) > 2) expect(fast.images[0]!.data[i]).toBe(photo.data[i]);
      }
    }
  });

  it('maskBlur 0 keeps every pixel outside the mask; an RGB mask equals the single-channel one', async () => {
    const opts = { prompt: 'a dog', initImage: photo, maskBlur: 0, strength: 0.8, steps: 2, seed: 9 } as const;
    const a = await model.generate({ ...opts, mask });
    const rgb = new Uint8Array(W * H * 3).map((_, i) => mask.data[Math.floor(i / 3)]!);
    const b = await model.generate({ ...opts, mask: { width: W, height: H, channels: 3, data: rgb } });
    expect(same(a.images[0]!.data, b.images[0]!.data)).toBe(true);
    for (let y = 0; y < H; y++) {
      for (let x = 0; x < W; x++) {
        if (distance(x, y, rect) > 0) expect(a.images[0]!.data[(y * W + x) * 3]).toBe(photo.data[(y * W + x) * 3]);
      }
    }
  });

  it('the mask matters: another mask, another image inside; a 9-channel model also does plain text-to-image', async () => {
    const a = await inpaintModel.generate({ prompt: 'a dog', initImage: photo, mask, strength: 1, steps: 2, seed: 3 });
    const b = await inpaintModel.generate({ prompt: 'a dog', initImage: photo, mask: rectMask(0, 0, 64, 64), strength: 1, steps: 2, seed: 3 });
    expect(same(a.images[0]!.data, b.images[0]!.data)).toBe(false);
    const t = await inpaintModel.generate({ prompt: 'a dog', width: 64, height: 64, steps: 2, seed: 3 });
    expect(t.images[0]).toMatchObject({ width: 64, height: 64, channels: 3 });
    expect(t.images[0]!.data.some((v) => v !== t.images[0]!.data[0])).toBe(true);
  });
});

describe('refused before anything is queued', () => {
  const mask = rectMask(0, 0, 8, 8);
  // Options are built in the test: the photo is read in beforeAll.
  const cases: Array<[string, () => Record<string, unknown>, ErrorConstructor]> = [
    ['mask without initImage', () => ({ mask }), TypeError],
    ['mask of another size', () => ({ initImage: photo, mask: { ...mask, width: 32, data: mask.data.subarray(0, 32 * 64) } }), RangeError],
    ['short initImage buffer', () => ({ initImage: { ...photo, data: photo.data.subarray(1) } }), RangeError],
    ['2-channel initImage', () => ({ initImage: { ...photo, channels: 2 } }), RangeError],
    ['2-channel mask', () => ({ initImage: photo, mask: { ...mask, channels: 2 } }), RangeError],
    ['initImage not an object', () => ({ initImage: 'photo.png' }), TypeError],
    ['strength 1.5', () => ({ initImage: photo, strength: 1.5 }), RangeError],
    ['strength -0.1', () => ({ initImage: photo, strength: -0.1 }), RangeError],
    ['strength NaN', () => ({ initImage: photo, strength: NaN }), TypeError],
    ['strength without initImage', () => ({ strength: 0.5 }), TypeError],
    ['maskBlur -1', () => ({ initImage: photo, mask, maskBlur: -1 }), RangeError],
    ['maskBlur 2.5', () => ({ initImage: photo, mask, maskBlur: 2.5 }), RangeError],
    ['maskBlur without mask', () => ({ initImage: photo, maskBlur: 4 }), TypeError],
  ];
  for (const [what, options, Err] of cases) {
    it(what, () => {
      expect(() => model.generate({ prompt: 'x', ...options() } as never)).toThrow(Err);
    });
  }
});
