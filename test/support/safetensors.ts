// Writes safetensors files for tests: valid ones (laid out as the reference writer does, with
// optional extra header padding) and hostile ones that a safe reader must refuse. Only node:
// builtins.
import { Buffer } from 'node:buffer';
import { mkdirSync, writeFileSync } from 'node:fs';
import { writeCases } from './bytes.js';

export type SafetensorsDtype =
  | 'F64'
  | 'F32'
  | 'F16'
  | 'BF16'
  | 'F8_E4M3'
  | 'F8_E5M2'
  | 'I64'
  | 'I32'
  | 'I16'
  | 'I8'
  | 'U8'
  | 'BOOL';

export const SAFETENSORS_DTYPE_SIZE: Record<SafetensorsDtype, number> = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  F8_E4M3: 1,
  F8_E5M2: 1,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U8: 1,
  BOOL: 1,
};

export interface SafetensorsTensor {
  name: string;
  dtype: SafetensorsDtype;
  shape: number[];
  /** Little-endian, row-major bytes: numel × dtype size of them. */
  data: Uint8Array;
}

export interface SafetensorsOptions {
  /** Spaces added after the JSON, on top of the padding to a multiple of 8 that the reference
   *  writer applies. Whitespace-padded headers are valid. */
  headerPadding?: number;
}

/** Frames a header (text or bytes) as a safetensors file: the 8-byte length, the header, the
 *  data. `declaredLength` replaces the true header length in the first 8 bytes. */
function frame(header: string | Uint8Array, data: Uint8Array = new Uint8Array(0), declaredLength?: bigint): Buffer {
  const h = typeof header === 'string' ? Buffer.from(header, 'utf8') : Buffer.from(header);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(declaredLength ?? BigInt(h.length));
  return Buffer.concat([len, h, data]);
}

/** The bytes of a valid safetensors file, tensors stored in the order given. */
export function safetensorsBytes(
  tensors: SafetensorsTensor[],
  metadata?: Record<string, string>,
  options: SafetensorsOptions = {},
): Buffer {
  const header: Record<string, unknown> = {};
  if (metadata) header.__metadata__ = metadata;
  let offset = 0;
  const names = new Set<string>();
  for (const t of tensors) {
    if (t.name === '__metadata__' || names.has(t.name)) throw new RangeError(`bad or duplicate tensor name '${t.name}'`);
    names.add(t.name);
    const numel = t.shape.reduce((a, b) => a * b, 1);
    if (numel * SAFETENSORS_DTYPE_SIZE[t.dtype] !== t.data.byteLength)
      throw new RangeError(`tensor '${t.name}': ${t.data.byteLength} bytes for shape [${t.shape.join(', ')}] of ${t.dtype}`);
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + t.data.byteLength] };
    offset += t.data.byteLength;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (Buffer.byteLength(json) % 8)) % 8);
  json += ' '.repeat(options.headerPadding ?? 0);
  return frame(json, Buffer.concat(tensors.map((t) => t.data)));
}

export function writeSafetensors(
  path: string,
  tensors: SafetensorsTensor[],
  metadata?: Record<string, string>,
  options: SafetensorsOptions = {},
): void {
  writeFileSync(path, safetensorsBytes(tensors, metadata, options));
}

// ---------------------------------------------------------------------------------------------
// Hostile files

/** Words each hostile case's ModelFormat message must contain (case-insensitive), keyed like
 *  the paths hostileSafetensors() returns. */
