// Weights whose stored type their role cannot take (HOSTILE-INPUTS 31, issue 11 item 1): an
// integer linear weight, conv kernel, token embedding or norm weight in safetensors, GGUF or
// .ckpt loaded, then killed the process on the first graph (SIGSEGV in mul_mat, the scheduler's
// GGML_ASSERT(*cur_backend_id != -1) for a conv, ops.cpp's fatal error in get_rows). Each case
// runs load + generate in a child process, so a crash fails one test, not the runner: it must
// be a ModelFormatError at load naming the tensor. Then the generate() fuzzer's smoke run.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';

import { convertModel, inspectModel, ModelFormatError } from '../lib/index.js';
// @ts-expect-error: plain JavaScript module with JSDoc types
import { PRESETS, generateModel } from '../scripts/generate-model.mjs';
// @ts-expect-error: plain JavaScript module
import { readSafetensors, toCkpt, toGguf, writeModel } from '../scripts/fuzz/formats.mjs';

interface Tensor {
  name: string;
  dtype: string | number;
  shape: number[];
  data: Buffer;
}
interface ModelData {
  format: 'safetensors' | 'gguf' | 'ckpt';
  metadata: Record<string, string>;
  tensors: Tensor[];
}

const root = resolve(import.meta.dirname, '..');
const entry = resolve(root, 'dist', 'index.js');
const dir = mkdtempSync(join(tmpdir(), 'sdnode-hostile-weights-'));
let base: ModelData;

beforeAll(async () => {
  // The tiny model with a 64-wide text encoder: the fuzzer's .ckpt writer carries no metadata to
  // say the encoder's head count, and width / 64 stands in for it, so every format's base model generates.
  const tiny = PRESETS.tiny as { clip: object; unet: object };
  const config = { ...tiny, clip: { ...tiny.clip, width: 64, heads: 1 }, unet: { ...tiny.unet, contextDim: 64 } };
  const path = join(dir, 'tiny.safetensors');
  await generateModel({ out: path, config, dtype: 'f16', seed: 5 });
  base = readSafetensors(readFileSync(path)) as ModelData;
}, 60_000);

/** One tensor per role kind, as the tiny model names it. */
const ROLES = {
  linear: 'model.diffusion_model.time_embed.0.weight',
  conv: 'model.diffusion_model.input_blocks.0.0.weight',
  embedding: 'cond_stage_model.transformer.text_model.embeddings.token_embedding.weight',
  norm: 'model.diffusion_model.out.0.weight',
} as const;

/** Per format, an integer type and its element size: safetensors I16, GGUF I32, .ckpt CharStorage (I8). */
const INTEGER = {
  safetensors: { dtype: 'I16', size: 2, shown: 'I16' },
  gguf: { dtype: 26, size: 4, shown: 'I32' },
  ckpt: { dtype: 'CharStorage', size: 1, shown: 'I8' },
} as const;

type Format = keyof typeof INTEGER;
const EXT: Record<Format, string> = { safetensors: '.safetensors', gguf: '.gguf', ckpt: '.ckpt' };

/** `base` in `format` with `name` retyped to `dtype` (its data resized to `size` bytes per element). */
function writeWith(format: Format, name: string, dtype: string | number, size: number): string {
  const converted: ModelData = format === 'safetensors' ? base : format === 'gguf' ? toGguf(base) : toCkpt(base);
  const model = {
    ...converted,
    tensors: converted.tensors.map((t) => {
      if (t.name !== name) return t;
      const n = t.shape.reduce((a, b) => a * b, 1);
      return { ...t, dtype, data: Buffer.alloc(n * size, 1) };
    }),
  };
  const path = join(dir, `${format}-${name.replace(/\W+/g, '_')}-${dtype}${EXT[format]}`);
  writeFileSync(path, writeModel(model));
  return path;
}

/** loadModel + one tiny generate() in a child process: how it ended. */
function loadAndGenerate(path: string) {
  const source = `
    import { loadModel } from ${JSON.stringify(entry)};
    const out = (o) => console.log(JSON.stringify(o));
    let model;
    try {
      model = await loadModel(${JSON.stringify(path)}, { device: 'cpu', threads: 1 });
    } catch (e) {
      out({ stage: 'load', name: e.name, code: e.code, message: e.message });
      process.exit(0);
    }
    try {
      await model.generate({ prompt: 'a cube', width: 32, height: 32, steps: 1 });
      out({ stage: 'generated' });
    } catch (e) {
      out({ stage: 'generate', name: e.name, code: e.code, message: e.message });
    }
    await model.dispose();`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', source], { cwd: root, encoding: 'utf8', timeout: 120_000 });
  const last = r.stdout.trim().split('\n').pop() ?? '';
  return { status: r.status, signal: r.signal, stderr: r.stderr.slice(-500), result: last ? (JSON.parse(last) as Record<string, string>) : undefined };
}

