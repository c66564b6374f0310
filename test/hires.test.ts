// The hires fix on a tiny generated SD1.x model: the engine's resize filters against float64
// references of PyTorch's F.interpolate (and PIL's Lanczos); a hires job equal bit for bit to
// its composition by hand (first pass, enlarge, image-to-image from the result); progress over
// both passes; cancelling in the second; the pixel-space upscalers (Lanczos, an ESRGAN handle);
// a ControlNet guiding both passes; refused options.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { AbortError, DisposedError, loadModel, loadUpscaler, type Image, type Model, type Progress, type Upscaler } from '../lib/index.js';
import { hiresSchedule } from '../lib/hires.js';
import { native, type NativeGenerateParams, type NativeModel } from '../lib/native.js';
import { ClipTokenizer } from '../lib/text/clip-tokenizer.js';
import { encodePrompt } from '../lib/text/prompt-weights.js';
// @ts-expect-error: plain JavaScript module with JSDoc types
import { generateModel } from '../scripts/generate-model.mjs';
// @ts-expect-error: plain JavaScript module with JSDoc types
import { generateControlNet } from '../scripts/generator/controlnet.mjs';
// @ts-expect-error: plain JavaScript module with JSDoc types
import { generateEsrgan } from '../scripts/generator/esrgan.mjs';

const dir = mkdtempSync(join(tmpdir(), 'sdnode-hires-'));
const cpu = { device: 'cpu', threads: 2 } as const;
let model: Model;
let parts: NativeModel;
let esrgan: Upscaler;

beforeAll(async () => {
  const path = join(dir, 'tiny.safetensors');
  await generateModel({ out: path, preset: 'tiny', dtype: 'f32', seed: 3 });
  model = await loadModel(path, cpu);
  parts = await native().NativeModel.load({ model: path, ema: false, device: 'cpu', threads: 2, weightType: '' }).promise;
  const x2 = await generateEsrgan({ out: join(dir, 'x2.safetensors'), preset: 'tiny-x2', seed: 5, gain: 0.5 });
  esrgan = await loadUpscaler(x2.path, cpu);
}, 60_000);

afterAll(async () => {
  await model?.dispose();
  parts?.dispose();
  await esrgan?.dispose();
});

const same = (a: Uint8Array, b: Uint8Array) => a.length === b.length && a.every((v, i) => v === b[i]);
const meanAbsDiff = (a: Uint8Array, b: Uint8Array) => a.reduce((s, v, i) => s + Math.abs(v - b[i]!), 0) / a.length;

// ---- float64 references, written from PyTorch's and PIL's definitions, one output value at a time ----

type Filter = 'nearest' | 'nearest-exact' | 'bilinear' | 'bicubic' | 'lanczos';

/** Keys' cubic convolution with parameter a. */
function keys(x: number, a: number): number {
  x = Math.abs(x);
  if (x <= 1) return (a + 2) * x ** 3 - (a + 3) * x ** 2 + 1;
  if (x < 2) return a * x ** 3 - 5 * a * x ** 2 + 8 * a * x - 4 * a;
  return 0;
}
const sinc = (x: number) => (x === 0 ? 1 : Math.sin(Math.PI * x) / (Math.PI * x));

