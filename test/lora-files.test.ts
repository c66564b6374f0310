// The LoRA / LyCORIS test files of scripts/generator/lora.mjs and the float64 reference of what
// they do (test/support/lora-reference.ts): the reference against hand computations, the
// generator's key sets and shapes against what each format says, and every generated key
// resolved, from the model's names alone, to a weight of the right shape.
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';

import {
  EPS_F32,
  internalNameResolver,
  loraModules,
  mergedBias,
  mergedWeight,
  moduleDelta,
  readSafetensors,
  sliceRows,
  type LoraModule,
  type RefTensor,
} from './support/lora-reference.js';
// @ts-expect-error: plain JavaScript module with JSDoc types
import { generateModel } from '../scripts/generate-model.mjs';
// @ts-expect-error: plain JavaScript module with JSDoc types
import { generateLora } from '../scripts/generator/lora.mjs';

const dir = mkdtempSync(join(tmpdir(), 'sdnode-lora-files-'));
const numel = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);
const norm = (v: Float64Array) => Math.sqrt(v.reduce((a, x) => a + x * x, 0));
const t = (shape: number[], values: number[]): RefTensor => ({ shape, values: Float64Array.from(values) });
const mod = (entries: Record<string, RefTensor>): LoraModule => new Map(Object.entries(entries));

interface Entry { loraKey: string; internalName: string; rows?: [number, number]; format: string }
interface LoraResult { path: string; entries: Entry[]; tensorCount: number }
const lora = (options: Record<string, unknown>) => generateLora(options) as Promise<LoraResult>;

