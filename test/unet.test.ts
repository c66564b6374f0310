// The UNet graph (native/engine/nn/unet.cpp, pipeline/unet_runner.cpp) against a float64 JS
// reference of LDM's UNetModel (openaimodel.py + attention.py: ResBlocks with a per-channel time
// embedding bias, SpatialTransformers with self- and cross-attention and a GEGLU feed-forward,
// stride-2 conv down, nearest ×2 + conv up, skip concatenation) on generated models: the tiny
// preset (f32 and f16 files, head width from the metadata), the 9-channel tiny-inpaint preset,
// and a small model with SD1.5's layout (four levels, two res blocks per level, attention on
// three levels, a fixed head count) and two transformer blocks per spatial transformer, and the
// tiny-sdxl preset (sgm's additions: transformer depth per level and in the middle, a level
// without attention, linear proj_in/proj_out, and label_emb taking the vector y into the time
// embedding). Batch items must equal their batch-1 results; the fused attention op and the
// plain path must both match; bad shapes, head settings and y lengths are refused with
// ERR_INVALID_ARGUMENT.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { native, type NativeModel } from '../lib/native.js';
// @ts-expect-error: plain JavaScript module with JSDoc types
import { COMPONENT_PREFIXES, PRESETS, generateModel, tensorSpecs } from '../scripts/generate-model.mjs';
import { generatedWeights } from './support/generated-weights.js';
import { add, attention, conv2d, gelu, groupNorm, layerNorm, linear, map, relativeError, silu, timestepEmbedding, type Vec } from './support/reference-nn.js';

interface Spec {
  name: string;
  shape: number[];
  init: string;
}

interface UnetConfig {
  modelChannels: number;
  channelMult: number[];
  numResBlocks: number;
  attentionLevels: number[];
  numHeads?: number;
  headDim?: number;
  /** One depth for every attention level, or one per level (sgm). */
  transformerDepth: number | number[];
  /** The middle block's depth; default the last level's. */
  transformerDepthMiddle?: number;
  /** proj_in/proj_out as linears ([C, C]) instead of 1×1 convs ([C, C, 1, 1]). */
  linearProj?: boolean;
  /** Width of the vector y that label_emb takes (SDXL); absent: no label_emb. */
  admInChannels?: number;
  contextDim: number;
  inChannels: number;
  outChannels: number;
}

interface ModelConfig {
  unet: UnetConfig;
  vae: unknown;
  clip: unknown;
}

type Heads = { numHeads: number } | { headDim: number };

const prefix = COMPONENT_PREFIXES.unet as string;
const seed = 7;
const dir = mkdtempSync(join(tmpdir(), 'sdnode-unet-'));

// SD1.5's UNet layout at toy widths: 4 levels, 2 res blocks, attention on levels 0-2, 8 heads
// (SD1.x's numHeads form), here with two transformer blocks each.
const sd15Layout: ModelConfig = {
  ...(PRESETS.tiny as ModelConfig),
  clip: { ...(PRESETS.tiny.clip as object), width: 48 },
  unet: {
    modelChannels: 32,
    channelMult: [1, 2, 2, 2],
    numResBlocks: 2,
    attentionLevels: [0, 1, 2],
    numHeads: 8,
    transformerDepth: 2,
    contextDim: 48,
    inChannels: 4,
    outChannels: 4,
  },
};

// ---------------------------------------------------------------------------------------------
// Weights as the engine sees them

type Weights = (name: string) => Vec;

/** The UNet weights of `config` written with `dtype`, decoded to float64 (keys without the prefix). */
function unetWeights(config: ModelConfig, dtype: 'f32' | 'f16'): Weights {
  const w = generatedWeights(tensorSpecs(config) as Spec[], seed, dtype, prefix);
  return (name) => w.get(name);
}

// ---------------------------------------------------------------------------------------------
// UNetModel in float64, one batch item: x [C][H][W], context [tokens][width] → [out C][H][W].
// Written from the LDM code's level loops (not from the checkpoint names, as the engine is).

interface Act {
  data: Vec;
  c: number;
  h: number;
  w: number;
}

