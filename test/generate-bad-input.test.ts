// Hostile generate() options (HOSTILE-INPUTS 20–23, 28, 30) through the public API: every bad
// value is a TypeError / RangeError thrown synchronously — nothing queued — whose message names
// the option; misspelled names get a "did you mean"; odd prompts are handled deterministically;
// the size multiple comes from the model's UNet; a huge valid request is a ResourceError.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { loadModel, type GenerateOptions, type Model } from '../lib/index.js';
// @ts-expect-error: plain JavaScript module with JSDoc types
import { PRESETS, generateModel } from '../scripts/generate-model.mjs';

const dir = mkdtempSync(join(tmpdir(), 'sdnode-generate-bad-'));
const cpu = { device: 'cpu', threads: 1 } as const;
/** The smallest job the tiny model takes (16 pixels: one latent halving). */
const tinyJob = { width: 16, height: 16, steps: 1 } as const;
let model: Model;
/** The tiny model with a third UNet level: two downsamplings, so sides must be multiples of 32. */
let deeper: Model;
/** onProgress of every refused call: it must never run. */
let refusedProgress = 0;

beforeAll(async () => {
  const path = join(dir, 'tiny.safetensors');
  const deeperPath = join(dir, 'tiny-3-levels.safetensors');
  await generateModel({ out: path, preset: 'tiny', dtype: 'f32', seed: 3 });
  const tiny = PRESETS.tiny as { unet: Record<string, unknown> };
  await generateModel({ out: deeperPath, config: { ...tiny, unet: { ...tiny.unet, channelMult: [1, 2, 2] } }, dtype: 'f32', seed: 3 });
  model = await loadModel(path, cpu);
  deeper = await loadModel(deeperPath, cpu);
}, 60_000);

afterAll(async () => {
  await model?.dispose();
  await deeper?.dispose();
});

const same = (a: Uint8Array, b: Uint8Array) => a.length === b.length && a.every((v, i) => v === b[i]);

/**
 * Calls generate() with `options` over a valid base and returns what it threw synchronously;
 * fails if it returned a promise instead (something would have been queued).
 */
function thrown(options: Record<string, unknown>, on: Model = model): Error {
  let returned: unknown;
  try {
    returned = on.generate({ prompt: 'x', ...tinyJob, onProgress: () => refusedProgress++, ...options } as GenerateOptions);
  } catch (err) {
    return err as Error;
  }
  (returned as Promise<unknown>).catch(() => {});
  throw new Error(`generate(${show(options)}) returned a promise instead of throwing`);
}

function show(options: Record<string, unknown>): string {
  return Object.entries(options)
    .map(([k, v]) => `${k}: ${typeof v === 'string' ? JSON.stringify(v.length > 20 ? `${v.slice(0, 20)}…` : v) : typeof v === 'bigint' ? `${v}n` : typeof v === 'object' && v ? '{…}' : String(v)}`)
    .join(', ');
}

type Case = [options: Record<string, unknown>, kind: typeof TypeError | typeof RangeError, message: RegExp];

function check(cases: Case[], on?: () => Model) {
  for (const [options, Kind, message] of cases) {
    it(`${show(options)} → ${Kind.name} ${message}`, () => {
      const err = thrown(options, on?.());
      expect(err).toBeInstanceOf(Kind);
      expect(err.message).toMatch(message);
    });
  }
}

const image = (width: number, height: number, channels: number, data?: unknown) => ({
  width,
  height,
  channels,
  data: data ?? new Uint8Array(Math.max(0, width * height * channels)),
});
const photo = image(64, 64, 3, Uint8Array.from({ length: 64 * 64 * 3 }, (_, i) => (i * 13) % 256));
const mask = image(64, 64, 1);