/** Input indices and weights of output index `o` along one axis, as torch (align_corners=False) / PIL define them. */
function referenceTaps(inSize: number, outSize: number, o: number, filter: Filter, antialias: boolean): Array<[number, number]> {
  const scale = inSize / outSize;
  const clamp = (i: number) => Math.min(Math.max(i, 0), inSize - 1);
  if (filter === 'nearest') return [[Math.min(Math.floor(o * scale), inSize - 1), 1]];
  if (filter === 'nearest-exact') return [[Math.min(Math.floor((o + 0.5) * scale), inSize - 1), 1]];
  if (!antialias && filter === 'bilinear') {
    const src = Math.max(0, (o + 0.5) * scale - 0.5);  // torch: area_pixel_compute_source_index, clamped for linear modes
    const i0 = Math.floor(src), l = src - i0;
    return [[i0, 1 - l], [Math.min(i0 + 1, inSize - 1), l]];
  }
  if (!antialias && filter === 'bicubic') {
    const src = (o + 0.5) * scale - 0.5, i0 = Math.floor(src), t = src - i0;
    return [-1, 0, 1, 2].map((k) => [clamp(i0 + k), keys(t - k, -0.75)]);
  }
  // PIL's resampling (torch's antialias=True): the kernel stretched when shrinking, cut at the borders, normalised.
  const radius = filter === 'bilinear' ? 1 : filter === 'bicubic' ? 2 : 3;
  const kernel = (x: number) => (filter === 'bilinear' ? Math.max(0, 1 - Math.abs(x)) : filter === 'bicubic' ? keys(x, -0.5) : Math.abs(x) < 3 ? sinc(x) * sinc(x / 3) : 0);
  const stretch = Math.max(scale, 1), center = (o + 0.5) * scale, support = radius * stretch;
  const taps: Array<[number, number]> = [];
  for (let i = Math.max(Math.trunc(center - support + 0.5), 0); i < Math.min(Math.trunc(center + support + 0.5), inSize); i++)
    taps.push([i, kernel((i + 0.5 - center) / stretch)]);
  const total = taps.reduce((s, [, w]) => s + w, 0);
  return taps.map(([i, w]) => [i, w / total]);
}

function referenceResize(data: Float32Array, c: number, w: number, h: number, ow: number, oh: number, filter: Filter, antialias: boolean): Float64Array {
  const out = new Float64Array(c * ow * oh);
  for (let k = 0; k < c; k++)
    for (let y = 0; y < oh; y++)
      for (let x = 0; x < ow; x++) {
        let v = 0;
        for (const [iy, wy] of referenceTaps(h, oh, y, filter, antialias))
          for (const [ix, wx] of referenceTaps(w, ow, x, filter, antialias)) v += wy * wx * data[(k * h + iy) * w + ix]!;
        out[(k * oh + y) * ow + x] = v;
      }
  return out;
}

function randomPlanes(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let s = seed;
  for (let i = 0; i < n; i++) {
    s = (s * 1103515245 + 12345) % 2 ** 31;
    out[i] = (s / 2 ** 31) * 4 - 2;
  }
  return out;
}

