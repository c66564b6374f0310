// Writes the generated model as a PyTorch training checkpoint (.ckpt), the way torch.save lays
// one out: a zip (stored entries, data 64-byte aligned, sizes in data descriptors, ZIP64 when
// offsets pass 4 GiB) holding `archive/data.pkl` — protocol 2 pickle of
// {"global_step": 0, "state_dict": OrderedDict(name -> tensor)} (the nesting of SD .ckpt files,
// optionally with a `model_ema.*` copy of the UNet) — and one storage file per tensor, streamed
// so a full-size model needs a few MB of memory. Only node: builtins.
import { resolve } from 'node:path';

import { PRESETS, attentionHeadsMetadata, tensorBytes, tensorSpecs, validateConfig } from '../generate-model.mjs';
import { writeAtomically } from './files.mjs';

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[i] = c >>> 0;
  }
  return t;
})();

/** @param {number} crc running value (start 0) @param {Uint8Array} data */
export function crc32Update(crc, data) {
  let c = ~crc >>> 0;
  for (let i = 0; i < data.length; i++) c = CRC_TABLE[(c ^ data[i]) & 0xff] ^ (c >>> 8);
  return ~c >>> 0;
}

// Pickle opcodes (protocol 2), the few a state dict needs.
export const op = { PROTO: 0x80, EMPTY_DICT: 0x7d, MARK: 0x28, SETITEMS: 0x75, BINUNICODE: 0x58, BININT: 0x4a, GLOBAL: 0x63,
  EMPTY_TUPLE: 0x29, REDUCE: 0x52, TUPLE: 0x74, BINPERSID: 0x51, NEWFALSE: 0x89, STOP: 0x2e };

export class PickleWriter {
  /** @type {number[]} */ bytes = [];
  /** @param {...number} b */ raw(...b) { this.bytes.push(...b); return this; }
  /** @param {number} v */ int(v) { const b = Buffer.alloc(4); b.writeInt32LE(v); return this.raw(op.BININT, ...b); }
  /** @param {string} s */ str(s) { const t = Buffer.from(s, 'utf8'); const n = Buffer.alloc(4); n.writeUInt32LE(t.length); return this.raw(op.BINUNICODE, ...n, ...t); }
  /** @param {string} module @param {string} name */ global(module, name) { return this.raw(op.GLOBAL, ...Buffer.from(`${module}\n${name}\n`)); }
  /** @param {number[]} values */ tuple(values) { this.raw(op.MARK); for (const v of values) this.int(v); return this.raw(op.TUPLE); }
}

export const STORAGE = { F16: 'HalfStorage', F32: 'FloatStorage', I64: 'LongStorage' };

/**
 * `{global_step, ...metadata, state_dict}` holding each tensor as torch._utils._rebuild_tensor_v2
 * over storage `key` (its index), contiguous; metadata entries are strings beside the state dict.
 * `flat`: the state dict alone, as torch.save(state_dict) writes it (LoRA .pt files).
 * @param {Array<{ name: string, shape: number[], dtype: 'F16' | 'F32' | 'I64' }>} tensors
 * @param {Record<string, string>} [metadata]
 * @param {boolean} [flat]
 */
function statePickle(tensors, metadata = {}, flat = false) {
  const p = new PickleWriter().raw(op.PROTO, 2);
  if (!flat) {
    p.raw(op.EMPTY_DICT, op.MARK).str('global_step').int(0);
    for (const [k, v] of Object.entries(metadata)) p.str(k).str(v);
    p.str('state_dict');
  }
  p.global('collections', 'OrderedDict').raw(op.EMPTY_TUPLE, op.REDUCE, op.MARK);
  tensors.forEach((t, i) => {
    const numel = t.shape.reduce((a, b) => a * b, 1);
    const strides = t.shape.map((_, d) => t.shape.slice(d + 1).reduce((a, b) => a * b, 1));
    p.str(t.name).global('torch._utils', '_rebuild_tensor_v2').raw(op.MARK);
    p.raw(op.MARK).str('storage').global('torch', STORAGE[t.dtype]).str(String(i)).str('cpu').int(numel).raw(op.TUPLE, op.BINPERSID);
    p.int(0).tuple(t.shape).tuple(strides).raw(op.NEWFALSE).global('collections', 'OrderedDict').raw(op.EMPTY_TUPLE, op.REDUCE);
    p.raw(op.TUPLE, op.REDUCE);
  });
  if (!flat) p.raw(op.SETITEMS);
  return Uint8Array.from(p.raw(op.SETITEMS, op.STOP).bytes);
}