describe('sizes (20)', () => {
  check([
    [{ width: 0 }, RangeError, /options\.width must be an integer in \[8, 8192\], got 0/],
    [{ width: -64 }, RangeError, /options\.width.*got -64/],
    [{ width: 7 }, RangeError, /options\.width.*got 7/],
    [{ width: 1e9 }, RangeError, /options\.width.*got 1000000000/],
    [{ width: NaN }, RangeError, /options\.width.*got NaN/],
    [{ width: Infinity }, RangeError, /options\.width.*got Infinity/],
    [{ width: -Infinity }, RangeError, /options\.width/],
    [{ width: 64.5 }, RangeError, /options\.width.*got 64\.5/],
    [{ width: '512' }, TypeError, /options\.width must be a number, got string/],
    [{ width: 512n }, TypeError, /options\.width must be a number, got bigint/],
    [{ width: null }, TypeError, /options\.width must be a number/],
    [{ height: 0 }, RangeError, /options\.height/],
    [{ height: NaN }, RangeError, /options\.height/],
    [{ height: '64' }, TypeError, /options\.height/],
    // Not a multiple of 8; not a multiple of the tiny UNet's 16 (8 pixels per latent cell × one halving).
    [{ width: 60 }, RangeError, /width and height must be multiples of 8, got 60×16/],
    [{ height: 20 }, RangeError, /multiples of 8, got 16×20/],
    [{ width: 72 }, RangeError, /options\.width must be a multiple of 16 for this model .*got 72/],
    [{ height: 24 }, RangeError, /options\.height must be a multiple of 16 for this model .*got 24/],
    // The pixel budget (like sharp's limitInputPixels): 4096² at most, whatever the shape.
    [{ width: 4096, height: 4112 }, RangeError, /at most 16777216 pixels \(4096²\), got 4096×4112/],
    [{ width: 8192, height: 2064 }, RangeError, /at most 16777216 pixels/],
    // Sizes taken from an init image pass the same limits: 65536×1 would make a 65536-wide image.
    [{ width: undefined, height: undefined, initImage: image(65536, 1, 3) }, RangeError, /options\.width \(from options\.initImage\) must be at most 8192, got 65536/],
    [{ width: undefined, height: undefined, initImage: image(1, 9000, 3) }, RangeError, /options\.height \(from options\.initImage\) must be at most 8192, got 8992/],
  ]);

  // The tiny text encoder has 2 layers: clipSkip is checked against the weights, before queueing.
  check([
    [{ clipSkip: 3 }, RangeError, /options\.clipSkip must be an integer in \[1, 2\], got 3/],
    [{ clipSkip: 12 }, RangeError, /options\.clipSkip must be an integer in \[1, 2\], got 12/],
    [{ clipSkip: 0 }, RangeError, /options\.clipSkip/],
  ]);

  it('the size multiple comes from the UNet weights: 16 for two levels, 32 for three', async () => {
    const levels = (m: Model) => m.weights().filter((w) => /^model\.diffusion_model\.input_blocks\.\d+\.0\.op\.weight$/.test(w.name)).length;
    expect([levels(model), levels(deeper)]).toEqual([1, 2]);
    expect(thrown({ width: 48 }, deeper)).toBeInstanceOf(RangeError);
    expect(thrown({ width: 48 }, deeper).message).toMatch(/options\.width must be a multiple of 32 for this model \(its UNet halves the 1\/8-size latent 2 times\), got 48/);
    expect(thrown({ width: 32, height: 16 }, deeper).message).toMatch(/options\.height must be a multiple of 32/);
    // The same sizes are fine where the weights allow them.
    expect((await model.generate({ prompt: 'x', width: 48, height: 16, steps: 1, seed: 1 })).images[0]).toMatchObject({ width: 48, height: 16 });
    expect((await deeper.generate({ prompt: 'x', width: 64, height: 32, steps: 1, seed: 1 })).images[0]).toMatchObject({ width: 64, height: 32 });
  });

  it("an init image's size, when width/height are left out, is rounded down to the model's multiple", async () => {
    const r = await deeper.generate({ prompt: 'x', initImage: image(100, 70, 3) as never, strength: 0.5, steps: 2, seed: 1 });
    expect(r.images[0]).toMatchObject({ width: 96, height: 64 });
    const small = await deeper.generate({ prompt: 'x', initImage: image(8, 8, 3) as never, strength: 0.5, steps: 2, seed: 1 });
    expect(small.images[0]).toMatchObject({ width: 32, height: 32 });
  });
});