describe('the float64 reference on hand-made 2×3 cases', () => {
  const W = Float64Array.from([1, 2, 3, 4, 5, 6]);
  const shape = [2, 3];
  const merged = (m: LoraModule, multiplier: number, base = W, s = shape) => [...mergedWeight(base, s, moduleDelta(m, s), multiplier)];

  it('kohya LoRA: W + m·(alpha/rank)·up·down, `.scale` over alpha', () => {
    // up·down = [[2, 0, -2], [1, 0, -1]], s = 0.5 / 1; m = 2.
    const m = mod({ '.lora_down.weight': t([1, 3], [1, 0, -1]), '.lora_up.weight': t([2, 1], [2, 1]), '.alpha': t([], [0.5]) });
    expect(merged(m, 2)).toEqual([3, 2, 1, 5, 5, 5]);
    m.set('.scale', t([], [0.25]));
    expect(merged(m, 2)).toEqual([2, 2, 2, 4.5, 5, 5.5]);
    // PEFT: no alpha, s = 1.
    const peft = mod({ '.lora_A.weight': t([1, 3], [1, 0, -1]), '.lora_B.weight': t([2, 1], [2, 1]) });
    expect(merged(peft, 1)).toEqual([3, 2, 1, 5, 5, 5]);
  });

  it('LoCon Tucker: ΔW[o, i, s] = Σ up[o, a]·mid[a, b, s]·down[b, i]', () => {
    // One in, one out, a 1×2 kernel, rank 2: ΔW = [1·1·1 + 1·2·1, 1·1·2] = [3, 2].
    const m = mod({
      '.lora_down.weight': t([2, 1, 1, 1], [1, 2]),
      '.lora_mid.weight': t([2, 2, 1, 2], [1, 0, 0, 1, 2, 0, 0, 0]),
      '.lora_up.weight': t([1, 2, 1, 1], [1, 1]),
    });
    expect(merged(m, 1, new Float64Array(2), [1, 1, 1, 2])).toEqual([3, 2]);
  });

  it('LoHa: (w1a·w1b) ⊙ (w2a·w2b), s = alpha / rank', () => {
    // [[1,1,1],[2,2,2]] ⊙ [[1,2,3],[1,2,3]] = [[1,2,3],[2,4,6]], s = 2, m = 0.5.
    const m = mod({
      '.hada_w1_a': t([2, 1], [1, 2]),
      '.hada_w1_b': t([1, 3], [1, 1, 1]),
      '.hada_w2_a': t([2, 1], [1, 1]),
      '.hada_w2_b': t([1, 3], [1, 2, 3]),
      '.alpha': t([], [2]),
    });
    expect(merged(m, 0.5)).toEqual([2, 4, 6, 6, 9, 12]);
  });

  it('LoKr: kron(w1, w2); s = 1 at rank 1 whatever alpha, alpha / rank of a factored w2', () => {
    const full = mod({ '.lokr_w1': t([2, 1], [1, -1]), '.lokr_w2': t([1, 3], [1, 2, 3]), '.alpha': t([], [4]) });
    expect(merged(full, 1)).toEqual([2, 4, 6, 3, 3, 3]);
    // w2 = [[1,0],[0,1]]·[[1,0,0],[0,1,0]], kron([[2]], w2) = [[2,0,0],[0,2,0]], s = 1 / 2.
    const factored = mod({
      '.lokr_w1': t([1, 1], [2]),
      '.lokr_w2_a': t([2, 2], [1, 0, 0, 1]),
      '.lokr_w2_b': t([2, 3], [1, 0, 0, 0, 1, 0]),
      '.alpha': t([], [1]),
    });
    expect(merged(factored, 1)).toEqual([2, 2, 3, 4, 6, 6]);
  });

  it('full diff: W + m·diff, b + m·diff_b', () => {
    const m = mod({ '.diff': t([2, 3], [0.5, 0, 0, 0, 0, -1]), '.diff_b': t([2], [1, -1]) });
    const d = moduleDelta(m, shape);
    expect([...mergedWeight(W, shape, d, 2)]).toEqual([2, 2, 3, 4, 5, 4]);
    expect([...mergedBias(new Float64Array(2), d, 2)]).toEqual([2, -2]);
  });

  it('DoRA: W_c = W + s·ΔW rescaled to the magnitude per output row, or per input column', () => {
    const base = Float64Array.from([3, 0, 4, 0, 1, 0]);
    const lowRank = { '.lora_down.weight': t([1, 3], [1, 0, 0]), '.lora_up.weight': t([2, 1], [0, 1]) };
    // W_c = [[3,0,4],[1,1,0]]: row norms 5 and √2, rescaled to 10 and 2.
    const rows = mod({ ...lowRank, '.dora_scale': t([2, 1], [10, 2]) });
    const byRow = merged(rows, 1, base);
    [6, 0, 8, Math.SQRT2, Math.SQRT2, 0].forEach((x, i) => expect(byRow[i]).toBeCloseTo(x, 5));
    // m = 0.5: halfway between W and W_d.
    const half = merged(rows, 0.5, base);
    [4.5, 0, 6, (1 / Math.SQRT2) * 1, (1 / Math.SQRT2) + 0.5, 0].forEach((x, i) => expect(half[i]).toBeCloseTo(x, 5));
    // Columns of W_c: norms √10, 1, 4 rescaled to 2, 3, 4.
    const cols = mod({ ...lowRank, '.dora_scale': t([1, 3], [2, 3, 4]) });
    const byCol = merged(cols, 1, base);
    [6 / Math.sqrt(10), 0, 4, 2 / Math.sqrt(10), 3, 0].forEach((x, i) => expect(byCol[i]).toBeCloseTo(x, 5));
    // PEFT's magnitude vector is per output row; eps is float32's.
    const peft = mod({ '.lora_A.weight': lowRank['.lora_down.weight'], '.lora_B.weight': lowRank['.lora_up.weight'], '.lora_magnitude_vector': t([2], [5, 1]) });
    expect(merged(peft, 1, base)[0]).toBeCloseTo((3 * 5) / (5 + EPS_F32), 12);
  });
});

// ---------------------------------------------------------------------------------------------
// Generated files

