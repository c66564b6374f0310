// ControlNet on a tiny generated SD1.x model and tiny random ControlNets from
// scripts/generator/controlnet.mjs: the network's residuals against a float64 reference, then
// generate(): strength 0 and an empty window give the plain image bit for bit, strengths sum
// over ControlNets, the hint matters, img2img and inpainting (a 9-channel UNet too), every file
// layout gives the same image, bad input, and Canny on a hand-checked case.
import { execFile } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { canny, convertModel, DisposedError, loadModel, ModelCompatibilityError, ModelFormatError, readImage, writeImage, type ControlNet, type Image, type Model } from '../lib/index.js';
import { cli, ensureDistFresh } from './support/cli.js';
// @ts-expect-error: plain JavaScript module with JSDoc types
import { generateModel } from '../scripts/generate-model.mjs';
// @ts-expect-error: plain JavaScript module with JSDoc types
import { generateControlNet } from '../scripts/generator/controlnet.mjs';
import { generatedWeights } from './support/generated-weights.js';
import { add, conv2d, groupNorm, linear, map, relativeError, silu, timestepEmbedding, type Vec } from './support/reference-nn.js';

const dir = mkdtempSync(join(tmpdir(), 'sdnode-controlnet-'));
const cpu = { device: 'cpu', threads: 2 };
const W = 64; // pixels: an 8×8 latent
let model: Model, inpaint: Model;
let cn: ControlNet, cnAgain: ControlNet, cnOther: ControlNet;
let specs: Array<{ name: string; shape: number[] }>;

/** A picture with edges: a bright disc on stripes. */
function picture(seed = 0): Image & { channels: 3 } {
  const data = new Uint8Array(W * W * 3);
  for (let y = 0; y < W; y++)
    for (let x = 0; x < W; x++) {
      const disc = (x - 32 - seed * 7) ** 2 + (y - 28) ** 2 < 300;
      for (let c = 0; c < 3; c++) data[(y * W + x) * 3 + c] = disc ? 230 - c * 20 : ((x >> 3) + seed) % 2 ? 40 + c * 30 : 120;
    }
  return { width: W, height: W, channels: 3, data };
}

const base = { prompt: 'a cat', width: W, height: W, steps: 3, sampler: 'euler' as const, seed: 11 };

beforeAll(async () => {
  await generateModel({ out: join(dir, 'model.safetensors'), preset: 'tiny', dtype: 'f32', seed: 3 });
  await generateModel({ out: join(dir, 'inpaint.safetensors'), preset: 'tiny-inpaint', dtype: 'f32', seed: 4 });
  ({ specs } = await generateControlNet({ out: join(dir, 'cn.safetensors'), preset: 'tiny', dtype: 'f32', seed: 5 }));
  await generateControlNet({ out: join(dir, 'cn-bare.pth'), preset: 'tiny', dtype: 'f32', seed: 5, prefix: false });
  await generateControlNet({ out: join(dir, 'controlnet'), preset: 'tiny', dtype: 'f32', seed: 5, layout: 'diffusers' });
  await generateControlNet({ out: join(dir, 'cn-other.safetensors'), preset: 'tiny', dtype: 'f32', seed: 6 });
  await generateControlNet({ out: join(dir, 'cn-sdxl.safetensors'), preset: 'tiny-sdxl', dtype: 'f32', seed: 7 });
  model = await loadModel(join(dir, 'model.safetensors'), cpu);
  inpaint = await loadModel(join(dir, 'inpaint.safetensors'), cpu);
  cn = await model.loadControlNet(join(dir, 'cn.safetensors'));
  cnAgain = await model.loadControlNet(join(dir, 'cn.safetensors'));
  cnOther = await model.loadControlNet(join(dir, 'cn-other.safetensors'));
}, 60_000);

afterAll(async () => {
  await model?.dispose();
  await inpaint?.dispose();
});

const same = (a: Image, b: Image) => Buffer.compare(Buffer.from(a.data), Buffer.from(b.data)) === 0;