function referenceUnet(wt: Weights, u: UnetConfig, heads: Heads, x: Act, t: number, context: Vec, tokens: number, y?: Vec): Vec {
  const mc = u.modelChannels;
  const timeDim = mc * 4;
  const levels = u.channelMult.length;
  const depths = Array.isArray(u.transformerDepth) ? u.transformerDepth : u.channelMult.map(() => u.transformerDepth as number);
  const middleDepth = u.transformerDepthMiddle ?? depths[levels - 1]!;

  const freq = timestepEmbedding(t, mc);
  const mlp = (v: Vec, name: string, inF: number) =>
    linear(map(linear(v, 1, wt(`${name}.0.weight`), wt(`${name}.0.bias`), inF, timeDim), silu), 1,
      wt(`${name}.2.weight`), wt(`${name}.2.bias`), timeDim, timeDim);
  let emb = mlp(freq, 'time_embed', mc);
  // sgm: emb = emb + label_emb(y), label_emb = Sequential(Linear, SiLU, Linear) under `label_emb.0`.
  if (u.admInChannels !== undefined) {
    if (!y || y.length !== u.admInChannels) throw new RangeError(`the reference UNet takes y of ${u.admInChannels} values`);
    emb = add(emb, mlp(y, 'label_emb.0', u.admInChannels));
  }
  const embSilu = map(emb, silu);

  const conv = (a: Act, name: string, oc: number, k: number, stride = 1): Act => {
    const r = conv2d(a.data, a.c, a.h, a.w, wt(`${name}.weight`), wt(`${name}.bias`), oc, k, stride);
    return { data: r.data, c: oc, h: r.h, w: r.w };
  };
  const norm = (a: Act, name: string, eps: number): Act =>
    ({ ...a, data: groupNorm(a.data, a.c, a.h * a.w, 32, wt(`${name}.weight`), wt(`${name}.bias`), eps) });
  const act = (a: Act): Act => ({ ...a, data: map(a.data, silu) });

  const resblock = (a: Act, name: string, cout: number): Act => {
    let h = conv(act(norm(a, `${name}.in_layers.0`, 1e-5)), `${name}.in_layers.2`, cout, 3);
    const e = linear(embSilu, 1, wt(`${name}.emb_layers.1.weight`), wt(`${name}.emb_layers.1.bias`), timeDim, cout);
    const hw = h.h * h.w;
    const biased = h.data.slice();
    for (let c = 0; c < cout; c++) for (let i = 0; i < hw; i++) biased[c * hw + i]! += e[c]!;
    h = conv(act(norm({ ...h, data: biased }, `${name}.out_layers.0`, 1e-5)), `${name}.out_layers.3`, cout, 3);
    const skip = a.c !== cout ? conv(a, `${name}.skip_connection`, cout, 1) : a;
    return { ...h, data: add(skip.data, h.data) };
  };

  const crossAttention = (q: Vec, kv: Vec, n: number, m: number, dim: number, kvDim: number, name: string): Vec => {
    const nh = 'numHeads' in heads ? heads.numHeads : dim / heads.headDim;
    const dh = dim / nh;
    const Q = linear(q, n, wt(`${name}.to_q.weight`), undefined, dim, dim);
    const K = linear(kv, m, wt(`${name}.to_k.weight`), undefined, kvDim, dim);
    const V = linear(kv, m, wt(`${name}.to_v.weight`), undefined, kvDim, dim);
    const merged = new Float64Array(n * dim);
    const slice = (s: Vec, rows: number, head: number) => {
      const out = new Float64Array(rows * dh);
      for (let r = 0; r < rows; r++) out.set(s.subarray(r * dim + head * dh, r * dim + (head + 1) * dh), r * dh);
      return out;
    };
    for (let head = 0; head < nh; head++) {
      const o = attention(slice(Q, n, head), slice(K, m, head), slice(V, m, head), n, m, dh);
      for (let r = 0; r < n; r++) merged.set(o.subarray(r * dh, (r + 1) * dh), r * dim + head * dh);
    }
    return linear(merged, n, wt(`${name}.to_out.0.weight`), wt(`${name}.to_out.0.bias`), dim, dim);
  };

  const toTokens = (planar: Vec, c: number, n: number): Vec => {
    const tokens = new Float64Array(n * c);
    for (let ch = 0; ch < c; ch++) for (let i = 0; i < n; i++) tokens[i * c + ch] = planar[ch * n + i]!;
    return tokens;
  };
  const toPlanar = (tokens: Vec, c: number, n: number): Vec => {
    const planar = new Float64Array(c * n);
    for (let ch = 0; ch < c; ch++) for (let i = 0; i < n; i++) planar[ch * n + i] = tokens[i * c + ch]!;
    return planar;
  };

  const spatialTransformer = (a: Act, name: string, depth: number): Act => {
    const c = a.c, n = a.h * a.w, ff = c * 4;
    const normed = norm(a, `${name}.norm`, 1e-6);
    // SD1.x: proj_in a 1×1 conv on planar data, then to tokens [n][c]; sgm's
    // use_linear_in_transformer: to tokens, then a linear.
    let x: Vec = u.linearProj
      ? linear(toTokens(normed.data, c, n), n, wt(`${name}.proj_in.weight`), wt(`${name}.proj_in.bias`), c, c)
      : toTokens(conv(normed, `${name}.proj_in`, c, 1).data, c, n);
    for (let d = 0; d < depth; d++) {
      const b = `${name}.transformer_blocks.${d}`;
      const ln = (v: Vec, k: string) => layerNorm(v, n, c, wt(`${b}.${k}.weight`), wt(`${b}.${k}.bias`), 1e-5);
      let h = ln(x, 'norm1');
      x = add(x, crossAttention(h, h, n, n, c, c, `${b}.attn1`));
      h = ln(x, 'norm2');
      x = add(x, crossAttention(h, context, n, tokens, c, u.contextDim, `${b}.attn2`));
      h = ln(x, 'norm3');
      const proj = linear(h, n, wt(`${b}.ff.net.0.proj.weight`), wt(`${b}.ff.net.0.proj.bias`), c, 2 * ff);
      const g = new Float64Array(n * ff);
      for (let r = 0; r < n; r++) for (let i = 0; i < ff; i++) g[r * ff + i] = proj[r * 2 * ff + i]! * gelu(proj[r * 2 * ff + ff + i]!);
      x = add(x, linear(g, n, wt(`${b}.ff.net.2.weight`), wt(`${b}.ff.net.2.bias`), ff, c));
    }
    const out = u.linearProj
      ? toPlanar(linear(x, n, wt(`${name}.proj_out.weight`), wt(`${name}.proj_out.bias`), c, c), c, n)
      : conv({ ...a, data: toPlanar(x, c, n) }, `${name}.proj_out`, c, 1).data;
    return { ...a, data: add(a.data, out) };
  };

  const upsample = (a: Act): Act => {
    const data = new Float64Array(a.c * a.h * a.w * 4);
    const W = a.w * 2, H = a.h * 2;
    for (let c = 0; c < a.c; c++)
      for (let y = 0; y < H; y++) for (let x2 = 0; x2 < W; x2++) data[(c * H + y) * W + x2] = a.data[(c * a.h + (y >> 1)) * a.w + (x2 >> 1)]!;
    return { data, c: a.c, h: H, w: W };
  };
  const concat = (a: Act, b: Act): Act => {
    const data = new Float64Array(a.data.length + b.data.length);
    data.set(a.data);
    data.set(b.data, a.data.length);
    return { data, c: a.c + b.c, h: a.h, w: a.w };
  };

  const attn = new Set(u.attentionLevels);
  let h = conv(x, 'input_blocks.0.0', mc, 3);
  const skips: Act[] = [h];
  let block = 1;
  for (let level = 0; level < levels; level++) {
    for (let r = 0; r < u.numResBlocks; r++) {
      h = resblock(h, `input_blocks.${block}.0`, mc * u.channelMult[level]!);
      if (attn.has(level)) h = spatialTransformer(h, `input_blocks.${block}.1`, depths[level]!);
      skips.push(h);
      block++;
    }
    if (level !== levels - 1) {
      h = conv(h, `input_blocks.${block}.0.op`, h.c, 3, 2);
      skips.push(h);
      block++;
    }
  }
  h = resblock(h, 'middle_block.0', h.c);
  h = spatialTransformer(h, 'middle_block.1', middleDepth);
  h = resblock(h, 'middle_block.2', h.c);
  block = 0;
  for (let level = levels - 1; level >= 0; level--) {
    for (let r = 0; r <= u.numResBlocks; r++) {
      h = resblock(concat(h, skips.pop()!), `output_blocks.${block}.0`, mc * u.channelMult[level]!);
      let sub = 1;
      if (attn.has(level)) h = spatialTransformer(h, `output_blocks.${block}.${sub++}`, depths[level]!);
      if (level !== 0 && r === u.numResBlocks) h = conv(upsample(h), `output_blocks.${block}.${sub}.conv`, h.c, 3);
      block++;
    }
  }
  return conv(act(norm(h, 'out.0', 1e-5)), 'out.2', u.outChannels, 3).data;
}

