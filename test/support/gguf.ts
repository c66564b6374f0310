// Writes GGUF files for tests: valid version 3 files (metadata, tensors, alignment padding) and
// hostile ones that a safe reader must refuse, one malformation per file. Only node: builtins.
//
// Layout (little-endian): "GGUF", u32 version, u64 tensor count, u64 entry count; entries
// (string key, u32 value type, value); tensor infos (string name, u32 n_dims, i64 ne[n_dims]
// innermost first, i32 ggml type, u64 offset into the data section); padding to the alignment;
// the data section, each tensor at an aligned offset. A string is a u64 length and its bytes.
import { Buffer } from 'node:buffer';
import { mkdirSync, writeFileSync } from 'node:fs';
import { ByteWriter, writeCases } from './bytes.js';

/** GGUF value type ids. */
export const GGUF_TYPE = {
  u8: 0,
  i8: 1,
  u16: 2,
  i16: 3,
  u32: 4,
  i32: 5,
  f32: 6,
  bool: 7,
  str: 8,
  arr: 9,
  u64: 10,
  i64: 11,
  f64: 12,
} as const;

export type GgufScalarType = Exclude<keyof typeof GGUF_TYPE, 'arr'>;
type Scalar = number | bigint | boolean | string;

export type GgufKv =
  | { key: string; type: Exclude<GgufScalarType, 'str'>; value: number | bigint | boolean }
  | { key: string; type: 'str'; value: string | Uint8Array }
  | { key: string; type: 'arr'; elemType: GgufScalarType; values: Scalar[] };

/** ggml type ids (vendor/ggml/include/ggml.h) of the types tests write. */
export const GGML_TYPE = {
  F32: 0,
  F16: 1,
  Q4_0: 2,
  Q4_1: 3,
  Q5_0: 6,
  Q5_1: 7,
  Q8_0: 8,
  Q2_K: 10,
  Q3_K: 11,
  Q4_K: 12,
  Q5_K: 13,
  Q6_K: 14,
  I8: 24,
  I16: 25,
  I32: 26,
  I64: 27,
  F64: 28,
  BF16: 30,
} as const;

/** Elements per block and bytes per block of the types in GGML_TYPE. */
export const GGML_BLOCK: Readonly<Record<number, { elements: number; bytes: number }>> = {
  [GGML_TYPE.F32]: { elements: 1, bytes: 4 },
  [GGML_TYPE.F16]: { elements: 1, bytes: 2 },
  [GGML_TYPE.Q4_0]: { elements: 32, bytes: 18 },
  [GGML_TYPE.Q4_1]: { elements: 32, bytes: 20 },
  [GGML_TYPE.Q5_0]: { elements: 32, bytes: 22 },
  [GGML_TYPE.Q5_1]: { elements: 32, bytes: 24 },
  [GGML_TYPE.Q8_0]: { elements: 32, bytes: 34 },
  [GGML_TYPE.Q2_K]: { elements: 256, bytes: 84 },
  [GGML_TYPE.Q3_K]: { elements: 256, bytes: 110 },
  [GGML_TYPE.Q4_K]: { elements: 256, bytes: 144 },
  [GGML_TYPE.Q5_K]: { elements: 256, bytes: 176 },
  [GGML_TYPE.Q6_K]: { elements: 256, bytes: 210 },
  [GGML_TYPE.I8]: { elements: 1, bytes: 1 },
  [GGML_TYPE.I16]: { elements: 1, bytes: 2 },
  [GGML_TYPE.I32]: { elements: 1, bytes: 4 },
  [GGML_TYPE.I64]: { elements: 1, bytes: 8 },
  [GGML_TYPE.F64]: { elements: 1, bytes: 8 },
  [GGML_TYPE.BF16]: { elements: 1, bytes: 2 },
};

export interface GgufTensor {
  name: string | Uint8Array;
  /** ggml type id (GGML_TYPE). */
  type: number;
  /** Dimensions innermost first, as ggml counts them (the reverse of PyTorch's shape). */
  ne: Array<number | bigint>;
  data: Uint8Array;
  /** Offset written into the tensor info instead of the one the data lands at (hostile files). */
  offset?: number | bigint;
}

