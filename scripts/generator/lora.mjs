// Writes random LoRA / LyCORIS files for a model the generator wrote (scripts/generate-model.mjs,
// LDM single-file safetensors), with the tensor names and shapes the real training tools write,
// so that sdnode's LoRA engine can be checked against an independent float64 reference
// (test/support/lora-reference.ts) and against stable-diffusion.cpp.
//
//   node scripts/generate-lora.mjs --model tiny.safetensors --out tiny-lora.safetensors \
//        --format lora --targets attn,conv,te --rank 4 --alpha 2 --seed 1
//
// Formats (per target module <key>):
//   lora  kohya: <key>.lora_down.weight [r, in] / .lora_up.weight [out, r] / .alpha (0-d);
//         convs as LoCon: down [r, in, kh, kw], up [out, r, 1, 1]; `tucker` for kernels above
//         1×1: down [r, in, 1, 1], .lora_mid.weight [r, r, kh, kw], up [out, r, 1, 1]
//   loha  LyCORIS: .hada_w1_a [out, r], .hada_w1_b [r, in·kh·kw], the same for w2, .alpha;
//         `tucker` convs: .hada_w1_a [r, out], .hada_w1_b [r, in], .hada_t1 [r, r, kh, kw]
//   lokr  LyCORIS: out = a·b, in = c·d (a, c the divisors nearest below the square roots);
//         .lokr_w1 [a, c] (or .lokr_w1_a [a, r] / .lokr_w1_b [r, c] with lokrDecompose 'both'),
//         .lokr_w2_a [b, r] / .lokr_w2_b [r, d·kh·kw] (or .lokr_w2 [b, d(, kh, kw)] with 'none')
//   peft  diffusers / PEFT: <unet.|text_encoder.|text_encoder_2.><diffusers module>.lora_A.weight
//         [r, in(, kh, kw)] / .lora_B.weight [out, r(, 1, 1)], `peftDefault` for the
//         `.lora_A.default.weight` infix; no alpha (PEFT keeps it in the adapter config)
//   dora  kohya lora plus .dora_scale [out, 1] ([out, 1, 1, 1] for convs; doraAxis 'in':
//         [1, in] / [1, in, 1, 1]); with doraVariant 'peft', peft plus .lora_magnitude_vector [out]
//   diff  LyCORIS full: .diff [the weight's shape] and .diff_b [out] where the module has a bias
//
// Names: kohya `lora_unet_<module with _>`, the UNet module by its diffusers path for SD1/SD2
// files and by its LDM path for SDXL (as kohya's sd-scripts write them; `naming` forces either);
// text encoders `lora_te_` (SD1/SD2) or `lora_te1_` / `lora_te2_` (SDXL) + the transformers
// CLIPTextModel path. OpenCLIP towers (SD2, SDXL's bigG) hold q/k/v as rows of the fused
// attn.in_proj_weight: the LoRA names q_proj/k_proj/v_proj and the entry carries the rows.
//
// Values: each tensor is drawn from the seed and its own name (uniform, unit variance), then
// the factors are scaled so that at weight 1 every s·ΔW has a Frobenius norm of `strength` times
// the target weight's (read from the model file); DoRA magnitudes are the weight's row (or
// column) norms times 1 ± strength.
//
// Only node: builtins.
import { closeSync, openSync, readSync } from 'node:fs';
import { endianness } from 'node:os';
import { extname, resolve } from 'node:path';

import { f32BitsToF16, halfToNumber, tensorSeed, validateConfig } from '../generate-model.mjs';
import { diffusersTensors } from './diffusers-layout.mjs';
import { writeSafetensorsFile } from './files.mjs';
import { writeTorchZip } from './torch-checkpoint.mjs';

/** Bumped when the same options would give different bytes. */
export const LORA_GENERATOR_VERSION = 1;

export const LORA_FORMATS = Object.freeze(['lora', 'loha', 'lokr', 'peft', 'dora', 'diff']);
export const LORA_TARGETS = Object.freeze(['attn', 'conv', 'te']);