describe('resize filters against float64 references', () => {
  it('torch values by hand: bilinear and bicubic of [0, 1] to 4 samples', () => {
    const row = new Float32Array([0, 1]);
    expect([...native().resizePlanes(row, 1, 2, 1, 4, 1, 'bilinear', false)]).toEqual([0, 0.25, 0.75, 1]);
    // mode='bicubic': sources at -0.25, 0.25, 0.75, 1.25, the a = -0.75 kernel overshooting at the ends;
    // e.g. the second, W(0.75) + W(1.75) = 0.26171875 - 0.03515625.
    const cubic = native().resizePlanes(row, 1, 2, 1, 4, 1, 'bicubic', false);
    [-0.10546875, 0.2265625, 0.7734375, 1.10546875].forEach((v, i) => expect(cubic[i]).toBeCloseTo(v, 7));
  });

  const cases: Array<[Filter, boolean]> = [
    ['nearest', false], ['nearest-exact', false], ['bilinear', false], ['bilinear', true],
    ['bicubic', false], ['bicubic', true], ['lanczos', false],
  ];
  for (const [filter, antialias] of cases) {
    it(`${filter}${antialias ? ' antialiased' : ''}: up ×2, up by odd ratios and down`, () => {
      for (const [w, h, ow, oh] of [[8, 6, 16, 12], [5, 7, 13, 11], [17, 16, 7, 9]] as const) {
        const c = 3, data = randomPlanes(c * w * h, w * 31 + oh);
        const got = native().resizePlanes(data, c, w, h, ow, oh, filter, antialias);
        const want = referenceResize(data, c, w, h, ow, oh, filter, antialias);
        expect(got.length).toBe(want.length);
        let err = 0;
        for (let i = 0; i < want.length; i++) err = Math.max(err, Math.abs(got[i]! - want[i]!));
        expect(err, `${w}×${h} → ${ow}×${oh}`).toBeLessThan(2e-6);
      }
    });
  }

  it('antialiasing changes a shrink, and bicubic antialiased uses PIL’s kernel even when enlarging', () => {
    const data = randomPlanes(16 * 16, 9);
    const plain = native().resizePlanes(data, 1, 16, 16, 5, 5, 'bilinear', false);
    const aa = native().resizePlanes(data, 1, 16, 16, 5, 5, 'bilinear', true);
    expect(Math.max(...plain.map((v, i) => Math.abs(v - aa[i]!)))).toBeGreaterThan(0.05);
    const up = native().resizePlanes(data, 1, 16, 16, 32, 32, 'bicubic', false);
    const upAa = native().resizePlanes(data, 1, 16, 16, 32, 32, 'bicubic', true);
    expect(Math.max(...up.map((v, i) => Math.abs(v - upAa[i]!)))).toBeGreaterThan(0.01);
  });

  it('bad arguments are TypeError / RangeError', () => {
    const d = new Float32Array(4);
    expect(() => native().resizePlanes(d, 1, 2, 2, 4, 4, 'area' as never, false)).toThrow(RangeError);
    expect(() => native().resizePlanes(d, 1, 3, 2, 4, 4, 'bilinear', false)).toThrow(RangeError);
    expect(() => native().resizePlanes(d, 1, 2, 2, 0, 4, 'bilinear', false)).toThrow(RangeError);
    expect(() => native().resizePlanes([0, 0, 0, 0] as never, 1, 2, 2, 4, 4, 'bilinear', false)).toThrow(TypeError);
  });
});

// ---- the job ----

describe('the second pass’s schedule', () => {
  it('follows stable-diffusion.cpp: floor(steps / strength) scheduled, floor(that × strength) + 1 run', () => {
    expect(hiresSchedule(3, 0.7)).toEqual({ scheduleSteps: 4, runSteps: 3 });
    expect(hiresSchedule(2, 0.7)).toEqual({ scheduleSteps: 2, runSteps: 2 });
    expect(hiresSchedule(10, 0.5)).toEqual({ scheduleSteps: 20, runSteps: 11 });
    expect(hiresSchedule(20, 1)).toEqual({ scheduleSteps: 20, runSteps: 20 });
    expect(hiresSchedule(1, 0.1)).toEqual({ scheduleSteps: 10, runSteps: 2 });
  });
});

function tokens(text: string) {
  const p = encodePrompt(ClipTokenizer.default(), text);
  return { ids: p.ids, weights: p.weights, windows: p.chunkCount };
}

const base: NativeGenerateParams = {
  prompt: tokens('a lovely cat'), negative: tokens(''), empty: tokens(''),
  textEncoders: [{ heads: 2, quickGelu: true, clipSkip: 1 }], unetHeads: 0, unetHeadDim: 32, prediction: 'epsilon',
  width: 32, height: 32, steps: 3, sampler: 'euler', scheduler: 'discrete', cfgScale: 7, vaeScale: 0.18215,
  seed: 21n, rng: 'cuda', batchCount: 2, decode: true,
};