describe('numbers (21)', () => {
  check([
    [{ steps: 0 }, RangeError, /options\.steps must be an integer in \[1, 1000\], got 0/],
    [{ steps: -1 }, RangeError, /options\.steps.*got -1/],
    [{ steps: 1.5 }, RangeError, /options\.steps.*got 1\.5/],
    [{ steps: 1e9 }, RangeError, /options\.steps.*got 1000000000/],
    [{ steps: NaN }, RangeError, /options\.steps/],
    [{ steps: '20' }, TypeError, /options\.steps must be a number/],
    [{ cfgScale: NaN }, TypeError, /options\.cfgScale must be a finite number/],
    [{ cfgScale: Infinity }, TypeError, /options\.cfgScale must be a finite number/],
    [{ cfgScale: -Infinity }, TypeError, /options\.cfgScale must be a finite number/],
    [{ cfgScale: -1 }, RangeError, /options\.cfgScale must be in \[0, 100\], got -1/],
    [{ cfgScale: 1e6 }, RangeError, /options\.cfgScale/],
    [{ cfgScale: '7' }, TypeError, /options\.cfgScale/],
    [{ initImage: photo, strength: 1.0000001 }, RangeError, /options\.strength must be in \[0, 1\]/],
    [{ initImage: photo, strength: Infinity }, TypeError, /options\.strength must be a finite number/],
    [{ initImage: photo, strength: -Infinity }, TypeError, /options\.strength/],
    [{ initImage: photo, strength: '0.5' }, TypeError, /options\.strength/],
    [{ seed: 2n ** 64n }, RangeError, /seed must be 0 … 2\^64−1, or -1; got 18446744073709551616/],
    [{ seed: 2n ** 70n }, RangeError, /seed/],
    [{ seed: -2 }, RangeError, /seed must be an integer.*or -1; got -2/],
    [{ seed: -2n }, RangeError, /seed.*got -2/],
    [{ seed: 1.5 }, RangeError, /seed.*got 1\.5/],
    [{ seed: 2 ** 53 }, RangeError, /seed must be an integer 0 … 2\^53−1 \(or a bigint up to 2\^64−1\)/],
    [{ seed: NaN }, RangeError, /seed/],
    [{ seed: Infinity }, RangeError, /seed/],
    [{ seed: '42' }, TypeError, /seed must be a number or a bigint, got string/],
    [{ seed: null }, TypeError, /seed/],
    [{ seed: 2n ** 64n - 1n, batchCount: 2 }, RangeError, /seed \+ batchCount − 1 must fit in 64 bits/],
    [{ batchCount: 0 }, RangeError, /options\.batchCount must be an integer in \[1, 64\], got 0/],
    [{ batchCount: -1 }, RangeError, /options\.batchCount/],
    [{ batchCount: 65 }, RangeError, /options\.batchCount.*got 65/],
    [{ batchCount: 1e9 }, RangeError, /options\.batchCount/],
    [{ batchCount: 2.5 }, RangeError, /options\.batchCount/],
    [{ batchCount: '2' }, TypeError, /options\.batchCount/],
  ]);

  it('the seed range ends are accepted: 0, 2^64−1 (bigint, reported as given), -1 and -1n (random)', async () => {
    const zero = await model.generate({ prompt: 'x', ...tinyJob, seed: 0 });
    expect(zero.seed).toBe(0);
    const max = await model.generate({ prompt: 'x', ...tinyJob, seed: 2n ** 64n - 1n });
    expect(max.seed).toBe(2n ** 64n - 1n);
    const maxAgain = await model.generate({ prompt: 'x', ...tinyJob, seed: 2n ** 64n - 1n });
    expect(same(max.images[0]!.data, maxAgain.images[0]!.data)).toBe(true);
    // The random seed picked is reported in the type the seed was given in.
    for (const seed of [-1, -1n]) {
      const r = await model.generate({ prompt: 'x', ...tinyJob, seed });
      expect(typeof r.seed).toBe(typeof seed);
      expect(r.seed >= 0).toBe(true);
      const again = await model.generate({ prompt: 'x', ...tinyJob, seed: r.seed });
      expect(same(r.images[0]!.data, again.images[0]!.data)).toBe(true);
    }
  });
});

