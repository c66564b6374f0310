// resolveGenerateOptions() on its own, no weights: each option's documented default for each
// family, defaults derived from the model and from earlier options, and the table's checking
// order where two options are wrong at once. Through the public API, test/generate-bad-input.test.ts.
import { describe, expect, it } from 'vitest';

import { PREVIEW_INTERVAL, resolveGenerateOptions, type GenerateModelFacts } from '../lib/generate-options.js';
import type { Image } from '../lib/image.js';

/** A model as the options see it: SD1.x-like, 64-pixel size multiple, 12 text-encoder layers, no TAE. */
function facts(over: Partial<GenerateModelFacts> = {}): GenerateModelFacts {
  return { family: 'sd1', prediction: 'unknown', hasTae: false, sizeMultiple: () => 64, textEncoderLayers: () => 12, ...over };
}

const image = (width: number, height: number): Image => ({ width, height, channels: 3, data: new Uint8Array(width * height * 3) });

describe('resolveGenerateOptions', () => {
  it('gives every option its documented default (SD1.x)', () => {
    expect(resolveGenerateOptions({ prompt: 'a cat' }, facts())).toEqual({
      prompt: 'a cat',
      negativePrompt: '',
      initImage: undefined,
      mask: undefined,
      strength: 0.75,
      maskBlur: 4,
      width: 512,
      height: 512,
      steps: 20,
      cfgScale: 7,
      sampler: 'euler_a',
      scheduler: 'discrete',
      seed: -1,
      rng: 'cuda',
      batchCount: 1,
      clipSkip: 1,
      originalSize: undefined,
      targetSize: undefined,
      cropCoords: undefined,
      prediction: 'epsilon',
      vae: 'full',
      vaeTiling: 'auto',
      preview: 'none',
      previewInterval: 1,
      loras: [],
      controlNets: [],
      signal: undefined,
      onProgress: undefined,
    });
  });

  it('derives the family defaults: SDXL size conditioning from the size, clip skip 2, the probe for an SD2.x file that does not say', () => {
    const sdxl = resolveGenerateOptions({ prompt: '', width: 1024, height: 768 }, facts({ family: 'sdxl' }));
    expect([sdxl.originalSize, sdxl.targetSize, sdxl.cropCoords, sdxl.clipSkip]).toEqual([{ width: 1024, height: 768 }, { width: 1024, height: 768 }, { left: 0, top: 0 }, 2]);
    const sd2 = resolveGenerateOptions({ prompt: '' }, facts({ family: 'sd2' }));
    expect([sd2.prediction, sd2.clipSkip]).toEqual([undefined, 2]);
    expect(resolveGenerateOptions({ prompt: '' }, facts({ family: 'sd2', prediction: 'v' })).prediction).toBe('v');
  });

  it('derives defaults from earlier options: the size from the init image, the preview interval from the preview', () => {
    const o = resolveGenerateOptions({ prompt: '', initImage: image(200, 130), preview: 'latent2rgb' }, facts());
    expect([o.width, o.height, o.previewInterval]).toEqual([192, 128, PREVIEW_INTERVAL.latent2rgb]);
    // Smaller than one multiple: one multiple.
    expect(resolveGenerateOptions({ prompt: '', initImage: image(40, 40) }, facts()).width).toBe(64);
  });

  it('keeps the given seed as given (number, bigint, -1 for random)', () => {
    expect(resolveGenerateOptions({ prompt: '', seed: 2n ** 64n - 1n }, facts()).seed).toBe(2n ** 64n - 1n);
    expect(resolveGenerateOptions({ prompt: '', seed: -1n }, facts()).seed).toBe(-1n);
    expect(() => resolveGenerateOptions({ prompt: '', seed: 2n ** 64n - 2n, batchCount: 3 }, facts())).toThrow(/seed \+ batchCount − 1 must fit in 64 bits/);
  });

  it('checks in the table order: the first wrong option is the one reported', () => {
    // The mask before the size and the steps; the size pair before the steps.
    expect(() => resolveGenerateOptions({ prompt: '', mask: image(8, 8), width: 7, steps: 0 }, facts())).toThrow(/options.mask needs options.initImage/);
    expect(() => resolveGenerateOptions({ prompt: '', width: 96, steps: 0 }, facts())).toThrow(/options.width must be a multiple of 64/);
    expect(() => resolveGenerateOptions({ prompt: 1, stepz: 1 }, facts())).toThrow(/unknown option 'stepz' \(did you mean 'steps'\?\)/);
  });

  it('refuses options the model cannot take: SDXL conditioning elsewhere, a TAE it was not given, a clip skip past its layers', () => {
    expect(() => resolveGenerateOptions({ prompt: '', targetSize: { width: 8, height: 8 } }, facts())).toThrow(/options.targetSize applies to SDXL models \(not the refiner\); this one is sd1/);
    expect(() => resolveGenerateOptions({ prompt: '', preview: 'tae' }, facts())).toThrow(/options.preview 'tae' needs a TAESD decoder/);
    expect(resolveGenerateOptions({ prompt: '', vae: 'tae' }, facts({ hasTae: true })).vae).toBe('tae');
    expect(() => resolveGenerateOptions({ prompt: '', clipSkip: 13 }, facts())).toThrow(/options.clipSkip must be an integer in \[1, 12\]/);
  });
});
