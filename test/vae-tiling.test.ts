// The VAE in tiles (native/engine/pipeline/vae_tiling.cpp) and the public model.encodeImage /
// model.decodeLatent on the tiny generated model: tiled against untiled decode and encode of a
// real photo's latent, one progress step per tile, the 'auto' policy, the posterior sample
// against the engine's own RNG, and refused inputs.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';

import { ModelCompatibilityError, loadModel, type Image, type Latent, type Model } from '../lib/index.js';
import { native, type NativeImage, type NativeLatent, type NativeModel, type NativeVaeTiling } from '../lib/native.js';
// @ts-expect-error: plain JavaScript module with JSDoc types
import { PRESETS, componentOf, generateModel, tensorBytes, tensorSpecs } from '../scripts/generate-model.mjs';
import { imagePath, psnr as imagePsnr } from './support/data.js';
import { relativeError } from './support/reference-nn.js';
import { writeSafetensors } from './support/safetensors.js';

// Free memory as lib/model.ts sees it, so the 'auto' policy can be shown both ways.
const memory = vi.hoisted(() => ({ free: undefined as number | undefined }));
vi.mock('node:os', async (importOriginal) => {
  const os = await importOriginal<typeof import('node:os')>();
  return { ...os, default: os, freemem: () => memory.free ?? os.freemem() };
});

const SCALE = 0.18215;
const dir = mkdtempSync(join(tmpdir(), 'sdnode-vae-tiling-'));
const path = join(dir, 'tiny.safetensors');
let model: Model;
let parts: NativeModel;
// A real photo, 512 × 512, and its latent (posterior mean · scale): 64 × 64 cells.
let photo: Image;
let latent: NativeLatent;
// Its untiled decode, and how many progress steps that took.
const whole = { image: undefined as unknown as NativeImage, steps: 0 };

/** Tiles of 16 cells (128 pixels) overlapping by 8: 7 × 7 tiles over a 64 × 64 latent. */
const small: NativeVaeTiling = { enabled: true, tile: 16, overlap: 8 };

async function readPhoto(name: string, width: number, height: number): Promise<Image> {
  const { data, info } = await sharp(imagePath(name)).removeAlpha().resize(width, height).raw().toBuffer({ resolveWithObject: true });
  return { width: info.width, height: info.height, channels: 3, data: new Uint8Array(data.buffer, data.byteOffset, data.length) };
}

function meanOf(moments: NativeLatent, scale = SCALE): NativeLatent {
  const channels = moments.channels / 2;
  const n = channels * moments.width * moments.height;
  return { channels, width: moments.width, height: moments.height, data: Float32Array.from(moments.data.subarray(0, n), (v) => v * Math.fround(scale)) };
}

const psnr = (a: NativeImage, b: NativeImage) => imagePsnr(a as Image, b as Image);

/** GroupNorms of one half of the tiny VAE: the tiled run has one stage more, each a step per tile, except the attention's (one step). */
let norms: { decoder: number; encoder: number };
const tiledSteps = (half: 'decoder' | 'encoder', tiles: number) => norms[half] * tiles + 1;

const steps = () => {
  const seen: Array<{ step: number; steps: number }> = [];
  return { seen, onProgress: (p: { step: number; steps: number }) => seen.push({ step: p.step, steps: p.steps }) };
};

beforeAll(async () => {
  await generateModel({ out: path, preset: 'tiny', dtype: 'f32', seed: 11 });
  model = await loadModel(path, { device: 'cpu', threads: 2 });
  parts = await native().NativeModel.load({ model: path, ema: false, device: 'cpu', threads: 2, weightType: '' }).promise;
  photo = await readPhoto('astronaut.png', 512, 512);
  latent = meanOf(await parts.encodeImageMoments(photo).promise);
  const count = (half: string) => model.weights().filter((w) => new RegExp(`^first_stage_model\\.${half}\\..*norm(1|2|_out)?\\.weight$`).test(w.name)).length;
  norms = { decoder: count('decoder'), encoder: count('encoder') };
  whole.image = await parts.decodeLatent(latent, SCALE, undefined, () => whole.steps++).promise;
}, 120_000);

afterAll(async () => {
  await model?.dispose();
  parts?.dispose();
  rmSync(dir, { recursive: true, force: true });
});

