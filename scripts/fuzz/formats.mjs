// The three model file formats as one editable structure, for the generate() fuzzer and the
// hostile-weights tests: read a safetensors or GGUF file into { format, metadata, tensors },
// change tensor types, shapes, offsets, names or metadata, and write it back out. The writers
// write whatever the structure says (offsets, type ids, strides given explicitly are written
// as given, valid or not): that is how the mutants are made. Only node: builtins.
//
// A model:  { format: 'safetensors' | 'gguf' | 'ckpt', metadata: Record<string, string>,
//             tensors: Tensor[], raw?: { headerLength?: bigint, alignment?: number } }
// A tensor: { name, dtype, shape (outermost first), data: Buffer, ...format extras }
//   safetensors: dtype 'F16', 'I16', ... ; offsets?: [begin, end] (default: contiguous)
//   gguf:        dtype a ggml type id; offset?: data-section offset (default: aligned, in order)
//   ckpt:        dtype a torch storage class ('HalfStorage', 'CharStorage', ...); stride?,
//                storageOffset?, numel? (of the storage; default: the data's elements)
import { crc32Update } from '../generator/torch-checkpoint.mjs';

// ---------------------------------------------------------------------------------------------
// safetensors

export const SAFETENSORS_DTYPES = ['F64', 'F32', 'F16', 'BF16', 'F8_E4M3', 'F8_E5M2', 'I64', 'I32', 'I16', 'I8', 'U8', 'BOOL'];
export const SAFETENSORS_SIZE = { F64: 8, F32: 4, F16: 2, BF16: 2, F8_E4M3: 1, F8_E5M2: 1, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1 };

/** @param {Buffer} buf */
export function readSafetensors(buf) {
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8'));
  const data = buf.subarray(8 + n);
  const metadata = header.__metadata__ ?? {};
  const tensors = Object.entries(header)
    .filter(([k]) => k !== '__metadata__')
    .map(([name, t]) => ({ name, dtype: t.dtype, shape: t.shape, data: Buffer.from(data.subarray(t.data_offsets[0], t.data_offsets[1])) }));
  return { format: 'safetensors', metadata, tensors };
}

export function writeSafetensors(model) {
  const header = {};
  if (Object.keys(model.metadata).length) header.__metadata__ = model.metadata;
  let at = 0;
  const entries = [];
  for (const t of model.tensors) {
    const offsets = t.offsets ?? [at, at + t.data.length];
    entries.push([t.name, { dtype: t.dtype, shape: t.shape, data_offsets: offsets }]);
    at += t.data.length;
  }
  // Built by hand, not from an object: duplicate names must survive into the file.
  const json = `{${[...(header.__metadata__ ? [['__metadata__', header.__metadata__]] : []), ...entries].map(([k, v]) => `${JSON.stringify(k)}:${JSON.stringify(v)}`).join(',')}}`;
  const text = Buffer.from(json, 'utf8');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(model.raw?.headerLength ?? BigInt(text.length));
  return Buffer.concat([len, text, ...model.tensors.map((t) => t.data)]);
}

// ---------------------------------------------------------------------------------------------
// GGUF (v3)

export const GGML = { F32: 0, F16: 1, Q4_0: 2, Q4_1: 3, Q5_0: 6, Q5_1: 7, Q8_0: 8, Q8_1: 9, Q2_K: 10, Q3_K: 11, Q4_K: 12, Q5_K: 13, Q6_K: 14, Q8_K: 15, IQ4_NL: 20, I8: 24, I16: 25, I32: 26, I64: 27, F64: 28, BF16: 30 };
/** [bytes per block, elements per block] of the ggml types the reader meets in the files it starts from. */
export const GGML_LAYOUT = {
  0: [4, 1], 1: [2, 1], 2: [18, 32], 3: [20, 32], 6: [22, 32], 7: [24, 32], 8: [34, 32], 9: [36, 32], 10: [84, 256], 11: [110, 256],
  12: [144, 256], 13: [176, 256], 14: [210, 256], 15: [292, 256], 20: [18, 32], 21: [110, 256], 24: [1, 1], 25: [2, 1], 26: [4, 1],
  27: [8, 1], 28: [8, 1], 30: [2, 1],
};