export interface GgufSpec {
  kv?: GgufKv[];
  tensors?: GgufTensor[];
}

/** Overrides for malformed files; a valid file needs none of them. */
export interface GgufRawOptions {
  magic?: Uint8Array;
  version?: number;
  tensorCount?: bigint;
  kvCount?: bigint;
  /** Data alignment to lay the file out with, whatever general.alignment says. */
  layoutAlignment?: number;
  /** Skip the checks that tensor data matches its type and shape. */
  unchecked?: boolean;
}

const DEFAULT_ALIGNMENT = 32;

/** GGUF strings: a u64 byte length, then the bytes. */
class GgufWriter extends ByteWriter {
  str(s: string | Uint8Array): this {
    const b = typeof s === 'string' ? Buffer.from(s, 'utf8') : s;
    return this.u64(b.byteLength).bytes(b);
  }
}

function writeScalar(w: GgufWriter, type: GgufScalarType, v: Scalar | Uint8Array): void {
  if (type === 'str') {
    if (typeof v !== 'string' && !(v instanceof Uint8Array)) throw new TypeError('GGUF string value must be a string');
    w.str(v);
    return;
  }
  if (typeof v === 'string' || v instanceof Uint8Array) throw new TypeError(`GGUF ${type} value must not be a string`);
  const n = typeof v === 'boolean' ? (v ? 1 : 0) : v;
  switch (type) {
    case 'u8':
    case 'i8':
    case 'bool':
      w.u8(Number(n));
      break;
    case 'u16':
    case 'i16':
      w.u16(Number(n));
      break;
    case 'u32':
    case 'i32':
      w.u32(Number(n));
      break;
    case 'u64':
    case 'i64':
      w.u64(n);
      break;
    case 'f32':
      w.f32(Number(n));
      break;
    case 'f64':
      w.f64(Number(n));
      break;
  }
}

function writeKv(w: GgufWriter, kv: GgufKv): void {
  w.str(kv.key).u32(GGUF_TYPE[kv.type]);
  if (kv.type === 'arr') {
    w.u32(GGUF_TYPE[kv.elemType]).u64(kv.values.length);
    for (const v of kv.values) writeScalar(w, kv.elemType, v);
  } else {
    writeScalar(w, kv.type, kv.value);
  }
}

function alignmentOf(kv: GgufKv[]): number {
  const a = kv.find((e) => e.key === 'general.alignment');
  if (!a) return DEFAULT_ALIGNMENT;
  if (a.type !== 'u32' || typeof a.value !== 'number') throw new RangeError('general.alignment must be a u32 number');
  return a.value;
}

function checkTensor(t: GgufTensor): void {
  const block = GGML_BLOCK[t.type];
  if (!block) throw new RangeError(`no block size known for ggml type ${t.type} (tensor ${String(t.name)})`);
  if (t.ne.length < 1 || t.ne.length > 4) throw new RangeError(`tensor ${String(t.name)}: 1 to 4 dimensions`);
  const ne = t.ne.map((d) => Number(d));
  if (ne.some((d) => !Number.isSafeInteger(d) || d <= 0)) throw new RangeError(`tensor ${String(t.name)}: bad ne`);
  if (ne[0]! % block.elements !== 0) throw new RangeError(`tensor ${String(t.name)}: ne[0] not a multiple of the block`);
  const bytes = (ne.reduce((a, b) => a * b, 1) / block.elements) * block.bytes;
  if (bytes !== t.data.byteLength)
    throw new RangeError(`tensor ${String(t.name)}: ${t.data.byteLength} bytes of data, its type and shape need ${bytes}`);
}

/** A GGUF file's bytes. Throws RangeError for a spec that would not make a valid file, unless
 *  `raw.unchecked` (hostile files). */