describe('tiled VAE (native, tiny model)', () => {
  const measured: Record<string, number> = {};
  afterAll(() => console.log('vae tiling measured:', measured));

  it('decode: tiled vs untiled of a photo latent, PSNR ≥ 40 dB, one progress step per tile and stage', async () => {
    expect(norms.decoder).toBe(22);  // what the step counts stand on
    const p = steps();
    const tiled = await parts.decodeLatent(latent, SCALE, small, p.onProgress).promise;
    expect([tiled.width, tiled.height, tiled.channels]).toEqual([512, 512, 3]);
    const db = psnr(whole.image, tiled);
    measured.decodePsnrDb = db;
    expect(db).toBeGreaterThanOrEqual(40);
    const total = tiledSteps('decoder', 49);
    expect(p.seen).toEqual(Array.from({ length: total }, (_, i) => ({ step: i + 1, steps: total })));
  });

  it('decode: the last tile is shifted inwards, not shrunk (40 × 24 and 36 × 20 cells)', async () => {
    for (const [w, h, tiles] of [[40, 24, 4 * 2], [36, 20, 4 * 2]] as const) {
      const part = { ...latent, width: w, height: h, data: new Float32Array(4 * w * h) };
      for (let c = 0; c < 4; c++)
        for (let y = 0; y < h; y++) part.data.set(latent.data.subarray((c * 64 + y) * 64, (c * 64 + y) * 64 + w), (c * h + y) * w);
      const untiled = await parts.decodeLatent(part, SCALE).promise;
      const p = steps();
      const tiled = await parts.decodeLatent(part, SCALE, small, p.onProgress).promise;
      expect([tiled.width, tiled.height]).toEqual([w * 8, h * 8]);
      expect(p.seen.length).toBe(tiledSteps('decoder', tiles));
      const db = psnr(untiled, tiled);
      measured[`decodePsnrDb${w}x${h}`] = db;
      expect(db).toBeGreaterThanOrEqual(40);
    }
  });

  it('decode: a latent no larger than one tile decodes exactly as untiled, in one step', async () => {
    const part = { ...latent, width: 16, height: 16, data: latent.data.slice(0, 4 * 16 * 16) };
    const untiled = await parts.decodeLatent(part, SCALE).promise;
    const p = steps();
    const tiled = await parts.decodeLatent(part, SCALE, small, p.onProgress).promise;
    expect(Buffer.from(tiled.data).equals(Buffer.from(untiled.data))).toBe(true);
    expect(p.seen).toEqual([{ step: 1, steps: 1 }]);
  });

  it('encode: tiled vs untiled moments of the photo agree, one progress step per tile and stage', async () => {
    expect(norms.encoder).toBe(14);
    const untiled = await parts.encodeImageMoments(photo).promise;
    const p = steps();
    // 64 cells, tile 32, overlap 8: tiles at 0, 24 and 32 per side.
    const tiled = await parts.encodeImageMoments(photo, { enabled: true, tile: 32, overlap: 8 }, p.onProgress).promise;
    expect([tiled.channels, tiled.width, tiled.height]).toEqual([untiled.channels, 64, 64]);
    const err = relativeError(tiled.data, untiled.data);
    measured.encodeMomentsRelErr = err;
    expect(err).toBeLessThan(1e-4);
    const total = tiledSteps('encoder', 9);
    expect(p.seen.map((s) => s.step)).toEqual(Array.from({ length: total }, (_, i) => i + 1));
    expect(p.seen.at(-1)).toEqual({ step: total, steps: total });
  });

  it('without overlap a tile cannot see its neighbours: seams (what the overlap is for)', async () => {
    const db = psnr(whole.image, await parts.decodeLatent(latent, SCALE, { enabled: true, tile: 32, overlap: 0 }).promise);
    measured.decodePsnrDbNoOverlap = db;
    expect(db).toBeLessThan(30);
  });

  it('refuses tile sizes out of range, in the engine (ERR_INVALID_ARGUMENT) and the addon (TypeError)', async () => {
    const invalid = { code: 'ERR_INVALID_ARGUMENT' };
    await expect(parts.decodeLatent(latent, SCALE, { enabled: true, tile: 0, overlap: 0 }).promise).rejects.toMatchObject(invalid);
    await expect(parts.decodeLatent(latent, SCALE, { enabled: true, tile: 16, overlap: 9 }).promise).rejects.toMatchObject({
      ...invalid,
      message: expect.stringMatching(/overlap/),
    });
    await expect(parts.encodeImageMoments(photo, { enabled: true, tile: 16, overlap: -1 }).promise).rejects.toMatchObject(invalid);
    // 8192² pixels: the whole-image activations a tiled run keeps would pass the size limit.
    const huge = { channels: 4, width: 1024, height: 1024, data: new Float32Array(4 * 1024 * 1024) };
    await expect(parts.decodeLatent(huge, SCALE, { enabled: true, tile: 64, overlap: 16 }).promise).rejects.toMatchObject({
      code: 'ERR_RESOURCE',
      message: expect.stringMatching(/too large to tile/),
    });
    // The old call shape (a progress callback third) is refused, not silently untiled.
    expect(() => parts.decodeLatent(latent, SCALE, (() => {}) as unknown as NativeVaeTiling)).toThrow(TypeError);
    expect(() => parts.encodeImageMoments(photo, 'on' as unknown as NativeVaeTiling)).toThrow(TypeError);
  });

  it('compute-buffer estimate: grows with the image, at least the mid attention scores', () => {
    const a = parts.vaeComputeBytes(256, 256), b = parts.vaeComputeBytes(512, 512);
    // 512² pixels: 64² latent cells, a 4096 × 4096 f32 attention score matrix in the decoder's mid.
    expect(b.decode!).toBeGreaterThanOrEqual(4096 * 4096 * 4);
    expect(b.decode!).toBeGreaterThan(3 * a.decode!);
    expect(b.encode!).toBeGreaterThan(3 * a.encode!);
    expect(() => parts.vaeComputeBytes(100, 64)).toThrow(/multiples of 8/);
  });
});

