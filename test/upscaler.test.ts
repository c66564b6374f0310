// ESRGAN upscaling on tiny random RRDBNets from scripts/generator/esrgan.mjs: against a float64
// reference (both key layouts, ×4 and ×2, .pth and .safetensors), tiling, progress,
// cancellation, bad input, disposal.
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { AbortError, DisposedError, FileAccessError, ModelFormatError, loadModel, loadUpscaler, type Image, type Upscaler } from '../lib/index.js';
// @ts-expect-error: plain JavaScript module with JSDoc types
import { generateModel } from '../scripts/generate-model.mjs';
// @ts-expect-error: plain JavaScript module with JSDoc types
import { generateEsrgan } from '../scripts/generator/esrgan.mjs';
// @ts-expect-error: plain JavaScript module with JSDoc types
import { PickleWriter, op, writeTorchPickle } from '../scripts/generator/torch-checkpoint.mjs';
import { psnr, taeDecoder } from './support/data.js';
import { GGML_TYPE, writeGguf } from './support/gguf.js';
import { rrdbnetReference, toPixels } from './support/esrgan-reference.js';

const dir = mkdtempSync(join(tmpdir(), 'sdnode-esrgan-'));
const cpu = { device: 'cpu', threads: 1 };

/** A smooth test picture with some edges, `channels` per pixel. */
function picture(width: number, height: number, channels = 3): Image {
  const data = new Uint8Array(width * height * channels);
  for (let y = 0; y < height; y++)
    for (let x = 0; x < width; x++)
      for (let c = 0; c < channels; c++)
        data[(y * width + x) * channels + c] = (x * 7 + y * 3 + c * 60 + ((x >> 3) ^ (y >> 3)) * 40) & 255;
  return { width, height, channels: channels as 3, data };
}

/** What generateEsrgan returns: the path and the values by BasicSR name. */
interface Generated {
  path: string;
  values: Map<string, { shape: number[]; values: Float32Array }>;
}
const files: Record<string, string> = {};
let x4: Generated, x2: Generated, x2Esrgan: Generated;

beforeAll(async () => {
  const gain = 0.5;
  x4 = await generateEsrgan({ out: join(dir, 'x4-basicsr.pth'), preset: 'tiny-x4', seed: 3, gain });
  files['x4-basicsr.pth'] = x4.path;
  for (const [name, layout] of [['x4-basicsr.safetensors', 'basicsr'], ['x4-esrgan.pth', 'esrgan'], ['x4-esrgan.safetensors', 'esrgan']] as const) {
    files[name] = (await generateEsrgan({ out: join(dir, name), preset: 'tiny-x4', layout, seed: 3, gain })).path;
  }
  files['x4-params.pth'] = (await generateEsrgan({ out: join(dir, 'x4-params.pth'), preset: 'tiny-x4', seed: 3, gain, wrapper: 'params' })).path;
  x2 = await generateEsrgan({ out: join(dir, 'x2-basicsr.pth'), preset: 'tiny-x2', seed: 5, gain });
  x2Esrgan = await generateEsrgan({ out: join(dir, 'x2-esrgan.safetensors'), preset: 'tiny-x2-esrgan', layout: 'esrgan', seed: 7, gain });
});

function maxDiff(a: Uint8Array, b: Uint8Array): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