interface Variant { name: string; options: Record<string, unknown> }
const VARIANTS: Variant[] = [
  { name: 'lora', options: { format: 'lora', alpha: 2 } },
  { name: 'lora tucker', options: { format: 'lora', tucker: true } },
  { name: 'loha', options: { format: 'loha', alpha: 2 } },
  { name: 'loha tucker', options: { format: 'loha', tucker: true, alpha: 3 } },
  { name: 'lokr', options: { format: 'lokr', alpha: 2 } },
  { name: 'lokr both factored', options: { format: 'lokr', lokrDecompose: 'both', alpha: 2 } },
  { name: 'lokr full', options: { format: 'lokr', lokrDecompose: 'none', alpha: 2 } },
  { name: 'peft', options: { format: 'peft' } },
  { name: 'peft .default', options: { format: 'peft', peftDefault: true } },
  { name: 'dora', options: { format: 'dora', alpha: 2 } },
  { name: 'dora per input', options: { format: 'dora', doraAxis: 'in' } },
  { name: 'dora peft', options: { format: 'dora', doraVariant: 'peft' } },
  { name: 'diff', options: { format: 'diff' } },
];
const RANK = 4;
const STRENGTH = 0.2;

/** The tensor endings and shapes `variant` should write for a weight of `shape`. */
function expectedTensors(variant: Variant, shape: number[], hasBias: boolean): Record<string, number[] | 'lokr'> {
  const o = variant.options;
  const [out = 0, inC = 0, ...kernel] = shape;
  const k = numel(kernel);
  const conv = kernel.length > 0;
  const r = RANK;
  const ones = conv ? [1, 1] : [];
  const alpha: Record<string, number[]> = o.alpha !== undefined ? { '.alpha': [] } : {};
  switch (o.format) {
    case 'lora':
    case 'dora': {
      if (o.format === 'dora' && o.doraVariant === 'peft')
        return { '.lora_A.weight': [r, inC, ...kernel], '.lora_B.weight': [out, r, ...ones], '.lora_magnitude_vector': [out] };
      const dora: Record<string, number[]> =
        o.format !== 'dora' ? {} : { '.dora_scale': o.doraAxis === 'in' ? [1, inC, ...ones] : [out, 1, ...ones] };
      if (o.tucker && k > 1) return { '.lora_down.weight': [r, inC, 1, 1], '.lora_mid.weight': [r, r, ...kernel], '.lora_up.weight': [out, r, 1, 1], ...alpha };
      return { '.lora_down.weight': [r, inC, ...kernel], '.lora_up.weight': [out, r, ...ones], ...alpha, ...dora };
    }
    case 'peft': {
      const infix = o.peftDefault ? '.default' : '';
      return { [`.lora_A${infix}.weight`]: [r, inC, ...kernel], [`.lora_B${infix}.weight`]: [out, r, ...ones] };
    }
    case 'loha':
      if (o.tucker && k > 1)
        return { '.hada_w1_a': [r, out], '.hada_w1_b': [r, inC], '.hada_t1': [r, r, ...kernel], '.hada_w2_a': [r, out], '.hada_w2_b': [r, inC], '.hada_t2': [r, r, ...kernel], ...alpha };
      return { '.hada_w1_a': [out, r], '.hada_w1_b': [r, inC * k], '.hada_w2_a': [out, r], '.hada_w2_b': [r, inC * k], ...alpha };
    case 'lokr': {
      // Factor sizes are the generator's choice; checked below by the Kronecker shape.
      const w1: Record<string, 'lokr'> = o.lokrDecompose === 'both' ? { '.lokr_w1_a': 'lokr', '.lokr_w1_b': 'lokr' } : { '.lokr_w1': 'lokr' };
      const w2: Record<string, 'lokr'> = o.lokrDecompose === 'none' ? { '.lokr_w2': 'lokr' } : { '.lokr_w2_a': 'lokr', '.lokr_w2_b': 'lokr' };
      return { ...w1, ...w2, ...alpha };
    }
    case 'diff':
      return { '.diff': shape, ...(hasBias ? { '.diff_b': [out] } : {}) };
    default:
      throw new Error(`no expectation for ${String(o.format)}`);
  }
}