describe('prompts (22)', () => {
  check([
    [{ prompt: undefined }, TypeError, /options\.prompt must be a string/],
    [{ prompt: 42 }, TypeError, /options\.prompt must be a string/],
    [{ prompt: null }, TypeError, /options\.prompt/],
    [{ prompt: ['a', 'cat'] }, TypeError, /options\.prompt/],
    [{ negativePrompt: 42 }, TypeError, /options\.negativePrompt must be a string/],
    // 100k characters: one 100k-letter word, words, and one letter with 99,999 combining marks
    // (a single BPE piece of 200k tokens) — all past the 32 windows of 75 tokens taken.
    [{ prompt: 'x'.repeat(100_000) }, RangeError, /options\.prompt has more than 32 windows of 75 tokens; at most 32/],
    [{ prompt: 'cat '.repeat(25_000) }, RangeError, /options\.prompt has more than 32 windows/],
    [{ prompt: `e${'\u0301'.repeat(99_999)}` }, RangeError, /options\.prompt has more than 32 windows/],
    [{ prompt: '\uD800'.repeat(100_000) }, RangeError, /options\.prompt has more than 32 windows/],
    [{ negativePrompt: '🐈‍⬛'.repeat(25_000) }, RangeError, /options\.negativePrompt has more than 32 windows/],
    // Past 100k characters nothing is tokenized.
    [{ prompt: 'a cat '.repeat(20_000) }, RangeError, /options\.prompt has 120000 characters; at most 100000 are taken/],
    [{ negativePrompt: ' '.repeat(100_001) }, RangeError, /options\.negativePrompt has 100001 characters/],
    // Brackets nested past 100: each close would rescale everything since its opening.
    [{ prompt: '('.repeat(101) + 'x' }, RangeError, /options\.prompt opens more than 100 brackets without closing them \(at character 100\)/],
    [{ negativePrompt: '[a '.repeat(200) }, RangeError, /options\.negativePrompt opens more than 100 brackets/],
    [{ prompt: '(x:1.2.3)' }, RangeError, /options\.prompt weight "1\.2\.3" is not a number/],
  ]);

  it('model.tokenize takes the same 100k characters at most', () => {
    expect(model.tokenize('a cat'.padEnd(100_000))).toHaveLength(4);
    expect(() => model.tokenize('x'.repeat(100_001))).toThrow(/text has 100001 characters; at most 100000/);
    expect(() => model.tokenize(42 as never)).toThrow(TypeError);
  });

  it('a prompt of 100 nested brackets is taken, as webui weighs it', async () => {
    const r = await model.generate({ prompt: `${'('.repeat(50)}${'['.repeat(50)}a cat`, ...tinyJob, seed: 1 });
    expect(r.images).toHaveLength(1);
  });

  it('100k-character prompts pass the synchronous checks in well under a second each (no quadratic pass over the text)', () => {
    // The last two: thousands of brackets left open (each close rescales all since its opening).
    for (const prompt of ['x'.repeat(100_000), `e${'\u0301'.repeat(99_999)}`, `a${' '.repeat(100_000)}b BREAK c`, '(x:'.repeat(33_333), 'x('.repeat(50_000)]) {
      const t0 = performance.now();
      try {
        model.generate({ prompt, ...tinyJob, seed: 1 }).catch(() => {});
      } catch {
        // refused (the first two) or queued (the third): what is timed is getting there
      }
      expect(performance.now() - t0).toBeLessThan(1500);
    }
  });

  const odd: Array<[string, string]> = [
    ['100k spaces (nothing left after cleanup)', ' '.repeat(100_000)],
    ['100k tabs, newlines and no-break spaces', '\t\n\u00a0\u3000'.repeat(25_000)],
    ['lone surrogates', '\uDC00a cat\uD800 on a \uD83D mat\uDFFF'],
    ['embedded NUL', 'a cat\u0000on a mat\u0000'],
    ['emoji, ZWJ sequences, flags, skin tones, combining marks', '🐈‍⬛ 👨‍👩‍👧‍👦 🇺🇦 👍🏽 é́́ Z̤͔ͧ̑̓ä͖̭̈̇lͮ̒ͫǧ̗͚̚o̙̔ͮ̇͐̇ \uFEFF مرحبا'],
    ['unbalanced attention syntax', '((((a cat:1.5 [[[ on a mat ))) :: \\ BREAK BREAK'],
    ['32 windows exactly (the most taken)', 'cat '.repeat(32 * 75)],
  ];
  for (const [what, prompt] of odd) {
    it(`${what}: an image, the same bytes for the same seed`, async () => {
      const a = await model.generate({ prompt, negativePrompt: prompt, ...tinyJob, seed: 77 });
      const b = await model.generate({ prompt, negativePrompt: prompt, ...tinyJob, seed: 77 });
      expect(a.images[0]).toMatchObject({ width: 16, height: 16, channels: 3 });
      expect(same(a.images[0]!.data, b.images[0]!.data)).toBe(true);
    });
  }

  it('a prompt that is only whitespace is the empty prompt', async () => {
    const empty = await model.generate({ prompt: '', ...tinyJob, seed: 5 });
    const spaces = await model.generate({ prompt: ' '.repeat(100_000), ...tinyJob, seed: 5 });
    expect(same(empty.images[0]!.data, spaces.images[0]!.data)).toBe(true);
  });
});