describe('RRDBNet against a float64 reference', () => {
  it('×4, every layout and format: the same shapes, the reference within rounding, identical outputs', async () => {
    const image = picture(13, 9);
    const expected = toPixels(rrdbnetReference(x4.values, image));
    let first: Uint8Array | undefined;
    for (const name of ['x4-basicsr.pth', 'x4-basicsr.safetensors', 'x4-esrgan.pth', 'x4-esrgan.safetensors', 'x4-params.pth']) {
      const loading: number[] = [];
      const u = await loadUpscaler(files[name]!, { ...cpu, onProgress: (p) => loading.push(p.step, p.steps) });
      expect(loading).toEqual([1, 2, 2, 2]);
      expect([u.scale, u.features, u.growth, u.blocks]).toEqual([4, 8, 4, 1]);
      expect(u.convention).toBe(name.includes('esrgan') ? 'esrgan' : 'basicsr');
      const out = await u.upscale(image, { tile: 0 });
      await u.dispose();
      expect([out.width, out.height, out.channels]).toEqual([52, 36, 3]);
      expect(maxDiff(out.data, expected)).toBeLessThanOrEqual(1);
      first ??= out.data;
      expect(Buffer.from(out.data).equals(Buffer.from(first))).toBe(true);
    }
    // Not a flat picture: the test would pass on any constant otherwise.
    expect(new Set(expected).size).toBeGreaterThan(50);
  });

  it('GGUF (f32) holds the same network', async () => {
    const path = join(dir, 'x4.gguf');
    const tensors = [...x4.values].map(([name, t]) => ({
      name,
      type: GGML_TYPE.F32,
      ne: [...t.shape].reverse(),
      data: new Uint8Array(t.values.buffer, t.values.byteOffset, t.values.byteLength),
    }));
    writeGguf(path, { tensors });
    const u = await loadUpscaler(path, cpu);
    const image = picture(13, 9);
    const out = await u.upscale(image, { tile: 0 });
    await u.dispose();
    const pth = await loadUpscaler(files['x4-basicsr.pth']!, cpu);
    expect(Buffer.from(out.data).equals(Buffer.from((await pth.upscale(image, { tile: 0 })).data))).toBe(true);
    await pth.dispose();
  });

  it('×2 with pixel unshuffle (Real-ESRGAN x2plus), odd sides reflect-padded; ×2 in the ESRGAN layout; RGBA input', async () => {
    const image = picture(11, 7, 4);
    for (const g of [x2, x2Esrgan]) {
      const u = await loadUpscaler(g.path, cpu);
      expect(u.scale).toBe(2);
      const out = await u.upscale(image, { tile: 0 });
      await u.dispose();
      expect([out.width, out.height]).toEqual([22, 14]);
      expect(maxDiff(out.data, toPixels(rrdbnetReference(g.values, image)))).toBeLessThanOrEqual(1);
    }
  });
});

describe('tiles', () => {
  let u: Upscaler;
  const image = picture(180, 100);
  let whole: Image;
  beforeAll(async () => {
    u = await loadUpscaler(files['x4-basicsr.pth']!, cpu);
    whole = await u.upscale(image, { tile: 0 });
  });
  afterAll(() => u?.dispose());

  it('overlaps wider than twice the reach give the untiled image; progress per tile', async () => {
    expect(u.reach).toBeGreaterThan(15);
    const tile = 96, overlap = 48;
    expect(overlap).toBeGreaterThan(2 * u.reach);
    const steps: number[] = [];
    const tiled = await u.upscale(image, { tile, tileOverlap: overlap, onProgress: (p) => steps.push(p.step, p.steps) });
    expect(maxDiff(tiled.data, whole.data)).toBeLessThanOrEqual(1);
    // x: 0, 48, 84 (the last flush with the edge); y: 0, 4: six tiles.
    expect(steps).toEqual([1, 6, 2, 6, 3, 6, 4, 6, 5, 6, 6, 6]);
  });

  it('narrower overlaps blend the seams: close to untiled, unlike tiles without overlap', async () => {
    const blended = await u.upscale(image, { tile: 32, tileOverlap: 16 });
    const cut = await u.upscale(image, { tile: 32, tileOverlap: 0 });
    const dbBlended = psnr(whole, blended), dbCut = psnr(whole, cut);
    expect(dbBlended).toBeLessThan(Infinity);  // the receptive field is cut: not exact
    expect(dbBlended).toBeGreaterThan(35);
    expect(dbBlended).toBeGreaterThan(dbCut);
  });

  it('repeats apply it again: 2 × (×4) = ×16, progress over both', async () => {
    const small = picture(6, 5);
    const steps: number[] = [];
    const twice = await u.upscale(small, { repeats: 2, tile: 16, tileOverlap: 4, onProgress: (p) => steps.push(p.steps) });
    expect([twice.width, twice.height]).toEqual([96, 80]);
    const once = await u.upscale(small, { tile: 16, tileOverlap: 4 });
    const again = await u.upscale(once, { tile: 16, tileOverlap: 4 });
    expect(Buffer.from(twice.data).equals(Buffer.from(again.data))).toBe(true);
    // 1 tile, then 24×20 in tiles of 16 overlapping by 4: 2 × 2.
    expect(new Set(steps)).toEqual(new Set([5]));
  });

  it('an abort between tiles rejects with AbortError; the upscaler works on', async () => {
    const controller = new AbortController();
    const job = u.upscale(image, { tile: 32, tileOverlap: 8, signal: controller.signal, onProgress: (p) => p.step === 2 && controller.abort() });
    await expect(job).rejects.toBeInstanceOf(AbortError);
    const after = await u.upscale(picture(13, 9), { tile: 0 });
    expect(after.width).toBe(52);
  });
});