export function buildGguf(spec: GgufSpec, raw: GgufRawOptions = {}): Buffer {
  const kv = spec.kv ?? [];
  const tensors = spec.tensors ?? [];
  if (!raw.unchecked) for (const t of tensors) checkTensor(t);
  const alignment = raw.layoutAlignment ?? alignmentOf(kv);

  // Offsets: each tensor at the next aligned position of the data section.
  const offsets: number[] = [];
  let end = 0;
  for (const t of tensors) {
    offsets.push(end);
    end += t.data.byteLength;
    end += (alignment - (end % alignment)) % alignment;
  }

  const w = new GgufWriter();
  w.bytes(raw.magic ?? Buffer.from('GGUF', 'latin1'));
  w.u32(raw.version ?? 3);
  w.u64(raw.tensorCount ?? BigInt(tensors.length));
  w.u64(raw.kvCount ?? BigInt(kv.length));
  for (const e of kv) writeKv(w, e);
  tensors.forEach((t, i) => {
    w.str(t.name).u32(t.ne.length);
    for (const d of t.ne) w.u64(d);
    w.u32(t.type).u64(t.offset ?? offsets[i]!);
  });
  if (tensors.length) {
    w.pad(alignment);
    for (const t of tensors) w.bytes(t.data).pad(alignment);
  }
  return w.toBuffer();
}

export function writeGguf(path: string, spec: GgufSpec, raw: GgufRawOptions = {}): void {
  writeFileSync(path, buildGguf(spec, raw));
}

/** Little-endian bytes of a typed array (tensor data). */
export function leBytes(a: Float32Array | Int32Array | Uint16Array | Int8Array | Uint8Array): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

// ---------------------------------------------------------------------------------------------
// Hostile files

const BASE_KV: GgufKv[] = [
  { key: 'general.architecture', type: 'str', value: 'test' },
  { key: 'general.name', type: 'str', value: 'hostile' },
];
const T_A: GgufTensor = { name: 'a.weight', type: GGML_TYPE.F32, ne: [4, 2], data: leBytes(new Float32Array(8).fill(1)) };
const T_B: GgufTensor = { name: 'b.weight', type: GGML_TYPE.F32, ne: [8], data: leBytes(new Float32Array(8).fill(2)) };
const U64_MAX = (1n << 64n) - 1n;

/** A GGUF whose entries are BASE_KV plus `extra`, holding T_A. */
function withKv(extra: GgufKv[], raw: GgufRawOptions = {}): Buffer {
  return buildGguf({ kv: [...BASE_KV, ...extra], tensors: [T_A] }, { ...raw, unchecked: true });
}

function withTensors(tensors: GgufTensor[], raw: GgufRawOptions = {}): Buffer {
  return buildGguf({ kv: BASE_KV, tensors }, { ...raw, unchecked: true });
}

/** A valid GGUF followed by one hand-made metadata entry (raw bytes), counted in the header. */
function withRawEntry(entry: Uint8Array): Buffer {
  const w = new GgufWriter();
  w.bytes(Buffer.from('GGUF', 'latin1')).u32(3).u64(0).u64(BASE_KV.length + 1);
  for (const e of BASE_KV) writeKv(w, e);
  w.bytes(entry);
  return w.toBuffer();
}

/**
 * Writes malformed GGUF files into `dir`, one malformation each (HOSTILE-INPUTS cases 7-13);
 * returns case name -> path. A reader must refuse every one with a format error.
 */