/** LoKr factors: w1 [a, c] and w2 [b, d·k] (each full or a·b factored) with a·b = out, c·d·k = in·k. */
function checkLokrShapes(tensors: Map<string, RefTensor>, key: string, shape: number[]) {
  const get = (s: string) => tensors.get(key + s)?.shape;
  const dims = (w: '1' | '2') => {
    const full = get(`.lokr_w${w}`);
    if (full) return [full[0] ?? 0, numel(full.slice(1))];
    const a = get(`.lokr_w${w}_a`), b = get(`.lokr_w${w}_b`);
    expect(a?.[1], `${key} w${w}_a/b rank`).toBe(b?.[0]);
    return [a?.[0] ?? 0, numel(b?.slice(1) ?? [])];
  };
  const [a = 0, c = 0] = dims('1'), [b = 0, dk = 0] = dims('2');
  expect([a * b, c * dk], key).toEqual([shape[0], numel(shape.slice(1))]);
  // w1 holds no kernel: the in-channel factor c divides the in channels.
  expect((shape[1] ?? 0) % c, key).toBe(0);
}

/** The LDM names a LoRA of attn + conv + te targets must patch, by the model's names alone. */
function expectedTargets(names: string[]): string[] {
  const attn = /^model\.diffusion_model\..*(\.proj_in|\.proj_out|transformer_blocks\.\d+\.(attn[12]\.(to_q|to_k|to_v|to_out\.0)|ff\.net\.0\.proj|ff\.net\.2))\.weight$/;
  const conv = /^model\.diffusion_model\.((input|output)_blocks\.\d+\.0\.(in_layers\.2|out_layers\.3|skip_connection)|middle_block\.[02]\.(in_layers\.2|out_layers\.3|skip_connection)|input_blocks\.\d+\.0\.op|output_blocks\.\d+\.\d\.conv)\.weight$/;
  const hf = /^(cond_stage_model|conditioner\.embedders\.0)\.transformer\.text_model\.encoder\.layers\.\d+\.(self_attn\.(q|k|v|out)_proj|mlp\.fc[12])\.weight$/;
  const openclip = /^(cond_stage_model|conditioner\.embedders\.1)\.model\.transformer\.resblocks\.(\d+)\.(attn\.in_proj_weight|(attn\.out_proj|mlp\.c_fc|mlp\.c_proj)\.weight)$/;
  // SD2's diffusers text encoder drops the last layer (the UNet reads the penultimate one).
  const sd2Layers = names.filter((n) => /^cond_stage_model\.model\.transformer\.resblocks\.\d+\.ln_1\.weight$/.test(n)).length;
  const out: string[] = [];
  for (const n of names) {
    if (attn.test(n) || conv.test(n) || hf.test(n)) out.push(n);
    const oc = openclip.exec(n);
    if (oc && !(n.startsWith('cond_stage_model.') && Number(oc[2]) === sd2Layers - 1)) out.push(...(n.endsWith('in_proj_weight') ? [n, n, n] : [n]));
  }
  return out.sort();
}

interface Model { path: string; tensors: Map<string, RefTensor>; shapes: Map<string, number[]> }
const models: Record<string, Model> = {};

beforeAll(async () => {
  for (const preset of ['tiny', 'tiny-sdxl', 'tiny-sd2']) {
    const path = join(dir, `${preset}.safetensors`);
    await generateModel({ preset, out: path, dtype: 'f32', seed: 3 });
    const { tensors } = readSafetensors(path);
    models[preset] = { path, tensors, shapes: new Map([...tensors].map(([n, x]) => [n, x.shape])) };
  }
});