// ---------------------------------------------------------------------------------------------
// Inputs and the engine

/** Deterministic values in about [-scale, scale]. */
function values(count: number, salt: number, scale = 1): Float32Array {
  const out = new Float32Array(count);
  let s = (salt * 2654435761) >>> 0;
  for (let i = 0; i < count; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = ((s / 2 ** 32) * 2 - 1) * scale;
  }
  return out;
}

interface Case {
  model: NativeModel;
  config: ModelConfig;
  heads: Heads;
  weights: Weights;
}

interface RunInput {
  batch: number;
  channels: number;
  height: number;
  width: number;
  timesteps: number[];
  tokens: number;
  contextWidth: number;
  salt: number;
  /** The width of y per batch item, for UNets with label_emb. */
  adm?: number;
}

function inputs(r: RunInput) {
  return {
    x: values(r.batch * r.channels * r.height * r.width, r.salt, 1.5),
    timesteps: Float32Array.from(r.timesteps),
    context: values(r.batch * r.tokens * r.contextWidth, r.salt + 100),
    y: r.adm ? values(r.batch * r.adm, r.salt + 200) : undefined,
  };
}

const headParams = (h: Heads) => ('numHeads' in h ? { heads: h.numHeads } : { headDim: h.headDim });

function runEngine(c: Case, r: RunInput, x: Float32Array, timesteps: Float32Array, context: Float32Array, extra: object = {}) {
  return c.model.runUnet({
    x, batch: r.batch, channels: r.channels, height: r.height, width: r.width, timesteps, context,
    contextTokens: r.tokens, ...headParams(c.heads), ...extra,
  }).promise;
}