const KV = { U8: 0, I8: 1, U16: 2, I16: 3, U32: 4, I32: 5, F32: 6, BOOL: 7, STRING: 8, ARRAY: 9, U64: 10, I64: 11, F64: 12 };
const KV_SIZE = { 0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8 };

/** @param {Buffer} buf */
export function readGguf(buf) {
  let p = 8;
  const version = buf.readUInt32LE(4);
  const u64 = () => { const v = buf.readBigUInt64LE(p); p += 8; return v; };
  const str = () => { const n = Number(u64()); const s = buf.subarray(p, p + n).toString('utf8'); p += n; return s; };
  const value = (type) => {
    if (type === KV.STRING) return str();
    if (type === KV.ARRAY) {
      const inner = buf.readUInt32LE(p); p += 4;
      const n = Number(u64());
      const items = [];
      for (let i = 0; i < n; i++) items.push(value(inner));
      return { inner, items };
    }
    const size = KV_SIZE[type];
    const raw = Buffer.from(buf.subarray(p, p + size)); p += size;
    return raw;
  };
  const nTensors = Number(u64());
  const nKv = Number(u64());
  const kvs = [];
  for (let i = 0; i < nKv; i++) {
    const key = str();
    const type = buf.readUInt32LE(p); p += 4;
    kvs.push({ key, type, value: value(type) });
  }
  const infos = [];
  for (let i = 0; i < nTensors; i++) {
    const name = str();
    const nd = buf.readUInt32LE(p); p += 4;
    const ne = [];
    for (let d = 0; d < nd; d++) ne.push(Number(buf.readBigInt64LE(p + 8 * d)));
    p += 8 * nd;
    const type = buf.readUInt32LE(p); p += 4;
    const offset = Number(u64());
    infos.push({ name, ne, type, offset });
  }
  const alignKv = kvs.find((k) => k.key === 'general.alignment');
  const alignment = alignKv ? alignKv.value.readUInt32LE(0) : 32;
  const dataStart = Math.ceil(p / alignment) * alignment;
  const sizes = infos.map((t) => {
    const [bytes, block] = GGML_LAYOUT[t.type];
    return (t.ne.reduce((a, b) => a * b, 1) / block) * bytes;
  });
  const tensors = infos.map((t, i) => ({
    name: t.name,
    dtype: t.type,
    shape: [...t.ne].reverse(),
    data: Buffer.from(buf.subarray(dataStart + t.offset, dataStart + t.offset + sizes[i])),
  }));
  const metadata = {};
  for (const k of kvs) if (k.type === KV.STRING) metadata[k.key] = k.value;
  return { format: 'gguf', version, metadata, tensors, kvs, raw: { alignment } };
}

const GGML_OF = { F32: 0, F16: 1, BF16: 30, F64: 28, I8: 24, I16: 25, I32: 26, I64: 27 };

/** A safetensors-typed model as a GGUF model (same names, shapes, bytes and string metadata). */
export function toGguf(model) {
  return { format: 'gguf', version: 3, metadata: { 'general.architecture': 'sdnode', ...model.metadata }, kvs: [], tensors: model.tensors.map((t) => ({ ...t, dtype: GGML_OF[t.dtype] ?? 1 })) };
}

