// LoRAs on tiny generated models: every format's patched weights against the float64 reference
// (test/support/lora-reference.ts, written apart from the engine), on f32 and q8_0 base weights;
// the base weights back bit for bit after a LoRA job; prompt tags; what bad files and options get.
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { DisposedError, FileAccessError, Lora, loadModel, ModelCompatibilityError, ModelFormatError, type Model } from '../lib/index.js';
import { loraModules, mergedBias, mergedWeight, moduleDelta, readSafetensors, sliceRows, type RefTensor } from './support/lora-reference.js';
import { GGML_TYPE, writeGguf } from './support/gguf.js';
import { writeSafetensors } from './support/safetensors.js';
// @ts-expect-error: plain JavaScript module with JSDoc types
import { generateModel } from '../scripts/generate-model.mjs';
// @ts-expect-error: plain JavaScript module with JSDoc types
import { generateLora } from '../scripts/generator/lora.mjs';

interface Entry { loraKey: string; internalName: string; rows?: [number, number] }
const dir = mkdtempSync(join(tmpdir(), 'sdnode-lora-'));
const loraDir = join(dir, 'loras');
mkdirSync(loraDir);
const models: Record<string, { path: string; tensors: Map<string, RefTensor> }> = {};
let tiny: Model, tinyQ8: Model, tinyXl: Model;

/** The engine's internal name of a generator entry's LDM target (SDXL's and SD2's towers are renamed). */
function internalName(e: Entry): string {
  const n = e.internalName;
  const bigG = /^conditioner\.embedders\.1\.model\.transformer\.resblocks\.(\d+)\.(.+)$/.exec(n);
  if (bigG) {
    const layer = `cond_stage_model.1.transformer.text_model.encoder.layers.${bigG[1]}.`;
    if (bigG[2] === 'attn.in_proj_weight') return `${layer}self_attn.${['q', 'k', 'v'][(e.rows?.[0] ?? 0) / ((e.rows?.[1] ?? 0) - (e.rows?.[0] ?? 0))]}_proj.weight`;
    return layer + (bigG[2] ?? '').replace('attn.out_proj', 'self_attn.out_proj').replace('mlp.c_fc', 'mlp.fc1').replace('mlp.c_proj', 'mlp.fc2');
  }
  return n.replace(/^conditioner\.embedders\.0\.transformer\./, 'cond_stage_model.transformer.');
}

async function makeLora(preset: string, name: string, options: Record<string, unknown>): Promise<{ path: string; entries: Entry[] }> {
  const path = join(dir, `${preset}-${name}.safetensors`);
  const r = (await generateLora({ model: models[preset]!.path, out: path, targets: ['attn', 'conv', 'te'], rank: 4, seed: 11, ...options })) as { entries: Entry[] };
  return { path, entries: r.entries };
}

/** max |engine − reference| over max |reference|, over every weight (and .diff_b bias) the file patches. */
/** Max relative error of the patched weights (only those of the file ranks in `ranks`, when given). */
async function patchError(
  model: Model,
  preset: string,
  file: { path: string; entries: Entry[] },
  weight: number,
  base?: Map<string, Float32Array>,
  ranks?: number[],
) {
  const lora = await model.loadLora(file.path);
  expect(lora.report.unmatched).toEqual([]);
  expect(lora.report.incompatible).toEqual([]);
  const { tensors } = readSafetensors(file.path);
  const modules = loraModules(tensors);
  const names: string[] = [];
  const expected: Float64Array[] = [];
  for (const e of file.entries) {
    const full = models[preset]!.tensors.get(e.internalName)!;
    if (ranks && !ranks.includes(full.shape.length)) continue;
    const shape = e.rows ? [e.rows[1] - e.rows[0], ...full.shape.slice(1)] : full.shape;
    const name = internalName(e);
    // The base as the model holds it: the file's f32 values, or the q8_0 weight read back.
    const w = base?.get(name) ? Float64Array.from(base.get(name)!) : e.rows ? sliceRows(full.values, full.shape[0]!, e.rows) : full.values;
    const d = moduleDelta(modules.get(e.loraKey)!, shape);
    names.push(name);
    expected.push(mergedWeight(w, shape, d, weight));
    if (d.deltaBias) {
      const bias = models[preset]!.tensors.get(e.internalName.replace(/weight$/, 'bias'))!;
      names.push(name.replace(/weight$/, 'bias'));
      expected.push(mergedBias(bias.values, d, weight));
    }
  }
  if (!ranks) expect(lora.report.targets).toBe(names.length);  // a weight each, and the biases of diff_b
  const got = await model.patchedWeights([{ lora, weight }], names);
  let worst = 0;
  for (let k = 0; k < names.length; k++) {
    const ref = expected[k]!, g = got[k]!;
    expect(g.length, names[k]).toBe(ref.length);
    let scale = 0, err = 0;
    for (let i = 0; i < ref.length; i++) {
      scale = Math.max(scale, Math.abs(ref[i]!));
      err = Math.max(err, Math.abs(g[i]! - ref[i]!));
    }
    worst = Math.max(worst, err / scale);
  }
  await lora.dispose();
  return worst;
}