/**
 * @typedef {'lora' | 'loha' | 'lokr' | 'peft' | 'dora' | 'diff'} LoraFormat
 * @typedef {'attn' | 'conv' | 'te'} LoraTarget
 *
 * @typedef {object} LoraOptions
 * @property {string} model            the generator's LDM .safetensors model
 * @property {string} out              .safetensors, or .pt / .ckpt (a flat torch zip state dict)
 * @property {LoraFormat} [format]     default 'lora'
 * @property {LoraTarget[]} [targets]  default ['attn']
 * @property {number} [rank]           default 4
 * @property {number} [alpha]          omitted: no alpha tensor (scale 1)
 * @property {number} [seed]           default 0
 * @property {'f16' | 'f32'} [dtype]   default 'f16'
 * @property {number} [strength]       ‖s·ΔW‖ / ‖W‖ at weight 1, default 0.2
 * @property {'diffusers' | 'ldm'} [naming]  kohya UNet names (default: diffusers for SD1/SD2, ldm for SDXL)
 * @property {boolean} [tucker]        lora / loha / dora: Tucker form for convs with kernels above 1×1
 * @property {boolean} [peftDefault]   peft: the `.default` adapter infix
 * @property {'kohya' | 'peft'} [doraVariant]  dora: kohya dora_scale (default) or PEFT lora_magnitude_vector
 * @property {'out' | 'in'} [doraAxis] dora kohya: magnitude per output row (default) or per input column
 * @property {'none' | 'w2' | 'both'} [lokrDecompose]  lokr: which Kronecker factors are low-rank (default 'w2')
 * @property {string} [match]          only targets whose LDM name matches this regular expression
 *
 * @typedef {object} LoraEntry
 * @property {string} loraKey        the module key in the file (tensor names are it + a suffix)
 * @property {string} internalName   the model's LDM name of the target weight
 * @property {[number, number]} [rows]  only these rows of it (OpenCLIP's fused in_proj)
 * @property {LoraFormat} format
 *
 * @typedef {object} LoraResult
 * @property {string} path
 * @property {LoraEntry[]} entries
 * @property {number} tensorCount
 *
 * @typedef {{ name: string, shape: number[], values: Float64Array }} OutTensor
 */

// ---------------------------------------------------------------------------------------------
// The model file

/**
 * The header of a safetensors file, and a reader of one tensor (or some of its rows) as float64.
 * @param {string} path
 */
function openModel(path) {
  const fd = openSync(path, 'r');
  const len = Buffer.alloc(8);
  readSync(fd, len, 0, 8, 0);
  const n = Number(len.readBigUInt64LE(0));
  const json = Buffer.alloc(n);
  readSync(fd, json, 0, n, 8);
  /** @type {Record<string, any>} */
  const header = JSON.parse(json.toString('utf8'));
  const base = 8 + n;
  /** @param {string} name @param {[number, number]} [rows] */
  const read = (name, rows) => {
    const h = header[name];
    if (!h) throw new Error(`the model has no tensor ${name}`);
    const elem = { F32: 4, F16: 2, BF16: 2 }[/** @type {string} */ (h.dtype)];
    if (!elem) throw new Error(`${name}: ${h.dtype} weights are not read`);
    const rowLen = /** @type {number[]} */ (h.shape).slice(1).reduce((a, b) => a * b, 1);
    const [r0, r1] = rows ?? [0, h.shape[0] ?? 1];
    const count = (r1 - r0) * rowLen;
    const bytes = Buffer.alloc(count * elem);
    readSync(fd, bytes, 0, bytes.length, base + h.data_offsets[0] + r0 * rowLen * elem);
    // Buffer.alloc'd memory is not pooled: offset 0, aligned for the typed views.
    if (h.dtype === 'F32') return Float64Array.from(new Float32Array(bytes.buffer, bytes.byteOffset, count));
    const bits = new Uint16Array(bytes.buffer, bytes.byteOffset, count);
    const table = h.dtype === 'F16' ? halfTable() : bf16Table();
    const out = new Float64Array(count);
    for (let i = 0; i < count; i++) out[i] = table[bits[i] ?? 0] ?? NaN;
    return out;
  };
  return { header, read, close: () => closeSync(fd) };
}

/** @type {Float64Array | undefined} */
let halfValues;
/** @type {Float64Array | undefined} */
let bf16Values;
/** The value of every binary16 bit pattern (a full-size model holds hundreds of millions). */
const halfTable = () => (halfValues ??= Float64Array.from({ length: 65536 }, (_, h) => halfToNumber(h)));
/** The value of every bfloat16 bit pattern (the top half of a float32). */
const bf16Table = () => (bf16Values ??= Float64Array.from(new Float32Array(Uint32Array.from({ length: 65536 }, (_, h) => h << 16).buffer)));