function referenceBatch(c: Case, r: RunInput, x: Float32Array, timesteps: Float32Array, context: Float32Array, y?: Float32Array): Vec[] {
  const per = r.channels * r.height * r.width, perCtx = r.tokens * r.contextWidth, perY = r.adm ?? 0;
  const out: Vec[] = [];
  for (let b = 0; b < r.batch; b++) {
    const xb = { data: Float64Array.from(x.subarray(b * per, (b + 1) * per)), c: r.channels, h: r.height, w: r.width };
    const yb = y ? Float64Array.from(y.subarray(b * perY, (b + 1) * perY)) : undefined;
    out.push(referenceUnet(c.weights, c.config.unet, c.heads, xb, timesteps[b]!, Float64Array.from(context.subarray(b * perCtx, (b + 1) * perCtx)), r.tokens, yb));
  }
  return out;
}

const cases: Record<string, Case> = {};

async function prepare(name: string, config: ModelConfig | string, dtype: 'f32' | 'f16'): Promise<void> {
  const path = join(dir, `${name}.safetensors`);
  const result = (await generateModel({ out: path, dtype, seed, ...(typeof config === 'string' ? { preset: config } : { config }) })) as {
    config: ModelConfig;
    metadata: Record<string, string>;
  };
  const heads = (JSON.parse(result.metadata['sdnode.attention_heads']!) as { unet: Heads }).unet;
  const model = await native().NativeModel.load({ model: path, ema: false, device: 'cpu', threads: 2, weightType: '' }).promise;
  cases[name] = { model, config: result.config, heads, weights: unetWeights(result.config, dtype) };
}

beforeAll(async () => {
  await prepare('tiny-f32', 'tiny', 'f32');
  await prepare('tiny-f16', 'tiny', 'f16');
  await prepare('inpaint-f32', 'tiny-inpaint', 'f32');
  await prepare('sd15-layout', sd15Layout, 'f32');
  await prepare('sdxl-f32', 'tiny-sdxl', 'f32');
  await prepare('sdxl-f16', 'tiny-sdxl', 'f16');
}, 120_000);

