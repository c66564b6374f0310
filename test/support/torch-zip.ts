// Writes PyTorch-style zip checkpoints for tests: valid ones (shaped like torch.save output)
// and hostile ones that a safe reader must refuse. Only node: builtins.
import { Buffer } from 'node:buffer';
import { mkdirSync, writeFileSync } from 'node:fs';
// @ts-expect-error: plain JavaScript module with JSDoc types
import { crc32Update } from '../../scripts/generator/torch-checkpoint.mjs';
import { ByteWriter, writeCases } from './bytes.js';

/** CRC-32 (IEEE) of `data`: the generator's, which writes .ckpt files the same way. */
export function crc32(data: Uint8Array): number {
  return crc32Update(0, data) as number;
}

// ---------------------------------------------------------------------------------------------
// Zip writer

export interface ZipEntry {
  name: string;
  data: Uint8Array;
  /** Compression method written in the headers; `data` is written as is. Default 0 (stored). */
  method?: number;
}

export interface ZipOptions {
  /** Write ZIP64 records (sizes and offsets behind 0xFFFFFFFF markers, a data descriptor
   *  after each entry), as torch does for large files. */
  zip64?: boolean;
  /** Pad each local header's extra field so entry data starts at a multiple of this, as
   *  torch does (64). 0 or 1: no padding. */
  align?: number;
}

const MAX32 = 0xffffffff;

export function buildZip(entries: ZipEntry[], options: ZipOptions = {}): Buffer {
  const zip64 = options.zip64 ?? false;
  const align = options.align ?? 64;
  const out = new ByteWriter();
  const central = new ByteWriter();
  for (const entry of entries) {
    const name = Buffer.from(entry.name, 'utf8');
    const method = entry.method ?? 0;
    const crc = crc32(entry.data);
    const size = entry.data.byteLength;
    const offset = out.length;
    // Flag bit 11: UTF-8 names; bit 3: sizes follow the data (torch's layout).
    const flags = 0x0800 | (zip64 ? 0x0008 : 0);
    let pad = 0;
    if (align > 1) {
      const start = offset + 30 + name.length;
      pad = (align - ((start + 4) % align)) % align; // room for a 4-byte extra header first
    }
    out.u32(0x04034b50).u16(zip64 ? 45 : 20).u16(flags).u16(method).u16(0).u16(0x21);
    out.u32(zip64 ? 0 : crc).u32(zip64 ? 0 : size).u32(zip64 ? 0 : size);
    out.u16(name.length).u16(align > 1 ? 4 + pad : 0).bytes(name);
    if (align > 1) out.u16(0x4246).u16(pad).bytes(new Uint8Array(pad)); // 'FB' padding, like torch
    out.bytes(entry.data);
    if (zip64) out.u32(0x08074b50).u32(crc).u64(size).u64(size);

    const extra = new ByteWriter();
    if (zip64) extra.u16(0x0001).u16(24).u64(size).u64(size).u64(offset);
    central.u32(0x02014b50).u16(zip64 ? 45 : 20).u16(zip64 ? 45 : 20).u16(flags).u16(method);
    central.u16(0).u16(0x21).u32(crc);
    central.u32(zip64 ? MAX32 : size).u32(zip64 ? MAX32 : size);
    central.u16(name.length).u16(extra.length).u16(0).u16(0).u16(0).u32(0);
    central.u32(zip64 ? MAX32 : offset).bytes(name).bytes(extra.toBuffer());
  }
  const cdOffset = out.length;
  const cdSize = central.length;
  out.bytes(central.toBuffer());
  if (zip64) {
    const recordOffset = out.length;
    out.u32(0x06064b50).u64(44).u16(45).u16(45).u32(0).u32(0);
    out.u64(entries.length).u64(entries.length).u64(cdSize).u64(cdOffset);
    out.u32(0x07064b50).u32(0).u64(recordOffset).u32(1);
  }
  out.u32(0x06054b50).u16(0).u16(0);
  out.u16(zip64 ? 0xffff : entries.length).u16(zip64 ? 0xffff : entries.length);
  out.u32(zip64 ? MAX32 : cdSize).u32(zip64 ? MAX32 : cdOffset).u16(0);
  return out.toBuffer();
}

// ---------------------------------------------------------------------------------------------
// Pickle byte builder: one method per opcode (protocol 2 style, as torch.save writes).

export class Pickle {
  private buf: number[] = [];