describe('a hires job equals its composition by hand', () => {
  it('latent modes: the first pass’s latents interpolated, then image-to-image from them at the same seeds', async () => {
    const { scheduleSteps, runSteps } = hiresSchedule(3, 0.7);
    for (const [filter, antialias] of [['bilinear', false], ['bicubic', true]] as const) {
      const hires = { width: 64, height: 64, scheduleSteps, runSteps, pixelSpace: false, filter, antialias };
      const events: number[] = [];
      const job = await parts.generate({ ...base, hires }, (p) => events.push(p.step)).promise;
      expect(events).toEqual([...Array((3 + runSteps) * 2).keys()].map((i) => i + 1));
      expect(job.stepsRun).toBe(3);
      expect(job.hiresStepsRun).toBe(runSteps);

      const first = await parts.generate({ ...base, decode: false }).promise;
      const initLatents = first.latents.map((l) => ({
        channels: 4, width: 8, height: 8, data: native().resizePlanes(l.data, 4, l.width, l.height, 8, 8, filter, antialias),
      }));
      const second = await parts.generate({ ...base, width: 64, height: 64, steps: scheduleSteps, initLatents, initLatentSteps: runSteps }).promise;
      expect(second.stepsRun).toBe(runSteps);
      expect(job.images).toHaveLength(2);
      for (let i = 0; i < 2; i++) {
        expect(job.images[i]).toMatchObject({ width: 64, height: 64 });
        expect(same(job.images[i]!.data, second.images[i]!.data), `${filter} image ${i}`).toBe(true);
      }
      // The second pass did something: not the first pass's latents merely decoded larger.
      const noSecond = await parts.generate({ ...base, width: 64, height: 64, steps: scheduleSteps, initLatents, initLatentSteps: 1 }).promise;
      expect(meanAbsDiff(job.images[0]!.data, noSecond.images[0]!.data)).toBeGreaterThan(1);
    }
  }, 60_000);

  it('with a ControlNet: each pass guided, by the hint at its own size', async () => {
    const { scheduleSteps, runSteps } = hiresSchedule(3, 0.7);
    await generateControlNet({ out: join(dir, 'cn.safetensors'), preset: 'tiny', dtype: 'f32', seed: 5 });
    const controlNet = await parts.loadControlNet(join(dir, 'cn.safetensors'), { device: 'cpu' }).promise;
    /** Stripes and a disc, drawn at `side` pixels (so the two sizes show one picture). */
    const hint = (side: number) => {
      const data = new Uint8Array(side * side * 3);
      for (let y = 0; y < side; y++)
        for (let x = 0; x < side; x++) {
          const u = x / side, v = y / side, on = (u - 0.5) ** 2 + (v - 0.45) ** 2 < 0.08 || Math.floor(u * 8) % 2 === 0;
          data.fill(on ? 230 : 30, (y * side + x) * 3, (y * side + x) * 3 + 3);
        }
      return { width: side, height: side, channels: 3, data };
    };
    const use = (image: ReturnType<typeof hint>, hiresImage?: ReturnType<typeof hint>) =>
      [{ controlNet, image, ...(hiresImage ? { hiresImage } : {}), strength: 1, start: 0, end: 1 }];
    const hires = { width: 64, height: 64, scheduleSteps, runSteps, pixelSpace: false, filter: 'bilinear', antialias: false } as const;
    try {
      const job = await parts.generate({ ...base, hires, controlNets: use(hint(32), hint(64)) }).promise;
      const first = await parts.generate({ ...base, decode: false, controlNets: use(hint(32)) }).promise;
      const initLatents = first.latents.map((l) => ({
        channels: 4, width: 8, height: 8, data: native().resizePlanes(l.data, 4, l.width, l.height, 8, 8, 'bilinear', false),
      }));
      const second = { ...base, width: 64, height: 64, steps: scheduleSteps, initLatents, initLatentSteps: runSteps };
      const guided = await parts.generate({ ...second, controlNets: use(hint(64)) }).promise;
      const unguided = await parts.generate(second).promise;
      for (let i = 0; i < 2; i++) {
        expect(job.images[i]).toMatchObject({ width: 64, height: 64 });
        expect(same(job.images[i]!.data, guided.images[i]!.data), `image ${i}`).toBe(true);
        // The ControlNet acted on the second pass too.
        expect(same(job.images[i]!.data, unguided.images[i]!.data), `image ${i}`).toBe(false);
      }
      // The first pass was guided: its latents differ from those of a plain first pass.
      const plainFirst = await parts.generate({ ...base, decode: false }).promise;
      expect(same(new Uint8Array(first.latents[0]!.data.buffer), new Uint8Array(plainFirst.latents[0]!.data.buffer))).toBe(false);
      // Without a hint for the second pass the engine refuses the job.
      await expect(parts.generate({ ...base, hires, controlNets: use(hint(32)) }).promise).rejects.toThrow(/hires pass/);
    } finally {
      controlNet.dispose();
    }
  }, 60_000);

  it('the engine refuses what lib/ would have: steps out of range, init latents that do not fit, a size not a multiple of 8', async () => {
    const hires = { width: 64, height: 64, scheduleSteps: 4, runSteps: 3, pixelSpace: false, filter: 'bilinear', antialias: false };
    const latent = { channels: 4, width: 8, height: 8, data: new Float32Array(256) };
    for (const bad of [
      { hires: { ...hires, runSteps: 0 } },
      { hires: { ...hires, runSteps: 5 } },
      { hires: { ...hires, width: 60 } },
      { hires: { ...hires, filter: 'area' } },
      { initLatents: [latent], initLatentSteps: 1 },  // two images, one latent
      { initLatents: [latent, { ...latent, width: 4, data: new Float32Array(128) }], initLatentSteps: 1 },
      { initLatents: [latent, latent], initLatentSteps: 9 },
    ]) {
      const job = (() => {
        try {
          return parts.generate({ ...base, width: 64, height: 64, ...bad } as NativeGenerateParams).promise;
        } catch (err) {
          return Promise.reject(err);
        }
      })();
      await expect(job, JSON.stringify(Object.keys(bad))).rejects.toThrow();
      await job.catch((err: { code?: string; name: string }) => expect(err.code === 'ERR_INVALID_ARGUMENT' || err.name === 'RangeError', String(err)).toBe(true));
    }
  });

  /** The engine's pixel resize as hires applies it: 8-bit to [0, 1] floats, the filter, rounded back. */
  function enginePixelResize(image: Image, width: number, height: number, filter: Filter): Image {
    const plane = image.width * image.height;
    const planar = new Float32Array(plane * 3);
    for (let i = 0; i < plane; i++) for (let c = 0; c < 3; c++) planar[c * plane + i] = Math.fround(image.data[i * image.channels + c]! / 255);
    const out = native().resizePlanes(planar, 3, image.width, image.height, width, height, filter, false);
    const data = new Uint8Array(width * height * 3);
    const n = width * height;
    for (let i = 0; i < n; i++)
      for (let c = 0; c < 3; c++) data[i * 3 + c] = Math.round(Math.fround(Math.min(1, Math.max(0, out[c * n + i]!)) * 255));
    return { width, height, channels: 3, data };
  }

  it('pixel space (Lanczos, ESRGAN): decoded, enlarged, then image-to-image with the VAE encode of that picture', async () => {
    // hires steps 3 at 0.7: a schedule of 4 steps, 3 run — as image-to-image runs ceil(4 × 0.7).
    const settings = { prompt: 'a lovely cat', width: 32, height: 32, steps: 3, sampler: 'euler', seed: 21 } as const;
    const small = (await model.generate(settings)).images[0]!;
    const upscaled = await esrgan.upscale(small, { tile: 128, tileOverlap: 32 });
    for (const [upscaler, enlarged] of [
      ['lanczos', enginePixelResize(small, 64, 64, 'lanczos')],
      ['nearest', enginePixelResize(small, 64, 64, 'nearest')],
      [esrgan, upscaled.width === 64 ? upscaled : enginePixelResize(upscaled, 64, 64, 'lanczos')],
    ] as const) {
      const hires = await model.generate({ ...settings, hires: { scale: 2, steps: 3, strength: 0.7, upscaler } });
      const manual = await model.generate({ ...settings, width: 64, height: 64, steps: 4, strength: 0.7, initImage: enlarged });
      expect(hires.images[0]).toMatchObject({ width: 64, height: 64 });
      expect(same(hires.images[0]!.data, manual.images[0]!.data), String(upscaler)).toBe(true);
      expect(hires.timings.hiresUpscaleMs).toBeGreaterThan(0);
      expect(hires.timings.hiresSamplingMs).toBeGreaterThan(0);
    }
  }, 60_000);
});