describe('bad input', () => {
  it('files that are not an RRDBNet, truncated, hostile or missing', async () => {
    // A TAE decoder: a well-formed .pth of another network.
    await expect(loadUpscaler(taeDecoder, cpu)).rejects.toThrow(ModelFormatError);
    await expect(loadUpscaler(taeDecoder, cpu)).rejects.toThrow(/not an ESRGAN/);
    const bytes = readFileSync(files['x4-basicsr.safetensors']!);
    writeFileSync(join(dir, 'cut.safetensors'), bytes.subarray(0, bytes.length - 100));
    await expect(loadUpscaler(join(dir, 'cut.safetensors'), cpu)).rejects.toThrow(ModelFormatError);
    const pth = readFileSync(files['x4-esrgan.pth']!);
    writeFileSync(join(dir, 'cut.pth'), pth.subarray(0, pth.length >> 1));
    await expect(loadUpscaler(join(dir, 'cut.pth'), cpu)).rejects.toThrow(ModelFormatError);
    const marker = join(dir, 'ran');
    const evil = new PickleWriter().raw(op.PROTO, 2).global('os', 'system').raw(op.MARK).str(`touch ${marker}`).raw(op.TUPLE, op.REDUCE, op.STOP);
    await writeTorchPickle(join(dir, 'evil.pth'), Uint8Array.from(evil.bytes), []);
    await expect(loadUpscaler(join(dir, 'evil.pth'), cpu)).rejects.toThrow(ModelFormatError);
    expect(() => readFileSync(marker)).toThrow();
    // An RRDBNet missing its output conv, and one with a stray tensor.
    const partial = await generateEsrgan({ out: join(dir, 'partial.safetensors'), preset: 'tiny-x4', seed: 1 });
    const header = readFileSync(partial.path);
    writeFileSync(join(dir, 'renamed.safetensors'), Buffer.from(header.toString('latin1').replace('conv_last.weight', 'conv_lost.weight'), 'latin1'));
    await expect(loadUpscaler(join(dir, 'renamed.safetensors'), cpu)).rejects.toThrow(/conv_lost/);
    await expect(loadUpscaler(join(dir, 'missing.pth'), cpu)).rejects.toThrow(FileAccessError);
    expect(() => loadUpscaler(42 as unknown as string)).toThrow(TypeError);
    expect(() => loadUpscaler(files['x4-basicsr.pth']!, { weightType: 'q8_0' as 'f16' })).toThrow(RangeError);
  });

  it('images and options out of range: TypeError / RangeError before any work', async () => {
    const u = await loadUpscaler(files['x4-basicsr.pth']!, cpu);
    const image = picture(8, 8);
    expect(() => u.upscale({ ...image, channels: 2 } as unknown as Image)).toThrow(RangeError);
    expect(() => u.upscale({ ...image, data: image.data.subarray(1) })).toThrow(RangeError);
    expect(() => u.upscale(null as unknown as Image)).toThrow(TypeError);
    for (const tile of [8, 4097, 1.5, -1, NaN]) expect(() => u.upscale(image, { tile })).toThrow(RangeError);
    expect(() => u.upscale(image, { tile: '64' as unknown as number })).toThrow(TypeError);
    expect(() => u.upscale(image, { tile: 64, tileOverlap: 33 })).toThrow(RangeError);
    for (const repeats of [0, 5, 1.5]) expect(() => u.upscale(image, { repeats })).toThrow(RangeError);
    expect(() => u.upscale(image, { tiles: 64 } as never)).toThrow(TypeError);
    // The output budget: 4096² pixels.
    expect(() => u.upscale(picture(1100, 1000))).toThrow(RangeError);
    expect(() => u.upscale(picture(300, 300), { repeats: 2 })).toThrow(RangeError);
    await u.dispose();
  });
});