const VARIANTS: Array<[string, Record<string, unknown>]> = [
  ['kohya LoRA + LoCon', { format: 'lora', alpha: 2 }],
  ['LoCon Tucker', { format: 'lora', alpha: 2, tucker: true }],
  ['LoHa', { format: 'loha', alpha: 2 }],
  ['LoHa Tucker', { format: 'loha', alpha: 2, tucker: true }],
  ['LoKr (w2 factored)', { format: 'lokr', alpha: 2 }],
  ['LoKr (both factored)', { format: 'lokr', alpha: 2, lokrDecompose: 'both' }],
  ['LoKr (full)', { format: 'lokr', lokrDecompose: 'none' }],
  ['PEFT', { format: 'peft' }],
  ['PEFT .default', { format: 'peft', peftDefault: true }],
  ['DoRA per output', { format: 'dora', alpha: 2 }],
  ['DoRA per input', { format: 'dora', alpha: 2, doraAxis: 'in' }],
  ['DoRA (PEFT magnitude)', { format: 'dora', doraVariant: 'peft' }],
  ['full diff', { format: 'diff' }],
];
const errors: Record<string, number> = {};

beforeAll(async () => {
  for (const preset of ['tiny', 'tiny-sdxl']) {
    const path = join(dir, `${preset}.safetensors`);
    await generateModel({ preset, out: path, dtype: 'f32', seed: 3 });
    models[preset] = { path, tensors: readSafetensors(path).tensors };
  }
  tiny = await loadModel(models.tiny!.path, { device: 'cpu', loraDir });
  tinyQ8 = await loadModel(models.tiny!.path, { device: 'cpu', weightType: 'q8_0' });
  tinyXl = await loadModel(models['tiny-sdxl']!.path, { device: 'cpu' });
}, 120_000);

afterAll(async () => {
  console.log('[lora] max relative error of the patched weights vs the float64 reference:', errors);
  await Promise.all([tiny?.dispose(), tinyQ8?.dispose(), tinyXl?.dispose()]);
});

describe('patched weights against the float64 reference', () => {
  it.each(VARIANTS)('%s, f32 base, weight 0.8', async (name, options) => {
    const file = await makeLora('tiny', name.replaceAll(/\W/g, '_'), options);
    const err = await patchError(tiny, 'tiny', file, 0.8);
    errors[`f32 ${name}`] = err;
    expect(err).toBeLessThan(2e-6);
  });

  it.each(VARIANTS)('%s, q8_0 base (run-time low rank, else re-quantized), weight 0.8', async (name, options) => {
    const file = await makeLora('tiny', name.replaceAll(/\W/g, '_'), options);
    const names = file.entries.map(internalName);
    const read = await tinyQ8.patchedWeights([], names);
    const base = new Map(names.map((n, i) => [n, read[i]!]));
    // Plain low-rank updates of quantized matrices are added at run time (exact but for f32
    // sums), and the f16 weights the q8_0 load keeps (the VAE's kernels, small matrices) merge
    // within f16's rounding (2^-11); other kinds, and every update of a conv kernel (the UNet's
    // are q8_0 too, unfolded), merge and round to q8_0 again: within a q8_0 step (1/127 of a
    // block's largest).
    const runtime = (options.format === 'lora' && !options.tucker) || options.format === 'peft' ? 1e-3 : 1.2e-2;
    const matrices = await patchError(tinyQ8, 'tiny', file, 0.8, base, [0, 1, 2, 3]);
    const kernels = await patchError(tinyQ8, 'tiny', file, 0.8, base, [4]);
    errors[`q8_0 ${name}`] = Math.max(matrices, kernels);
    expect(matrices).toBeLessThan(runtime);
    expect(kernels).toBeLessThan(1.2e-2);
  });

  it('SDXL: kohya LDM names, both text encoders (bigG q/k/v as rows of its fused in_proj), weight 1.3', async () => {
    const file = await makeLora('tiny-sdxl', 'sdxl', { format: 'lora', alpha: 2 });
    expect(file.entries.some((e) => e.loraKey.startsWith('lora_te2_') && e.rows)).toBe(true);
    const err = await patchError(tinyXl, 'tiny-sdxl', file, 1.3);
    errors['sdxl f32 lora'] = err;
    expect(err).toBeLessThan(2e-6);
  });

  it('SDXL: PEFT names for the UNet and both encoders', async () => {
    const file = await makeLora('tiny-sdxl', 'sdxl-peft', { format: 'peft' });
    expect(await patchError(tinyXl, 'tiny-sdxl', file, 1)).toBeLessThan(2e-6);
  });
});

