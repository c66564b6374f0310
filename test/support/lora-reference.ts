// A float64 reference of what a LoRA / LyCORIS file does to a model's weights, written from the
// formats' definitions (kohya sd-scripts, LyCORIS, PEFT, ComfyUI's DoRA weight_decompose, and
// stable-diffusion.cpp's scale rules), independently of sdnode's engine and of the test-file
// generator (scripts/generator/lora.mjs). Weights are PyTorch layout: [out, in] or
// [out, in, kh, kw], row-major.
//
// Checked against stable-diffusion.cpp's CLI (full-size SD1.5-shaped model, 64², 1 step; its
// image with a generated LoRA against its image with this reference's s·ΔW written as `.diff`
// tensors): kohya LoRA/LoCon on attention, convs and text encoder, LoHa, LoKr (both factors
// low-rank) and PEFT agree at 54.5–55.2 dB (13.5–15.7 dB from no LoRA). It differs on Tucker
// forms and full 4-d LoKr conv factors (18.6–19.9 dB): its Tucker LoCon merge computes
// Σ_ab up[o, b]·mid[a, b, s]·down[a, i] laid out [in, out, k] and reads it as [out, in, k] (that
// ΔW as a `.diff` gives its image at 54 dB), where this reference takes the composed
// convolutions' weight, as LyCORIS rebuilds it. Parity cases with the peer leave those out.
import { readFileSync } from 'node:fs';

import { halfToFloat } from './generated-weights.js';

export interface RefTensor {
  shape: number[];
  values: Float64Array;
}

/** Every tensor of a safetensors file, decoded to float64 (F32, F16, BF16, F64, I64). */
export function readSafetensors(path: string): { tensors: Map<string, RefTensor>; metadata: Record<string, string> } {
  const file = readFileSync(path);
  const n = Number(file.readBigUInt64LE(0));
  const header = JSON.parse(file.subarray(8, 8 + n).toString('utf8')) as Record<string, unknown>;
  const base = 8 + n;
  const tensors = new Map<string, RefTensor>();
  let metadata: Record<string, string> = {};
  for (const [name, entry] of Object.entries(header)) {
    if (name === '__metadata__') {
      metadata = entry as Record<string, string>;
      continue;
    }
    const { dtype, shape, data_offsets } = entry as { dtype: string; shape: number[]; data_offsets: [number, number] };
    const bytes = file.subarray(base + data_offsets[0], base + data_offsets[1]);
    const count = shape.reduce((a, b) => a * b, 1);
    const values = new Float64Array(count);
    for (let i = 0; i < count; i++) {
      if (dtype === 'F32') values[i] = bytes.readFloatLE(i * 4);
      else if (dtype === 'F16') values[i] = halfToFloat(bytes.readUInt16LE(i * 2));
      else if (dtype === 'BF16') values[i] = new Float32Array(Uint32Array.of(bytes.readUInt16LE(i * 2) << 16).buffer)[0] ?? NaN;
      else if (dtype === 'F64') values[i] = bytes.readDoubleLE(i * 8);
      else if (dtype === 'I64') values[i] = Number(bytes.readBigInt64LE(i * 8)); // a model's position_ids
      else throw new Error(`${name}: dtype ${dtype} is not read`);
    }
    tensors.set(name, { shape, values });
  }
  return { tensors, metadata };
}

// ---------------------------------------------------------------------------------------------
// Modules

/** The tensor-name endings of every format, longest first so that a key is cut at its module. */
const SUFFIXES = [
  '.lora_magnitude_vector.default.weight',
  '.lora_A.default.weight',
  '.lora_B.default.weight',
  '.lora_magnitude_vector',
  '.lora_down.weight',
  '.lora_mid.weight',
  '.lora_up.weight',
  '.lora_A.weight',
  '.lora_B.weight',
  '.dora_scale',
  '.hada_w1_a',
  '.hada_w1_b',
  '.hada_w2_a',
  '.hada_w2_b',
  '.hada_t1',
  '.hada_t2',
  '.lokr_w1_a',
  '.lokr_w1_b',
  '.lokr_w2_a',
  '.lokr_w2_b',
  '.lokr_w1',
  '.lokr_w2',
  '.diff_b',
  '.alpha',
  '.scale',
  '.diff',
] as const;

