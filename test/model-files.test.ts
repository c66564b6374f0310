// Model files of every format through inspectModel: valid ones are read alike, malformed
// ones are refused with a ModelFormatError naming what is wrong.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

import { FileAccessError, ModelFormatError, inspectModel, type ModelInspection } from '../lib/index.js';
import { taeEncoder } from './support/data.js';
import { GGML_TYPE, hostileGguf, leBytes, writeGguf } from './support/gguf.js';
import { HOSTILE_SAFETENSORS_EXPECT, hostileSafetensors, writeSafetensors } from './support/safetensors.js';
import { writeTorchCheckpoint } from './support/torch-zip.js';

const dir = mkdtempSync(join(tmpdir(), 'sdnode-files-'));

/** Half-precision bits of small integers (exact in f16). */
function f16Bits(values: number[]): Uint16Array {
  return Uint16Array.from(values, (v) => {
    if (v === 0) return 0;
    const e = Math.floor(Math.log2(Math.abs(v)));
    const m = Math.round((Math.abs(v) / 2 ** e - 1) * 1024);
    return (v < 0 ? 0x8000 : 0) | ((e + 15) << 10) | m;
  });
}

describe('inspectModel', () => {
  it('reads a PyTorch checkpoint index without loading it', async () => {
    const r = await inspectModel(taeEncoder);
    expect(r.format).toBe('torch');
    expect(r.tensorCount).toBe(79);
    expect(r.dtypes).toEqual({ F16: 79 });
    expect(r.tensors[0]).toEqual({ name: '0.weight', dtype: 'F16', shape: [64, 3, 3, 3], bytes: 64 * 27 * 2 });
    expect(r.parameterCount).toBe(r.tensors.reduce((n, t) => n + t.shape.reduce((a, b) => a * b, 1), 0));
  });

  it('the same tensors written as safetensors, GGUF and a torch zip read the same', async () => {
    const a = Float32Array.from({ length: 24 }, (_, i) => i - 7);
    const b = f16Bits([1, 2, 3, -4, 0, 0.5]);
    const st = join(dir, 'tiny.safetensors');
    writeSafetensors(st, [
      { name: 'conv.weight', dtype: 'F32', shape: [2, 3, 2, 2], data: leBytes(a) },
      { name: 'norm.bias', dtype: 'F16', shape: [6], data: leBytes(b) },
    ], { format: 'pt', note: 'made by a test' });
    const gg = join(dir, 'tiny.gguf');
    writeGguf(gg, {
      kv: [{ key: 'general.architecture', type: 'str', value: 'sdnode-test' }],
      tensors: [
        { name: 'conv.weight', type: GGML_TYPE.F32, ne: [2, 2, 3, 2], data: leBytes(a) },
        { name: 'norm.bias', type: GGML_TYPE.F16, ne: [6], data: leBytes(b) },
      ],
    });
    const pt = join(dir, 'tiny.pth');
    writeTorchCheckpoint(pt, [
      { name: 'conv.weight', shape: [2, 3, 2, 2], data: a },
      { name: 'norm.bias', shape: [6], data: b },
    ]);
    const [s, g, t] = (await Promise.all([st, gg, pt].map((p) => inspectModel(p, { checksums: true })))) as [
      ModelInspection,
      ModelInspection,
      ModelInspection,
    ];
    expect([s.format, g.format, t.format]).toEqual(['safetensors', 'gguf', 'torch']);
    for (const r of [s, g, t]) {
      expect(r.tensors.map(({ name, dtype, shape }) => ({ name, dtype, shape }))).toEqual([
        { name: 'conv.weight', dtype: 'F32', shape: [2, 3, 2, 2] },
        { name: 'norm.bias', dtype: 'F16', shape: [6] },
      ]);
      expect(r.parameterCount).toBe(30);
    }
    // Same values in every format, bit for bit.
    expect(g.tensors.map((x) => x.checksum)).toEqual(s.tensors.map((x) => x.checksum));
    expect(t.tensors.map((x) => x.checksum)).toEqual(s.tensors.map((x) => x.checksum));
    expect(s.tensors[0]!.checksum).toMatch(/^[0-9a-f]{16}$/);
    expect(s.metadata).toEqual({ format: 'pt', note: 'made by a test' });
    expect(g.metadata['general.architecture']).toBe('sdnode-test');
  });

  it('reports quantized GGUF tensors by their ggml type', async () => {
    // One Q8_0 block: an f16 scale then 32 int8 values.
    const block = new Uint8Array(34);
    block.set(leBytes(f16Bits([0.5])), 0);
    for (let i = 0; i < 32; i++) block[2 + i] = (i * 5) & 0xff;
    const path = join(dir, 'q8.gguf');
    writeGguf(path, { tensors: [{ name: 'w', type: GGML_TYPE.Q8_0, ne: [32, 1], data: block }] });
    const r = await inspectModel(path, { checksums: true });
    expect(r.tensors).toMatchObject([{ name: 'w', dtype: 'Q8_0', shape: [1, 32], bytes: 34 }]);
    // The dequantized values are 0.5 × the int8 values: the same as an f32 file holding them.
    const f32 = join(dir, 'q8-as-f32.safetensors');
    const values = Float32Array.from({ length: 32 }, (_, i) => 0.5 * (((i * 5) << 24) >> 24));
    writeSafetensors(f32, [{ name: 'w', dtype: 'F32', shape: [1, 32], data: leBytes(values) }]);
    const ref = await inspectModel(f32, { checksums: true });
    expect(r.tensors[0]!.checksum).toBe(ref.tensors[0]!.checksum);
  });

  it('a file of no known format is a ModelFormatError; paths are checked', async () => {
    const text = join(dir, 'notes.txt');
    writeFileSync(text, 'these are not the weights you are looking for\n'.repeat(10));
    await expect(inspectModel(text)).rejects.toThrow(/not a model file/);
    await expect(inspectModel(join(dir, 'missing.safetensors'))).rejects.toBeInstanceOf(FileAccessError);
    await expect(inspectModel(dir)).rejects.toBeInstanceOf(FileAccessError);
    expect(() => inspectModel(42 as never)).toThrow(TypeError);
    expect(() => inspectModel('x', { singal: 1 } as never)).toThrow(/did you mean 'signal'/);
  });
});

describe('malformed safetensors', () => {
  const files = hostileSafetensors(join(dir, 'safetensors'));
  it.each(Object.entries(files))('%s', async (name, path) => {
    const err = await inspectModel(path).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ModelFormatError);
    const expected = HOSTILE_SAFETENSORS_EXPECT[name];
    if (expected) expect((err as Error).message.toLowerCase()).toContain(expected.toLowerCase());
  });
});

describe('malformed GGUF', () => {
  const files = hostileGguf(join(dir, 'gguf'));
  it.each(Object.entries(files))('%s', async (_, path) => {
    const err = await inspectModel(path).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ModelFormatError);
    expect((err as Error).message).toMatch(/^'.*': .{8,}/);
  });
});
