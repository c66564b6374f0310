// The CLIP text encoder graph (native/engine/nn/clip_text.cpp) against a float64 JS reference of
// transformers' CLIPTextModel, on the tiny generated model (f32 and f16 files), for real token
// ids from the tokenizer: one window, two windows in one batch, clip skip 2, GELU instead of
// quick-GELU; refused ids and parameters; a model without a text encoder. And SDXL's two
// encoders on the tiny-sdxl model, the reference reading the file's own names: CLIP ViT-L's
// hidden states without the final norm, and OpenCLIP bigG's (packed in_proj, GELU) with its
// pooled output (the last layer, final-normed, at each window's EOS, times text_projection).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { native, type NativeModel, type NativeTextEncoderParams } from '../lib/native.js';
import { ClipTokenizer } from '../lib/text/clip-tokenizer.js';
import { encodePrompt } from '../lib/text/prompt-weights.js';
// @ts-expect-error: plain JavaScript module with JSDoc types
import { COMPONENT_PREFIXES, PRESETS, componentOf, componentPrefixes, generateModel, tensorBytes, tensorSpecs } from '../scripts/generate-model.mjs';
import { generatedWeights } from './support/generated-weights.js';
import { hfTextWeights, openClipTextWeights, reference, referencePooled, type ClipConfig, type TextWeights } from './support/clip-text-reference.js';
import { relativeError } from './support/reference-nn.js';
import { writeSafetensors } from './support/safetensors.js';

interface Spec {
  name: string;
  shape: number[];
  init: string;
}

const clip = PRESETS.tiny.clip as ClipConfig;
const prefix = COMPONENT_PREFIXES.clip as string;
const specs = tensorSpecs(PRESETS.tiny) as Spec[];
const seed = 5;
const dir = mkdtempSync(join(tmpdir(), 'sdnode-clip-'));

/** The text encoder's weights of the tiny model in `dtype`, decoded to float64. */
function clipWeights(dtype: 'f32' | 'f16'): TextWeights {
  const w = generatedWeights(specs, seed, dtype, prefix);
  return hfTextWeights((name) => w.get(name), clip);
}

// ---------------------------------------------------------------------------------------------
// The engine

let f32Model: NativeModel;
let f16Model: NativeModel;
let heads: number; // from the file's metadata, as lib/ will read it
const f32 = clipWeights('f32');
const f16 = clipWeights('f16');

const load = (path: string) =>
  native().NativeModel.load({ model: path, ema: false, device: 'cpu', threads: 2, weightType: '' }).promise;

function encode(
  model: NativeModel,
  ids: ArrayLike<number>,
  windows: number,
  params: Partial<NativeTextEncoderParams> = {},
  onProgress?: (p: { step: number; steps: number }) => void,
): Promise<Float32Array> {
  return model.encodeTokens(Int32Array.from(ids), windows, { heads, ...params }, onProgress).promise.then((e) => e.hidden);
}

const tokenizer = ClipTokenizer.default();
const shortPrompt = encodePrompt(tokenizer, 'a lovely cat sitting on a red sofa, oil painting');
const longPrompt = encodePrompt(
  tokenizer,
  'a highly detailed photograph of an old lighthouse on a rocky coast at sunset, dramatic clouds, ' +
    'crashing waves, seagulls in the sky, warm golden light, long exposure, sharp focus, 35mm film grain, ' +
    'by a famous landscape photographer, award winning, trending on an art site, volumetric light, ' +
    'reflections on wet rocks, a small boat in the distance, mist over the water, intricate textures',
);

beforeAll(async () => {
  const f32Path = join(dir, 'tiny-f32.safetensors');
  const f16Path = join(dir, 'tiny-f16.safetensors');
  const result = (await generateModel({ out: f32Path, preset: 'tiny', dtype: 'f32', seed })) as { metadata: Record<string, string> };
  await generateModel({ out: f16Path, preset: 'tiny', dtype: 'f16', seed });
  heads = (JSON.parse(result.metadata['sdnode.attention_heads']!) as { clip: { numHeads: number } }).clip.numHeads;
  f32Model = await load(f32Path);
  f16Model = await load(f16Path);
}, 120_000);

afterAll(() => {
  f32Model?.dispose();
  f16Model?.dispose();
  rmSync(dir, { recursive: true, force: true });
});