describe('LoRA files in GGUF', () => {
  it('a GGUF holding the same tensors (f32) patches the weights exactly as its safetensors', async () => {
    const file = await makeLora('tiny', 'gguf-twin', { format: 'lora', alpha: 2 });
    const ggufPath = join(dir, 'tiny-gguf-twin.gguf');
    const { tensors } = readSafetensors(file.path);
    writeGguf(ggufPath, {
      tensors: [...tensors].map(([name, t]) => ({
        name,
        type: GGML_TYPE.F32,
        ne: t.shape.length ? [...t.shape].reverse() : [1],
        data: new Uint8Array(Float32Array.from(t.values).buffer),
      })),
    });
    const [fromSt, fromGguf] = [await tiny.loadLora(file.path), await tiny.loadLora(ggufPath)];
    expect(fromGguf.report).toEqual(fromSt.report);
    const names = file.entries.map(internalName);
    const [a, b] = [await tiny.patchedWeights([{ lora: fromSt, weight: 0.8 }], names), await tiny.patchedWeights([{ lora: fromGguf, weight: 0.8 }], names)];
    for (let k = 0; k < names.length; k++) expect(Buffer.from(b[k]!.buffer).equals(Buffer.from(a[k]!.buffer)), names[k]).toBe(true);
  });
});