export function hostileGguf(dir: string): Record<string, string> {
  mkdirSync(dir, { recursive: true });
  const cases: Record<string, Uint8Array> = {};
  const valid = buildGguf({ kv: BASE_KV, tensors: [T_A, T_B] });

  // 7. Magic and version.
  cases.empty_file = new Uint8Array(0);
  cases.bad_magic = buildGguf({ kv: BASE_KV, tensors: [T_A] }, { magic: Buffer.from('GGUX', 'latin1') });
  cases.short_magic = Buffer.from('GGU', 'latin1');
  cases.version_0 = withKv([], { version: 0 });
  cases.version_1 = withKv([], { version: 1 });
  cases.version_4 = withKv([], { version: 4 });
  cases.version_byteswapped = withKv([], { version: 0x03000000 });

  // 8. Counts.
  cases.tensor_count_max = withKv([], { tensorCount: U64_MAX });
  cases.kv_count_max = withKv([], { kvCount: U64_MAX });
  cases.tensor_count_too_large = withKv([], { tensorCount: 1000n });
  cases.kv_count_too_large = withKv([], { kvCount: 1000n });
  cases.kv_count_one_more = withKv([], { kvCount: BigInt(BASE_KV.length + 1) });

  // 9. Strings, arrays, value types, keys.
  cases.key_length_past_eof = withRawEntry(new GgufWriter().u64(1000).bytes(Buffer.from('general.x')).toBuffer());
  cases.key_length_absurd = withRawEntry(new GgufWriter().u64(1n << 63n).bytes(Buffer.from('general.x')).toBuffer());
  cases.string_value_past_eof = withRawEntry(
    new GgufWriter().str('general.description').u32(GGUF_TYPE.str).u64(1 << 20).bytes(Buffer.from('short')).toBuffer(),
  );
  cases.string_value_length_max = withRawEntry(
    new GgufWriter().str('general.description').u32(GGUF_TYPE.str).u64(U64_MAX).bytes(Buffer.from('short')).toBuffer(),
  );
  cases.array_length_past_eof = withRawEntry(
    new GgufWriter().str('test.values').u32(GGUF_TYPE.arr).u32(GGUF_TYPE.u32).u64(1_000_000).u32(1).u32(2).toBuffer(),
  );
  cases.array_length_overflow = withRawEntry(
    // 2^62 u32 elements: 2^64 bytes, which wraps to 0 in unchecked 64-bit arithmetic.
    new GgufWriter().str('test.values').u32(GGUF_TYPE.arr).u32(GGUF_TYPE.u32).u64(1n << 62n).u32(1).toBuffer(),
  );
  cases.string_array_length_absurd = withRawEntry(
    new GgufWriter().str('tokenizer.ggml.tokens').u32(GGUF_TYPE.arr).u32(GGUF_TYPE.str).u64(U64_MAX).str('a').toBuffer(),
  );
  cases.string_in_array_past_eof = withRawEntry(
    new GgufWriter().str('tokenizer.ggml.tokens').u32(GGUF_TYPE.arr).u32(GGUF_TYPE.str).u64(2).str('a').u64(1 << 30).toBuffer(),
  );
  cases.array_of_arrays = withRawEntry(
    new GgufWriter().str('test.nested').u32(GGUF_TYPE.arr).u32(GGUF_TYPE.arr).u64(1).u32(GGUF_TYPE.u8).u64(1).u8(0).toBuffer(),
  );
  cases.unknown_value_type = withRawEntry(new GgufWriter().str('test.x').u32(13).u32(0).toBuffer());
  cases.unknown_value_type_huge = withRawEntry(new GgufWriter().str('test.x').u32(0xffffffff).u32(0).toBuffer());
  cases.unknown_array_element_type = withRawEntry(
    new GgufWriter().str('test.values').u32(GGUF_TYPE.arr).u32(99).u64(1).u32(0).toBuffer(),
  );
  cases.bool_value_2 = withKv([{ key: 'test.flag', type: 'bool', value: 2 }]);
  cases.empty_key = withKv([{ key: '', type: 'u32', value: 1 }]);
  cases.duplicate_key = withKv([{ key: 'general.name', type: 'str', value: 'again' }]);
  cases.non_ascii_key = withKv([{ key: 'général.nom', type: 'str', value: 'x' }]);
  cases.control_char_key = withKv([{ key: 'general.\nname2', type: 'str', value: 'x' }]);
  cases.key_with_nul = withKv([{ key: 'general.na\0me', type: 'str', value: 'x' }]);

  // 10 and 12. general.alignment, and known keys with the wrong type.
  cases.alignment_zero = withKv([{ key: 'general.alignment', type: 'u32', value: 0 }], { layoutAlignment: 32 });
  cases.alignment_three = withKv([{ key: 'general.alignment', type: 'u32', value: 3 }], { layoutAlignment: 32 });
  cases.alignment_u64 = withKv([{ key: 'general.alignment', type: 'u64', value: 32n }], { layoutAlignment: 32 });
  cases.alignment_string = withKv([{ key: 'general.alignment', type: 'str', value: '32' }], { layoutAlignment: 32 });
  cases.alignment_array = withKv(
    [{ key: 'general.alignment', type: 'arr', elemType: 'u32', values: [32] }],
    { layoutAlignment: 32 },
  );
  cases.architecture_wrong_type = buildGguf(
    { kv: [{ key: 'general.architecture', type: 'u32', value: 7 }], tensors: [T_A] },
    { unchecked: true },
  );

  // 11. Tensor infos.
  cases.n_dims_0 = withTensors([{ ...T_B, ne: [] }]);
  cases.n_dims_5 = withTensors([{ ...T_B, ne: [2, 2, 2, 1, 1] }]);
  cases.ne_zero = withTensors([{ ...T_A, ne: [4, 0] }]);
  cases.ne_negative = withTensors([{ ...T_A, ne: [4, -2] }]);
  cases.ne_product_overflow = withTensors([{ ...T_A, ne: [1n << 32n, 1n << 32n] }]);
  cases.ne_product_over_int64 = withTensors([{ ...T_A, ne: [1n << 32n, 1n << 31n] }]);
  cases.unknown_type_id = withTensors([{ ...T_B, type: 99 }]);
  cases.type_id_count = withTensors([{ ...T_B, type: 43 }]);
  cases.negative_type_id = withTensors([{ ...T_B, type: -1 }]);
  cases.removed_type_q4_2 = withTensors([{ ...T_B, ne: [32], type: 4 }]);
  cases.removed_type_q4_0_4_4 = withTensors([{ ...T_B, ne: [32], type: 31 }]);
  cases.ne0_not_block_multiple = withTensors([{ name: 'q.weight', type: GGML_TYPE.Q8_0, ne: [48], data: new Uint8Array(68) }]);
  cases.name_128_bytes = withTensors([{ ...T_B, name: 'n'.repeat(128) }]);
  cases.name_empty = withTensors([{ ...T_B, name: '' }]);
  cases.name_invalid_utf8 = withTensors([{ ...T_B, name: Uint8Array.from([0x61, 0xff, 0x62]) }]);
  cases.name_with_nul = withTensors([{ ...T_B, name: 'a\0b' }]);
  cases.duplicate_tensor_names = withTensors([T_A, { ...T_B, name: T_A.name }]);
  cases.misaligned_offset = withTensors([{ ...T_A, offset: 4 }]);
  cases.same_offset = withTensors([T_A, { ...T_B, offset: 0 }]);
  // a.weight takes bytes 0..32 of the data section; b.weight claims 16..48.
  cases.overlapping_offsets = buildGguf(
    { kv: [...BASE_KV, { key: 'general.alignment', type: 'u32', value: 16 }], tensors: [T_A, { ...T_B, offset: 16 }] },
    { unchecked: true },
  );
  // Both tensors inside the file, listed in the opposite order of their data.
  cases.out_of_order_offsets = withTensors([
    { ...T_A, offset: 32 },
    { ...T_B, offset: 0 },
  ]);
  cases.data_past_eof = withTensors([{ ...T_A, offset: 1 << 20 }]);
  cases.offset_near_u64_max = withTensors([{ ...T_A, offset: U64_MAX - 31n }]);
  cases.truncated_data = valid.subarray(0, valid.length - 40);
  cases.truncated_header = valid.subarray(0, Math.floor(valid.length / 3));
  cases.truncated_tensor_info = valid.subarray(0, valid.indexOf(Buffer.from('b.weight')) + 4);

  return writeCases(dir, '.gguf', cases);
}