describe('test setup', () => {
  it('the prompts give real token ids in the tiny vocabulary: one and two 77-token windows', () => {
    expect(heads).toBe(clip.heads);
    expect(clip.width % heads).toBe(0);
    expect(shortPrompt.chunkCount).toBe(1);
    expect(longPrompt.chunkCount).toBe(2);
    for (const p of [shortPrompt, longPrompt]) {
      expect(p.ids.length).toBe(p.chunkCount * clip.positions);
      expect(Math.max(...p.ids)).toBeLessThan(clip.vocab);
      expect(p.ids[0]).toBe(tokenizer.bos);
    }
  });
});

describe('CLIP text encoder (tiny model, CPU)', () => {
  const measured: Record<string, number> = {};
  afterAll(() => console.log('clip-text max relative errors:', measured));

  it('one window, f32 weights, quick-GELU: matches the reference, with progress', async () => {
    const steps: number[] = [];
    const out = await encode(f32Model, shortPrompt.ids, 1, {}, (p) => steps.push(p.step));
    expect(out.length).toBe(clip.positions * clip.width);
    const err = relativeError(out, reference(f32, shortPrompt.ids, 1, { heads, quickGelu: true, clipSkip: 1 }));
    measured.oneWindowF32 = err;
    expect(err).toBeLessThan(1e-4);
    expect(steps.length).toBeGreaterThan(0);
  });

  it('two windows in one call: each equals its single-window result and the reference', async () => {
    const both = await encode(f32Model, longPrompt.ids, 2);
    const per = clip.positions * clip.width;
    expect(both.length).toBe(2 * per);
    for (let i = 0; i < 2; i++) {
      const ids = longPrompt.ids.subarray(i * clip.positions, (i + 1) * clip.positions);
      const single = await encode(f32Model, ids, 1);
      expect(relativeError(both.subarray(i * per, (i + 1) * per), single)).toBeLessThan(1e-6);
    }
    // The windows differ (a batch that reused window 0 would not).
    expect(relativeError(both.subarray(0, per), both.subarray(per))).toBeGreaterThan(1e-2);
    const err = relativeError(both, reference(f32, longPrompt.ids, 2, { heads, quickGelu: true, clipSkip: 1 }));
    measured.twoWindowsF32 = err;
    expect(err).toBeLessThan(1e-4);
  });

  it('clip skip 2: the penultimate layer through the final layer norm', async () => {
    const out = await encode(f32Model, shortPrompt.ids, 1, { clipSkip: 2 });
    const ref = reference(f32, shortPrompt.ids, 1, { heads, quickGelu: true, clipSkip: 2 });
    const err = relativeError(out, ref);
    measured.clipSkip2F32 = err;
    expect(err).toBeLessThan(1e-4);
    // Not the last layer's output.
    expect(relativeError(out, reference(f32, shortPrompt.ids, 1, { heads, quickGelu: true, clipSkip: 1 }))).toBeGreaterThan(1e-2);
  });

  it('GELU (quickGelu false): erf GELU, as OpenCLIP', async () => {
    const out = await encode(f32Model, shortPrompt.ids, 1, { quickGelu: false });
    const err = relativeError(out, reference(f32, shortPrompt.ids, 1, { heads, quickGelu: false, clipSkip: 1 }));
    measured.geluF32 = err;
    expect(err).toBeLessThan(1e-4);
    expect(relativeError(out, reference(f32, shortPrompt.ids, 1, { heads, quickGelu: true, clipSkip: 1 }))).toBeGreaterThan(1e-4);
  });

  it('f16 weights: matches the reference on the same f16 values within a looser tolerance', async () => {
    const out = await encode(f16Model, longPrompt.ids, 2, { clipSkip: 2 });
    const err = relativeError(out, reference(f16, longPrompt.ids, 2, { heads, quickGelu: true, clipSkip: 2 }));
    measured.twoWindowsClipSkip2F16 = err;
    expect(err).toBeLessThan(5e-3);
    const one = await encode(f16Model, shortPrompt.ids, 1);
    const errOne = relativeError(one, reference(f16, shortPrompt.ids, 1, { heads, quickGelu: true, clipSkip: 1 }));
    measured.oneWindowF16 = errOne;
    expect(errOne).toBeLessThan(5e-3);
  });
});

// ---------------------------------------------------------------------------------------------
// SDXL's two text encoders (tiny-sdxl)