describe('generating with LoRAs', () => {
  const settings = { prompt: 'a lovely cat', width: 64, height: 64, steps: 2, seed: 21 };
  const same = (a: Uint8Array, b: Uint8Array) => Buffer.compare(Buffer.from(a), Buffer.from(b)) === 0;

  it('changes the image, weight 0 does not, and the next job without LoRAs has the base image bit for bit', async () => {
    const file = await makeLora('tiny', 'gen', { format: 'lora', alpha: 2 });
    const lora = await tiny.loadLora(file.path);
    const before = await tiny.generate(settings);
    const withLora = await tiny.generate({ ...settings, loras: [{ lora, weight: 1 }] });
    const again = await tiny.generate({ ...settings, loras: [{ lora, weight: 1 }] });
    const zero = await tiny.generate({ ...settings, loras: [{ lora, weight: 0 }] });
    const after = await tiny.generate(settings);
    expect(same(withLora.images[0]!.data, before.images[0]!.data)).toBe(false);
    expect(same(again.images[0]!.data, withLora.images[0]!.data)).toBe(true);
    expect(same(zero.images[0]!.data, before.images[0]!.data)).toBe(true);
    expect(same(after.images[0]!.data, before.images[0]!.data)).toBe(true);
    expect(withLora.loras).toEqual([{ name: lora.name, path: lora.path, weight: 1, report: lora.report }]);
    expect(after.loras).toEqual([]);
    expect(again.timings.loraMs).toBeLessThan(withLora.timings.loraMs);  // the kept set served
  });

  it('a q8_0 model with a LoRA applied at run time gives nearly the image of its merged f16 twin', async () => {
    const file = await makeLora('tiny', 'q8img', { format: 'lora', alpha: 2, targets: ['attn', 'te'] });
    const [l8, lf] = await Promise.all([tinyQ8.loadLora(file.path), tiny.loadLora(file.path)]);
    const q8base = await tinyQ8.generate(settings);
    const q8 = await tinyQ8.generate({ ...settings, loras: [{ lora: l8, weight: 1 }] });
    const f32 = await tiny.generate({ ...settings, loras: [{ lora: lf, weight: 1 }] });
    const psnr = (a: Uint8Array, b: Uint8Array) => {
      let s = 0;
      for (let i = 0; i < a.length; i++) s += (a[i]! - b[i]!) ** 2;
      return 10 * Math.log10((255 * 255 * a.length) / s);
    };
    // The LoRA moves the q8_0 image towards the f32 LoRA image, far past q8_0's own rounding.
    expect(psnr(q8.images[0]!.data, f32.images[0]!.data)).toBeGreaterThan(psnr(q8base.images[0]!.data, f32.images[0]!.data) + 6);
  });

  it('<lora:name:weight> tags from loraDir equal the loras option; a missing name lists the nearest', async () => {
    const file = await makeLora('tiny', 'tagged', { format: 'lora', alpha: 2 });
    const tagged = join(loraDir, 'my_style.safetensors');
    writeFileSync(tagged, readSafetensorsBytes(file.path));
    const byTag = await tiny.generate({ ...settings, prompt: `${settings.prompt} <lora:my_style:0.7>` });
    const lora = await tiny.loadLora(tagged);
    const byOption = await tiny.generate({ ...settings, loras: [{ lora, weight: 0.7 }] });
    expect(same(byTag.images[0]!.data, byOption.images[0]!.data)).toBe(true);
    expect(byTag.loras.map((l) => [l.name, l.weight])).toEqual([['my_style', 0.7]]);
    await expect(tiny.generate({ ...settings, prompt: 'a cat <lora:my_stlye:1>' })).rejects.toThrow(/nearest: my_style/);
    await expect(tiny.generate({ ...settings, prompt: 'a cat <lora:my_stlye:1>' })).rejects.toBeInstanceOf(FileAccessError);
    expect(() => tinyQ8.generate({ ...settings, prompt: 'a cat <lora:my_style>' })).toThrow(/loraDir/);
  });

  it('{ path } entries load once per model and are kept', async () => {
    const file = await makeLora('tiny', 'bypath', { format: 'loha', alpha: 2 });
    const a = await tiny.generate({ ...settings, loras: [{ path: file.path, weight: 0.5 }] });
    const b = await tiny.generate({ ...settings, loras: [{ path: file.path, weight: 0.5 }] });
    expect(same(a.images[0]!.data, b.images[0]!.data)).toBe(true);
    expect(b.timings.loraMs).toBeLessThan(a.timings.loraMs);
  });
});

