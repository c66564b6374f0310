// Writes random textual-inversion embeddings in the layouts the webui and its users share:
//   'pt'           webui's torch.save: { string_to_token: { '*': 265 }, string_to_param: { '*': [n, width] },
//                  name, step } in a PyTorch zip (read by our pickle reader, never executed)
//   'safetensors'  { emb_params: [n, width] }
//   'sdxl'         { clip_l: [n, 768], clip_g: [n, 1280] } (safetensors), widths as given
// Values are Gaussian (seeded), `std` per element. Only node: builtins.
import { resolve } from 'node:path';

import { f32BitsToF16, halfToNumber } from '../generate-model.mjs';
import { writeSafetensorsFile } from './files.mjs';
import { PickleWriter, STORAGE, op, writeTorchPickle } from './torch-checkpoint.mjs';

/** The token id webui's training files give the '*' placeholder (unused by readers). */
const WEBUI_PLACEHOLDER_TOKEN = 265;
const NEWTRUE = 0x88;

/** `n` Gaussian values (mulberry32 + Box–Muller) of standard deviation `std`, from `seed`. */
export function gaussianValues(/** @type {number} */ seed, /** @type {number} */ n, /** @type {number} */ std) {
  let state = seed >>> 0;
  const uniform = () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const out = new Float32Array(n);
  for (let i = 0; i < n; i += 2) {
    const r = Math.sqrt(-2 * Math.log(1 - uniform()));
    const a = 2 * Math.PI * uniform();
    out[i] = std * r * Math.cos(a);
    if (i + 1 < n) out[i + 1] = std * r * Math.sin(a);
  }
  return out;
}

/**
 * A tensor's stored bytes and the values a reader gets back (f16 rounds them).
 * @param {Float32Array} values @param {'f32' | 'f16'} dtype
 */
function stored(values, dtype) {
  if (dtype === 'f32') return { bytes: new Uint8Array(values.buffer.slice(0)), values };
  const u32 = new Uint32Array(values.buffer.slice(0));
  const f16 = Uint16Array.from(u32, (x) => f32BitsToF16(x));
  // What the f16 bits decode to, so tests compare against the values the file holds.
  const back = new Float32Array(values.length);
  const view = new DataView(new ArrayBuffer(2));
  for (let i = 0; i < f16.length; i++) {
    view.setUint16(0, /** @type {number} */ (f16[i]), true);
    back[i] = halfToNumber(view.getUint16(0, true));
  }
  return { bytes: new Uint8Array(f16.buffer), values: back };
}


/**
 * webui's embedding pickle: the vectors as a tensor that requires grad (as training saves it)
 * over storage 0.
 * @param {string} name @param {number} step @param {number[]} shape @param {'F32' | 'F16'} dtype
 */
function webuiPickle(name, step, shape, dtype) {
  const numel = shape.reduce((a, b) => a * b, 1);
  const strides = shape.map((_, d) => shape.slice(d + 1).reduce((a, b) => a * b, 1));
  const p = new PickleWriter().raw(op.PROTO, 2, op.EMPTY_DICT, op.MARK);
  p.str('string_to_token').raw(op.EMPTY_DICT, op.MARK).str('*').int(WEBUI_PLACEHOLDER_TOKEN).raw(op.SETITEMS);
  p.str('string_to_param').raw(op.EMPTY_DICT, op.MARK).str('*');
  p.global('torch._utils', '_rebuild_tensor_v2').raw(op.MARK);
  p.raw(op.MARK).str('storage').global('torch', STORAGE[dtype]).str('0').str('cpu').int(numel).raw(op.TUPLE, op.BINPERSID);
  p.int(0).tuple(shape).tuple(strides).raw(NEWTRUE).global('collections', 'OrderedDict').raw(op.EMPTY_TUPLE, op.REDUCE);
  p.raw(op.TUPLE, op.REDUCE, op.SETITEMS);
  p.str('name').str(name).str('step').int(step);
  return Uint8Array.from(p.raw(op.SETITEMS, op.STOP).bytes);
}

/**
 * Writes one random embedding. Returns the values a reader gets back per table ([vectors][width]
 * flat; f16 files rounded), in encoder order: one table, or clip_l then clip_g for 'sdxl'.
 * @param {{ out: string, format: 'pt' | 'safetensors' | 'sdxl', vectors: number, widths: number[],
 *           seed?: number, std?: number, dtype?: 'f32' | 'f16', name?: string, step?: number }} options
 * @returns {Promise<{ path: string, tables: Float32Array[] }>}
 */
export async function generateEmbedding(options) {
  const { format, vectors, widths, seed = 1, std = 0.1, dtype = 'f32' } = options;
  const path = resolve(options.out);
  if (!Number.isInteger(vectors) || vectors < 1) throw new RangeError('vectors must be an integer ≥ 1');
  if (widths.length !== (format === 'sdxl' ? 2 : 1)) throw new RangeError(`format '${format}' takes ${format === 'sdxl' ? 2 : 1} widths`);
  const tables = widths.map((w, k) => stored(gaussianValues(seed * 7919 + k, vectors * w, std), dtype));
  const st = /** @type {'F32' | 'F16'} */ (dtype.toUpperCase());
  if (format === 'pt') {
    const name = options.name ?? 'embedding';
    await writeTorchPickle(path, webuiPickle(name, options.step ?? 500, [vectors, widths[0]], st), [tables[0].bytes]);
  } else if (format === 'safetensors') {
    await writeSafetensorsFile(path, [{ name: 'emb_params', shape: [vectors, widths[0]], dtype: st, data: tables[0].bytes }]);
  } else if (format === 'sdxl') {
    await writeSafetensorsFile(path, [
      { name: 'clip_g', shape: [vectors, widths[1]], dtype: st, data: tables[1].bytes },
      { name: 'clip_l', shape: [vectors, widths[0]], dtype: st, data: tables[0].bytes },
    ]);
  } else {
    throw new RangeError(`format must be 'pt', 'safetensors' or 'sdxl', not '${format}'`);
  }
  return { path, tables: tables.map((t) => t.values) };
}