describe('the network against a float64 reference', () => {
  it('hint encoder, stem, first ResBlock and their zero convs', async () => {
    const w = generatedWeights(specs, 5, 'f32', 'control_model.');
    const h = 8, mc = 32, tokens = 77, t = 500;
    const x = Float32Array.from({ length: 4 * h * h }, (_, i) => Math.sin(i * 0.37));
    const context = Float32Array.from({ length: tokens * 32 }, (_, i) => Math.cos(i * 0.11));
    const hint = picture();
    const out = await cn.nativeHandle().residuals({ x, timesteps: Float32Array.of(t), context, hint, batch: 1, width: h, height: h, tokens, heads: 0, headDim: 32 }).promise;
    expect(out).toHaveLength(cn.blocks + 1);

    const conv = (v: ArrayLike<number>, c: number, side: number, name: string, stride = 1) => {
      const [oc, , k] = w.shape(`${name}.weight`) as [number, number, number];
      const y = conv2d(v, c, side, side, w.get(`${name}.weight`), w.get(`${name}.bias`), oc, k, stride);
      return { data: y.data, c: oc, side: y.h };
    };
    // input_hint_block: the three convs that widen between the first and the last have stride 2.
    let a = { data: Float64Array.from({ length: 3 * W * W }, (_, i) => hint.data[(i % (W * W)) * 3 + Math.floor(i / (W * W))]! / 255) as Vec, c: 3, side: W };
    for (const [k, stride] of [[0, 1], [2, 1], [4, 2], [6, 1], [8, 2], [10, 1], [12, 2], [14, 1]] as const) {
      a = conv(a.data, a.c, a.side, `input_hint_block.${k}`, stride);
      if (k < 14) a.data = map(a.data, silu);
    }
    const stem = conv(x, 4, h, 'input_blocks.0.0');
    const h0 = add(stem.data, a.data);
    const ref0 = conv(h0, mc, h, 'zero_convs.0.0').data;
    expect(Math.max(...ref0.map(Math.abs))).toBeGreaterThan(0.1);
    expect(relativeError(out[0]!, ref0)).toBeLessThan(1e-4);

    const emb = map(linear(map(linear(timestepEmbedding(t, mc), 1, w.get('time_embed.0.weight'), w.get('time_embed.0.bias'), mc, 4 * mc), silu), 1,
      w.get('time_embed.2.weight'), w.get('time_embed.2.bias'), 4 * mc, 4 * mc), silu);
    const r = 'input_blocks.1.0';
    let y = map(groupNorm(h0, mc, h * h, 32, w.get(`${r}.in_layers.0.weight`), w.get(`${r}.in_layers.0.bias`), 1e-5), silu);
    y = conv(y, mc, h, `${r}.in_layers.2`).data;
    const e = linear(emb, 1, w.get(`${r}.emb_layers.1.weight`), w.get(`${r}.emb_layers.1.bias`), 4 * mc, mc);
    y = y.map((v, i) => v + e[Math.floor(i / (h * h))]!);
    y = map(groupNorm(y, mc, h * h, 32, w.get(`${r}.out_layers.0.weight`), w.get(`${r}.out_layers.0.bias`), 1e-5), silu);
    const h1 = add(h0, conv(y, mc, h, `${r}.out_layers.3`).data);
    expect(relativeError(out[1]!, conv(h1, mc, h, 'zero_convs.1.0').data)).toBeLessThan(1e-4);
  });
});