export function writeGguf(model) {
  const parts = [];
  const u32 = (v) => { const b = Buffer.alloc(4); b.writeUInt32LE(v >>> 0); parts.push(b); };
  const u64 = (v) => { const b = Buffer.alloc(8); b.writeBigUInt64LE(BigInt.asUintN(64, BigInt(v))); parts.push(b); };
  const str = (s) => { const b = Buffer.from(s, 'utf8'); u64(b.length); parts.push(b); };
  const value = (type, v) => {
    if (type === KV.STRING) return str(v);
    if (type === KV.ARRAY) { u32(v.inner); u64(v.items.length); for (const x of v.items) value(v.inner, x); return; }
    parts.push(v);
  };
  // Non-string key-values of the source are kept as they were; string ones come from metadata.
  const kvs = (model.kvs ?? []).filter((k) => k.type !== KV.STRING);
  for (const [key, v] of Object.entries(model.metadata)) kvs.push({ key, type: KV.STRING, value: v });
  parts.push(Buffer.from('GGUF'));
  u32(model.version ?? 3);
  u64(model.tensors.length);
  u64(kvs.length);
  for (const k of kvs) { str(k.key); u32(k.type); value(k.type, k.value); }
  const alignment = model.raw?.alignment ?? 32;
  // Bytes go where the default layout puts them (aligned, in order); an explicit `offset` is
  // only what the header claims.
  let at = 0;
  const placed = [];
  for (const t of model.tensors) {
    placed.push(at);
    str(t.name);
    u32(t.shape.length);
    for (const d of [...t.shape].reverse()) { const b = Buffer.alloc(8); b.writeBigInt64LE(BigInt(d)); parts.push(b); }
    u32(t.dtype);
    u64(t.offset ?? at);
    at = Math.ceil((at + t.data.length) / alignment) * alignment;
  }
  const head = Buffer.concat(parts);
  const dataStart = Math.ceil(head.length / alignment) * alignment;
  const data = Buffer.alloc(at);
  model.tensors.forEach((t, i) => t.data.copy(data, placed[i]));
  return Buffer.concat([head, Buffer.alloc(dataStart - head.length), data]);
}

// ---------------------------------------------------------------------------------------------
// PyTorch zip checkpoint (.ckpt): {"global_step": 0, "state_dict": OrderedDict(name -> tensor)}

export const TORCH_STORAGES = ['DoubleStorage', 'FloatStorage', 'HalfStorage', 'BFloat16Storage', 'LongStorage', 'IntStorage', 'ShortStorage', 'CharStorage', 'ByteStorage', 'BoolStorage'];
export const TORCH_SIZE = { DoubleStorage: 8, FloatStorage: 4, HalfStorage: 2, BFloat16Storage: 2, LongStorage: 8, IntStorage: 4, ShortStorage: 2, CharStorage: 1, ByteStorage: 1, BoolStorage: 1 };
const STORAGE_OF = { F64: 'DoubleStorage', F32: 'FloatStorage', F16: 'HalfStorage', BF16: 'BFloat16Storage', I64: 'LongStorage', I32: 'IntStorage', I16: 'ShortStorage', I8: 'CharStorage', U8: 'ByteStorage', BOOL: 'BoolStorage' };

/** A safetensors-typed model as a ckpt model (same names, shapes and bytes). */
export function toCkpt(model) {
  return { format: 'ckpt', metadata: {}, tensors: model.tensors.map((t) => ({ ...t, dtype: STORAGE_OF[t.dtype] ?? 'HalfStorage' })) };
}