describe('through generate()', () => {
  const settings = { prompt: 'a lovely cat', width: 32, height: 32, steps: 3, sampler: 'euler', seed: 4 } as const;

  it('progress counts both passes, monotone, over one total; the image is the target’s size', async () => {
    const events: Progress[] = [];
    const r = await model.generate({ ...settings, batchCount: 2, hires: { width: 64, height: 48, steps: 2, strength: 0.5 }, onProgress: (p) => events.push(p) });
    const { runSteps } = hiresSchedule(2, 0.5);
    const total = (3 + runSteps) * 2;
    expect(events.map((e) => e.step)).toEqual([...Array(total).keys()].map((i) => i + 1));
    expect(events.every((e) => e.steps === total)).toBe(true);
    expect(r.images.map((i) => [i.width, i.height])).toEqual([[64, 48], [64, 48]]);
    // The upscalers differ: a latent mode against pixel-space Lanczos.
    const lanczos = await model.generate({ ...settings, hires: { width: 64, height: 48, steps: 2, strength: 0.5, upscaler: 'lanczos' } });
    expect(meanAbsDiff(lanczos.images[0]!.data, r.images[0]!.data)).toBeGreaterThan(0.5);
  }, 30_000);

  it('an abort during the second pass rejects with AbortError', async () => {
    const controller = new AbortController();
    const steps: number[] = [];
    const job = model.generate({
      ...settings, hires: { scale: 2, steps: 20 }, signal: controller.signal,
      onProgress: (p) => { steps.push(p.step); if (p.step === 4) controller.abort(); },
    });
    await expect(job).rejects.toBeInstanceOf(AbortError);
    expect(Math.max(...steps)).toBeGreaterThanOrEqual(4);
    expect(Math.max(...steps)).toBeLessThan(10);
  }, 30_000);

  it('bad options: TypeError / RangeError before any work; a disposed upscaler: DisposedError', async () => {
    const g = (hires: unknown, extra: object = {}) => () => model.generate({ ...settings, ...extra, hires: hires as never });
    for (const scale of [1, 0.5, 0, -2, NaN, Infinity, 9]) expect(g({ scale }), String(scale)).toThrow(RangeError);
    expect(g({ scale: '2' })).toThrow(TypeError);
    expect(g({ width: 72 })).toThrow(/multiple of 16/);
    expect(g({ width: 32, height: 32 })).toThrow(/larger/);
    expect(g({ width: 16, height: 64 })).toThrow(RangeError);
    expect(g({ scale: 2, width: 64 })).toThrow(TypeError);
    expect(g({ width: 8192 })).toThrow(/pixel budget/);
    expect(g({ scale: 8 }, { width: 1024, height: 1024 })).toThrow(/pixel budget/);
    for (const strength of [0, -0.1, 1.5]) expect(g({ strength }), String(strength)).toThrow(RangeError);
    expect(g({ strength: NaN })).toThrow(TypeError);  // as every option that takes a finite number
    for (const steps of [-1, 1.5, 1001]) expect(g({ steps }), String(steps)).toThrow(RangeError);
    expect(g({ upscaler: 'bilinear' })).toThrow(TypeError);
    expect(g({ upscaler: {} })).toThrow(TypeError);
    expect(g({ colour: 1 })).toThrow(TypeError);
    expect(g(2)).toThrow(TypeError);
    const init = { width: 32, height: 32, channels: 3 as const, data: new Uint8Array(32 * 32 * 3) };
    expect(g({ scale: 2 }, { initImage: init })).toThrow(/text-to-image/);
    const other = await loadUpscaler(join(dir, 'x2.safetensors'), cpu);
    await other.dispose();
    await expect(model.generate({ ...settings, hires: { upscaler: other } })).rejects.toBeInstanceOf(DisposedError);
  });
});
