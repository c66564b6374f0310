// The CLIP text encoder graph (native/engine/nn/clip_text.cpp) against a float64 JS reference of
// transformers' CLIPTextModel, on the tiny generated model (f32 and f16 files), for real token
// ids from the tokenizer: one window, two windows in one batch, clip skip 2, GELU instead of
// quick-GELU; refused ids and parameters; a model without a text encoder.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { native, type NativeModel } from '../lib/native.js';
import { ClipTokenizer } from '../lib/text/clip-tokenizer.js';
import { encodePrompt } from '../lib/text/prompt-weights.js';
// @ts-expect-error: plain JavaScript module with JSDoc types
import { COMPONENT_PREFIXES, PRESETS, componentOf, generateModel, tensorBytes, tensorSpecs } from '../scripts/generate-model.mjs';
import { generatedWeights } from './support/generated-weights.js';
import { add, attention, gelu, layerNorm, linear, map, quickGelu, relativeError, type Vec } from './support/reference-nn.js';
import { writeSafetensors } from './support/safetensors.js';

interface Spec {
  name: string;
  shape: number[];
  init: string;
}

interface ClipConfig {
  width: number;
  layers: number;
  heads: number;
  vocab: number;
  positions: number;
  intermediate: number;
}

const clip = PRESETS.tiny.clip as ClipConfig;
const prefix = COMPONENT_PREFIXES.clip as string;
const specs = tensorSpecs(PRESETS.tiny) as Spec[];
const seed = 5;
const EPS = 1e-5;
const dir = mkdtempSync(join(tmpdir(), 'sdnode-clip-'));

// ---------------------------------------------------------------------------------------------
// Weights as the engine sees them

type Weights = (name: string) => Vec;

/** The text encoder's weights of the tiny model in `dtype`, decoded to float64 (keys without the prefix). */
function clipWeights(dtype: 'f32' | 'f16'): Weights {
  const w = generatedWeights(specs, seed, dtype, prefix);
  return (name) => w.get(name);
}

// ---------------------------------------------------------------------------------------------
// CLIPTextModel in float64: embeddings, pre-LN layers with causal attention, final layer norm.

interface RefOptions {
  heads: number;
  quickGelu: boolean;
  clipSkip: number;
}

/** One window of `positions` ids → [positions][width] (last_hidden_state, or the webui clip-skip output). */
function referenceWindow(w: Weights, ids: ArrayLike<number>, o: RefOptions): Vec {
  const { width: d, positions: n, intermediate: inter } = clip;
  const dh = d / o.heads;
  const tok = w('embeddings.token_embedding.weight');
  const pos = w('embeddings.position_embedding.weight');
  let x: Vec = new Float64Array(n * d);
  for (let p = 0; p < n; p++) {
    for (let c = 0; c < d; c++) x[p * d + c] = tok[ids[p]! * d + c]! + pos[p * d + c]!;
  }
  const layers = clip.layers - o.clipSkip + 1;
  for (let l = 0; l < layers; l++) {
    const b = `encoder.layers.${l}.`;
    const lin = (input: ArrayLike<number>, name: string, inF: number, outF: number) =>
      linear(input, n, w(`${b}${name}.weight`), w(`${b}${name}.bias`), inF, outF);

    let h = layerNorm(x, n, d, w(`${b}layer_norm1.weight`), w(`${b}layer_norm1.bias`), EPS);
    const q = lin(h, 'self_attn.q_proj', d, d);
    const k = lin(h, 'self_attn.k_proj', d, d);
    const v = lin(h, 'self_attn.v_proj', d, d);
    const merged = new Float64Array(n * d);
    for (let head = 0; head < o.heads; head++) {
      const slice = (t: Vec) => {
        const s = new Float64Array(n * dh);
        for (let p = 0; p < n; p++) s.set(t.subarray(p * d + head * dh, p * d + (head + 1) * dh), p * dh);
        return s;
      };
      const a = attention(slice(q), slice(k), slice(v), n, n, dh, true);
      for (let p = 0; p < n; p++) merged.set(a.subarray(p * dh, (p + 1) * dh), p * d + head * dh);
    }
    x = add(x, lin(merged, 'self_attn.out_proj', d, d));

    h = layerNorm(x, n, d, w(`${b}layer_norm2.weight`), w(`${b}layer_norm2.bias`), EPS);
    h = map(lin(h, 'mlp.fc1', d, inter), o.quickGelu ? quickGelu : gelu);
    x = add(x, lin(h, 'mlp.fc2', inter, d));
  }
  return layerNorm(x, n, d, w('final_layer_norm.weight'), w('final_layer_norm.bias'), EPS);
}

function reference(w: Weights, ids: ArrayLike<number>, windows: number, o: RefOptions): Float64Array {
  const per = clip.positions * clip.width;
  const out = new Float64Array(windows * per);
  for (let i = 0; i < windows; i++) {
    out.set(referenceWindow(w, Array.from(ids).slice(i * clip.positions, (i + 1) * clip.positions), o), i * per);
  }
  return out;
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
  params: { heads?: number; quickGelu?: boolean; clipSkip?: number; prefix?: string } = {},
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