describe('bad input', () => {
  const settings = { prompt: 'a cat', width: 64, height: 64, steps: 1, seed: 1 };

  it('weights outside [-10, 10] or not finite: RangeError; malformed entries: TypeError', async () => {
    const file = await makeLora('tiny', 'opts', { format: 'lora' });
    const lora = await tiny.loadLora(file.path);
    expect(() => tiny.generate({ ...settings, loras: [{ lora, weight: 11 }] })).toThrow(RangeError);
    expect(() => tiny.generate({ ...settings, loras: [{ lora, weight: Number.NaN }] })).toThrow(RangeError);
    expect(() => tiny.generate({ ...settings, prompt: 'x <lora:a:-12>' })).toThrow(RangeError);
    expect(() => tiny.generate({ ...settings, loras: [{ weight: 1 }] as never })).toThrow(TypeError);
    expect(() => tiny.generate({ ...settings, loras: [{ lora: {} as Lora }] })).toThrow(TypeError);
    expect(() => tinyQ8.generate({ ...settings, loras: [{ lora }] })).toThrow(/another model/);
    await lora.dispose();
    expect(() => tiny.generate({ ...settings, loras: [{ lora }] })).toThrow(DisposedError);
  });

  it('a LoRA for another model is reported, not applied; strict makes it an error', async () => {
    const file = await makeLora('tiny-sdxl', 'foreign', { format: 'lora' });
    const lora = await tiny.loadLora(file.path);
    expect(lora.report.targets).toBeLessThan(lora.report.tensors / 2);
    expect(lora.report.unmatched.length + lora.report.incompatible.length).toBeGreaterThan(0);
    await expect(tiny.loadLora(file.path, { strict: true })).rejects.toBeInstanceOf(ModelCompatibilityError);
  });

  it('malformed files reject with ModelFormatError and leave the model usable', async () => {
    const w = (name: string, tensors: Record<string, { dtype: 'F32'; shape: number[]; data: Float32Array }>) => {
      const path = join(dir, name);
      writeSafetensors(path, Object.entries(tensors).map(([n, t]) => ({ name: n, dtype: t.dtype, shape: t.shape, data: Buffer.from(t.data.buffer) })));
      return path;
    };
    // A real module of the model: the first attention q of a generated LoRA.
    const real = (await makeLora('tiny', 'real-key', { format: 'lora' })).entries.find((e) => e.loraKey.endsWith('attn1_to_q'))!;
    const key = real.loraKey;
    const width = models.tiny!.tensors.get(real.internalName)!.shape[0]!;
    const nan = new Float32Array(2 * width).fill(0.1);
    nan[3] = Number.NaN;
    const cases = {
      'rank 0': w('rank0.safetensors', { [`${key}.lora_down.weight`]: { dtype: 'F32', shape: [0, width], data: new Float32Array(0) }, [`${key}.lora_up.weight`]: { dtype: 'F32', shape: [width, 0], data: new Float32Array(0) } }),
      'not finite': w('nan.safetensors', { [`${key}.lora_down.weight`]: { dtype: 'F32', shape: [2, width], data: nan }, [`${key}.lora_up.weight`]: { dtype: 'F32', shape: [width, 2], data: new Float32Array(2 * width) } }),
      'huge rank': w('huge.safetensors', { [`${key}.lora_down.weight`]: { dtype: 'F32', shape: [width + 1, width], data: new Float32Array((width + 1) * width) }, [`${key}.lora_up.weight`]: { dtype: 'F32', shape: [width, width + 1], data: new Float32Array((width + 1) * width) } }),
      'a part twice': w('twice.safetensors', { [`${key}.lora_down.weight`]: { dtype: 'F32', shape: [2, width], data: new Float32Array(2 * width) }, [`${key}.lora_A.weight`]: { dtype: 'F32', shape: [2, width], data: new Float32Array(2 * width) } }),
      'no LoRA tensors': w('none.safetensors', { 'some.weight': { dtype: 'F32', shape: [2], data: new Float32Array(2) } }),
    };
    const truncated = join(dir, 'truncated.safetensors');
    writeFileSync(truncated, readSafetensorsBytes((await makeLora('tiny', 'trunc', { format: 'lora' })).path).subarray(0, 500));
    const pickle = join(dir, 'evil.pt');
    writeFileSync(pickle, Buffer.from('80027d710028580100000061710163706f7369780a73797374656d0a71025805000000746f7563687103857104527105752e', 'hex'));
    for (const [what, path] of [...Object.entries(cases), ['truncated', truncated], ['code-running pickle', pickle]] as const) {
      await expect(tiny.loadLora(path), what).rejects.toBeInstanceOf(ModelFormatError);
    }
    const r = await tiny.generate(settings);
    expect(r.images[0]!.data.length).toBe(64 * 64 * 3);
  });

  it('100 requests alternating two LoRA sets: RSS does not grow', async () => {
    const [a, b] = await Promise.all([makeLora('tiny', 'alt-a', { format: 'lora' }), makeLora('tiny', 'alt-b', { format: 'lokr', targets: ['attn', 'conv'] })]);
    const [la, lb] = await Promise.all([tiny.loadLora(a.path), tiny.loadLora(b.path)]);
    const o = { prompt: 'a cat', width: 64, height: 64, steps: 1, seed: 3 };
    for (let i = 0; i < 10; i++) await tiny.generate({ ...o, loras: [{ lora: i % 2 ? la : lb, weight: 1 }] });
    const rss0 = process.memoryUsage().rss;
    for (let i = 0; i < 100; i++) await tiny.generate({ ...o, loras: [{ lora: i % 2 ? la : lb, weight: 1 }] });
    const grown = process.memoryUsage().rss - rss0;
    expect(grown).toBeLessThan(16 << 20);
  }, 240_000);
});

function readSafetensorsBytes(path: string): Buffer {
  return readFileSync(path);
}