describe('init images and masks (23)', () => {
  check([
    [{ initImage: null }, TypeError, /options\.initImage must be an object/],
    [{ initImage: {} }, TypeError, /options\.initImage\.width must be a number/],
    [{ initImage: image(0, 64, 3) }, RangeError, /options\.initImage\.width must be an integer in \[1, 65536\], got 0/],
    [{ initImage: image(64, -1, 3) }, RangeError, /options\.initImage\.height/],
    [{ initImage: image(64.5, 64, 3) }, RangeError, /options\.initImage\.width/],
    [{ initImage: image(70_000, 1, 3) }, RangeError, /options\.initImage\.width/],
    [{ initImage: image(64, 64, 1) }, RangeError, /options\.initImage\.channels must be 3 or 4, got 1/],
    [{ initImage: image(64, 64, 2) }, RangeError, /options\.initImage\.channels/],
    [{ initImage: image(64, 64, '3' as never) }, RangeError, /options\.initImage\.channels/],
    [{ initImage: image(64, 64, 3, new Uint8Array(0)) }, RangeError, /options\.initImage\.data has 0 bytes, width × height × channels is 12288/],
    [{ initImage: image(64, 64, 3, new Uint8Array(64 * 64 * 3 - 1)) }, RangeError, /options\.initImage\.data has 12287 bytes/],
    [{ initImage: image(64, 64, 3, new Uint8Array(64 * 64 * 4)) }, RangeError, /options\.initImage\.data has 16384 bytes/],
    [{ initImage: image(64, 64, 3, new Float32Array(64 * 64 * 3)) }, TypeError, /options\.initImage\.data must be a Uint8Array/],
    [{ initImage: image(64, 64, 3, new Uint8ClampedArray(64 * 64 * 3)) }, TypeError, /options\.initImage\.data must be a Uint8Array/],
    [{ initImage: image(64, 64, 3, Array.from({ length: 64 * 64 * 3 }, () => 0)) }, TypeError, /options\.initImage\.data/],
    [{ initImage: photo, mask: null }, TypeError, /options\.mask must be an object/],
    [{ initImage: photo, mask: image(64, 64, 2) }, RangeError, /options\.mask\.channels must be 1 or 3 or 4, got 2/],
    [{ initImage: photo, mask: image(64, 64, 1, new Uint8Array(0)) }, RangeError, /options\.mask\.data has 0 bytes/],
    [{ initImage: photo, mask: image(64, 64, 1, new Uint8Array(64 * 63)) }, RangeError, /options\.mask\.data has 4032 bytes/],
    [{ initImage: photo, mask: image(1, 1, 1) }, RangeError, /options\.mask is 1×1, options\.initImage 64×64/],
    [{ initImage: photo, mask: image(64, 32, 1) }, RangeError, /options\.mask is 64×32/],
    [{ mask }, TypeError, /options\.mask needs options\.initImage/],
  ]);

  it('a Buffer (a Uint8Array) and an RGBA init image are taken', async () => {
    const rgba = image(64, 64, 4, Buffer.alloc(64 * 64 * 4, 128));
    const r = await model.generate({ prompt: 'x', initImage: rgba as never, mask: image(64, 64, 1, Buffer.alloc(64 * 64, 255)) as never, strength: 0.5, steps: 2, seed: 1 });
    expect(r.images[0]).toMatchObject({ width: 64, height: 64, channels: 3 });
  });
});