/** The engine's internal prefix of SDXL's second encoder (native/engine/io/name_map_internal.h kText2). */
const TEXT2_PREFIX = 'cond_stage_model.1.transformer.text_model.';
const sdxlConfig = PRESETS['tiny-sdxl'] as { clip: ClipConfig; clip2: ClipConfig };
const sdxlSpecs = tensorSpecs(PRESETS['tiny-sdxl']) as Spec[];
const sdxlPrefixes = componentPrefixes(PRESETS['tiny-sdxl']) as { clip: string; clip2: string };
const sdxlText = (dtype: 'f32' | 'f16') => {
  const l = generatedWeights(sdxlSpecs, seed, dtype, sdxlPrefixes.clip);
  const g = generatedWeights(sdxlSpecs, seed, dtype, sdxlPrefixes.clip2);
  return { clipL: hfTextWeights((n) => l.get(n), sdxlConfig.clip), bigG: openClipTextWeights((n) => g.get(n), sdxlConfig.clip2) };
};

/** bigG's ids: each window's tokens up to its first EOS, 0 after it (OpenCLIP pads with 0). */
function zeroAfterEos(ids: ArrayLike<number>, positions: number): Int32Array {
  const out = Int32Array.from(ids);
  for (let start = 0; start < out.length; start += positions) {
    const at = out.subarray(start, start + positions).indexOf(tokenizer.eos);
    if (at >= 0) out.fill(0, start + at + 1, start + positions);
  }
  return out;
}