/** A zip writer for stored entries streamed to a file handle. */
export class ZipStream {
  /** @param {import('node:fs/promises').FileHandle} fh */
  constructor(fh) { this.fh = fh; this.offset = 0; /** @type {Array<{ name: Buffer, offset: number, size: number, crc: number }>} */ this.entries = []; }
  /** @param {Uint8Array} b */
  async put(b) { await this.fh.write(b, 0, b.byteLength, this.offset); this.offset += b.byteLength; }
  /** Streams `chunks` as entry `name`, its data aligned to 64 bytes. @param {string} name @param {Iterable<Uint8Array>} chunks */
  async entry(name, chunks) {
    const n = Buffer.from(name, 'utf8');
    const start = this.offset;
    const pad = (64 - ((start + 30 + n.length + 4) % 64)) % 64;
    const h = Buffer.alloc(30); // version 4.5, flags, method 0 (stored); CRC and sizes follow the data
    h.writeUInt32LE(0x04034b50, 0);
    h.writeUInt16LE(45, 4);
    h.writeUInt16LE(0x0808, 6); // UTF-8 names; bit 3: sizes and CRC in the data descriptor
    h.writeUInt16LE(n.length, 26);
    h.writeUInt16LE(4 + pad, 28);
    const extra = Buffer.alloc(4 + pad); // an unassigned header id holding the alignment padding
    extra.writeUInt16LE(0x5346, 0);
    extra.writeUInt16LE(pad, 2);
    await this.put(h);
    await this.put(n);
    await this.put(extra);
    let crc = 0, size = 0;
    for (const c of chunks) { crc = crc32Update(crc, c); size += c.byteLength; await this.put(c); }
    if (size > 0xffffffff) throw new RangeError(`${name}: entries past 4 GiB are not written`);
    const d = Buffer.alloc(16); // data descriptor: signature, CRC, sizes
    d.writeUInt32LE(0x08074b50, 0); d.writeUInt32LE(crc, 4); d.writeUInt32LE(size, 8); d.writeUInt32LE(size, 12);
    await this.put(d);
    this.entries.push({ name: n, offset: start, size, crc });
  }
  async finish() {
    const cdStart = this.offset;
    for (const e of this.entries) {
      const h = Buffer.alloc(46), z = Buffer.alloc(4 + 24);
      h.writeUInt32LE(0x02014b50, 0); h.writeUInt16LE(45, 4); h.writeUInt16LE(45, 6); h.writeUInt16LE(0x0808, 8);
      h.writeUInt32LE(e.crc, 16); h.writeUInt32LE(0xffffffff, 20); h.writeUInt32LE(0xffffffff, 24);
      h.writeUInt16LE(e.name.length, 28); h.writeUInt16LE(z.length, 30); h.writeUInt32LE(0xffffffff, 42);
      z.writeUInt16LE(0x0001, 0); z.writeUInt16LE(24, 2);
      z.writeBigUInt64LE(BigInt(e.size), 4); z.writeBigUInt64LE(BigInt(e.size), 12); z.writeBigUInt64LE(BigInt(e.offset), 20);
      await this.put(h); await this.put(e.name); await this.put(z);
    }
    const cdSize = this.offset - cdStart, zip64End = this.offset, count = BigInt(this.entries.length);
    const r = Buffer.alloc(56 + 20 + 22);
    r.writeUInt32LE(0x06064b50, 0); r.writeBigUInt64LE(44n, 4); r.writeUInt16LE(45, 12); r.writeUInt16LE(45, 14);
    r.writeBigUInt64LE(count, 24); r.writeBigUInt64LE(count, 32); r.writeBigUInt64LE(BigInt(cdSize), 40); r.writeBigUInt64LE(BigInt(cdStart), 48);
    r.writeUInt32LE(0x07064b50, 56); r.writeBigUInt64LE(BigInt(zip64End), 64); r.writeUInt32LE(1, 72);
    r.writeUInt32LE(0x06054b50, 76); r.writeUInt16LE(0xffff, 84); r.writeUInt16LE(0xffff, 86);
    r.writeUInt32LE(0xffffffff, 88); r.writeUInt32LE(0xffffffff, 92);
    await this.put(r);
  }
}