describe.each(['tiny', 'tiny-sdxl'])('generated LoRA files for %s', (preset) => {
  it.each(VARIANTS)('$name: keys, shapes, targets and ‖s·ΔW‖ = strength·‖W‖', async (variant) => {
    const model = models[preset] as Model;
    const out = join(dir, `${preset}-${variant.name.replaceAll(/\W/g, '_')}.safetensors`);
    const r = await lora({ model: model.path, out, targets: ['attn', 'conv', 'te'], rank: RANK, seed: 7, strength: STRENGTH, ...variant.options });
    const { tensors } = readSafetensors(out);
    const modules = loraModules(tensors);
    expect(r.tensorCount).toBe(tensors.size);
    expect([...modules.keys()].sort()).toEqual(r.entries.map((e) => e.loraKey).sort());
    expect(r.entries.map((e) => e.internalName).sort()).toEqual(expectedTargets([...model.shapes.keys()]));

    const resolve = internalNameResolver(model.shapes);
    const peft = variant.options.format === 'peft' || variant.options.doraVariant === 'peft';
    for (const e of r.entries) {
      expect(e.format).toBe(variant.options.format);
      // Names as the tools write them: PEFT's dotted diffusers paths; kohya's SD1 UNet by its
      // diffusers path, SDXL's by its LDM path.
      if (peft) expect(e.loraKey).toMatch(/^(unet\.(down_blocks|mid_block|up_blocks)\.|text_encoder(_2)?\.text_model\.encoder\.layers\.)/);
      else if (preset === 'tiny') expect(e.loraKey).toMatch(/^(lora_unet_(down|mid|up)_block|lora_te_text_model_encoder_layers_)/);
      else expect(e.loraKey).toMatch(/^(lora_unet_(input_blocks|middle_block|output_blocks)_|lora_te[12]_text_model_encoder_layers_)/);

      const target = resolve(e.loraKey);
      expect(target, e.loraKey).toBeDefined();
      if (!target) continue;
      expect(target.name, e.loraKey).toBe(e.internalName);
      expect(target.rows, e.loraKey).toEqual(e.rows);
      const full = model.tensors.get(target.name) as RefTensor;
      expect(target.shape.slice(1), e.loraKey).toEqual(full.shape.slice(1));
      const base = target.rows ? sliceRows(full.values, full.shape[0] ?? 0, target.rows) : full.values;

      const biasName = target.name.replace(/weight$/, 'bias');
      const expected = expectedTensors(variant, target.shape, model.tensors.has(biasName));
      const m = modules.get(e.loraKey) as LoraModule;
      const written = Object.fromEntries([...tensors].filter(([n]) => n.startsWith(`${e.loraKey}.`)).map(([n, x]) => [n.slice(e.loraKey.length), x.shape]));
      expect(Object.keys(written).sort(), e.loraKey).toEqual(Object.keys(expected).sort());
      for (const [suffix, s] of Object.entries(expected)) if (s !== 'lokr') expect(written[suffix], `${e.loraKey}${suffix}`).toEqual(s);
      if (variant.options.format === 'lokr') checkLokrShapes(tensors, e.loraKey, target.shape);

      const d = moduleDelta(m, target.shape);
      expect(d.delta.length).toBe(numel(target.shape));
      // f16 storage moves the norm a little off the generator's exact scaling.
      expect(norm(d.delta) / norm(base), e.loraKey).toBeCloseTo(STRENGTH, 2);
      if (d.deltaBias) {
        const bias = model.tensors.get(biasName) as RefTensor;
        const b = target.rows ? sliceRows(bias.values, bias.shape[0] ?? 0, target.rows) : bias.values;
        expect(norm(d.deltaBias) / norm(b)).toBeCloseTo(STRENGTH, 2);
      }
      if (d.magnitude) {
        // DoRA at weight 1: the merged weight's norms (per row or per column) are the magnitudes.
        const merged = mergedWeight(base, target.shape, d, 1);
        const out = target.shape[0] ?? 0, inC = target.shape[1] ?? 0, k = numel(target.shape.slice(2));
        const perRow = d.magnitude.shape[0] === out;
        const sq = new Float64Array(perRow ? out : inC);
        merged.forEach((x, i) => {
          const j = perRow ? Math.floor(i / (inC * k)) : Math.floor(i / k) % inC;
          sq[j] = (sq[j] ?? 0) + x * x;
        });
        sq.forEach((x, j) => expect(Math.sqrt(x)).toBeCloseTo(d.magnitude?.values[j] ?? NaN, 4));
      }
    }
  });
});