afterAll(() => {
  for (const c of Object.values(cases)) c.model.dispose();
  rmSync(dir, { recursive: true, force: true });
});

const maxErrors: Record<string, number> = {};
afterAll(() => console.log('[unet] max relative error vs the float64 reference:', JSON.stringify(maxErrors)));

function record(key: string, err: number) {
  maxErrors[key] = Math.max(maxErrors[key] ?? 0, err);
  return err;
}

const withFlash = async <T>(on: boolean, f: () => Promise<T>): Promise<T> => {
  const before = process.env.SDNODE_FLASH_ATTENTION;
  process.env.SDNODE_FLASH_ATTENTION = on ? '1' : '0';
  try {
    return await f();
  } finally {
    if (before === undefined) delete process.env.SDNODE_FLASH_ATTENTION;
    else process.env.SDNODE_FLASH_ATTENTION = before;
  }
};

// ---------------------------------------------------------------------------------------------

describe('UNet vs the float64 reference', () => {
  const table: Array<{ name: string; label: string; tol: number; r: Omit<RunInput, 'contextWidth' | 'channels'> }> = [
    { name: 'tiny-f32', label: 'tiny, f32, 12×16 latent, head width 32', tol: 1e-4, r: { batch: 2, height: 12, width: 16, timesteps: [981, 1.5], tokens: 7, salt: 1 } },
    { name: 'tiny-f16', label: 'tiny, f16 weights', tol: 5e-3, r: { batch: 2, height: 12, width: 16, timesteps: [981, 1.5], tokens: 7, salt: 1 } },
    { name: 'inpaint-f32', label: 'tiny-inpaint (9 channels), f32, 8×6 latent', tol: 1e-4, r: { batch: 2, height: 8, width: 6, timesteps: [500, 20], tokens: 5, salt: 2 } },
    { name: 'sd15-layout', label: 'SD1.5 layout (4 levels, 8 heads, depth 2), f32, 16×8 latent', tol: 1e-4, r: { batch: 2, height: 16, width: 8, timesteps: [999, 250], tokens: 9, salt: 3 } },
    { name: 'sdxl-f32', label: 'tiny-sdxl (depths [0, 1, 2], middle 2, linear proj, label_emb), f32, 8×12 latent', tol: 1e-4, r: { batch: 2, height: 8, width: 12, timesteps: [999, 37], tokens: 7, salt: 10 } },
    { name: 'sdxl-f16', label: 'tiny-sdxl, f16 weights', tol: 5e-3, r: { batch: 2, height: 8, width: 12, timesteps: [999, 37], tokens: 7, salt: 10 } },
  ];

  for (const { name, label, tol, r: partial } of table) {
    for (const flash of [true, false]) {
      it(`${label}, ${flash ? 'fused attention' : 'plain attention'}: each batch item matches`, async () => {
        const c = cases[name]!;
        const u = c.config.unet;
        const r: RunInput = { ...partial, channels: u.inChannels, contextWidth: u.contextDim, adm: u.admInChannels };
        const { x, timesteps, context, y } = inputs(r);
        const got = await withFlash(flash, () => runEngine(c, r, x, timesteps, context, y ? { y } : {}));
        const per = c.config.unet.outChannels * r.height * r.width;
        expect(got.length).toBe(r.batch * per);
        expect(got.every(Number.isFinite)).toBe(true);
        const want = referenceBatch(c, r, x, timesteps, context, y);
        for (let b = 0; b < r.batch; b++) {
          const err = record(`${name}${flash ? '' : '/plain'}`, relativeError(got.subarray(b * per, (b + 1) * per), want[b]!));
          expect(err).toBeLessThan(tol);
        }
        // The two items differ (timesteps and contexts reach the output).
        expect(relativeError(want[0]!, want[1]!)).toBeGreaterThan(1e-2);
      });
    }
  }

  it('batch items equal their batch-1 results', async () => {
    const c = cases['tiny-f32']!;
    const r: RunInput = { batch: 3, channels: 4, height: 8, width: 8, timesteps: [999, 10, 400], tokens: 6, contextWidth: 32, salt: 4 };
    const { x, timesteps, context } = inputs(r);
    const all = await runEngine(c, r, x, timesteps, context);
    const per = 4 * 8 * 8, perCtx = 6 * 32;
    for (let b = 0; b < r.batch; b++) {
      const one = await runEngine(c, { ...r, batch: 1 }, x.slice(b * per, (b + 1) * per), timesteps.slice(b, b + 1),
        context.slice(b * perCtx, (b + 1) * perCtx));
      expect(relativeError(all.subarray(b * per, (b + 1) * per), one)).toBeLessThan(1e-5);
    }
  });

  it('evaluations of different shapes in turn give the same results as fresh ones', async () => {
    const c = cases['tiny-f32']!;
    const a: RunInput = { batch: 1, channels: 4, height: 12, width: 16, timesteps: [700], tokens: 7, contextWidth: 32, salt: 5 };
    const b: RunInput = { batch: 2, channels: 4, height: 8, width: 8, timesteps: [3, 30], tokens: 3, contextWidth: 32, salt: 6 };
    const ia = inputs(a), ib = inputs(b);
    const first = await runEngine(c, a, ia.x, ia.timesteps, ia.context);
    const other = await runEngine(c, b, ib.x, ib.timesteps, ib.context);
    const again = await runEngine(c, a, ia.x, ia.timesteps, ia.context);
    expect(Array.from(again)).toEqual(Array.from(first));
    const want = referenceBatch(c, b, ib.x, ib.timesteps, ib.context);
    expect(relativeError(other.subarray(0, 256), want[0]!)).toBeLessThan(1e-4);
    expect(relativeError(other.subarray(256), want[1]!)).toBeLessThan(1e-4);
  });

  it('tiny-sdxl: y alone tells batch items apart, each as the reference with its own y', async () => {
    const c = cases['sdxl-f32']!;
    const u = c.config.unet;
    const adm = u.admInChannels!;
    const one: RunInput = { batch: 1, channels: 4, height: 4, width: 8, timesteps: [500], tokens: 5, contextWidth: u.contextDim, salt: 11, adm };
    const i1 = inputs(one);
    // Batch 2 of the same latent, timestep and context, with two different vectors y.
    const r: RunInput = { ...one, batch: 2, timesteps: [500, 500] };
    const x = Float32Array.from([...i1.x, ...i1.x]);
    const timesteps = Float32Array.of(500, 500);
    const context = Float32Array.from([...i1.context, ...i1.context]);
    const y = Float32Array.from([...i1.y!, ...values(adm, 12)]);
    const got = await runEngine(c, r, x, timesteps, context, { y });
    const want = referenceBatch(c, r, x, timesteps, context, y);
    const per = 4 * 4 * 8;
    for (let b = 0; b < 2; b++) expect(record('sdxl-f32/y-only', relativeError(got.subarray(b * per, (b + 1) * per), want[b]!))).toBeLessThan(1e-4);
    expect(relativeError(want[0]!, want[1]!)).toBeGreaterThan(1e-3);
    expect(relativeError(got.subarray(0, per), got.subarray(per))).toBeGreaterThan(1e-3);
    // Item 0 equals the batch-1 run with its y.
    const alone = await runEngine(c, one, i1.x, i1.timesteps, i1.context, { y: i1.y });
    expect(relativeError(got.subarray(0, per), alone)).toBeLessThan(1e-5);
  });

  it('reports progress', async () => {
    const c = cases['tiny-f32']!;
    const r: RunInput = { batch: 1, channels: 4, height: 8, width: 8, timesteps: [1], tokens: 2, contextWidth: 32, salt: 7 };
    const { x, timesteps, context } = inputs(r);
    const steps: number[] = [];
    await c.model.runUnet({ x, batch: 1, channels: 4, height: 8, width: 8, timesteps, context, contextTokens: 2, headDim: 32 },
      (p) => steps.push(p.step)).promise;
    expect(steps.length).toBeGreaterThan(1);
    expect(steps).toEqual([...steps].sort((p, q) => p - q));
  });
});