describe('model.decodeLatent / model.encodeImage', () => {
  it('decodeLatent: the latent as the sampler leaves it, ×8, the same bytes as the native decode at 0.18215; tiles as asked', async () => {
    const out = await model.decodeLatent(latent, { vaeTiling: false });
    expect([out.width, out.height, out.channels]).toEqual([512, 512, 3]);
    expect(Buffer.from(out.data).equals(Buffer.from(whole.image.data))).toBe(true);
    const p = steps();
    const tiled = await model.decodeLatent(latent, { vaeTiling: { tile: 32, overlap: 8 }, onProgress: p.onProgress });
    expect(p.seen.length).toBe(tiledSteps('decoder', 9));
    expect(psnr(tiled, whole.image)).toBeGreaterThanOrEqual(40);
  });

  it('encodeImage → decodeLatent round trip; without a seed the posterior mean × 0.18215', async () => {
    const image = await readPhoto('chelsea.png', 256, 192);
    const z = await model.encodeImage(image);
    expect([z.channels, z.width, z.height]).toEqual([4, 32, 24]);
    const moments = await parts.encodeImageMoments(image).promise;
    expect(z.data).toEqual(meanOf(moments).data);
    expect(await model.encodeImage(image)).toEqual(z);
    const back = await model.decodeLatent(z);
    expect([back.width, back.height, back.channels]).toEqual([256, 192, 3]);
    expect(Buffer.from(back.data).equals(Buffer.from((await parts.decodeLatent(z, SCALE).promise).data))).toBe(true);
    // Tiled through the public option (32 × 24 cells in tiles of 16 overlapping by 4: 3 × 2).
    const p = steps();
    const tiled = await model.encodeImage(image, { vaeTiling: { tile: 16, overlap: 4 }, onProgress: p.onProgress });
    expect(relativeError(tiled.data, z.data)).toBeLessThan(1e-4);
    expect(p.seen.length).toBe(tiledSteps('encoder', 6));
  });

  it('encodeImage with a seed: mean + exp(logvar/2) · randn(seed), reproducible, per RNG', async () => {
    const image = await readPhoto('coffee.png', 128, 64);
    const moments = await parts.encodeImageMoments(image).promise;
    const mean = await model.encodeImage(image);
    const a = await model.encodeImage(image, { seed: 42 });
    const b = await model.encodeImage(image, { seed: 42n });
    expect(b).toEqual(a);
    expect(relativeError(a.data, mean.data)).toBeGreaterThan(1e-3);
    const n = a.data.length;
    for (const rng of ['cuda', 'cpu'] as const) {
      const noise = native().sampling.randn(rng, 42n, n);
      const expected = new Float32Array(n);
      for (let i = 0; i < n; i++) {
        const logvar = Math.min(20, Math.max(-30, moments.data[n + i]!));
        expected[i] = (moments.data[i]! + Math.exp(logvar / 2) * noise[i]!) * SCALE;
      }
      const got = rng === 'cuda' ? a : await model.encodeImage(image, { seed: 42, rng });
      expect(relativeError(got.data, expected)).toBeLessThan(1e-5);
    }
    expect(relativeError((await model.encodeImage(image, { seed: 43 })).data, a.data)).toBeGreaterThan(1e-3);
  });

  it("'auto' decodes small images whole; with little free memory it tiles", async () => {
    const auto = steps(), forced = steps();
    const out = await model.decodeLatent(latent, { onProgress: auto.onProgress });
    expect(Buffer.from(out.data).equals(Buffer.from(whole.image.data))).toBe(true);
    expect(auto.seen.length).toBe(whole.steps);  // untiled progress comes in graph chunks
    expect(whole.steps).toBeGreaterThan(1);
    // 72 × 16 cells in the default tiles (64, overlap 16): 2 tiles, once memory is short.
    const strip = { channels: 4, width: 72, height: 16, data: latent.data.slice(0, 4 * 72 * 16) };
    memory.free = 1024;
    try {
      await model.decodeLatent(strip, { onProgress: forced.onProgress });
    } finally {
      memory.free = undefined;
    }
    expect(forced.seen.length).toBe(tiledSteps('decoder', 2));
  });

  it('refuses bad input before queueing (TypeError / RangeError)', () => {
    const z: Latent = { ...latent };
    expect(() => model.decodeLatent(null as unknown as Latent)).toThrow(TypeError);
    expect(() => model.decodeLatent({ ...z, data: z.data.subarray(1) })).toThrow(RangeError);
    expect(() => model.decodeLatent({ ...z, data: new Float64Array(z.data.length) as unknown as Float32Array })).toThrow(TypeError);
    expect(() => model.decodeLatent({ ...z, channels: 3, data: z.data.subarray(0, 3 * 64 * 64) })).toThrow(/channels is 3, the VAE decoder takes 4/);
    expect(() => model.decodeLatent({ ...z, width: 1.5 })).toThrow(RangeError);
    expect(() => model.decodeLatent({ channels: 4, width: 1024, height: 1024, data: new Float32Array(4 * 1024 * 1024) })).toThrow(/at most/);
    expect(() => model.decodeLatent(z, { vaeTiling: 'yes' as 'auto' })).toThrow(RangeError);
    expect(() => model.decodeLatent(z, { vaeTiling: 1 as unknown as boolean })).toThrow(TypeError);
    expect(() => model.decodeLatent(z, { vaeTiling: { tile: 0 } })).toThrow(/vaeTiling.tile must be an integer in \[16, 4096\], got 0/);
    // A floor on the tile: each tile computes the context its convolutions reach too, and 1-cell tiles made decodes 9× slower.
    expect(() => model.decodeLatent(z, { vaeTiling: { tile: 1 } })).toThrow(/vaeTiling.tile must be an integer in \[16, 4096\], got 1/);
    expect(() => model.decodeLatent(z, { vaeTiling: { tile: 15 } })).toThrow(RangeError);
    expect(() => model.decodeLatent(z, { vaeTiling: { tile: 16, overlap: 9 } })).toThrow(/vaeTiling.overlap must be an integer in \[0, 8\], got 9/);
    expect(() => model.decodeLatent(z, { vaeTiling: { tiles: 16 } as unknown as { tile: number } })).toThrow(/did you mean 'tile'/);
    expect(() => model.decodeLatent(z, { tiling: true } as never)).toThrow(TypeError);

    expect(() => model.encodeImage({ ...photo, width: 100, height: 64, data: new Uint8Array(100 * 64 * 3) })).toThrow(/multiples of 8/);
    expect(() => model.encodeImage({ ...photo, data: photo.data.subarray(3) })).toThrow(RangeError);
    expect(() => model.encodeImage({ ...photo, channels: 2 as 3 })).toThrow(RangeError);
    expect(() => model.encodeImage(photo, { seed: -1 })).toThrow(/leave it out for the posterior mean/);
    expect(() => model.encodeImage(photo, { seed: 1.5 })).toThrow(RangeError);
    expect(() => model.encodeImage(photo, { seed: 1n << 64n })).toThrow(RangeError);
    expect(() => model.encodeImage(photo, { seed: '1' as unknown as number })).toThrow(TypeError);
    expect(() => model.encodeImage(photo, { rng: 'gpu' as 'cpu' })).toThrow(RangeError);
    expect(() => model.encodeImage(photo, { vaeTiling: 'on' as 'auto' })).toThrow(RangeError);
    expect(() => model.generate({ prompt: 'x', vaeTiling: 'never' as 'auto' })).toThrow(RangeError);
  });

  it('a model without a VAE: ModelCompatibilityError (a rejection, as for any file problem)', async () => {
    const specs = (tensorSpecs(PRESETS.tiny) as Array<{ name: string; shape: number[]; init: string }>).filter((t) => componentOf(t.name) !== 'vae');
    const noVae = join(dir, 'no-vae.safetensors');
    writeSafetensors(
      noVae,
      specs.map((t) => ({
        name: t.name,
        dtype: t.init === 'position_ids' ? ('I64' as const) : ('F16' as const),
        shape: t.shape,
        data: tensorBytes(t, 11, 'f16') as Uint8Array,
      })),
    );
    const m = await loadModel(noVae, { device: 'cpu', threads: 2 });
    try {
      await expect(m.decodeLatent(latent)).rejects.toBeInstanceOf(ModelCompatibilityError);
      await expect(m.encodeImage(photo)).rejects.toBeInstanceOf(ModelCompatibilityError);
    } finally {
      await m.dispose();
    }
  });
});