describe('lifecycle', () => {
  it('dispose waits for the running job, then DisposedError; twice is fine; jobs run in order', async () => {
    const u = await loadUpscaler(files['x4-basicsr.pth']!, cpu);
    const order: number[] = [];
    const a = u.upscale(picture(40, 40), { tile: 0 }).then(() => order.push(1));
    const b = u.upscale(picture(13, 9), { tile: 0 }).then(() => order.push(2));
    const disposed = u.dispose();
    await Promise.all([a, b, disposed]);
    expect(order).toEqual([1, 2]);
    expect(u.disposed).toBe(true);
    await expect(u.upscale(picture(8, 8))).rejects.toBeInstanceOf(DisposedError);
    await u.dispose();
  });
});

describe('memory', () => {
  it('100 loads, upscales and disposals, and 100 rejected loads, do not grow memory', async () => {
    const image = picture(16, 16);
    const cycle = async () => {
      const u = await loadUpscaler(files['x4-esrgan.safetensors']!, cpu);
      await u.upscale(image, { tile: 0 });
      await u.dispose();
      await expect(loadUpscaler(taeDecoder, cpu)).rejects.toBeInstanceOf(ModelFormatError);
    };
    for (let i = 0; i < 10; i++) await cycle();  // allocators warmed up
    const before = process.memoryUsage().rss;
    for (let i = 0; i < 100; i++) await cycle();
    expect(process.memoryUsage().rss - before).toBeLessThan(32 * 2 ** 20);
  });
});

describe('generate({ upscale })', () => {
  it('upscales every image after decoding, as upscale() on the plain result; bad options throw before work', async () => {
    const modelPath = join(dir, 'tiny-model.safetensors');
    await generateModel({ out: modelPath, preset: 'tiny', dtype: 'f32', seed: 3 });
    const model = await loadModel(modelPath, cpu);
    const u = await loadUpscaler(files['x4-basicsr.pth']!, cpu);
    const base = { prompt: 'a red house', width: 64, height: 64, steps: 2, seed: 7, batchCount: 2 };
    const plain = await model.generate(base);
    const upscaled = await model.generate({ ...base, upscale: { upscaler: u, tile: 32, tileOverlap: 8 } });
    expect(upscaled.images.map((i) => [i.width, i.height])).toEqual([[256, 256], [256, 256]]);
    expect(upscaled.timings.upscaleMs).toBeGreaterThan(0);
    expect(plain.timings.upscaleMs).toBe(0);
    for (const [i, image] of plain.images.entries()) {
      const expected = await u.upscale(image, { tile: 32, tileOverlap: 8 });
      expect(Buffer.from(upscaled.images[i]!.data).equals(Buffer.from(expected.data))).toBe(true);
    }
    expect(() => model.generate({ ...base, upscale: { upscaler: {} as Upscaler } })).toThrow(TypeError);
    expect(() => model.generate({ ...base, upscale: { upscaler: u, repeats: 5 } })).toThrow(RangeError);
    expect(() => model.generate({ ...base, upscale: { upscaler: u, tile: 3 } })).toThrow(RangeError);
    expect(() => model.generate({ ...base, width: 1088, height: 1024, upscale: { upscaler: u } })).toThrow(RangeError);
    await u.dispose();
    await expect(model.generate({ ...base, upscale: { upscaler: u } })).rejects.toBeInstanceOf(DisposedError);
    await model.dispose();
  });
});
