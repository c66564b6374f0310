// convertModel: a tiny generated SD model to GGUF in f16, q8_0 and q4_0, read back through
// inspectModel; the per-tensor rules, bit-exactness, idempotent re-quantization, cancellation
// leaving no file, refused inputs, and refused destinations (devices, FIFOs, directories,
// sockets, symlinks out of their folder) left as they were.
import { execFileSync } from 'node:child_process';
import {
  closeSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  readSync,
  readdirSync,
  readlinkSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';

import {
  AbortError,
  WEIGHT_TYPES,
  FileAccessError,
  ModelFormatError,
  OutputPathError,
  convertModel,
  inspectModel,
  type ConvertResult,
  type WeightType,
  type ModelInspection,
} from '../lib/index.js';
import { native } from '../lib/native.js';
// @ts-expect-error: a JavaScript module without types
import { PRESETS, generateModel } from '../scripts/generate-model.mjs';

const dir = mkdtempSync(join(tmpdir(), 'sdnode-convert-'));
const srcF32 = join(dir, 'tiny-f32.safetensors');
const srcF16 = join(dir, 'tiny-f16.safetensors');
const seed = 7;

let source: ModelInspection;
let sourceF16: ModelInspection;

beforeAll(async () => {
  await generateModel({ out: srcF32, preset: 'tiny', dtype: 'f32', seed });
  await generateModel({ out: srcF16, preset: 'tiny', dtype: 'f16', seed });
  [source, sourceF16] = await Promise.all([
    inspectModel(srcF32, { checksums: true }),
    inspectModel(srcF16, { checksums: true }),
  ]);
}, 60_000);

const byName = (r: ModelInspection) => new Map(r.tensors.map((t) => [t.name, t]));
const numel = (shape: number[]) => shape.reduce((a, b) => a * b, 1);

/** What the rules say a tensor of the tiny model becomes under a 32-wide quantized type. */
function expectedQuantized(name: string, shape: number[], dtype: string, q: string): string {
  if (dtype === 'I64') return 'I64';
  // A UNet conv kernel [OC, IC, KH, KW] quantizes as the [OC, IC·KH·KW] matrix it multiplies as.
  const kernel = shape.length === 4 && name.startsWith('model.diffusion_model.');
  const row = kernel ? numel(shape) / shape[0]! : shape[1]!;
  const quantize =
    (shape.length === 2 || kernel) &&
    name.endsWith('.weight') &&
    !name.includes('embedding') &&
    !name.includes('time_embed.') &&
    numel(shape) >= 4096 &&
    row % 32 === 0;
  if (quantize) return q;
  return shape.length <= 1 ? 'F32' : 'F16';
}

describe('convertModel', () => {
  let f16: ConvertResult;
  let f16Inspect: ModelInspection;

  it('f16: every float tensor F16, bit-exact with the same model generated in f16', async () => {
    const dst = join(dir, 'tiny-f16.gguf');
    const steps: number[] = [];
    f16 = await convertModel(srcF32, dst, { onProgress: (p) => steps.push(p.step) });
    expect(f16.path).toBe(dst);
    expect(steps).toEqual(Array.from({ length: source.tensorCount }, (_, i) => i + 1));
    f16Inspect = await inspectModel(dst, { checksums: true });
    expect(f16Inspect.format).toBe('gguf');
    // Same names and shapes, in the source's order.
    expect(f16Inspect.tensors.map(({ name, shape }) => ({ name, shape }))).toEqual(
      source.tensors.map(({ name, shape }) => ({ name, shape })),
    );
    expect(f16Inspect.dtypes).toEqual({ F16: source.tensorCount - 1, I64: 1 });
    expect(f16.tensors.find((t) => t.name.endsWith('position_ids'))).toMatchObject({ from: 'I64', to: 'I64' });
    // The generator rounds f32 to f16 to nearest even, as ggml does: identical values.
    expect(f16Inspect.tensors.map((t) => t.checksum)).toEqual(sourceF16.tensors.map((t) => t.checksum));
    // Metadata: ours, the source's sdnode.* keys as they are (generate reads sdnode.attention_heads), the rest under sdnode.meta.
    const m = f16Inspect.metadata;
    expect(m['general.architecture']).toBe('sdnode');
    expect(m['sdnode.family']).toBe('sd1');
    expect(m['sdnode.source']).toBe('tiny-f32.safetensors');
    expect(m['sdnode.version']).toMatch(/^\d+\.\d+\.\d+/);
    expect(m['general.file_type']).toBe('1');
    expect(m['sdnode.seed']).toBe(String(seed));
    expect(m['sdnode.preset']).toBe('tiny');
    expect(m['sdnode.attention_heads']).toBe(source.metadata['sdnode.attention_heads']);
    expect(m['sdnode.meta.format']).toBe('pt');
    expect(Object.keys(m).some((k) => k.startsWith('sdnode.meta.sdnode.'))).toBe(false);
    expect(f16Inspect.detection.family).toBe(source.detection.family);
  });

  for (const [weightType, q] of [
    ['q8_0', 'Q8_0'],
    ['q4_0', 'Q4_0'],
  ] as const) {
    it(`${weightType}: big 2-D linear weights ${q}, the rest by rule`, async () => {
      const dst = join(dir, `tiny-${weightType}.gguf`);
      const r = await convertModel(srcF32, dst, { weightType });
      const out = await inspectModel(dst, { checksums: true });
      const src = byName(source);
      expect(out.tensors.map((t) => t.name)).toEqual(source.tensors.map((t) => t.name));
      for (const t of out.tensors) {
        const s = src.get(t.name)!;
        expect(t.shape).toEqual(s.shape);
        expect({ name: t.name, dtype: t.dtype }).toEqual({ name: t.name, dtype: expectedQuantized(t.name, s.shape, s.dtype, q) });
      }
      expect(r.tensors.map((t) => t.to)).toEqual(out.tensors.map((t) => t.dtype));
      expect(r.tensors.every((t) => t.from === 'F32' || t.from === 'I64')).toBe(true);
      // Spot checks of the rules on well-known tensors.
      const to = new Map(r.tensors.map((t) => [t.name, t.to]));
      expect(to.get('model.diffusion_model.middle_block.1.transformer_blocks.0.ff.net.0.proj.weight')).toBe(q);
      expect(to.get('model.diffusion_model.middle_block.1.transformer_blocks.0.attn1.to_q.weight')).toBe(q);
      expect(to.get('model.diffusion_model.middle_block.1.transformer_blocks.0.attn1.to_q.weight')).toBe(q);
      expect(to.get('model.diffusion_model.middle_block.1.transformer_blocks.0.norm1.weight')).toBe('F32');
      expect(to.get('model.diffusion_model.input_blocks.0.0.weight')).toBe('F16'); // conv kernel of 4·3·3 = 36-wide rows
      expect(to.get('model.diffusion_model.input_blocks.1.0.in_layers.2.weight')).toBe(q); // conv kernel, 32·3·3 wide
      expect(to.get('first_stage_model.decoder.mid.block_1.conv1.weight')).toBe('F16'); // the VAE's kernels stay float
      // Unfolded kernels say their shape in the file's metadata, and nothing else does.
      const unfolded = Object.keys(out.metadata).filter((k) => k.startsWith('sdnode.unfolded.'));
      expect(unfolded.length).toBe(out.tensors.filter((t) => t.shape.length === 4 && t.dtype === q).length);
      expect(out.metadata['sdnode.unfolded.model.diffusion_model.input_blocks.1.0.in_layers.2.weight']).toBe(
        src.get('model.diffusion_model.input_blocks.1.0.in_layers.2.weight')!.shape.join(','),
      );
      expect(to.get('model.diffusion_model.time_embed.2.weight')).toBe('F16');
      expect(to.get('cond_stage_model.transformer.text_model.embeddings.token_embedding.weight')).toBe('F16');
      expect(to.get('cond_stage_model.transformer.text_model.encoder.layers.0.self_attn.q_proj.weight')).toBe('F16'); // 32×32: small
      expect(out.dtypes[q]).toBeGreaterThan(20);
      expect(out.fileSize).toBeLessThan(f16Inspect.fileSize);
      expect(out.metadata['general.file_type']).toBe(weightType === 'q8_0' ? '7' : '2');
      expect(out.metadata['general.quantization_version']).toBe('2');
    });
  }

  it('sdnode.family from the text encoders\' places, by the name map\'s own table: SD2.x, SDXL, the refiner; kept on re-conversion', async () => {
    for (const [preset, family] of [['tiny-sd2', 'sd2'], ['tiny-sdxl', 'sdxl'], ['tiny-sdxl-refiner', 'sdxl-refiner']] as const) {
      const src = join(dir, `${preset}-family.safetensors`), dst = join(dir, `${preset}-family.gguf`), again = join(dir, `${preset}-family-2.gguf`);
      await generateModel({ out: src, preset, dtype: 'f16', seed: 2 });
      await convertModel(src, dst);
      expect((await inspectModel(dst)).metadata['sdnode.family'], preset).toBe(family);
      // The GGUF holds internal names (SD2's OpenCLIP looks like CLIP-L there): its own metadata decides.
      await convertModel(dst, again);
      expect((await inspectModel(again)).metadata['sdnode.family'], `${preset} again`).toBe(family);
    }
  });

  it('every weight type writes a file that reads back with the same names and shapes', async () => {
    const ff2 = 'model.diffusion_model.middle_block.1.transformer_blocks.0.ff.net.2.weight'; // [64, 256]
    const attn = 'model.diffusion_model.middle_block.1.transformer_blocks.0.attn1.to_q.weight'; // [64, 64]
    const expected: Record<WeightType, [string, string]> = {
      f32: ['F32', 'F32'],
      f16: ['F16', 'F16'],
      q8_0: ['Q8_0', 'Q8_0'],
      q5_0: ['Q5_0', 'Q5_0'],
      q5_1: ['Q5_1', 'Q5_1'],
      q4_0: ['Q4_0', 'Q4_0'],
      q4_1: ['Q4_1', 'Q4_1'],
      // K-quants need rows of 256; narrower rows fall back to a 32-wide type.
      q2_k: ['Q2_K', 'Q4_0'],
      q3_k: ['Q3_K', 'Q4_0'],
      q4_k: ['Q4_K', 'Q5_0'],
      q5_k: ['Q5_K', 'Q5_1'],
      q6_k: ['Q6_K', 'Q8_0'],
    };
    expect([...WEIGHT_TYPES].sort()).toEqual(Object.keys(expected).sort());
    for (const weightType of WEIGHT_TYPES) {
      const dst = join(dir, `all-${weightType}.gguf`);
      const r = await convertModel(srcF32, dst, { weightType });
      const to = new Map(r.tensors.map((t) => [t.name, t.to]));
      expect([weightType, to.get(ff2), to.get(attn)]).toEqual([weightType, ...expected[weightType]]);
      const out = await inspectModel(dst);
      expect(out.tensors.map(({ name, shape, dtype }) => ({ name, shape, dtype }))).toEqual(
        source.tensors.map(({ name, shape }) => ({ name, shape, dtype: to.get(name) })),
      );
      if (weightType === 'f32') {
        const full = await inspectModel(dst, { checksums: true });
        expect(full.tensors.map((t) => t.checksum)).toEqual(source.tensors.map((t) => t.checksum));
      }
    }
  }, 60_000);

  it('converting the q8_0 GGUF to q8_0 again gives identical tensors', async () => {
    const first = join(dir, 'tiny-q8_0.gguf');
    const again = join(dir, 'tiny-q8_0-again.gguf');
    if (!existsSync(first)) await convertModel(srcF32, first, { weightType: 'q8_0' });
    const r = await convertModel(first, again, { weightType: 'q8_0' });
    expect(r.tensors.every((t) => t.from === t.to)).toBe(true);
    const [a, b] = await Promise.all([inspectModel(first, { checksums: true }), inspectModel(again, { checksums: true })]);
    expect(b.tensors).toEqual(a.tensors);
    // Our keys are written fresh, the source's own metadata carried once, not nested.
    expect(b.metadata['sdnode.source']).toBe('tiny-q8_0.gguf');
    expect(b.metadata['sdnode.family']).toBe('sd1');
    expect(b.metadata['sdnode.seed']).toBe(String(seed));
    expect(b.metadata['sdnode.meta.format']).toBe('pt');
    expect(Object.keys(b.metadata).some((k) => k.startsWith('sdnode.meta.sdnode.') || k.startsWith('sdnode.meta.sdnode.meta.'))).toBe(false);
  });

  it('a q4_0 GGUF converts back to f16 with the same names and shapes', async () => {
    const q4 = join(dir, 'tiny-q4_0.gguf');
    if (!existsSync(q4)) await convertModel(srcF32, q4, { weightType: 'q4_0' });
    const dst = join(dir, 'tiny-q4_0-to-f16.gguf');
    const r = await convertModel(q4, dst);
    expect(r.tensors.filter((t) => t.from === 'Q4_0').every((t) => t.to === 'F16')).toBe(true);
    const out = await inspectModel(dst);
    expect(out.tensors.map(({ name, shape }) => ({ name, shape }))).toEqual(source.tensors.map(({ name, shape }) => ({ name, shape })));
  });

  it('aborted after the first progress event: AbortError, and no file left behind', async () => {
    // A larger model (~120 MB in f32, ~800 tensors) than the tiny one, so the conversion is
    // still far from done when the abort from the first progress event reaches the worker,
    // even on a loaded machine.
    const sub = mkdtempSync(join(dir, 'abort-'));
    const src = join(dir, 'mid-f32.safetensors');
    const tiny = PRESETS.tiny;
    const config = {
      ...tiny,
      unet: { ...tiny.unet, modelChannels: 64, channelMult: [1, 2, 4], numResBlocks: 2, attentionLevels: [1, 2] },
      vae: { ...tiny.vae, ch: 64 },
    };
    await generateModel({ out: src, config, dtype: 'f32', seed });
    try {
      const tensorCount = (await inspectModel(src)).tensorCount;
      const dst = join(sub, 'out.gguf');
      const controller = new AbortController();
      let events = 0;
      const err = await convertModel(src, dst, {
        weightType: 'q4_0',
        signal: controller.signal,
        onProgress: () => {
          events++;
          controller.abort();
        },
      }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(AbortError);
      // Events already on their way when abort() ran still arrive (never after the promise
      // settles); the worker stops at the next tensor boundary.
      expect(events).toBeGreaterThanOrEqual(1);
      expect(events).toBeLessThan(tensorCount);
      expect(readdirSync(sub)).toEqual([]);
    } finally {
      rmSync(src, { force: true });
    }
  }, 60_000);

  it('an already aborted signal rejects without writing', async () => {
    const sub = mkdtempSync(join(dir, 'abort0-'));
    const err = await convertModel(srcF32, join(sub, 'out.gguf'), { signal: AbortSignal.abort() }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AbortError);
    expect(readdirSync(sub)).toEqual([]);
  });

  it('bad options throw synchronously', () => {
    const dst = join(dir, 'never.gguf');
    expect(() => convertModel(42 as never, dst)).toThrow(TypeError);
    expect(() => convertModel(srcF32, '')).toThrow(RangeError);
    expect(() => convertModel(srcF32, srcF32)).toThrow(RangeError);
    expect(() => convertModel(srcF32, dst, { weightType: 'q9_0' as never })).toThrow(RangeError);
    expect(() => convertModel(srcF32, dst, { weightType: 8 as never })).toThrow(TypeError);
    expect(() => convertModel(srcF32, dst, { weighttype: 'q8_0' } as never)).toThrow(/did you mean 'weightType'/);
    expect(() => convertModel(srcF32, dst, { signal: 'x' as never })).toThrow(TypeError);
    expect(() => convertModel(srcF32, dst, { onProgress: 1 as never })).toThrow(TypeError);
    expect(() => convertModel(srcF32, dst, null as never)).toThrow(TypeError);
    expect(existsSync(dst)).toBe(false);
  });

  it('a malformed source is a ModelFormatError, a missing one a FileAccessError; no output either way', async () => {
    const sub = mkdtempSync(join(dir, 'bad-'));
    const bad = join(sub, 'bad.safetensors');
    const header = Buffer.from('{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,99]}}');
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(header.length));
    writeFileSync(bad, Buffer.concat([len, header, Buffer.alloc(16)]));
    await expect(convertModel(bad, join(sub, 'a.gguf'))).rejects.toBeInstanceOf(ModelFormatError);
    await expect(convertModel(join(sub, 'missing.safetensors'), join(sub, 'b.gguf'))).rejects.toBeInstanceOf(FileAccessError);
    expect(readdirSync(sub)).toEqual(['bad.safetensors']);
  });

  it('an unwritable destination is a FileAccessError', async () => {
    await expect(convertModel(srcF32, join(dir, 'no-such-dir', 'out.gguf'))).rejects.toBeInstanceOf(FileAccessError);
  });
});

describe('convertModel: destinations (the library\'s output-path policy)', () => {
  /** A private copy of /dev/null as root (a failing policy must not replace the real one), else /dev/null. */
  function nullDevice(where: string): string {
    if (process.getuid?.() !== 0) return '/dev/null';
    const path = join(where, 'null.gguf');
    execFileSync('mknod', [path, 'c', '1', '3']);
    return path;
  }
  function kind(path: string): string {
    const s = lstatSync(path);
    return s.isSymbolicLink() ? `link→${readlinkSync(path)}` : s.isCharacterDevice() ? `char ${s.rdev}` : s.isFIFO() ? 'fifo' : s.isSocket() ? 'socket' : s.isDirectory() ? 'dir' : `file ${s.size}`;
  }

  it('a device, a FIFO, a directory or a socket is refused before the source is opened, and left as it was', async () => {
    const sub = mkdtempSync(join(dir, 'dst-'));
    const fifo = join(sub, 'fifo.gguf');
    execFileSync('mkfifo', [fifo]);
    const folder = join(sub, 'folder.gguf');
    mkdirSync(folder);
    const socket = join(sub, 'sock.gguf');
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(socket, resolve));
    try {
      for (const dst of [nullDevice(sub), fifo, folder, socket]) {
        const before = kind(dst);
        const listing = readdirSync(sub).sort();
        const err = await convertModel(srcF32, dst).catch((e: unknown) => e);
        expect(err, dst).toBeInstanceOf(OutputPathError);
        expect(err).toMatchObject({ code: 'ERR_OUTPUT_PATH' });
        expect(kind(dst)).toBe(before);
        expect(readdirSync(sub).sort()).toEqual(listing);
        // Before any work: a missing source is not even looked at.
        await expect(convertModel(join(sub, 'missing.safetensors'), dst)).rejects.toBeInstanceOf(OutputPathError);
      }
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it('the engine refuses a non-regular destination too, when handed one directly', async () => {
    const sub = mkdtempSync(join(dir, 'dst-native-'));
    const fifo = join(sub, 'fifo.gguf');
    execFileSync('mkfifo', [fifo]);
    const job = native().convertModel(srcF32, fifo, 'f16', '0', undefined);
    await expect(job.promise).rejects.toMatchObject({ code: 'ERR_OUTPUT_PATH' });
    expect(lstatSync(fifo).isFIFO()).toBe(true);
    expect(readdirSync(sub)).toEqual(['fifo.gguf']);
  });

  it('a symlink out of its folder is refused unless followSymlinks; one inside its folder writes its target', async () => {
    const inside = mkdtempSync(join(dir, 'in-'));
    const outside = mkdtempSync(join(dir, 'out-'));
    const precious = join(outside, 'precious.gguf');
    writeFileSync(precious, 'keep me');
    symlinkSync(precious, join(inside, 'out.gguf'));
    const err = await convertModel(srcF32, join(inside, 'out.gguf')).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OutputPathError);
    expect(readFileSync(precious, 'utf8')).toBe('keep me');
    expect(readdirSync(inside)).toEqual(['out.gguf']);
    expect(readdirSync(outside)).toEqual(['precious.gguf']);

    const result = await convertModel(srcF32, join(inside, 'out.gguf'), { followSymlinks: true });
    expect(result.path).toBe(join(inside, 'out.gguf'));
    expect(readFileSync(precious).subarray(0, 4).toString()).toBe('GGUF');
    expect(lstatSync(join(inside, 'out.gguf')).isSymbolicLink()).toBe(true);
    expect(readdirSync(outside)).toEqual(['precious.gguf']);

    writeFileSync(join(inside, 'v2.gguf'), 'old');
    symlinkSync('v2.gguf', join(inside, 'latest.gguf'));
    await convertModel(srcF32, join(inside, 'latest.gguf'));
    expect(readFileSync(join(inside, 'v2.gguf')).subarray(0, 4).toString()).toBe('GGUF');
    expect(readlinkSync(join(inside, 'latest.gguf'))).toBe('v2.gguf');
    expect(readdirSync(inside).sort()).toEqual(['latest.gguf', 'out.gguf', 'v2.gguf']);
    expect(() => convertModel(srcF32, join(inside, 'x.gguf'), { followSymlinks: 1 as never })).toThrow(TypeError);
  });

  it('replacing a regular file: a reader holding the old one keeps it whole; no partial file is left', async () => {
    const sub = mkdtempSync(join(dir, 'replace-'));
    const dst = join(sub, 'model.gguf');
    const old = Buffer.alloc(50_000, 9);
    writeFileSync(dst, old);
    const fd = openSync(dst, 'r');
    try {
      await convertModel(srcF32, dst);
      const seen = Buffer.alloc(old.length);
      readSync(fd, seen, 0, old.length, 0);
      expect(seen.equals(old)).toBe(true);
    } finally {
      closeSync(fd);
    }
    expect(readFileSync(dst).subarray(0, 4).toString()).toBe('GGUF');
    expect(readdirSync(sub)).toEqual(['model.gguf']);
  });
});