  raw(...bytes: number[]): this {
    for (const b of bytes) this.buf.push(b & 0xff);
    return this;
  }
  private le(v: number, n: number): this {
    for (let i = 0; i < n; i++) this.buf.push(Number((BigInt(v) >> BigInt(8 * i)) & 0xffn));
    return this;
  }
  private text(s: string): number[] {
    return [...Buffer.from(s, 'utf8')];
  }

  proto(v = 2): this { return this.raw(0x80, v); }
  stop(): this { return this.raw(0x2e); }
  mark(): this { return this.raw(0x28); }
  emptyDict(): this { return this.raw(0x7d); }
  emptyList(): this { return this.raw(0x5d); }
  emptyTuple(): this { return this.raw(0x29); }
  tuple(): this { return this.raw(0x74); }
  tuple1(): this { return this.raw(0x85); }
  tuple2(): this { return this.raw(0x86); }
  tuple3(): this { return this.raw(0x87); }
  dict(): this { return this.raw(0x64); }
  list(): this { return this.raw(0x6c); }
  append(): this { return this.raw(0x61); }
  appends(): this { return this.raw(0x65); }
  setitem(): this { return this.raw(0x73); }
  setitems(): this { return this.raw(0x75); }
  none(): this { return this.raw(0x4e); }
  bool(v: boolean): this { return this.raw(v ? 0x88 : 0x89); }
  reduce(): this { return this.raw(0x52); }
  build(): this { return this.raw(0x62); }
  persid(): this { return this.raw(0x51); }
  newobj(): this { return this.raw(0x81); }
  pop(): this { return this.raw(0x30); }
  popMark(): this { return this.raw(0x31); }
  dup(): this { return this.raw(0x32); }
  memoize(): this { return this.raw(0x94); }

  /** The shortest of BININT1, BININT2, BININT, LONG1 for a safe integer. */
  int(v: number): this {
    if (!Number.isSafeInteger(v)) throw new RangeError(`not a safe integer: ${v}`);
    if (v >= 0 && v < 0x100) return this.raw(0x4b, v);
    if (v >= 0 && v < 0x10000) return this.raw(0x4d).le(v, 2);
    if (v >= -0x80000000 && v < 0x80000000) return this.raw(0x4a).le(v, 4);
    return this.raw(0x8a, 8).le(v, 8);
  }
  float(v: number): this {
    const b = Buffer.alloc(8);
    b.writeDoubleBE(v);
    return this.raw(0x47, ...b);
  }
  /** BINUNICODE, or SHORT_BINUNICODE with `short`. */
  str(s: string, short = false): this {
    const t = this.text(s);
    if (short) {
      if (t.length > 255) throw new RangeError('string too long for SHORT_BINUNICODE');
      return this.raw(0x8c, t.length, ...t);
    }
    this.raw(0x58).le(t.length, 4);
    for (const b of t) this.buf.push(b);
    return this;
  }
  bytes(b: Uint8Array): this {
    this.raw(0x42).le(b.length, 4);
    for (const x of b) this.buf.push(x);
    return this;
  }
  put(i: number): this { return i < 256 ? this.raw(0x71, i) : this.raw(0x72).le(i, 4); }
  get(i: number): this { return i < 256 ? this.raw(0x68, i) : this.raw(0x6a).le(i, 4); }
  global(module: string, name: string): this { return this.raw(0x63, ...this.text(`${module}\n${name}\n`)); }
  stackGlobal(module: string, name: string): this { return this.str(module, true).str(name, true).raw(0x93); }

  get length(): number { return this.buf.length; }
  toBytes(): Uint8Array { return Uint8Array.from(this.buf); }
}

// ---------------------------------------------------------------------------------------------
// Valid checkpoints

export interface TorchTensor {
  name: string;
  shape: number[];
  /** Float32Array → float32 storage; Uint16Array → float16 storage holding raw half bits. */
  data: Float32Array | Uint16Array;
}

export interface TorchCheckpointOptions {
  /** The archive's top folder (torch uses the file name without extension). */
  prefix?: string;
  zip64?: boolean;
  /** Wrap as {state_dict: {...}, global_step: 1}, like SD training checkpoints. */
  wrapStateDict?: boolean;
}

function littleEndianBytes(data: Float32Array | Uint16Array): Uint8Array {
  const out = new Uint8Array(data.byteLength);
  const view = new DataView(out.buffer);
  if (data instanceof Float32Array) data.forEach((v, i) => view.setFloat32(i * 4, v, true));
  else data.forEach((v, i) => view.setUint16(i * 2, v, true));
  return out;
}

function contiguousStrides(shape: number[]): number[] {
  const strides = new Array<number>(shape.length);
  let s = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    strides[i] = s;
    s *= shape[i]!;
  }
  return strides;
}