describe('SDXL text encoders (tiny-sdxl, CPU)', () => {
  let f32Sdxl: NativeModel;
  let f16Sdxl: NativeModel;
  let heads1: number; // metadata "clip"
  let heads2: number; // metadata "clip2"
  const ref32 = sdxlText('f32');
  const ref16 = sdxlText('f16');
  const { positions } = sdxlConfig.clip2;
  const proj = sdxlConfig.clip2.projectionDim!;
  const measured: Record<string, number> = {};

  beforeAll(async () => {
    const f32Path = join(dir, 'tiny-sdxl-f32.safetensors');
    const f16Path = join(dir, 'tiny-sdxl-f16.safetensors');
    const result = (await generateModel({ out: f32Path, preset: 'tiny-sdxl', dtype: 'f32', seed })) as { metadata: Record<string, string> };
    await generateModel({ out: f16Path, preset: 'tiny-sdxl', dtype: 'f16', seed });
    const meta = JSON.parse(result.metadata['sdnode.attention_heads']!) as { clip: { numHeads: number }; clip2: { numHeads: number } };
    heads1 = meta.clip.numHeads;
    heads2 = meta.clip2.numHeads;
    f32Sdxl = await load(f32Path);
    f16Sdxl = await load(f16Path);
  }, 120_000);

  afterAll(() => {
    f32Sdxl?.dispose();
    f16Sdxl?.dispose();
    console.log('clip-text SDXL max relative errors:', measured);
  });

  const bigG = (model: NativeModel, ids: ArrayLike<number>, windows: number, clipSkip = 2) =>
    model.encodeTokens(Int32Array.from(ids), windows, { prefix: TEXT2_PREFIX, heads: heads2, quickGelu: false, clipSkip, finalNorm: false, pooled: true }).promise;

  it('the test setup: heads from the metadata, a projection to check, EOS in every window', () => {
    expect(heads2).toBe(sdxlConfig.clip2.heads);
    expect(heads1).toBe(sdxlConfig.clip.heads);
    expect(ref32.bigG.projection!.length).toBe(sdxlConfig.clip2.width * proj);
    for (const p of [shortPrompt, longPrompt]) {
      const ids = zeroAfterEos(p.ids, positions);
      for (let w = 0; w < p.chunkCount; w++) expect(ids.subarray(w * positions, (w + 1) * positions).includes(tokenizer.eos)).toBe(true);
    }
  });

  it('bigG, one window: the penultimate layer without the final norm, and the pooled vector at EOS through text_projection', async () => {
    const ids = zeroAfterEos(shortPrompt.ids, positions);
    const out = await bigG(f32Sdxl, ids, 1);
    expect(out.hidden.length).toBe(positions * sdxlConfig.clip2.width);
    expect(out.pooled).toBeInstanceOf(Float32Array);
    expect(out.pooled!.length).toBe(proj);
    const hiddenRef = reference(ref32.bigG, ids, 1, { heads: heads2, quickGelu: false, clipSkip: 2, finalNorm: false });
    const pooledRef = referencePooled(ref32.bigG, ids, 1, heads2, tokenizer.eos);
    measured.bigGHiddenF32 = relativeError(out.hidden, hiddenRef);
    measured.bigGPooledF32 = relativeError(out.pooled!, pooledRef);
    expect(measured.bigGHiddenF32).toBeLessThan(1e-4);
    expect(measured.bigGPooledF32).toBeLessThan(1e-4);
    // Without the final norm is not with it; the pooled vector is not the projection's transpose applied.
    expect(relativeError(out.hidden, reference(ref32.bigG, ids, 1, { heads: heads2, quickGelu: false, clipSkip: 2 }))).toBeGreaterThan(1e-2);
    const { width } = sdxlConfig.clip2;
    const transposed = { ...ref32.bigG, projection: Float64Array.from({ length: width * proj }, (_, i) => ref32.bigG.projection![(i % proj) * width + Math.floor(i / proj)]!) };
    expect(relativeError(out.pooled!, referencePooled(transposed, ids, 1, heads2, tokenizer.eos))).toBeGreaterThan(1e-2);
  });

  it('bigG, two windows in one call: hidden states and a pooled vector per window', async () => {
    const ids = zeroAfterEos(longPrompt.ids, positions);
    const out = await bigG(f32Sdxl, ids, 2);
    expect(out.pooled!.length).toBe(2 * proj);
    measured.bigGTwoWindowsHiddenF32 = relativeError(out.hidden, reference(ref32.bigG, ids, 2, { heads: heads2, quickGelu: false, clipSkip: 2, finalNorm: false }));
    measured.bigGTwoWindowsPooledF32 = relativeError(out.pooled!, referencePooled(ref32.bigG, ids, 2, heads2, tokenizer.eos));
    expect(measured.bigGTwoWindowsHiddenF32).toBeLessThan(1e-4);
    expect(measured.bigGTwoWindowsPooledF32).toBeLessThan(1e-4);
    expect(relativeError(out.pooled!.subarray(0, proj), out.pooled!.subarray(proj))).toBeGreaterThan(1e-2);
  });

  it('bigG pools at the first EOS: EOS padding after it (causal attention) leaves the pooled vector as it is', async () => {
    const padded = await bigG(f32Sdxl, longPrompt.ids, 2);
    const zeroed = zeroAfterEos(longPrompt.ids, positions);
    const err = relativeError(padded.pooled!, referencePooled(ref32.bigG, zeroed, 2, heads2, tokenizer.eos));
    measured.bigGEosPaddedPooledF32 = err;
    expect(err).toBeLessThan(1e-4);
  });

  it('bigG, clip skip 1: the last layer without the final norm; the pooled vector does not depend on clip skip', async () => {
    const ids = zeroAfterEos(shortPrompt.ids, positions);
    const one = await bigG(f32Sdxl, ids, 1, 1);
    const two = await bigG(f32Sdxl, ids, 1, 2);
    expect(relativeError(one.hidden, reference(ref32.bigG, ids, 1, { heads: heads2, quickGelu: false, clipSkip: 1, finalNorm: false }))).toBeLessThan(1e-4);
    expect(relativeError(one.pooled!, two.pooled!)).toBeLessThan(1e-6);
  });

  it('bigG, f16 weights: within the looser tolerance', async () => {
    const ids = zeroAfterEos(longPrompt.ids, positions);
    const out = await bigG(f16Sdxl, ids, 2);
    measured.bigGHiddenF16 = relativeError(out.hidden, reference(ref16.bigG, ids, 2, { heads: heads2, quickGelu: false, clipSkip: 2, finalNorm: false }));
    measured.bigGPooledF16 = relativeError(out.pooled!, referencePooled(ref16.bigG, ids, 2, heads2, tokenizer.eos));
    expect(measured.bigGHiddenF16).toBeLessThan(5e-3);
    expect(measured.bigGPooledF16).toBeLessThan(5e-3);
  });

  it('CLIP ViT-L (the first encoder), two windows, quick-GELU, clip skip 2 without the final norm', async () => {
    const out = await f32Sdxl.encodeTokens(longPrompt.ids, 2, { heads: heads1, quickGelu: true, clipSkip: 2, finalNorm: false }).promise;
    expect(out.pooled).toBeUndefined();
    const err = relativeError(out.hidden, reference(ref32.clipL, longPrompt.ids, 2, { heads: heads1, quickGelu: true, clipSkip: 2, finalNorm: false }));
    measured.clipLNoFinalNormF32 = err;
    expect(err).toBeLessThan(1e-4);
    expect(relativeError(out.hidden, reference(ref32.clipL, longPrompt.ids, 2, { heads: heads1, quickGelu: true, clipSkip: 2 }))).toBeGreaterThan(1e-2);
    // finalNorm defaults to true: the SD1.x output.
    const normed = await f32Sdxl.encodeTokens(shortPrompt.ids, 1, { heads: heads1, quickGelu: true, clipSkip: 2 }).promise;
    expect(relativeError(normed.hidden, reference(ref32.clipL, shortPrompt.ids, 1, { heads: heads1, quickGelu: true, clipSkip: 2 }))).toBeLessThan(1e-4);
  });

  it('pooling an encoder without text_projection is the model\'s mismatch', async () => {
    await expect(f32Sdxl.encodeTokens(shortPrompt.ids, 1, { heads: heads1, quickGelu: true, clipSkip: 2, pooled: true }).promise).rejects.toMatchObject({
      code: 'ERR_MODEL_COMPATIBILITY',
      message: expect.stringMatching(/text_projection/),
    });
  });
});