describe('refused inputs', () => {
  const base = () => {
    const r: RunInput = { batch: 2, channels: 4, height: 8, width: 8, timesteps: [10, 20], tokens: 4, contextWidth: 32, salt: 8 };
    return { r, ...inputs(r) };
  };
  const refuse = async (p: Promise<unknown>, pattern: RegExp) => {
    await expect(p).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
    await expect(p).rejects.toThrow(pattern);
  };

  it('a context of the wrong width', async () => {
    const { r, x, timesteps } = base();
    await refuse(runEngine(cases['tiny-f32']!, r, x, timesteps, values(2 * 4 * 48, 9)), /context width \(32/);
  });

  it('a latent side the downsamplings do not divide', async () => {
    const { r, timesteps, context } = base();
    const odd = { ...r, height: 7 };
    await refuse(runEngine(cases['tiny-f32']!, odd, values(2 * 4 * 7 * 8, 1), timesteps, context), /multiples of 2/);
    // SD1.5's layout downsamples three times: 12 is even but not a multiple of 8.
    const c = cases['sd15-layout']!;
    const r12 = { ...r, height: 12, contextWidth: 48 };
    const i12 = inputs(r12);
    await refuse(runEngine(c, r12, i12.x, i12.timesteps, i12.context), /multiples of 8/);
  });

  it('a batch that the arrays do not hold', async () => {
    const { r, x, timesteps, context } = base();
    await refuse(runEngine(cases['tiny-f32']!, { ...r, batch: 3 }, x, timesteps, context), /x has/);
    await refuse(runEngine(cases['tiny-f32']!, r, x, timesteps.subarray(0, 1), context), /timesteps/);
    await refuse(runEngine(cases['tiny-f32']!, r, x, timesteps, context.subarray(0, 4 * 32)), /context/);
  });

  it('the wrong channel count (4 for the inpainting UNet)', async () => {
    const { r, x, timesteps, context } = base();
    await refuse(runEngine(cases['inpaint-f32']!, r, x, timesteps, context), /9 input channels/);
  });

  it('no head setting, both, or one that does not split the widths', async () => {
    const { r, x, timesteps, context } = base();
    const m = cases['tiny-f32']!.model;
    const call = (heads: object) =>
      m.runUnet({ x, batch: 2, channels: 4, height: 8, width: 8, timesteps, context, contextTokens: r.tokens, ...heads }).promise;
    await refuse(call({}), /exactly one of heads and headDim/);
    await refuse(call({ heads: 2, headDim: 32 }), /exactly one of heads and headDim/);
    // Heads that do not split the widths come from the file's metadata or its family: the model's mismatch.
    const mismatch = async (p: Promise<unknown>, pattern: RegExp) => {
      await expect(p).rejects.toMatchObject({ code: 'ERR_MODEL_COMPATIBILITY' });
      await expect(p).rejects.toThrow(pattern);
    };
    await mismatch(call({ heads: 3 }), /not divisible by heads 3/);
    await mismatch(call({ headDim: 48 }), /not divisible by headDim 48/);
  });

  it('a vector y of the wrong length, none for a UNet with label_emb, or one for a UNet without', async () => {
    const c = cases['sdxl-f32']!;
    const adm = c.config.unet.admInChannels!;
    const r: RunInput = { batch: 2, channels: 4, height: 4, width: 4, timesteps: [10, 20], tokens: 3, contextWidth: c.config.unet.contextDim, salt: 13, adm };
    const { x, timesteps, context, y } = inputs(r);
    await refuse(runEngine(c, r, x, timesteps, context, { y: y!.subarray(0, adm) }), /y has/);
    await refuse(runEngine(c, r, x, timesteps, context, { y: values(2 * adm + 1, 14) }), /y has/);
    await refuse(runEngine(c, r, x, timesteps, context), /y has 0 values/);
    const { r: plain, x: px, timesteps: pt, context: pc } = base();
    await refuse(runEngine(cases['tiny-f32']!, plain, px, pt, pc, { y: values(2 * adm, 15) }), /y has/);
    // Still usable afterwards.
    const ok = await runEngine(c, r, x, timesteps, context, { y });
    expect(ok.every(Number.isFinite)).toBe(true);
  });

  it('a non-finite timestep', async () => {
    const { r, x, context } = base();
    await refuse(runEngine(cases['tiny-f32']!, r, x, Float32Array.from([NaN, 1]), context), /finite/);
  });
});