describe('option names and callbacks (20, 28)', () => {
  check([
    [{ cfg_scale: 7 }, TypeError, /options: unknown option 'cfg_scale' \(did you mean 'cfgScale'\?\)/],
    [{ negative_prompt: 'x' }, TypeError, /did you mean 'negativePrompt'/],
    [{ seeds: 1 }, TypeError, /did you mean 'seed'/],
    [{ batch_count: 2 }, TypeError, /did you mean 'batchCount'/],
    [{ init_image: photo }, TypeError, /did you mean 'initImage'/],
    [{ stength: 0.5 }, TypeError, /did you mean 'strength'/],
    [{ onprogress: () => {} }, TypeError, /did you mean 'onProgress'/],
    [{ signl: AbortSignal.abort() }, TypeError, /did you mean 'signal'/],
    [{ sampling_method: 'euler' }, TypeError, /unknown option 'sampling_method'/],
    [{ onProgress: 'log' }, TypeError, /options\.onProgress must be a function/],
    [{ onProgress: {} }, TypeError, /options\.onProgress must be a function/],
    [{ onProgress: null }, TypeError, /options\.onProgress must be a function/],
    [{ signal: {} }, TypeError, /options\.signal must be an AbortSignal/],
    [{ signal: new AbortController() }, TypeError, /options\.signal must be an AbortSignal/],
  ]);

  it('options that are not an object', () => {
    for (const options of [null, 'a cat', 42, ['a cat']]) {
      expect(() => model.generate(options as never)).toThrow(/options must be an object/);
    }
    expect(() => model.generate(undefined as never)).toThrow(/options\.prompt must be a string/);
  });
});

describe('out of memory (30)', () => {
  it('a valid but huge request (an untiled VAE pass over a 4096² init image) is a ResourceError, and the model still works', async () => {
    const huge = image(4096, 4096, 3) as never;
    const t0 = performance.now();
    const err = await model.generate({ prompt: 'x', initImage: huge, steps: 1, seed: 1, vaeTiling: false }).then(() => undefined, (e: unknown) => e);
    expect(err).toMatchObject({ name: 'ResourceError', code: 'ERR_RESOURCE' });
    expect((err as Error).message).toMatch(/too large/);
    expect(performance.now() - t0).toBeLessThan(30_000);
    const latent = { channels: 4, width: 512, height: 512, data: new Float32Array(4 * 512 * 512) };
    await expect(model.decodeLatent(latent, { vaeTiling: false })).rejects.toMatchObject({ name: 'ResourceError', code: 'ERR_RESOURCE' });
    expect((await model.generate({ prompt: 'x', ...tinyJob, seed: 1 })).images).toHaveLength(1);
  });

  it('text-to-image whose untiled decode could not run is refused before sampling, not after', async () => {
    const steps: number[] = [];
    const t0 = performance.now();
    const err = await model
      .generate({ prompt: 'x', width: 4096, height: 4096, steps: 50, seed: 1, vaeTiling: false, onProgress: (p) => steps.push(p.step) })
      .then(() => undefined, (e: unknown) => e);
    expect(err).toMatchObject({ name: 'ResourceError', code: 'ERR_RESOURCE' });
    expect(steps).toEqual([]);
    expect(performance.now() - t0).toBeLessThan(30_000);
  });
});

describe('after all of it', () => {
  it('no refused call ever ran: none of their onProgress callbacks was called', async () => {
    await model.generate({ prompt: 'x', ...tinyJob, steps: 2, seed: 1 });
    expect(refusedProgress).toBe(0);
  });
});