describe('integer-typed weights: refused at load, naming the tensor', () => {
  it('the unmutated tiny model loads and generates in each format', () => {
    for (const format of ['safetensors', 'gguf', 'ckpt'] as const) {
      const path = join(dir, `base${EXT[format]}`);
      writeFileSync(path, writeModel(format === 'safetensors' ? base : format === 'gguf' ? toGguf(base) : toCkpt(base)));
      const r = loadAndGenerate(path);
      expect(r.signal, format).toBeNull();
      expect(r.result, format).toEqual({ stage: 'generated' });
    }
  }, 120_000);

  for (const format of ['safetensors', 'gguf', 'ckpt'] as const) {
    for (const [role, name] of Object.entries(ROLES)) {
      it(`${format}: ${INTEGER[format].shown} ${role} weight`, () => {
        const path = writeWith(format, name, INTEGER[format].dtype, INTEGER[format].size);
        const r = loadAndGenerate(path);
        expect(r.signal, r.stderr).toBeNull();
        expect(r.status, r.stderr).toBe(0);
        expect(r.result).toMatchObject({ stage: 'load', name: 'ModelFormatError', code: 'ERR_MODEL_FORMAT' });
        expect(r.result?.message).toContain(`'${name}'`);
        expect(r.result?.message).toContain(INTEGER[format].shown);
      }, 60_000);
    }
  }

  it('GGUF block types: Q8_1 (no kernel) refused as a linear weight; a Q8_0 position embedding decoded at load', () => {
    // Q8_1: 36 bytes per 32 values, a type ggml only makes as mul_mat's intermediate (no vec_dot).
    const linear = loadAndGenerate(writeWith('gguf', ROLES.linear, 9, 36 / 32));
    expect(linear.signal, linear.stderr).toBeNull();
    expect(linear.result).toMatchObject({ stage: 'load', code: 'ERR_MODEL_FORMAT' });
    expect(linear.result?.message).toContain(`'${ROLES.linear}'`);
    expect(linear.result?.message).toContain('Q8_1');
    // The position table is cast to f32 and added, which ggml does for float types only: a
    // quantized one becomes f16 at load (before, generate() refused it).
    const position = 'cond_stage_model.transformer.text_model.embeddings.position_embedding.weight';
    const r = loadAndGenerate(writeWith('gguf', position, 8, 34 / 32));
    expect(r.signal, r.stderr).toBeNull();
    expect(r.result).toEqual({ stage: 'generated' });
  }, 60_000);

  it('convertModel refuses the same tensors before writing; inspectModel reports them and resolves', async () => {
    const path = writeWith('safetensors', ROLES.conv, 'I16', 2);
    const out = join(dir, 'converted.gguf');
    const refused = await convertModel(path, out, { weightType: 'q8_0' }).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(ModelFormatError);
    expect((refused as Error).message).toContain(`'${ROLES.conv}'`);
    expect(existsSync(out)).toBe(false);

    const report = await inspectModel(path);
    const flagged = report.tensors.filter((t) => t.refused);
    expect(flagged.map((t) => t.name)).toEqual([ROLES.conv]);
    expect(flagged[0]!.refused).toMatch(/conv kernel stored as I16/);
    // position_ids is an index buffer: I64 is its type.
    expect(report.tensors.find((t) => t.name.endsWith('position_ids'))).toMatchObject({ dtype: 'I64' });
    expect(report.tensors.find((t) => t.name.endsWith('position_ids'))?.refused).toBeUndefined();
  }, 60_000);
});

describe('generate() fuzz smoke (scripts/fuzz/generate.mjs)', () => {
  it('102 mutants across the three formats: no crash, no stall', () => {
    const findings = join(dir, 'findings');
    const r = spawnSync(
      process.execPath,
      [join(root, 'scripts', 'fuzz', 'generate.mjs'), '--mutants', '34', '--seed', '11', '--out', findings, '--json'],
      { cwd: root, encoding: 'utf8', timeout: 170_000 },
    );
    expect(r.status, r.stderr.slice(-2000)).toBe(0);
    const summary = JSON.parse(r.stdout.trim().split('\n').pop()!) as Record<string, { mutants: number; generated: number; crash: number; stall: number }>;
    expect(Object.keys(summary).sort()).toEqual(['ckpt', 'gguf', 'safetensors']);
    for (const [format, s] of Object.entries(summary)) {
      expect(s.mutants, format).toBe(34);
      expect(s.crash, format).toBe(0);
      expect(s.stall, format).toBe(0);
      // The mutants reach the networks, not only the parsers.
      expect(s.generated, format).toBeGreaterThan(0);
    }
  }, 180_000);
});