describe('generate with ControlNets', () => {
  let plain: Image;
  beforeAll(async () => {
    plain = (await model.generate(base)).images[0]!;
  });

  it('strength 0 and a window no step falls in give the plain image bit for bit; strength 1 changes it', async () => {
    const image = picture();
    const [zero, outside, full] = await Promise.all([
      model.generate({ ...base, controlNets: [{ model: cn, image, strength: 0 }] }),
      // 3 steps: i / n is 0, 1/3, 2/3; none is in [0.7, 1].
      model.generate({ ...base, controlNets: [{ model: cn, image, start: 0.7, end: 1 }] }),
      model.generate({ ...base, controlNets: [{ model: cn, image }] }),
    ]);
    expect(same(zero.images[0]!, plain)).toBe(true);
    expect(same(outside.images[0]!, plain)).toBe(true);
    expect(same(full.images[0]!, plain)).toBe(false);
    expect(full.timings.controlNetMs).toBeGreaterThan(0);
    expect(full.timings.controlNetMs).toBeLessThan(full.timings.samplingMs);
    expect(outside.timings.controlNetMs).toBeLessThan(full.timings.controlNetMs);
  });

  it('residuals sum over ControlNets: two handles at 0.5 equal one at 1; a window covering a step changes the image; the hint matters', async () => {
    const image = picture();
    const [one, halves, late, otherHint, two] = await Promise.all([
      model.generate({ ...base, controlNets: [{ model: cn, image }] }),
      model.generate({ ...base, controlNets: [{ model: cn, image, strength: 0.5 }, { model: cnAgain, image, strength: 0.5 }] }),
      model.generate({ ...base, controlNets: [{ model: cn, image, start: 0.6 }] }),
      model.generate({ ...base, controlNets: [{ model: cn, image: picture(3) }] }),
      model.generate({ ...base, controlNets: [{ model: cn, image }, { model: cnOther, image }] }),
    ]);
    expect(same(halves.images[0]!, one.images[0]!)).toBe(true);
    expect(same(late.images[0]!, plain)).toBe(false);
    expect(same(late.images[0]!, one.images[0]!)).toBe(false);
    expect(same(otherHint.images[0]!, one.images[0]!)).toBe(false);
    expect(same(two.images[0]!, one.images[0]!)).toBe(false);
  });

  it('image-to-image and inpainting, with a standard and a 9-channel UNet; the hint stretched to the output size', async () => {
    const init = picture(1);
    const mask: Image = { width: W, height: W, channels: 3, data: new Uint8Array(W * W * 3).map((_, i) => (Math.floor(i / 3) % W < 32 ? 255 : 0)) };
    const small = { width: 32, height: 32, channels: 3 as const, data: new Uint8Array(32 * 32 * 3).fill(200) };
    const i2i = { ...base, initImage: init, strength: 0.7 };
    const cnInpaint = await inpaint.loadControlNet(join(dir, 'cn.safetensors'));
    const [a, b, c, d, e, f, g] = await Promise.all([
      model.generate(i2i),
      model.generate({ ...i2i, controlNets: [{ model: cn, image: picture() }] }),
      model.generate({ ...i2i, mask }),
      model.generate({ ...i2i, mask, controlNets: [{ model: cn, image: picture() }] }),
      inpaint.generate({ ...i2i, mask }),
      inpaint.generate({ ...i2i, mask, controlNets: [{ model: cnInpaint, image: picture() }] }),
      model.generate({ ...base, controlNets: [{ model: cn, image: small }] }),
    ]);
    expect(same(a.images[0]!, b.images[0]!)).toBe(false);
    expect(same(c.images[0]!, d.images[0]!)).toBe(false);
    expect(same(e.images[0]!, f.images[0]!)).toBe(false);
    expect(g.images[0]!.width).toBe(W);
    await cnInpaint.dispose();
  });

  it('with the hires fix: both passes guided, progress over both, the image at the hires size', async () => {
    const image = picture();
    const steps: number[] = [];
    const [guided, unguided] = await Promise.all([
      model.generate({ ...base, hires: { scale: 2, strength: 0.5 }, controlNets: [{ model: cn, image }], onProgress: (p) => steps.push(p.steps) }),
      model.generate({ ...base, hires: { scale: 2, strength: 0.5 } }),
    ]);
    expect(guided.images[0]).toMatchObject({ width: 2 * W, height: 2 * W });
    expect(same(guided.images[0]!, unguided.images[0]!)).toBe(false);
    expect(new Set(steps).size).toBe(1);
    expect(steps[0]).toBeGreaterThan(base.steps);
    expect(guided.timings.hiresSamplingMs).toBeGreaterThan(0);
  });

  it('SD2.x and SDXL: a ControlNet of each family guides its model (strength 0 the plain image, 1 another)', async () => {
    for (const [preset, seed] of [['tiny-sd2', 12], ['tiny-sdxl', 13]] as const) {
      await generateModel({ out: join(dir, `${preset}.safetensors`), preset, dtype: 'f32', seed });
      await generateControlNet({ out: join(dir, `cn-${preset}.safetensors`), preset, dtype: 'f32', seed: seed + 1 });
      const family = await loadModel(join(dir, `${preset}.safetensors`), cpu);
      try {
        const net = await family.loadControlNet(join(dir, `cn-${preset}.safetensors`));
        const image = picture();
        const [plainImage, zero, full] = await Promise.all([
          family.generate(base),
          family.generate({ ...base, controlNets: [{ model: net, image, strength: 0 }] }),
          family.generate({ ...base, controlNets: [{ model: net, image }] }),
        ]);
        expect(same(zero.images[0]!, plainImage.images[0]!), preset).toBe(true);
        expect(same(full.images[0]!, plainImage.images[0]!), preset).toBe(false);
        // The SD1.x ControlNet has no label_emb: it does not fit SDXL. (The tiny SD1.x and SD2.x
        // presets share every width, so nothing tells their ControlNets apart.)
        if (preset === 'tiny-sdxl') await expect(family.loadControlNet(join(dir, 'cn.safetensors'))).rejects.toThrow(ModelCompatibilityError);
      } finally {
        await family.dispose();
      }
    }
  }, 60_000);

  it('ControlNet-v1-1 names bare in a .pth, GGUF and a diffusers controlnet/ folder give the .safetensors image', async () => {
    await convertModel(join(dir, 'cn.safetensors'), join(dir, 'cn.gguf'), { weightType: 'f32' });
    const bare = await model.loadControlNet(join(dir, 'cn-bare.pth'));
    const gguf = await model.loadControlNet(join(dir, 'cn.gguf'));
    const folder = await model.loadControlNet(join(dir, 'controlnet'));
    expect([bare.format, bare.convention, gguf.format, folder.format, folder.convention]).toEqual(['torch', 'ldm', 'gguf', 'safetensors', 'diffusers']);
    const image = picture();
    const [x, ...others] = await Promise.all([cn, bare, gguf, folder].map((m) => model.generate({ ...base, controlNets: [{ model: m, image }] })));
    for (const y of others) expect(same(y.images[0]!, x!.images[0]!)).toBe(true);
    for (const h of [bare, gguf, folder]) await h.dispose();
  });
});