export const HOSTILE_SAFETENSORS_EXPECT: Record<string, string> = {
  empty_file: 'too short',
  short_file: 'too short',
  header_len_over_limit: 'over the limit',
  header_len_max_u64: 'over the limit',
  header_past_eof: 'past the end of the file',
  header_empty: 'header is empty',
  not_utf8: 'not valid UTF-8',
  utf8_overlong: 'not valid UTF-8',
  utf8_raw_surrogate: 'not valid UTF-8',
  embedded_nul: 'NUL byte',
  not_json: 'not valid JSON',
  truncated_json: 'not valid JSON',
  trailing_garbage: 'after the top-level object',
  not_an_object: 'header holds an array, not a JSON object',
  control_char_in_string: 'control character',
  bad_escape: 'bad escape',
  lone_high_surrogate: 'lone high surrogate',
  lone_low_surrogate: 'lone low surrogate',
  escaped_nul: 'escaped NUL',
  leading_zero: 'leading zero',
  deep_nesting: 'nested deeper',
  entry_is_number: "tensor 'w': its entry is a number, not an object",
  dtype_is_number: "tensor 'w': dtype is a number",
  shape_is_string: "tensor 'w': shape is a string",
  offsets_one_number: "tensor 'w': data_offsets must be [begin, end], not one number",
  offsets_three_numbers: "tensor 'w': data_offsets must be [begin, end], not more than two",
  shape_negative: "tensor 'w': shape[0] is -1, a negative number",
  shape_fraction: "tensor 'w': shape[0] is 1.5, not an integer",
  shape_exponent: "tensor 'w': shape[0] is 1e2, not an integer",
  shape_null: "tensor 'w': shape[0] is null, not a non-negative integer",
  offset_negative: "tensor 'w': data_offsets[0] is -4, a negative number",
  offset_fraction: "tensor 'w': data_offsets[1] is 4.0, not an integer",
  shape_over_2_53: "tensor 'w': shape[0] is larger than 2^53",
  shape_2_62_times_4: "tensor 'w': shape[0] is larger than 2^53",
  shape_product_overflow: "tensor 'w': shape [4503599627370496, 4503599627370496] has too many elements",
  bytes_overflow: "tensor 'w': shape [4294967296, 1073741824] of F64 is too many bytes",
  missing_dtype: "tensor 'w' has no 'dtype'",
  missing_shape: "tensor 'w' has no 'shape'",
  missing_offsets: "tensor 'w' has no 'data_offsets'",
  dtype_f4: "unsupported dtype 'F4'",
  dtype_c64: "unsupported dtype 'C64'",
  dtype_u64: "unsupported dtype 'U64'",
  dtype_unknown: "unsupported dtype 'X'",
  dtype_lowercase: "unsupported dtype 'f32'",
  rank_9: "tensor 'w' has more than 8 dimensions",
  first_not_at_zero: "tensor 'w': data_offsets [4, 8] leave a gap after byte 0",
  offsets_gap: "tensor 'b': data_offsets [8, 12] leave a gap after byte 4 where tensor 'a' ends",
  offsets_overlap: "tensor 'b': data_offsets [2, 6] overlap tensor 'a'",
  offsets_same_range: 'overlap tensor',
  end_before_begin: "tensor 'w': data_offsets [8, 4] end before they begin",
  trailing_bytes: 'trailing bytes',
  truncated_data: 'truncated',
  size_mismatch: "tensor 'w': shape [2, 2] of F32 is 16 bytes, but data_offsets [0, 12] span 12",
  duplicate_tensor: "tensor 'w' appears twice",
  duplicate_field: "tensor 'w' has the field 'shape' twice",
  duplicate_metadata_key: "'__metadata__' has the key 'k' twice",
  metadata_twice: "'__metadata__' twice",
  metadata_not_object: "'__metadata__' is an array, not an object of strings",
  metadata_value_not_string: "'__metadata__' entry 'k' is a number",
};