describe('refused inputs', () => {
  const ids = () => Array.from(shortPrompt.ids);
  const invalid = { code: 'ERR_INVALID_ARGUMENT' };

  it('token ids outside the vocabulary', async () => {
    const high = ids();
    high[5] = clip.vocab;
    await expect(encode(f32Model, high, 1)).rejects.toMatchObject({ ...invalid, message: expect.stringMatching(/vocabulary/) });
    const negative = ids();
    negative[0] = -1;
    await expect(encode(f32Model, negative, 1)).rejects.toMatchObject(invalid);
  });

  it('an id count that is not windows × positions, or no window', async () => {
    await expect(encode(f32Model, ids().slice(0, 76), 1)).rejects.toMatchObject(invalid);
    await expect(encode(f32Model, ids(), 2)).rejects.toMatchObject(invalid);
    await expect(encode(f32Model, [], 0)).rejects.toMatchObject(invalid);
  });

  it('clip skip outside 1 .. layers', async () => {
    await expect(encode(f32Model, ids(), 1, { clipSkip: 0 })).rejects.toMatchObject(invalid);
    await expect(encode(f32Model, ids(), 1, { clipSkip: clip.layers + 1 })).rejects.toMatchObject(invalid);
    await expect(encode(f32Model, ids(), 1, { clipSkip: clip.layers })).resolves.toBeInstanceOf(Float32Array);
  });

  it('a head count that does not divide the width; 0 (width/64) for a width below 64', async () => {
    await expect(encode(f32Model, ids(), 1, { heads: clip.width + 1 })).rejects.toMatchObject(invalid);
    // 0: the family's 64-wide heads, which a 32-wide encoder cannot take: the file would have to say its heads.
    await expect(encode(f32Model, ids(), 1, { heads: 0 })).rejects.toMatchObject({
      code: 'ERR_MODEL_COMPATIBILITY',
      message: expect.stringMatching(/not a multiple of 64 and the file does not say its head count/),
    });
  });

  it('the engine still works after the refusals', async () => {
    const out = await encode(f32Model, shortPrompt.ids, 1);
    expect(relativeError(out, reference(f32, shortPrompt.ids, 1, { heads, quickGelu: true, clipSkip: 1 }))).toBeLessThan(1e-4);
  });

  it('a model without a text encoder: ERR_MODEL_COMPATIBILITY naming the missing tensor', async () => {
    const path = join(dir, 'no-clip.safetensors');
    writeSafetensors(
      path,
      specs
        .filter((s) => componentOf(s.name) !== 'clip')
        .map((s) => ({ name: s.name, dtype: 'F16' as const, shape: s.shape, data: tensorBytes(s, seed, 'f16') as Uint8Array })),
    );
    const model = await load(path);
    try {
      await expect(encode(model, shortPrompt.ids, 1)).rejects.toMatchObject({
        code: 'ERR_MODEL_COMPATIBILITY',
        message: expect.stringContaining(`${prefix}embeddings.token_embedding.weight`),
      });
    } finally {
      model.dispose();
    }
  });

  it('a wrong prefix names the tensor it looked for', async () => {
    await expect(encode(f32Model, shortPrompt.ids, 1, { prefix: 'conditioner.embedders.1.model.' })).rejects.toMatchObject({
      code: 'ERR_MODEL_COMPATIBILITY',
      message: expect.stringContaining('conditioner.embedders.1.model.embeddings.token_embedding.weight'),
    });
  });
});