// ---------------------------------------------------------------------------------------------
// Targets

const ATTN = /\.attentions\.\d+\.(proj_in|proj_out|transformer_blocks\.\d+\.(attn[12]\.(to_q|to_k|to_v|to_out\.0)|ff\.net\.0\.proj|ff\.net\.2))\.weight$/;
const CONV = /\.(resnets\.\d+\.(conv1|conv2|conv_shortcut)|downsamplers\.0\.conv|upsamplers\.0\.conv)\.weight$/;
const TE = /^text_model\.encoder\.layers\.\d+\.(self_attn\.(q_proj|k_proj|v_proj|out_proj)|mlp\.fc1|mlp\.fc2)\.weight$/;

/**
 * @typedef {object} Target
 * @property {string} kohya      kohya module key
 * @property {string} peft       PEFT module key
 * @property {string} internal   LDM weight name
 * @property {[number, number]} [rows]
 * @property {number[]} shape    the (sliced) weight's shape
 * @property {string} [bias]     LDM name of its bias, where it has one
 */

/**
 * The modules a LoRA of these targets touches, in model order.
 * @param {import('../generate-model.mjs').ModelConfig} config
 * @param {Set<string>} targets
 * @param {'diffusers' | 'ldm'} naming
 * @returns {Target[]}
 */