/** One module's tensors by their ending with the `.default` infix dropped (`.lora_A.weight`, `.alpha`, ...). */
export type LoraModule = Map<string, RefTensor>;

/** The module key of a LoRA tensor name (`lora_unet_…_to_q.lora_down.weight` → `lora_unet_…_to_q`). */
export function moduleKeyOf(tensorName: string): string | undefined {
  const suffix = SUFFIXES.find((s) => tensorName.endsWith(s));
  return suffix ? tensorName.slice(0, -suffix.length) : undefined;
}

/** A LoRA file's tensors grouped by module key. Throws on a tensor of no known format. */
export function loraModules(tensors: Map<string, RefTensor>): Map<string, LoraModule> {
  const out = new Map<string, LoraModule>();
  for (const [name, t] of tensors) {
    const key = moduleKeyOf(name);
    if (key === undefined) throw new Error(`LoRA tensor ${name}: no known format ending`);
    const suffix = name.slice(key.length);
    const canonical = suffix === '.lora_magnitude_vector.default.weight' ? '.lora_magnitude_vector' : suffix.replace('.default.weight', '.weight');
    let m = out.get(key);
    if (!m) out.set(key, (m = new Map()));
    m.set(canonical, t);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// ΔW

const numel = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);

function need(m: LoraModule, suffix: string): RefTensor {
  const t = m.get(suffix);
  if (!t) throw new Error(`LoRA module without ${suffix}`);
  return t;
}

/** A [n, k] · B [k, m]. */
function matmul(a: Float64Array, b: Float64Array, n: number, k: number, m: number): Float64Array {
  const out = new Float64Array(n * m);
  for (let i = 0; i < n; i++)
    for (let j = 0; j < m; j++) {
      let sum = 0;
      for (let p = 0; p < k; p++) sum += (a[i * k + p] ?? 0) * (b[p * m + j] ?? 0);
      out[i * m + j] = sum;
    }
  return out;
}

/** ΔW[o, i, s] = Σ_ab up[o, a] · mid[a, b, s] · down[b, i], as [out, in·k]. `up` is [out, r]. */
function tucker(up: Float64Array, mid: Float64Array, down: Float64Array, out: number, r: number, inC: number, k: number): Float64Array {
  const d = new Float64Array(out * inC * k);
  for (let o = 0; o < out; o++)
    for (let i = 0; i < inC; i++)
      for (let s = 0; s < k; s++) {
        let sum = 0;
        for (let a = 0; a < r; a++)
          for (let b = 0; b < r; b++) sum += (up[o * r + a] ?? 0) * (mid[(a * r + b) * k + s] ?? 0) * (down[b * inC + i] ?? 0);
        d[(o * inC + i) * k + s] = sum;
      }
  return d;
}

/** Kronecker product of A [p, q] and B [u, v]: [p·u, q·v]. */
function kron(a: Float64Array, p: number, q: number, b: Float64Array, u: number, v: number): Float64Array {
  const out = new Float64Array(p * u * q * v);
  for (let i = 0; i < p; i++)
    for (let j = 0; j < q; j++)
      for (let x = 0; x < u; x++)
        for (let y = 0; y < v; y++) out[(i * u + x) * (q * v) + (j * v + y)] = (a[i * q + j] ?? 0) * (b[x * v + y] ?? 0);
  return out;
}

/** The scale s: `.scale` where present, else alpha / rank (1 without alpha). */
function scaleOf(m: LoraModule, rank: number): number {
  const scale = m.get('.scale');
  if (scale) return scale.values[0] ?? NaN;
  const alpha = m.get('.alpha');
  return alpha ? (alpha.values[0] ?? NaN) / rank : 1;
}

export type LoraKind = 'lora' | 'loha' | 'lokr' | 'diff';

export interface ModuleDelta {
  kind: LoraKind;
  /** s·ΔW in the weight's layout (numel of `shape`). */
  delta: Float64Array;
  /** The scale s that `delta` includes. */
  scale: number;
  /** s·Δb for `.diff_b`. */
  deltaBias?: Float64Array;
  /** DoRA magnitude (`dora_scale` or `lora_magnitude_vector`), with its shape. */
  magnitude?: RefTensor;
}

/**
 * s·ΔW of one module for a weight of `shape` ([out, in] or [out, in, kh, kw]; for a row slice
 * of a fused weight, the slice's shape).
 */
export function moduleDelta(m: LoraModule, shape: readonly number[]): ModuleDelta {
  const out = shape[0] ?? 0;
  const inC = shape[1] ?? 1;
  const k = numel(shape.slice(2));
  const cols = inC * k;
  const magnitude = m.get('.dora_scale') ?? m.get('.lora_magnitude_vector');
  const withMag = (d: Omit<ModuleDelta, 'magnitude'>): ModuleDelta => (magnitude ? { ...d, magnitude } : d);

  const down = m.get('.lora_down.weight') ?? m.get('.lora_A.weight');
  if (down) {
    const up = m.get('.lora_up.weight') ?? need(m, '.lora_B.weight');
    const r = down.shape[0] ?? 0;
    const s = scaleOf(m, r);
    const mid = m.get('.lora_mid.weight');
    const raw = mid ? tucker(up.values, mid.values, down.values, out, r, inC, k) : matmul(up.values, down.values, out, r, cols);
    return withMag({ kind: 'lora', delta: raw.map((x) => s * x), scale: s });
  }
  if (m.has('.hada_w1_a')) {
    const rank = need(m, '.hada_w1_b').shape[0] ?? 0;
    const s = scaleOf(m, rank);
    const part = (w: '1' | '2') => {
      const a = need(m, `.hada_w${w}_a`), b = need(m, `.hada_w${w}_b`), t = m.get(`.hada_t${w}`);
      const r = b.shape[0] ?? 0;
      if (!t) return matmul(a.values, b.values, out, r, cols);
      // LyCORIS' Tucker LoHa: a [r, out], b [r, in], t [r, r, kh, kw]:
      // ΔW[p, i, s] = Σ_ab t[a, b, s] · a[a, p] · b[b, i] — a transposed is the [out, r] up.
      const upT = new Float64Array(out * r);
      for (let x = 0; x < r; x++) for (let p = 0; p < out; p++) upT[p * r + x] = a.values[x * out + p] ?? 0;
      return tucker(upT, t.values, b.values, out, r, inC, k);
    };
    const p1 = part('1'), p2 = part('2');
    return withMag({ kind: 'loha', delta: p1.map((x, i) => s * x * (p2[i] ?? 0)), scale: s });
  }
  if (m.has('.lokr_w1') || m.has('.lokr_w1_a')) {
    // stable-diffusion.cpp: rank 1 unless a factor is low-rank (w2_b's rank wins over w1_b's);
    // s = alpha / rank, but 1 whenever the rank is 1.
    let rank = 1;
    const factor = (w: '1' | '2'): { values: Float64Array; rows: number; cols: number } => {
      const full = m.get(`.lokr_w${w}`);
      if (full) return { values: full.values, rows: full.shape[0] ?? 0, cols: numel(full.shape.slice(1)) };
      const a = need(m, `.lokr_w${w}_a`), b = need(m, `.lokr_w${w}_b`);
      const r = b.shape[0] ?? 0;
      rank = r;
      const rows = a.shape[0] ?? 0, c = numel(b.shape.slice(1));
      return { values: matmul(a.values, b.values, rows, r, c), rows, cols: c };
    };
    const w1 = factor('1'), w2 = factor('2');
    const s = rank === 1 ? 1 : scaleOf(m, rank);
    // A conv's w1 [a, c] acts as [a, c, 1, 1]: kron over [out, in·k] flattened is the same
    // product, w2's columns holding its in-channels × kernel.
    const d = kron(w1.values, w1.rows, w1.cols, w2.values, w2.rows, w2.cols);
    if (d.length !== out * cols) throw new Error(`LoKr: kron is ${w1.rows * w2.rows}×${w1.cols * w2.cols}, weight ${out}×${cols}`);
    return withMag({ kind: 'lokr', delta: d.map((x) => s * x), scale: s });
  }
  const diff = m.get('.diff');
  if (diff) {
    const b = m.get('.diff_b');
    return { kind: 'diff', delta: Float64Array.from(diff.values), scale: 1, ...(b ? { deltaBias: Float64Array.from(b.values) } : {}) };
  }
  throw new Error(`LoRA module of no known format (tensors ${[...m.keys()].join(', ')})`);
}

/** torch.finfo(torch.float32).eps, the epsilon ComfyUI adds to DoRA's norms. */
export const EPS_F32 = 2 ** -23;

/**
 * W' for user weight `multiplier`: W + m·s·ΔW; with a DoRA magnitude, ComfyUI's
 * weight_decompose: W_c = W + s·ΔW, its norm per output row when the magnitude's dim 0 is the
 * output count (else per input column, over outputs and kernel), W_d = W_c · magnitude /
 * (norm + eps), W' = W + m·(W_d − W). The row norms are W_c's, as DoRA defines them (PEFT's
 * ‖W + s·BA‖, LyCORIS' norm of the merged weight); ComfyUI's output-axis branch takes the base
 * W's row norms instead, which only differs where ΔW changes a row's length.
 */
export function mergedWeight(base: Float64Array, shape: readonly number[], d: ModuleDelta, multiplier: number): Float64Array {
  if (d.delta.length !== base.length) throw new Error(`ΔW has ${d.delta.length} values, the weight ${base.length}`);
  if (!d.magnitude) return base.map((w, i) => w + multiplier * (d.delta[i] ?? 0));
  const out = shape[0] ?? 0;
  const inC = shape[1] ?? 1;
  const k = numel(shape.slice(2));
  const wc = base.map((w, i) => w + (d.delta[i] ?? 0));
  const perRow = d.magnitude.shape[0] === out;
  const n = perRow ? out : inC;
  if (d.magnitude.values.length !== n) throw new Error(`DoRA magnitude of ${d.magnitude.values.length} values for ${n} ${perRow ? 'rows' : 'columns'}`);
  const sq = new Float64Array(n);
  for (let o = 0; o < out; o++)
    for (let i = 0; i < inC; i++)
      for (let s = 0; s < k; s++) {
        const j = perRow ? o : i;
        sq[j] = (sq[j] ?? 0) + (wc[(o * inC + i) * k + s] ?? 0) ** 2;
      }
  const factor = sq.map((x, j) => (d.magnitude?.values[j] ?? NaN) / (Math.sqrt(x) + EPS_F32));
  return base.map((w, idx) => {
    const o = Math.floor(idx / (inC * k));
    const i = Math.floor(idx / k) % inC;
    const wd = (wc[idx] ?? 0) * (factor[perRow ? o : i] ?? NaN);
    return w + multiplier * (wd - w);
  });
}

/** b' = b + m·Δb for a `.diff_b`. */
export function mergedBias(base: Float64Array, d: ModuleDelta, multiplier: number): Float64Array {
  if (!d.deltaBias) return Float64Array.from(base);
  if (d.deltaBias.length !== base.length) throw new Error(`Δb has ${d.deltaBias.length} values, the bias ${base.length}`);
  return base.map((b, i) => b + multiplier * (d.deltaBias?.[i] ?? 0));
}

// ---------------------------------------------------------------------------------------------
// LoRA key → the model's weight

export interface InternalTarget {
  /** LDM name of the weight. */
  name: string;
  /** Rows of it (q/k/v of OpenCLIP's fused in_proj_weight). */
  rows?: [number, number];
  /** The (sliced) weight's shape. */
  shape: number[];
}

const UNET = 'model.diffusion_model.';
// LDM ResBlock → diffusers ResnetBlock2D module names.
const RESNET: ReadonlyArray<[string, string]> = [
  ['in_layers.0', 'norm1'],
  ['in_layers.2', 'conv1'],
  ['emb_layers.1', 'time_emb_proj'],
  ['out_layers.0', 'norm2'],
  ['out_layers.3', 'conv2'],
  ['skip_connection', 'conv_shortcut'],
];
const resnet = (rest: string) => {
  const hit = RESNET.find(([ldm]) => rest === ldm || rest.startsWith(`${ldm}.`));
  return hit ? hit[1] + rest.slice(hit[0].length) : rest;
};

/**
 * The diffusers UNet module path of an LDM one (`input_blocks.4.1.proj_in` →
 * `down_blocks.1.attentions.0.proj_in`), given the res blocks per level; undefined for modules
 * outside the blocks (conv_in, time_embed, out).
 */
function diffusersUnetPath(ldm: string, resPerLevel: number): string | undefined {
  const per = resPerLevel + 1; // res blocks and a downsampler (or, going up, one more res block)
  let hit = /^input_blocks\.(\d+)\.(\d+)\.(.+)$/.exec(ldm);
  if (hit) {
    const n = Number(hit[1]), sub = Number(hit[2]), rest = hit[3] ?? '';
    if (n === 0) return undefined;
    const level = Math.floor((n - 1) / per), j = (n - 1) % per;
    if (j === resPerLevel) return rest.startsWith('op') ? `down_blocks.${level}.downsamplers.0.conv${rest.slice(2)}` : undefined;
    return sub === 0 ? `down_blocks.${level}.resnets.${j}.${resnet(rest)}` : `down_blocks.${level}.attentions.${j}.${rest}`;
  }
  hit = /^middle_block\.(\d)\.(.+)$/.exec(ldm);
  if (hit) {
    const sub = Number(hit[1]), rest = hit[2] ?? '';
    return sub === 1 ? `mid_block.attentions.0.${rest}` : `mid_block.resnets.${sub / 2}.${resnet(rest)}`;
  }
  hit = /^output_blocks\.(\d+)\.(\d+)\.(.+)$/.exec(ldm);
  if (hit) {
    const n = Number(hit[1]), sub = Number(hit[2]), rest = hit[3] ?? '';
    const up = Math.floor(n / per), j = n % per;
    if (sub === 0) return `up_blocks.${up}.resnets.${j}.${resnet(rest)}`;
    if (rest.startsWith('conv')) return `up_blocks.${up}.upsamplers.0.${rest}`;
    return `up_blocks.${up}.attentions.${j}.${rest}`;
  }
  return undefined;
}

/** Res blocks per UNet level, from the model's names: the first downsampler follows them. */
function resBlocksPerLevel(names: Iterable<string>): number {
  let firstOp = Infinity, lastRes = 0;
  for (const n of names) {
    const op = /^model\.diffusion_model\.input_blocks\.(\d+)\.0\.op\.weight$/.exec(n);
    if (op) firstOp = Math.min(firstOp, Number(op[1]));
    const res = /^model\.diffusion_model\.input_blocks\.(\d+)\.0\.in_layers\.2\.weight$/.exec(n);
    if (res) lastRes = Math.max(lastRes, Number(res[1]));
  }
  return Number.isFinite(firstOp) ? firstOp - 1 : lastRes;
}

// OpenCLIP resblock → transformers CLIPEncoderLayer module names (q/k/v are cut from in_proj).
const OPENCLIP: ReadonlyArray<[string, string]> = [
  ['attn.out_proj', 'self_attn.out_proj'],
  ['mlp.c_fc', 'mlp.fc1'],
  ['mlp.c_proj', 'mlp.fc2'],
];

/**
 * A resolver from LoRA module keys (kohya `lora_unet_…` / `lora_te…_…` in diffusers or LDM
 * form, PEFT `unet.…` / `text_encoder(_2).…`) to the model weight they patch, built from the
 * model's LDM tensor names and shapes alone.
 */
export function internalNameResolver(model: ReadonlyMap<string, readonly number[]>): (key: string) => InternalTarget | undefined {
  const index = new Map<string, InternalTarget>();
  const add = (aliases: string[], target: InternalTarget) => {
    for (const a of aliases) index.set(a, target);
  };
  const under = (s: string) => s.replaceAll('.', '_');
  const names = [...model.keys()];
  const sdxl = names.some((n) => n.startsWith('conditioner.embedders.1.model.'));
  const resPerLevel = resBlocksPerLevel(names);
  // Text towers: [LDM prefix, kohya prefix, PEFT prefix, OpenCLIP naming].
  const towers: Array<[string, string, string, boolean]> = sdxl
    ? [
        ['conditioner.embedders.0.transformer.', 'lora_te1_', 'text_encoder.', false],
        ['conditioner.embedders.1.model.', 'lora_te2_', 'text_encoder_2.', true],
      ]
    : [
        ['cond_stage_model.transformer.', 'lora_te_', 'text_encoder.', false],
        ['cond_stage_model.model.', 'lora_te_', 'text_encoder.', true],
      ];
  for (const [name, shapeRO] of model) {
    const shape = [...shapeRO];
    if (name.startsWith(UNET) && name.endsWith('.weight')) {
      const ldm = name.slice(UNET.length, -'.weight'.length);
      const aliases = [`lora_unet_${under(ldm)}`];
      const diffusers = diffusersUnetPath(ldm, resPerLevel);
      if (diffusers) aliases.push(`lora_unet_${under(diffusers)}`, `unet.${diffusers}`);
      add(aliases, { name, shape });
      continue;
    }
    for (const [prefix, kohya, peft, openclip] of towers) {
      if (!name.startsWith(prefix)) continue;
      const rest = name.slice(prefix.length);
      if (!openclip) {
        if (rest.endsWith('.weight')) {
          const path = rest.slice(0, -'.weight'.length);
          add([`${kohya}${under(path)}`, `${peft}${path}`], { name, shape });
        }
        continue;
      }
      const layer = /^transformer\.resblocks\.(\d+)\.(.+)$/.exec(rest);
      if (!layer) continue;
      const to = `text_model.encoder.layers.${layer[1]}.`;
      const inner = layer[2] ?? '';
      if (inner === 'attn.in_proj_weight') {
        const w = (shape[0] ?? 0) / 3;
        ['q_proj', 'k_proj', 'v_proj'].forEach((proj, i) => {
          const path = `${to}self_attn.${proj}`;
          add([`${kohya}${under(path)}`, `${peft}${path}`], { name, rows: [i * w, (i + 1) * w], shape: [w, ...shape.slice(1)] });
        });
        continue;
      }
      const hit = OPENCLIP.find(([from]) => inner === `${from}.weight`);
      if (hit) {
        const path = `${to}${hit[1]}`;
        add([`${kohya}${under(path)}`, `${peft}${path}`], { name, shape });
      }
    }
  }
  return (key) => index.get(key);
}

/** Rows [r0, r1) of a row-major tensor whose first dimension is `rows`. */
export function sliceRows(values: Float64Array, rows: number, range: readonly [number, number]): Float64Array {
  const len = values.length / rows;
  return values.slice(range[0] * len, range[1] * len);
}