/** Pushes `_rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict())`. */
export function pickleTensor(
  p: Pickle,
  t: { storageType: string; key: string; storageNumel: number; offset?: number; shape: number[]; stride?: number[] },
): Pickle {
  p.global('torch._utils', '_rebuild_tensor_v2').mark();
  p.mark().str('storage').global('torch', t.storageType).str(t.key).str('cpu').int(t.storageNumel).tuple().persid();
  p.int(t.offset ?? 0);
  p.mark();
  for (const d of t.shape) p.int(d);
  p.tuple().mark();
  for (const s of t.stride ?? contiguousStrides(t.shape)) p.int(s);
  p.tuple().bool(false).global('collections', 'OrderedDict').emptyTuple().reduce();
  return p.tuple().reduce();
}

/** data.pkl and storage entries for a state dict, as torch.save lays them out. */
export function torchCheckpointEntries(tensors: TorchTensor[], options: TorchCheckpointOptions = {}): ZipEntry[] {
  const prefix = options.prefix ?? 'archive';
  const p = new Pickle().proto(2);
  if (options.wrapStateDict) p.emptyDict().mark().str('global_step').int(1).str('state_dict');
  p.global('collections', 'OrderedDict').emptyTuple().reduce();
  if (tensors.length > 0) p.mark();
  const storages: ZipEntry[] = [];
  tensors.forEach((t, i) => {
    const numel = t.shape.reduce((a, b) => a * b, 1);
    if (numel !== t.data.length) throw new RangeError(`${t.name}: shape ${t.shape} needs ${numel} values, got ${t.data.length}`);
    p.str(t.name);
    pickleTensor(p, {
      storageType: t.data instanceof Float32Array ? 'FloatStorage' : 'HalfStorage',
      key: String(i),
      storageNumel: numel,
      shape: t.shape,
    });
    storages.push({ name: `${prefix}/data/${i}`, data: littleEndianBytes(t.data) });
  });
  if (tensors.length > 0) p.setitems();
  if (options.wrapStateDict) p.setitems();
  p.stop();
  return [
    { name: `${prefix}/data.pkl`, data: p.toBytes() },
    { name: `${prefix}/byteorder`, data: Buffer.from('little') },
    ...storages,
    { name: `${prefix}/version`, data: Buffer.from('3\n') },
  ];
}

export function writeTorchCheckpoint(path: string, tensors: TorchTensor[], options: TorchCheckpointOptions = {}): void {
  writeFileSync(path, buildZip(torchCheckpointEntries(tensors, options), { zip64: options.zip64 ?? false }));
}

// ---------------------------------------------------------------------------------------------
// Hostile checkpoints. Each must be refused with ERR_MODEL_FORMAT, and none may run anything:
// the ones that would run `touch <sentinel>` under a real unpickler leave the sentinel missing.

const ONE_TENSOR: TorchTensor[] = [{ name: 'weight', shape: [2, 2], data: Float32Array.from([1, 2, 3, 4]) }];

function withPickle(p: Pickle, storages: ZipEntry[] = []): ZipEntry[] {
  return [
    { name: 'archive/data.pkl', data: p.toBytes() },
    { name: 'archive/byteorder', data: Buffer.from('little') },
    ...storages,
  ];
}

/** A state dict {weight: tensor, <key>: <whatever `value` pushes>}. */
function stateDictWith(key: string, value: (p: Pickle) => void): Pickle {
  const p = new Pickle().proto(2).global('collections', 'OrderedDict').emptyTuple().reduce().mark();
  p.str('weight');
  pickleTensor(p, { storageType: 'FloatStorage', key: '0', storageNumel: 4, shape: [2, 2] });
  p.str(key);
  value(p);
  return p.setitems().stop();
}

const STORAGE_0: ZipEntry = { name: 'archive/data/0', data: littleEndianBytes(Float32Array.from([1, 2, 3, 4])) };