function targetModules(config, targets, naming) {
  const d = diffusersTensors(config);
  const sdxl = d.textEncoder2 !== undefined;
  const strip = (/** @type {string} */ n) => n.replace(/\.weight$/, '');
  const under = (/** @type {string} */ n) => n.replaceAll('.', '_');
  /** @type {Target[]} */
  const out = [];
  for (const t of d.unet) {
    const isAttn = ATTN.test(t.name), isConv = CONV.test(t.name);
    if (!((isAttn && targets.has('attn')) || (isConv && targets.has('conv')))) continue;
    const ldm = strip(t.spec.name.slice('model.diffusion_model.'.length));
    out.push({
      kohya: `lora_unet_${under(naming === 'ldm' ? ldm : strip(t.name))}`,
      peft: `unet.${strip(t.name)}`,
      internal: t.spec.name,
      shape: t.spec.shape,
      bias: t.spec.name.replace(/weight$/, 'bias'),
    });
  }
  if (targets.has('te')) {
    /** @type {Array<[import('./diffusers-layout.mjs').DiffusersTensor[], string, string]>} */
    const encoders = sdxl
      ? [[d.textEncoder, 'lora_te1_', 'text_encoder.'], [/** @type {any} */ (d.textEncoder2), 'lora_te2_', 'text_encoder_2.']]
      : [[d.textEncoder, 'lora_te_', 'text_encoder.']];
    for (const [tensors, kohya, peft] of encoders) {
      for (const t of tensors) {
        if (!TE.test(t.name)) continue;
        out.push({
          kohya: `${kohya}${under(strip(t.name))}`,
          peft: `${peft}${strip(t.name)}`,
          internal: t.spec.name,
          ...(t.rows ? { rows: t.rows } : {}),
          shape: t.shape,
          bias: t.spec.name.replace(/weight$/, 'bias'), // in_proj_weight's is in_proj_bias
        });
      }
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Random values


/** `n` uniform values of unit variance (mulberry32), drawn from the seed and `name`. */
function randomValues(/** @type {number} */ seed, /** @type {string} */ name, /** @type {number} */ n) {
  const out = new Float64Array(n);
  let a = tensorSeed(seed, name);
  for (let i = 0; i < n; i++) {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t = (t + Math.imul(t ^ (t >>> 7), t | 61)) ^ t;
    out[i] = ((((t ^ (t >>> 14)) >>> 0) / 4294967296) * 2 - 1) * Math.sqrt(3);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Small float64 linear algebra (row-major)

const prod = (/** @type {number[]} */ s) => s.reduce((a, b) => a * b, 1);
const frobenius = (/** @type {Float64Array} */ v) => {
  let sum = 0;
  for (let i = 0; i < v.length; i++) sum += (v[i] ?? 0) ** 2;
  return Math.sqrt(sum);
};
const scaleInPlace = (/** @type {Float64Array} */ v, /** @type {number} */ c) => { for (let i = 0; i < v.length; i++) v[i] *= c; return v; };

/** A [n, k] · B [k, m]. @param {Float64Array} a @param {Float64Array} b */
function matmul(a, b, /** @type {number} */ n, /** @type {number} */ k, /** @type {number} */ m) {
  const out = new Float64Array(n * m);
  for (let i = 0; i < n; i++)
    for (let p = 0; p < k; p++) {
      const x = a[i * k + p] ?? 0;
      if (x === 0) continue;
      for (let j = 0; j < m; j++) out[i * m + j] += x * (b[p * m + j] ?? 0);
    }
  return out;
}

/** ‖U·D‖_F for U [out, r], D [r, cols], through the r×r Gram matrices (no out×cols product). */
function lowRankNorm(/** @type {Float64Array} */ up, /** @type {Float64Array} */ down, /** @type {number} */ out, /** @type {number} */ r, /** @type {number} */ cols) {
  let sum = 0;
  for (let a = 0; a < r; a++)
    for (let b = 0; b < r; b++) {
      let gu = 0, gd = 0;
      for (let o = 0; o < out; o++) gu += (up[o * r + a] ?? 0) * (up[o * r + b] ?? 0);
      for (let c = 0; c < cols; c++) gd += (down[a * cols + c] ?? 0) * (down[b * cols + c] ?? 0);
      sum += gu * gd;
    }
  return Math.sqrt(Math.max(sum, 0));
}

/** Tucker core applied: ΔW[o, i, s] = Σ_ab up[o, a] · mid[a, b, s] · down[b, i], as [out, in·k]. */
function tuckerProduct(/** @type {Float64Array} */ up, /** @type {Float64Array} */ mid, /** @type {Float64Array} */ down,
  /** @type {number} */ out, /** @type {number} */ r, /** @type {number} */ inC, /** @type {number} */ k) {
  // mid·down over b: [a, i, s]
  const md = new Float64Array(r * inC * k);
  for (let a = 0; a < r; a++)
    for (let b = 0; b < r; b++)
      for (let i = 0; i < inC; i++) {
        const d = down[b * inC + i] ?? 0;
        for (let s = 0; s < k; s++) md[(a * inC + i) * k + s] += (mid[(a * r + b) * k + s] ?? 0) * d;
      }
  return matmul(up, md, out, r, inC * k);
}

/** The largest divisor of n not above √n. */
function smallFactor(/** @type {number} */ n) {
  for (let a = Math.floor(Math.sqrt(n)); a > 1; a--) if (n % a === 0) return a;
  return 1;
}

// ---------------------------------------------------------------------------------------------
// One module's tensors

/**
 * @typedef {object} ModuleContext
 * @property {Target} target
 * @property {string} key         module key in the file
 * @property {(name: string, n: number) => Float64Array} random
 * @property {() => Float64Array} weight  the base weight (rows applied)
 * @property {() => Float64Array | undefined} bias
 */

/**
 * The tensors of one module in `format`, before the dtype rounding.
 * @param {ModuleContext} m
 * @param {Required<Pick<LoraOptions, 'format' | 'rank' | 'strength'>> & LoraOptions} o
 * @returns {OutTensor[]}
 */
function moduleTensors(m, o) {
  const shape = m.target.shape;
  const out = /** @type {number} */ (shape[0]);
  const inC = /** @type {number} */ (shape[1]);
  const kernel = shape.slice(2);
  const k = prod(kernel);
  const cols = inC * k;
  const conv = shape.length === 4;
  const r = o.rank;
  const goal = o.strength * frobenius(m.weight());
  /** @type {OutTensor[]} */
  const t = [];
  const put = (/** @type {string} */ suffix, /** @type {number[]} */ s, /** @type {Float64Array} */ v) => t.push({ name: `${m.key}${suffix}`, shape: s, values: v });
  const alpha = () => { if (o.alpha !== undefined) put('.alpha', [], Float64Array.of(o.alpha)); };
  const s = o.alpha !== undefined ? o.alpha / r : 1;

  switch (o.format) {
    case 'lora':
    case 'peft':
    case 'dora': {
      const peft = o.format === 'peft' || (o.format === 'dora' && o.doraVariant === 'peft');
      const tucker = o.tucker === true && k > 1;
      if (tucker && peft) throw new RangeError('PEFT LoRAs have no Tucker form');
      const [downName, upName] = peft
        ? (o.peftDefault ? ['.lora_A.default.weight', '.lora_B.default.weight'] : ['.lora_A.weight', '.lora_B.weight'])
        : ['.lora_down.weight', '.lora_up.weight'];
      const ones = conv ? [1, 1] : [];
      const up = m.random(upName, out * r);
      let achieved;
      if (tucker) {
        const down = m.random(downName, r * inC);
        const mid = m.random('.lora_mid.weight', r * r * k);
        achieved = s * frobenius(tuckerProduct(up, mid, down, out, r, inC, k));
        put(downName, [r, inC, 1, 1], down);
        put('.lora_mid.weight', [r, r, ...kernel], mid);
      } else {
        const down = m.random(downName, r * cols);
        achieved = s * lowRankNorm(up, down, out, r, cols);
        put(downName, [r, inC, ...kernel], down);
      }
      put(upName, [out, r, ...ones], scaleInPlace(up, goal / achieved));
      if (!peft) alpha();
      else if (o.alpha !== undefined) throw new RangeError('PEFT files carry no alpha (it lives in the adapter config)');
      if (o.format === 'dora') put(...doraMagnitude(m, o, peft, out, inC, k));
      return t;
    }
    case 'loha': {
      const tucker = o.tucker === true && k > 1;
      /** @type {Float64Array[]} */
      const products = [];
      /** @type {Float64Array[]} */
      const ups = [];
      for (const w of ['1', '2']) {
        const a = m.random(`.hada_w${w}_a`, out * r);
        ups.push(a);
        if (tucker) {
          // LyCORIS' Tucker LoHa: w_a [r, out], w_b [r, in], t [r, r, kh, kw];
          // ΔW_w[p, i, s] = Σ_ab t[a, b, s] · w_a[a, p] · w_b[b, i].
          const b = m.random(`.hada_w${w}_b`, r * inC);
          const core = m.random(`.hada_t${w}`, r * r * k);
          products.push(tuckerProduct(transpose(a, r, out), core, b, out, r, inC, k));
          put(`.hada_w${w}_a`, [r, out], a);
          put(`.hada_w${w}_b`, [r, inC], b);
          put(`.hada_t${w}`, [r, r, ...kernel], core);
        } else {
          const b = m.random(`.hada_w${w}_b`, r * cols);
          products.push(matmul(a, b, out, r, cols));
          put(`.hada_w${w}_a`, [out, r], a);
          put(`.hada_w${w}_b`, [r, cols], b);
        }
      }
      const [p1, p2] = /** @type {[Float64Array, Float64Array]} */ (products);
      let sum = 0;
      for (let i = 0; i < p1.length; i++) sum += ((p1[i] ?? 0) * (p2[i] ?? 0)) ** 2;
      // ΔW is bilinear in (w1_a, w2_a): each takes the square root of the correction.
      const c = Math.sqrt(goal / (s * Math.sqrt(sum)));
      for (const a of ups) scaleInPlace(a, c);
      alpha();
      return t;
    }
    case 'lokr': {
      const a = smallFactor(out), b = out / a;
      const cIn = smallFactor(inC), d = inC / cIn;
      const decompose = o.lokrDecompose ?? 'w2';
      let rank = 1;
      let w1;
      /** @type {Float64Array} */
      let w1Scaled;
      if (decompose === 'both') {
        const w1a = m.random('.lokr_w1_a', a * r), w1b = m.random('.lokr_w1_b', r * cIn);
        put('.lokr_w1_a', [a, r], w1a);
        put('.lokr_w1_b', [r, cIn], w1b);
        w1 = matmul(w1a, w1b, a, r, cIn);
        w1Scaled = w1a;
        rank = r;
      } else {
        w1 = m.random('.lokr_w1', a * cIn);
        put('.lokr_w1', [a, cIn], w1);
        w1Scaled = w1;
      }
      let w2;
      if (decompose === 'none') {
        w2 = m.random('.lokr_w2', b * d * k);
        put('.lokr_w2', [b, d, ...kernel], w2);
      } else {
        const w2a = m.random('.lokr_w2_a', b * r), w2b = m.random('.lokr_w2_b', r * d * k);
        put('.lokr_w2_a', [b, r], w2a);
        put('.lokr_w2_b', [r, d * k], w2b);
        w2 = matmul(w2a, w2b, b, r, d * k);
        rank = r;
      }
      // stable-diffusion.cpp's rule: rank from the factored w*_b (w2's last), scale 1 at rank 1.
      const scale = o.alpha !== undefined && rank !== 1 ? o.alpha / rank : 1;
      // ‖kron(w1, w2)‖ = ‖w1‖·‖w2‖, and ΔW is linear in w1 (or w1_a).
      scaleInPlace(w1Scaled, goal / (scale * frobenius(w1) * frobenius(w2)));
      alpha();
      return t;
    }
    case 'diff': {
      const diff = m.random('.diff', out * cols);
      put('.diff', shape, scaleInPlace(diff, goal / frobenius(diff)));
      const bias = m.bias();
      if (bias) {
        const diffB = m.random('.diff_b', out);
        put('.diff_b', [out], scaleInPlace(diffB, (o.strength * frobenius(bias)) / frobenius(diffB)));
      }
      return t;
    }
    default:
      throw new RangeError(`format must be one of ${LORA_FORMATS.join(', ')}, not ${JSON.stringify(o.format)}`);
  }
}

/** @param {Float64Array} m [rows, cols] */
function transpose(m, /** @type {number} */ rows, /** @type {number} */ cols) {
  const out = new Float64Array(rows * cols);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) out[j * rows + i] = m[i * cols + j] ?? 0;
  return out;
}

/**
 * DoRA's magnitude: the base weight's norm per output row (or per input column) times 1 ± strength.
 * @param {ModuleContext} m
 * @param {LoraOptions & { strength: number }} o
 * @param {boolean} peft
 * @returns {[string, number[], Float64Array]}
 */
function doraMagnitude(m, o, peft, /** @type {number} */ out, /** @type {number} */ inC, /** @type {number} */ k) {
  const w = m.weight();
  const perInput = !peft && o.doraAxis === 'in';
  const n = perInput ? inC : out;
  const norms = new Float64Array(n);
  for (let oi = 0; oi < out; oi++)
    for (let i = 0; i < inC; i++)
      for (let s = 0; s < k; s++) norms[perInput ? i : oi] += (w[(oi * inC + i) * k + s] ?? 0) ** 2;
  const u = m.random(peft ? '.lora_magnitude_vector' : '.dora_scale', n);
  const mag = norms.map((x, i) => Math.sqrt(x) * (1 + (o.strength * (u[i] ?? 0)) / Math.sqrt(3)));
  const conv = m.target.shape.length === 4;
  if (peft) return [o.peftDefault ? '.lora_magnitude_vector.default.weight' : '.lora_magnitude_vector', [out], mag];
  const shape = perInput ? [1, inC] : [out, 1];
  return ['.dora_scale', conv ? [...shape, 1, 1] : shape, mag];
}

// ---------------------------------------------------------------------------------------------
// Writing

/** @param {Float64Array} v @param {'f16' | 'f32'} dtype */
function encode(v, dtype) {
  const f32 = Float32Array.from(v);
  if (dtype === 'f32') return new Uint8Array(f32.buffer);
  const bits = new Uint32Array(f32.buffer);
  const h = new Uint16Array(bits.length);
  for (let i = 0; i < bits.length; i++) h[i] = f32BitsToF16(/** @type {number} */ (bits[i]));
  return new Uint8Array(h.buffer);
}

/**
 * Writes a random LoRA / LyCORIS file for a generated model; see the top of this file.
 * @param {LoraOptions} options
 * @returns {Promise<LoraResult>}
 */
export async function generateLora(options) {
  if (!options || typeof options !== 'object') throw new TypeError('options must be an object');
  const { model, out, format = 'lora', targets = ['attn'], rank = 4, alpha, seed = 0, dtype = 'f16', strength = 0.2 } = options;
  if (typeof model !== 'string' || model === '') throw new TypeError('options.model must be a file path');
  if (typeof out !== 'string' || out === '') throw new TypeError('options.out must be a file path');
  if (!LORA_FORMATS.includes(format)) throw new RangeError(`format must be one of ${LORA_FORMATS.join(', ')}, not ${JSON.stringify(format)}`);
  if (!Array.isArray(targets) || targets.length === 0 || targets.some((t) => !LORA_TARGETS.includes(t)))
    throw new RangeError(`targets must be a non-empty list of ${LORA_TARGETS.join(', ')}`);
  if (!Number.isSafeInteger(rank) || rank < 1) throw new RangeError(`rank must be a positive integer, not ${rank}`);
  if (alpha !== undefined && !(Number.isFinite(alpha) && alpha > 0)) throw new RangeError(`alpha must be a positive number, not ${alpha}`);
  if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) throw new RangeError(`seed must be an integer from 0 to 2^32-1, not ${seed}`);
  if (dtype !== 'f16' && dtype !== 'f32') throw new RangeError(`dtype must be 'f16' or 'f32', not ${JSON.stringify(dtype)}`);
  if (!(Number.isFinite(strength) && strength > 0)) throw new RangeError(`strength must be a positive number, not ${strength}`);
  const ext = extname(out).toLowerCase();
  if (!['.safetensors', '.pt', '.ckpt'].includes(ext)) throw new RangeError(`out must end in .safetensors, .pt or .ckpt, not '${ext}'`);
  if (endianness() !== 'LE') throw new Error('this writer needs a little-endian machine');

  const file = openModel(model);
  try {
    const given = file.header.__metadata__?.['sdnode.config'];
    if (typeof given !== 'string') throw new Error(`${model}: no sdnode.config metadata (not a model of scripts/generate-model.mjs)`);
    const config = validateConfig(JSON.parse(given));
    const sdxl = config.clip2 !== undefined;
    const naming = options.naming ?? (sdxl ? 'ldm' : 'diffusers');
    if (naming !== 'ldm' && naming !== 'diffusers') throw new RangeError(`naming must be 'diffusers' or 'ldm', not ${JSON.stringify(naming)}`);
    const match = options.match !== undefined ? new RegExp(options.match) : undefined;
    const modules = targetModules(config, new Set(targets), naming).filter((t) => !match || match.test(t.internal));
    if (modules.length === 0) throw new RangeError('no module of the model matches these targets');
    const peftNames = format === 'peft' || (format === 'dora' && options.doraVariant === 'peft');
    const o = { ...options, format, rank, strength };

    /** @type {LoraEntry[]} */
    const entries = [];
    /** @type {OutTensor[]} */
    const tensors = [];
    for (const target of modules) {
      const have = file.header[target.internal];
      const rowsLen = target.rows ? target.rows[1] - target.rows[0] : have?.shape[0];
      if (!have || rowsLen !== target.shape[0] || have.shape.slice(1).join() !== target.shape.slice(1).join())
        throw new Error(`${model}: ${target.internal} is not [${target.shape.join(', ')}] as its config says`);
      const key = peftNames ? target.peft : target.kohya;
      const hasBias = target.bias !== undefined && file.header[target.bias] !== undefined;
      /** @type {ModuleContext} */
      const m = {
        target,
        key,
        random: (suffix, n) => randomValues(seed, key + suffix, n),
        weight: () => file.read(target.internal, target.rows),
        bias: () => (hasBias ? file.read(/** @type {string} */ (target.bias), target.rows) : undefined),
      };
      tensors.push(...moduleTensors(m, o));
      entries.push({ loraKey: key, internalName: target.internal, ...(target.rows ? { rows: target.rows } : {}), format });
    }

    const stored = tensors.map((t) => ({ name: t.name, shape: t.shape, dtype: dtype === 'f16' ? 'F16' : 'F32', data: encode(t.values, dtype) }));
    const path = resolve(out);
    /** @type {Record<string, string>} */
    const metadata = {
      'sdnode.generator': `sdnode generate-lora ${LORA_GENERATOR_VERSION}`,
      'sdnode.lora': JSON.stringify({ format, targets, rank, ...(alpha !== undefined ? { alpha } : {}), seed, dtype, strength }),
      ...(peftNames ? {} : { ss_network_module: format === 'lora' ? 'networks.lora' : 'lycoris.kohya', ss_network_dim: String(rank), ...(alpha !== undefined ? { ss_network_alpha: String(alpha) } : {}) }),
    };
    if (ext === '.safetensors') await writeSafetensorsFile(path, stored, metadata);
    else await writeTorchZip(path, stored.map((t) => ({ name: t.name, shape: t.shape, dtype: t.dtype, bytes: () => t.data })), {}, { flat: true });
    return { path, entries, tensorCount: stored.length };
  } finally {
    file.close();
  }
}