/** Writes malformed safetensors files into `dir` and returns their paths by case name. */
export function hostileSafetensors(dir: string): Record<string, string> {
  mkdirSync(dir, { recursive: true });
  const cases: Record<string, Buffer> = {};
  const f32x1 = new Uint8Array(4);
  // One F32 scalar-vector tensor 'w' with the given JSON for its entry.
  const one = (entry: string, data: Uint8Array = f32x1): Buffer => frame(`{"w":${entry}}`, data);
  const w = (shape: string, offsets: string, dtype = '"F32"'): string =>
    `{"dtype":${dtype},"shape":${shape},"data_offsets":${offsets}}`;

  // 1. Lengths.
  cases.empty_file = Buffer.alloc(0);
  cases.short_file = Buffer.from([1, 0, 0, 0, 0]);
  cases.header_len_over_limit = frame('{}', undefined, 100_000_001n);
  cases.header_len_max_u64 = frame('{}', undefined, 0xffff_ffff_ffff_ffffn);
  cases.header_past_eof = frame('{}      ', undefined, 1000n);
  cases.header_empty = frame('', new Uint8Array(0));

  // 2. Header text and JSON syntax.
  cases.not_utf8 = frame(Buffer.concat([Buffer.from('{"w'), Buffer.from([0xff]), Buffer.from('":1}')]));
  cases.utf8_overlong = frame(Buffer.concat([Buffer.from('{"'), Buffer.from([0xc0, 0xaf]), Buffer.from('":1}')]));
  cases.utf8_raw_surrogate = frame(Buffer.concat([Buffer.from('{"'), Buffer.from([0xed, 0xa0, 0x80]), Buffer.from('":1}')]));
  cases.embedded_nul = frame(`{"w":${w('[1]', '[0,4]')}}\0`, f32x1);
  cases.not_json = frame('this is not json');
  cases.truncated_json = frame('{"w":{"dtype":"F32","shape":[1],');
  cases.trailing_garbage = frame('{} {}');
  cases.not_an_object = frame('[]');
  cases.control_char_in_string = frame('{"a\nb":' + w('[1]', '[0,4]') + '}', f32x1);
  cases.bad_escape = frame('{"a\\xb":' + w('[1]', '[0,4]') + '}', f32x1);
  cases.lone_high_surrogate = frame('{"a\\ud800b":' + w('[1]', '[0,4]') + '}', f32x1);
  cases.lone_low_surrogate = frame('{"a\\udc00":' + w('[1]', '[0,4]') + '}', f32x1);
  cases.escaped_nul = frame('{"a\\u0000b":' + w('[1]', '[0,4]') + '}', f32x1);
  cases.leading_zero = one(w('[01]', '[0,4]'));
  cases.deep_nesting = one(`{"dtype":"F32","shape":[1],"data_offsets":[0,4],"x":${'['.repeat(100)}${']'.repeat(100)}}`);

  // 2. Schema.
  cases.entry_is_number = frame('{"w":1}');
  cases.dtype_is_number = one(w('[1]', '[0,4]', '5'));
  cases.shape_is_string = one(w('"x"', '[0,4]'));
  cases.offsets_one_number = one(w('[1]', '[0]'));
  cases.offsets_three_numbers = one(w('[1]', '[0,4,8]'));
  cases.shape_negative = one(w('[-1,-4]', '[0,4]'));
  cases.shape_fraction = one(w('[1.5]', '[0,4]'));
  cases.shape_exponent = one(w('[1e2]', '[0,4]'));
  cases.shape_null = one(w('[null]', '[0,4]'));
  cases.offset_negative = one(w('[1]', '[-4,0]'));
  cases.offset_fraction = one(w('[1]', '[0,4.0]'));
  cases.missing_dtype = one('{"shape":[1],"data_offsets":[0,4]}');
  cases.missing_shape = one('{"dtype":"F32","data_offsets":[0,4]}');
  cases.missing_offsets = one('{"dtype":"F32","shape":[1]}');
  cases.duplicate_field = one('{"dtype":"F32","shape":[1],"shape":[1],"data_offsets":[0,4]}');

  // 3. Dtypes and rank.
  cases.dtype_f4 = one(w('[2]', '[0,1]', '"F4"'), new Uint8Array(1));
  cases.dtype_c64 = one(w('[1]', '[0,8]', '"C64"'), new Uint8Array(8));
  cases.dtype_u64 = one(w('[1]', '[0,8]', '"U64"'), new Uint8Array(8));
  cases.dtype_unknown = one(w('[1]', '[0,4]', '"X"'));
  cases.dtype_lowercase = one(w('[1]', '[0,4]', '"f32"'));
  cases.rank_9 = one(w('[1,1,1,1,1,1,1,1,1]', '[0,4]'));

  // 4. Offsets.
  const two = (a: string, b: string, bytes: number): Buffer =>
    frame(`{"a":${w('[1]', a)},"b":${w('[1]', b)}}`, new Uint8Array(bytes));
  cases.first_not_at_zero = one(w('[1]', '[4,8]'), new Uint8Array(8));
  cases.offsets_gap = two('[0,4]', '[8,12]', 12);
  cases.offsets_overlap = two('[0,4]', '[2,6]', 6);
  cases.offsets_same_range = two('[0,4]', '[0,4]', 4);
  cases.end_before_begin = one(w('[0]', '[8,4]'), new Uint8Array(8));
  cases.trailing_bytes = one(w('[1]', '[0,4]'), new Uint8Array(5));
  cases.truncated_data = one(w('[2]', '[0,8]'), new Uint8Array(4));

  // 5. Sizes, with overflow.
  cases.size_mismatch = one(w('[2,2]', '[0,12]'), new Uint8Array(12));
  cases.shape_over_2_53 = one(w('[9007199254740993]', '[0,4]'));
  cases.shape_2_62_times_4 = one(w('[4611686018427387904,4]', '[0,0]'), new Uint8Array(0));
  cases.shape_product_overflow = one(w('[4503599627370496,4503599627370496]', '[0,0]', '"U8"'), new Uint8Array(0));
  cases.bytes_overflow = one(w('[4294967296,1073741824]', '[0,0]', '"F64"'), new Uint8Array(0));

  // 6. Duplicates.
  cases.duplicate_tensor = frame(`{"w":${w('[1]', '[0,4]')},"w":${w('[1]', '[4,8]')}}`, new Uint8Array(8));
  cases.duplicate_metadata_key = frame('{"__metadata__":{"k":"a","k":"b"}}');
  cases.metadata_twice = frame('{"__metadata__":{},"__metadata__":{}}');
  cases.metadata_not_object = frame('{"__metadata__":["a"]}');
  cases.metadata_value_not_string = frame('{"__metadata__":{"k":1}}');

  return writeCases(dir, '.safetensors', cases);
}