describe('bad input', () => {
  it('another family, a file that is no ControlNet, bad hints, strengths and windows, disposed and foreign handles', async () => {
    await expect(model.loadControlNet(join(dir, 'cn-sdxl.safetensors'))).rejects.toThrow(ModelCompatibilityError);
    await expect(model.loadControlNet(join(dir, 'cn-sdxl.safetensors'))).rejects.toThrow(/label_emb|context width|input blocks/);
    await expect(model.loadControlNet(join(dir, 'model.safetensors'))).rejects.toThrow(ModelFormatError);
    const image = picture();
    const gen = (entry: Record<string, unknown>) => () => model.generate({ ...base, controlNets: [{ model: cn, image, ...entry } as never] });
    expect(gen({ image: { width: W, height: W, channels: 2, data: new Uint8Array(W * W * 2) } })).toThrow(TypeError);
    expect(gen({ image: { width: 0, height: W, channels: 3, data: new Uint8Array(0) } })).toThrow(TypeError);
    expect(gen({ strength: Number.NaN })).toThrow(RangeError);
    expect(gen({ strength: 2.5 })).toThrow(RangeError);
    expect(gen({ strength: -0.1 })).toThrow(RangeError);
    expect(gen({ start: 0.8, end: 0.2 })).toThrow(RangeError);
    expect(gen({ end: 1.5 })).toThrow(RangeError);
    expect(gen({ model: {} })).toThrow(TypeError);
    expect(() => model.generate({ ...base, controlNets: [{ model: cn, image }, { model: cn, image }] })).toThrow(TypeError);
    const foreign = await inpaint.loadControlNet(join(dir, 'cn.safetensors'));
    expect(gen({ model: foreign })).toThrow(/another model/);
    await foreign.dispose();
    expect(gen({ model: foreign })).toThrow(DisposedError);
    // A model's dispose() disposes the ControlNets loaded for it.
    const owned = await model.loadControlNet(join(dir, 'cn.safetensors'));
    const other = await loadModel(join(dir, 'model.safetensors'), cpu);
    const kept = await other.loadControlNet(join(dir, 'cn.safetensors'));
    await other.dispose();
    expect([owned.disposed, kept.disposed]).toEqual([false, true]);
    await owned.dispose();
  });
});

