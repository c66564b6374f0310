// Mutations of a model (scripts/fuzz/formats.mjs) for the generate() fuzzer. Most keep the file
// well-formed enough to pass the parsers — a type of the same element size, a shape with the
// same element count, two same-sized tensors swapping names — so that what reaches the
// networks' graphs is tested, not only the readers; a share break the file outright (random
// types, shapes and offsets, flipped header bytes, truncation). Deterministic in the seed.
import { SAFETENSORS_DTYPES, SAFETENSORS_SIZE, TORCH_SIZE, TORCH_STORAGES, cloneModel, writeModel } from './formats.mjs';

/** mulberry32: a small seeded generator; returns a function giving floats in [0, 1). */
export function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const pick = (r, list) => list[Math.floor(r() * list.length)];
const int = (r, lo, hi) => lo + Math.floor(r() * (hi - lo + 1));
const numel = (shape) => shape.reduce((a, b) => a * b, 1);

// GGUF type ids: element size per id for the plain ones, and the block types of equal size.
const GGUF_SAME_SIZE = [[1, 25, 30], [0, 26], [27, 28], [24], [2, 20], [11, 21]];
const GGUF_IDS = Array.from({ length: 45 }, (_, i) => i);
// [bytes, values] per block of ggml's block types (ggml-common.h's block structs).
const BLOCKS = {
  2: [18, 32], 3: [20, 32], 6: [22, 32], 7: [24, 32], 8: [34, 32], 9: [36, 32], 10: [84, 256], 11: [110, 256], 12: [144, 256],
  13: [176, 256], 14: [210, 256], 15: [292, 256], 16: [66, 256], 17: [74, 256], 18: [98, 256], 19: [50, 256], 20: [18, 32],
  21: [110, 256], 22: [82, 256], 23: [136, 256], 29: [56, 256], 34: [54, 256], 35: [66, 256], 39: [17, 32],
};

function retype(r, model, t) {
  if (model.format === 'safetensors') {
    const same = SAFETENSORS_DTYPES.filter((d) => SAFETENSORS_SIZE[d] === SAFETENSORS_SIZE[t.dtype]);
    t.dtype = r() < 0.8 ? pick(r, same) : r() < 0.9 ? pick(r, SAFETENSORS_DTYPES) : pick(r, ['F4', 'i16', '', 'U16', 'F8_E8M0']);
  } else if (model.format === 'gguf') {
    // A block type with data of its size, where the rows allow: kernel-less types (Q8_1, MXFP4,
    // the IQ and TQ ones) must be refused at load, the others must run.
    const row = t.shape[t.shape.length - 1] ?? 1;
    const fitting = Object.keys(BLOCKS).filter((id) => row % BLOCKS[id][1] === 0);
    if (fitting.length && r() < 0.4) {
      const id = Number(pick(r, fitting));
      const [bytes, block] = BLOCKS[id];
      t.dtype = id;
      t.data = Buffer.alloc((numel(t.shape) / block) * bytes);
      for (let i = 0; i < t.data.length; i++) t.data[i] = Math.floor(r() * 256);
      return `retype ${t.name} -> ggml type ${id} (data resized)`;
    }
    const group = GGUF_SAME_SIZE.find((g) => g.includes(t.dtype));
    t.dtype = group && r() < 0.8 ? pick(r, group) : r() < 0.95 ? pick(r, GGUF_IDS) : pick(r, [-1, 1000, 2 ** 31]);
  } else {
    // A narrower storage class over the same bytes stays in bounds (CharStorage over half data).
    const fits = TORCH_STORAGES.filter((s) => TORCH_SIZE[s] <= TORCH_SIZE[t.dtype]);
    t.dtype = r() < 0.85 ? pick(r, fits) : pick(r, TORCH_STORAGES);
    if (r() < 0.5) t.numel = Math.floor(t.data.length / TORCH_SIZE[t.dtype]);
  }
  return `retype ${t.name} -> ${t.dtype}`;
}

function divisors(n) {
  const out = [];
  for (let d = 1; d <= n && out.length < 64; d++) if (n % d === 0) out.push(d);
  return out;
}

function reshape(r, model, t) {
  const n = numel(t.shape);
  const before = JSON.stringify(t.shape);
  const choice = r();
  if (choice < 0.2 && t.shape.length > 1) {
    t.shape = [...t.shape].reverse();
  } else if (choice < 0.35) {
    t.shape = [n];
  } else if (choice < 0.55) {
    const d = pick(r, divisors(n));
    t.shape = r() < 0.5 ? [d, n / d] : [n / d, d, 1, 1];
  } else if (choice < 0.7) {
    t.shape = r() < 0.5 ? [...t.shape, 1] : [1, ...t.shape];
  } else if (choice < 0.8 && t.shape.length > 1) {
    t.shape = t.shape.slice(1);
  } else if (choice < 0.9) {
    const i = int(r, 0, Math.max(0, t.shape.length - 1));
    t.shape[i] = pick(r, [0, 1, 2, 3, 31, 33, 1024, 65537, -1, 2 ** 31, 2 ** 53]);
  } else {
    t.shape = Array.from({ length: int(r, 0, 6) }, () => int(r, 1, 64));
  }
  return `reshape ${t.name} ${before} -> ${JSON.stringify(t.shape)}`;
}