function statePickle(tensors) {
  const b = [];
  const raw = (...x) => b.push(...x);
  const int = (v) => { const t = Buffer.alloc(4); t.writeInt32LE(v | 0); raw(0x4a, ...t); };
  const str = (s) => { const t = Buffer.from(s, 'utf8'); const n = Buffer.alloc(4); n.writeUInt32LE(t.length); raw(0x58, ...n, ...t); };
  const global = (m, n) => raw(0x63, ...Buffer.from(`${m}\n${n}\n`));
  const tuple = (v) => { raw(0x28); for (const x of v) int(x); raw(0x74); };
  raw(0x80, 2, 0x7d, 0x28);
  str('global_step'); int(0); str('state_dict');
  global('collections', 'OrderedDict'); raw(0x29, 0x52, 0x28);
  tensors.forEach((t, i) => {
    const size = TORCH_SIZE[t.dtype] ?? 2;
    const numel = t.numel ?? Math.floor(t.data.length / size);
    const stride = t.stride ?? t.shape.map((_, d) => t.shape.slice(d + 1).reduce((a, c) => a * c, 1));
    str(t.name); global('torch._utils', '_rebuild_tensor_v2'); raw(0x28);
    raw(0x28); str('storage'); global('torch', t.dtype); str(String(i)); str('cpu'); int(numel); raw(0x74, 0x51);
    int(t.storageOffset ?? 0); tuple(t.shape); tuple(stride); raw(0x89); global('collections', 'OrderedDict'); raw(0x29, 0x52);
    raw(0x74, 0x52);
  });
  raw(0x75, 0x75, 0x2e);
  return Buffer.from(b);
}

// Mutants share the base's tensor buffers: their CRCs are computed once.
const crcOf = new WeakMap();
function crc(data) {
  let c = crcOf.get(data);
  if (c === undefined) crcOf.set(data, (c = crc32Update(0, data)));
  return c;
}

function zip(entries) {
  const parts = [];
  const central = [];
  let at = 0;
  for (const [name, data] of entries) {
    const n = Buffer.from(name, 'utf8');
    const pad = (64 - ((at + 30 + n.length + 4) % 64)) % 64;
    const sum = crc(data);
    const h = Buffer.alloc(30);
    h.writeUInt32LE(0x04034b50, 0); h.writeUInt16LE(20, 4); h.writeUInt16LE(0x0800, 6);
    h.writeUInt32LE(sum, 14); h.writeUInt32LE(data.length, 18); h.writeUInt32LE(data.length, 22);
    h.writeUInt16LE(n.length, 26); h.writeUInt16LE(4 + pad, 28);
    const extra = Buffer.alloc(4 + pad);
    extra.writeUInt16LE(0x5346, 0); extra.writeUInt16LE(pad, 2);
    const c = Buffer.alloc(46);
    c.writeUInt32LE(0x02014b50, 0); c.writeUInt16LE(20, 4); c.writeUInt16LE(20, 6); c.writeUInt16LE(0x0800, 8);
    c.writeUInt32LE(sum, 16); c.writeUInt32LE(data.length, 20); c.writeUInt32LE(data.length, 24);
    c.writeUInt16LE(n.length, 28); c.writeUInt32LE(at, 42);
    central.push(c, n);
    parts.push(h, n, extra, data);
    at += 30 + n.length + extra.length + data.length;
  }
  const cd = Buffer.concat(central);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0); end.writeUInt16LE(entries.length, 8); end.writeUInt16LE(entries.length, 10);
  end.writeUInt32LE(cd.length, 12); end.writeUInt32LE(at, 16);
  return Buffer.concat([...parts, cd, end]);
}

export function writeCkpt(model) {
  return zip([
    ['archive/data.pkl', statePickle(model.tensors)],
    ['archive/byteorder', Buffer.from('little')],
    ...model.tensors.map((t, i) => [`archive/data/${i}`, t.data]),
    ['archive/version', Buffer.from('3\n')],
  ]);
}

// ---------------------------------------------------------------------------------------------

export const EXTENSION = { safetensors: '.safetensors', gguf: '.gguf', ckpt: '.ckpt' };

export function writeModel(model) {
  if (model.format === 'safetensors') return writeSafetensors(model);
  if (model.format === 'gguf') return writeGguf(model);
  return writeCkpt(model);
}

/** A deep copy whose tensor data buffers are shared until a mutation replaces one. */
export function cloneModel(model) {
  return {
    ...model,
    metadata: { ...model.metadata },
    kvs: model.kvs?.map((k) => ({ ...k })),
    raw: model.raw ? { ...model.raw } : undefined,
    tensors: model.tensors.map((t) => ({ ...t, shape: [...t.shape] })),
  };
}