export function hostileCheckpoints(dir: string, sentinel: string): Record<string, string> {
  mkdirSync(dir, { recursive: true });
  const touch = `touch ${sentinel}`;
  const cases: Record<string, Buffer> = {};
  const valid = buildZip(torchCheckpointEntries(ONE_TENSOR));

  // Code execution through the globals a real unpickler would import and call.
  cases.os_system = buildZip(
    withPickle(stateDictWith('x', (p) => p.global('os', 'system').str(touch).tuple1().reduce()), [STORAGE_0]),
  );
  cases.posix_system_stack_global = buildZip(
    withPickle(stateDictWith('x', (p) => p.stackGlobal('posix', 'system').str(touch).tuple1().reduce()), [STORAGE_0]),
  );
  cases.builtins_eval = buildZip(
    withPickle(
      stateDictWith('x', (p) =>
        p.global('builtins', 'eval').str(`__import__('os').system(${JSON.stringify(touch)})`).tuple1().reduce(),
      ),
      [STORAGE_0],
    ),
  );
  cases.subprocess_popen = buildZip(
    withPickle(
      stateDictWith('x', (p) => p.global('subprocess', 'Popen').mark().str('touch').str(sentinel).list().tuple1().reduce()),
      [STORAGE_0],
    ),
  );

  // Resource exhaustion.
  {
    // Dict doubling through the memo: d[i+1] = {a: d[i], b: d[i]}. 48 levels, 2^48 paths.
    const p = new Pickle().proto(2).emptyDict().put(0);
    for (let i = 0; i < 48; i++) p.pop().emptyDict().mark().str('a').get(i).str('b').get(i).setitems().put(i + 1);
    cases.memo_bomb = buildZip(withPickle(p.stop()));
  }
  {
    // DUP past any stack budget (4M entries).
    const p = new Pickle().proto(2).emptyDict();
    for (let i = 0; i < 4_000_000; i++) p.dup();
    cases.dup_bomb = buildZip(withPickle(p.stop()));
  }
  {
    // 100000 nested lists: [[[[...]]]], which a recursive reader would overflow its stack on.
    const p = new Pickle().proto(2);
    for (let i = 0; i < 100_000; i++) p.emptyList();
    for (let i = 1; i < 100_000; i++) p.append();
    cases.deep_nesting = buildZip(withPickle(p.stop()));
  }
  {
    // 100000 nested tuples through MARK ... TUPLE.
    const p = new Pickle().proto(2);
    for (let i = 0; i < 100_000; i++) p.mark();
    for (let i = 0; i < 100_000; i++) p.tuple();
    cases.deep_tuples = buildZip(withPickle(p.stop()));
  }

  // Archive layout.
  cases.two_data_pkl = buildZip([
    ...torchCheckpointEntries(ONE_TENSOR, { prefix: 'a' }),
    ...torchCheckpointEntries(ONE_TENSOR, { prefix: 'b' }),
  ]);
  cases.missing_storage = buildZip(torchCheckpointEntries(ONE_TENSOR).filter((e) => !e.name.endsWith('/data/0')));
  {
    // The view needs 4 floats; the storage holds 2.
    const p = new Pickle().proto(2).global('collections', 'OrderedDict').emptyTuple().reduce().str('weight');
    pickleTensor(p, { storageType: 'FloatStorage', key: '0', storageNumel: 2, shape: [2, 2] });
    cases.storage_too_small = buildZip(
      withPickle(p.setitem().stop(), [{ name: 'archive/data/0', data: littleEndianBytes(Float32Array.from([1, 2])) }]),
    );
  }
  cases.path_traversal = buildZip([
    ...torchCheckpointEntries(ONE_TENSOR),
    { name: '../evil', data: Buffer.from('x') },
  ]);
  cases.absolute_path = buildZip([
    ...torchCheckpointEntries(ONE_TENSOR),
    { name: '/tmp/evil', data: Buffer.from('x') },
  ]);
  cases.truncated_zip = valid.subarray(0, Math.floor(valid.length * 0.75));
  {
    // Central directory entries with a broken signature.
    const b = Buffer.from(valid);
    const cdOffset = b.readUInt32LE(b.length - 6);
    b.writeUInt32LE(0xdeadbeef, cdOffset);
    cases.corrupt_central_directory = b;
  }
  {
    const full = stateDictWith('n', (p) => p.int(1)).toBytes();
    cases.truncated_pickle = buildZip(withPickle(new Pickle().raw(...full.subarray(0, full.length - 8)), [STORAGE_0]));
    cases.missing_stop = buildZip(withPickle(new Pickle().raw(...full.subarray(0, full.length - 1)), [STORAGE_0]));
  }
  cases.deflated_entry = buildZip([
    { name: 'archive/data.pkl', data: Uint8Array.from([0x4b, 0x00, 0x00, 0xff, 0xff, 0x03, 0x00]), method: 8 },
    { name: 'archive/byteorder', data: Buffer.from('little') },
  ]);
  cases.not_a_dict = buildZip(withPickle(new Pickle().proto(2).emptyList().stop()));
  cases.empty_file = Buffer.alloc(0);

  return writeCases(dir, '.pth', cases);
}