function offsets(r, model, t, i) {
  if (model.format === 'safetensors') {
    const begin = model.tensors.slice(0, i).reduce((a, x) => a + x.data.length, 0);
    const shift = pick(r, [-2, -1, 1, 2, 64, -64, t.data.length, -t.data.length]);
    t.offsets = r() < 0.5 ? [begin + shift, begin + t.data.length + shift] : [begin, begin + t.data.length + shift];
    return `offsets ${t.name} ${JSON.stringify(t.offsets)}`;
  }
  if (model.format === 'gguf') {
    t.offset = pick(r, [0, 1, 31, 32, 2 ** 40, -1, int(r, 0, 1 << 24) * 32]);
    return `offset ${t.name} ${t.offset}`;
  }
  const c = r();
  if (c < 0.35) t.storageOffset = pick(r, [1, 2, -1, t.data.length, 2 ** 31 - 1, int(r, 0, 100)]);
  else if (c < 0.7) t.stride = t.shape.map(() => pick(r, [0, 1, 2, -1, 3, 1000, 2 ** 30]));
  else t.numel = pick(r, [0, 1, Math.floor(t.data.length / 2), t.data.length * 4, 2 ** 31 - 1, -1]);
  return `storage of ${t.name}: offset ${t.storageOffset ?? 0}, stride ${JSON.stringify(t.stride ?? 'contiguous')}, numel ${t.numel ?? 'as data'}`;
}

function rename(r, model, t) {
  const c = r();
  if (c < 0.4) {
    // Two tensors of the same byte size swap names: shapes then disagree with what the names say.
    const same = model.tensors.filter((x) => x !== t && x.data.length === t.data.length);
    if (same.length) {
      const o = pick(r, same);
      [o.name, t.name] = [t.name, o.name];
      return `swap names ${t.name} <-> ${o.name}`;
    }
  }
  if (c < 0.6) {
    const o = pick(r, model.tensors);
    t.name = o.name;
    return `duplicate name ${t.name}`;
  }
  if (c < 0.8) {
    model.tensors.splice(model.tensors.indexOf(t), 1);
    return `drop ${t.name}`;
  }
  const old = t.name;
  t.name = r() < 0.5 ? old.replace(/\d/, String(int(r, 0, 9))) : `${old}${pick(r, ['_x', '.weight', '', '\u0000', 'é'])}`;
  return `rename ${old} -> ${t.name}`;
}

function metadata(r, model) {
  const key = 'sdnode.attention_heads';
  const c = r();
  if (c < 0.3) {
    delete model.metadata[key];
    return `delete ${key}`;
  }
  if (c < 0.8) {
    const v = () => pick(r, [0, 1, 2, 3, 5, 7, 64, -1, 1e9, 2 ** 53, 0.5, '8', null, NaN]);
    const heads = r() < 0.5 ? { unet: { numHeads: v() }, clip: { numHeads: v() } } : { unet: { headDim: v() }, clip: { numHeads: v() } };
    model.metadata[key] = JSON.stringify(heads);
    return `${key} = ${model.metadata[key]}`;
  }
  const k = pick(r, Object.keys(model.metadata).concat(['sdnode.family', 'modelspec.architecture', 'general.architecture']));
  model.metadata[k] = pick(r, ['', 'sd2', 'sdxl', 'x'.repeat(1000), '{', 'stable-diffusion-xl-v1-base', 'sd1']);
  return `metadata ${k} = ${model.metadata[k].slice(0, 30)}`;
}

function data(r, model, t) {
  const d = Buffer.alloc(t.data.length);
  const c = r();
  if (c < 0.3) d.fill(0xff); // NaN in every float type
  else if (c < 0.5) for (let i = 0; i + 1 < d.length; i += 2) d.writeUInt16LE(0x7c00, i); // f16 +Inf
  else if (c < 0.7) for (let i = 0; i < d.length; i++) d[i] = Math.floor(r() * 256);
  else d.fill(0x7f);
  t.data = d;
  return `data ${t.name} (${['NaN', 'Inf', 'random', 'huge'][c < 0.3 ? 0 : c < 0.5 ? 1 : c < 0.7 ? 2 : 3]})`;
}

const STRUCTURED = [
  [0.34, retype],
  [0.22, reshape],
  [0.08, offsets],
  [0.14, rename],
  [0.1, (r, m) => metadata(r, m)],
  [0.12, data],
];

/**
 * Mutant `index` of `base` under `seed`: { bytes, notes } with notes saying what changed.
 * About 1 in 10 also gets raw byte damage after writing (flipped header bytes, truncation).
 */
export function mutant(base, seed, index) {
  const r = rng((seed * 0x9e3779b1 + index * 0x85ebca6b) >>> 0);
  const model = cloneModel(base);
  const notes = [];
  const count = r() < 0.6 ? 1 : int(r, 2, 4);
  for (let k = 0; k < count && model.tensors.length; k++) {
    let x = r();
    const op = STRUCTURED.find(([w]) => (x -= w) < 0)?.[1] ?? data;
    const i = int(r, 0, model.tensors.length - 1);
    notes.push(op(r, model, model.tensors[i], i));
  }
  let bytes = writeModel(model);
  if (r() < 0.1) {
    bytes = Buffer.from(bytes);
    if (r() < 0.7) {
      const span = Math.min(bytes.length, model.format === 'ckpt' ? bytes.length : 1 << 16);
      const flips = int(r, 1, 8);
      for (let k = 0; k < flips; k++) {
        // ckpt: the pickle and the zip directory are at either end; safetensors/GGUF: the header.
        const at = model.format === 'ckpt' && r() < 0.5 ? bytes.length - 1 - int(r, 0, 4096) : int(r, 0, span - 1);
        bytes[Math.max(0, at)] ^= 1 << int(r, 0, 7);
      }
      notes.push(`${flips} bit flips`);
    } else {
      const at = int(r, 0, bytes.length - 1);
      bytes = bytes.subarray(0, at);
      notes.push(`truncated at ${at}`);
    }
  }
  return { bytes, notes };
}