describe('canny', () => {
  it('a vertical step edge: one column of edge pixels (OpenCV keeps the left one of a tie), nothing elsewhere', () => {
    const w = 8, h = 6;
    const image: Image = { width: w, height: h, channels: 3, data: new Uint8Array(w * h * 3).map((_, i) => (Math.floor(i / 3) % w >= 4 ? 255 : 0)) };
    const edges = canny(image);
    const column = (x: number) => Array.from({ length: h }, (_, y) => edges.data[(y * w + x) * 3]!);
    expect(edges.channels).toBe(3);
    expect(column(3)).toEqual(Array(h).fill(255));
    for (const x of [0, 1, 2, 4, 5, 6, 7]) expect(column(x)).toEqual(Array(h).fill(0));
    // |dx| is 4·255 = 1020 there: above a high threshold of 1000, not of 1100.
    expect(canny(image, { low: 500, high: 1000 }).data.some((v) => v === 255)).toBe(true);
    expect(canny(image, { low: 500, high: 1100 }).data.some((v) => v === 255)).toBe(false);
    expect(() => canny(image, { low: 300, high: 200 })).toThrow(RangeError);
  });

  it("preprocess: 'canny' feeds the edges as the hint", async () => {
    const image = picture();
    const [viaOption, byHand] = await Promise.all([
      model.generate({ ...base, controlNets: [{ model: cn, image, preprocess: 'canny' }] }),
      model.generate({ ...base, controlNets: [{ model: cn, image: canny(image) }] }),
    ]);
    expect(same(viaOption.images[0]!, byHand.images[0]!)).toBe(true);
  });
});

describe('the CLI', () => {
  it('--control-net, --control-image, --control-strength, --canny make the library\'s image', async () => {
    const run = promisify(execFile);
    await ensureDistFresh();
    const image = picture();
    await writeImage(join(dir, 'hint.png'), image);
    const out = join(dir, 'cli.png');
    await run(process.execPath, [cli, 'generate', '-m', join(dir, 'model.safetensors'), '-p', 'a cat', '-W', String(W), '-H', String(W), '--steps', '2',
      '--sampling-method', 'euler', '-s', '5', '--device', 'cpu', '--control-net', join(dir, 'cn.safetensors'), '--control-image', join(dir, 'hint.png'),
      '--control-strength', '0.8', '--canny', '-o', out, '--json']);
    const lib = await model.generate({ ...base, steps: 2, seed: 5, scheduler: 'discrete', controlNets: [{ model: cn, image, strength: 0.8, preprocess: 'canny' }] });
    expect(same(await readImage(out), lib.images[0]!)).toBe(true);
    const refused = await run(process.execPath, [cli, 'generate', '-m', join(dir, 'model.safetensors'), '--control-image', join(dir, 'hint.png')]).catch((e: { code: number; stderr: string }) => e);
    expect(refused).toMatchObject({ code: 2, stderr: expect.stringContaining('--control-net') });
  }, 60_000);
});