/**
 * Writes a PyTorch zip checkpoint `{ global_step, ...metadata, state_dict: { name: tensor } }`
 * (as SD .ckpt files are laid out) of the given tensors, atomically. Returns the absolute path.
 * With `flat`, the pickle is the state dict alone (metadata unused), as LoRA .pt files are.
 * @param {string} out
 * @param {Array<{ name: string, shape: number[], dtype: string, bytes: () => Uint8Array }>} tensors
 * @param {Record<string, string>} [metadata]
 * @param {{ flat?: boolean }} [options]
 */
export async function writeTorchZip(out, tensors, metadata = {}, options = {}) {
  const path = resolve(out);
  await writeTorchPickle(path, statePickle(tensors, metadata, options.flat === true), tensors.map((t) => t.bytes));
  return path;
}

/**
 * A PyTorch zip file (torch.save's layout) holding `pickle` and storages 0…n-1 (bytes, or a
 * function making them when their turn comes), written atomically.
 * @param {string} path @param {Uint8Array} pickle @param {Array<Uint8Array | (() => Uint8Array)>} storages
 */
export async function writeTorchPickle(path, pickle, storages) {
  await writeAtomically(path, async (fh) => {
    const zip = new ZipStream(fh);
    await zip.entry('archive/data.pkl', [pickle]);
    await zip.entry('archive/byteorder', [Buffer.from('little')]);
    for (const [i, s] of storages.entries()) await zip.entry(`archive/data/${i}`, [typeof s === 'function' ? s() : s]);
    await zip.entry('archive/version', [Buffer.from('3\n')]);
    await zip.finish();
  });
}

/**
 * Writes a random-weight model as a .ckpt: the same names and values as generateModel's
 * safetensors for the same preset/config, seed and dtype (position_ids as int64). With `ema`,
 * the UNet is also stored as `model_ema.<name without "model." and dots>` with the values of
 * seed + 1, as training checkpoints carry an EMA copy.
 * @param {{ out: string, preset?: string, config?: object, dtype?: 'f16' | 'f32', seed?: number, ema?: boolean }} options
 */
export async function writeTorchCheckpoint(options) {
  const { out, dtype = 'f16', seed = 0, ema = false } = options;
  const config = validateConfig(options.config ?? PRESETS[options.preset ?? 'tiny']);
  const specs = tensorSpecs(config);
  const typeOf = (/** @type {{init: string}} */ s) => (s.init === 'position_ids' ? 'I64' : dtype === 'f16' ? 'F16' : 'F32');
  const tensors = specs.map((s) => ({ name: s.name, shape: s.shape, dtype: typeOf(s), bytes: () => tensorBytes(s, seed, dtype) }));
  if (ema) {
    for (const s of specs.filter((x) => x.name.startsWith('model.diffusion_model.'))) {
      tensors.push({ name: `model_ema.${s.name.slice('model.'.length).replaceAll('.', '')}`, shape: s.shape, dtype: typeOf(s), bytes: () => tensorBytes(s, seed + 1, dtype) });
    }
  }
  const path = await writeTorchZip(out, tensors, { 'sdnode.attention_heads': attentionHeadsMetadata(config) });
  return { path, tensorCount: tensors.length };
}