describe('generator options', () => {
  it('kohya SD1 files take LDM UNet names with naming: ldm, and the SD2 text encoder is cut from in_proj', async () => {
    const tiny = models.tiny as Model;
    const r = await lora({ model: tiny.path, out: join(dir, 'ldm-names.safetensors'), targets: ['attn', 'conv'], naming: 'ldm' });
    expect(r.entries.every((e) => /^lora_unet_(input_blocks|middle_block|output_blocks)_/.test(e.loraKey))).toBe(true);
    const resolve = internalNameResolver(tiny.shapes);
    for (const e of r.entries) expect(resolve(e.loraKey)?.name).toBe(e.internalName);

    const sd2 = models['tiny-sd2'] as Model;
    const r2 = await lora({ model: sd2.path, out: join(dir, 'sd2.safetensors'), targets: ['attn', 'conv', 'te'] });
    expect(r2.entries.map((e) => e.internalName).sort()).toEqual(expectedTargets([...sd2.shapes.keys()]));
    const q = r2.entries.find((e) => e.loraKey === 'lora_te_text_model_encoder_layers_0_self_attn_k_proj');
    expect(q).toMatchObject({ internalName: 'cond_stage_model.model.transformer.resblocks.0.attn.in_proj_weight', rows: [32, 64] });
    const resolve2 = internalNameResolver(sd2.shapes);
    for (const e of r2.entries) expect(resolve2(e.loraKey)).toMatchObject({ name: e.internalName, ...(e.rows ? { rows: e.rows } : {}) });
  });

  it('is deterministic in the seed; f32 and .pt (a flat torch zip of the same tensors) as asked', async () => {
    const tiny = models.tiny as Model;
    const opts = { model: tiny.path, targets: ['attn'], format: 'lora', rank: 2, alpha: 1, dtype: 'f32', match: 'attn1\\.to_q' };
    const a = await lora({ ...opts, out: join(dir, 'a.safetensors'), seed: 5 });
    await lora({ ...opts, out: join(dir, 'b.safetensors'), seed: 5 });
    await lora({ ...opts, out: join(dir, 'c.safetensors'), seed: 6 });
    const bytes = (n: string) => readFileSync(join(dir, n));
    expect(bytes('a.safetensors').equals(bytes('b.safetensors'))).toBe(true);
    expect(bytes('a.safetensors').equals(bytes('c.safetensors'))).toBe(false);
    expect(a.entries.length).toBeGreaterThan(1);
    expect(a.entries.every((e) => e.internalName.endsWith('attn1.to_q.weight'))).toBe(true);
    const header = JSON.parse(bytes('a.safetensors').subarray(8, 8 + Number(bytes('a.safetensors').readBigUInt64LE(0))).toString()) as Record<string, { dtype?: string }>;
    expect(Object.entries(header).filter(([n]) => n !== '__metadata__').every(([, h]) => h.dtype === 'F32')).toBe(true);

    const pt = await lora({ ...opts, out: join(dir, 'a.pt'), seed: 5 });
    expect(pt.entries).toEqual(a.entries);
    const zip = bytes('a.pt');
    expect(zip.includes(Buffer.from('state_dict'))).toBe(false);
    const { tensors } = readSafetensors(join(dir, 'a.safetensors'));
    let at = 0;
    for (const [name, x] of tensors) {
      expect(zip.includes(Buffer.from(name)), name).toBe(true);
      const data = Buffer.from(Float32Array.from(x.values).buffer);
      const found = zip.indexOf(data, at);
      expect(found, name).toBeGreaterThan(at);
      at = found + data.length;
    }
  });

  it('refuses what the formats do not have', async () => {
    const tiny = models.tiny as Model;
    const out = join(dir, 'bad.safetensors');
    await expect(lora({ model: tiny.path, out, format: 'peft', alpha: 2 })).rejects.toThrow(/alpha/);
    await expect(lora({ model: tiny.path, out, format: 'peft', targets: ['conv'], tucker: true })).rejects.toThrow(/Tucker/);
    await expect(lora({ model: tiny.path, out, format: 'lorax' })).rejects.toThrow(/format/);
    await expect(lora({ model: tiny.path, out, targets: ['vae'] })).rejects.toThrow(/targets/);
    await expect(lora({ model: tiny.path, out, match: 'nothing-matches' })).rejects.toThrow(/no module/);
  });
});
