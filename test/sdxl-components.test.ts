// An SDXL checkpoint without its second text encoder (as some merges and "UNet + CLIP-L" files
// are shipped): it loads, generate() rejects with ModelCompatibilityError naming what is
// missing, and with `textEncoder2` from a component file (diffusers' text_encoder_2) it makes the
// very image the whole file makes. The refiner without its only encoder says so likewise.
import { readFileSync, writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

import { ModelCompatibilityError, loadModel } from '../lib/index.js';
// @ts-expect-error: plain JavaScript module with JSDoc types
import { generateModel } from '../scripts/generate-model.mjs';
// @ts-expect-error: plain JavaScript module with JSDoc types
import { writeDiffusersFolder } from '../scripts/generator/diffusers-layout.mjs';

const dir = mkdtempSync(join(tmpdir(), 'sdnode-sdxl-components-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const cpu = { device: 'cpu', threads: 2 } as const;

/** A copy of a safetensors file without the tensors whose names start with `prefix`. */
function withoutPrefix(from: string, to: string, prefix: string): number {
  const buf = readFileSync(from);
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8')) as Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
  const out: Record<string, unknown> = {};
  const chunks: Buffer[] = [];
  let offset = 0, dropped = 0;
  for (const [name, t] of Object.entries(header)) {
    if (name === '__metadata__') {
      out[name] = t;
      continue;
    }
    if (name.startsWith(prefix)) {
      dropped++;
      continue;
    }
    const data = buf.subarray(8 + n + t.data_offsets[0], 8 + n + t.data_offsets[1]);
    out[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + data.length] };
    chunks.push(data);
    offset += data.length;
  }
  const json = Buffer.from(JSON.stringify(out));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  writeFileSync(to, Buffer.concat([len, json, ...chunks]));
  return dropped;
}

describe('SDXL with its second text encoder from a component file', () => {
  it('without it: loads, generate() names the missing encoder; with textEncoder2: the whole file\'s image', async () => {
    const whole = join(dir, 'tiny-sdxl.safetensors'), stripped = join(dir, 'tiny-sdxl-no-bigG.safetensors');
    await generateModel({ out: whole, preset: 'tiny-sdxl', dtype: 'f16', seed: 6 });
    expect(withoutPrefix(whole, stripped, 'conditioner.embedders.1.')).toBeGreaterThan(10);
    const folder = join(dir, 'tiny-sdxl-diffusers');
    const written = (await writeDiffusersFolder({ preset: 'tiny-sdxl', dtype: 'f16', seed: 6, out: folder })) as { files: { textEncoder2: string } };

    const options = { prompt: 'a lovely cat', negativePrompt: 'blurry', width: 64, height: 64, steps: 2, seed: 3 };
    await using partial = await loadModel(stripped, cpu);
    expect(partial.info).toMatchObject({ family: 'sdxl', components: { textEncoder: true, textEncoder2: false } });
    await expect(partial.generate(options)).rejects.toThrow(ModelCompatibilityError);
    await expect(partial.generate(options)).rejects.toThrow(/textEncoder2 \(SDXL's second text encoder, OpenCLIP bigG: load it with textEncoder2\)/);

    await using completed = await loadModel({ model: stripped, textEncoder2: written.files.textEncoder2 }, cpu);
    expect(completed.info.components.textEncoder2).toBe(true);
    await using full = await loadModel(whole, cpu);
    const [a, b] = [await completed.generate(options), await full.generate(options)];
    expect(Buffer.from(a.images[0]!.data).equals(Buffer.from(b.images[0]!.data))).toBe(true);
  });

  it('the refiner without its bigG names it too', async () => {
    const whole = join(dir, 'tiny-refiner.safetensors'), stripped = join(dir, 'tiny-refiner-no-text.safetensors');
    await generateModel({ out: whole, preset: 'tiny-sdxl-refiner', dtype: 'f16', seed: 6 });
    withoutPrefix(whole, stripped, 'conditioner.');
    await using refiner = await loadModel(stripped, cpu);
    expect(refiner.info).toMatchObject({ family: 'sdxl-refiner', components: { textEncoder2: false } });
    await expect(refiner.generate({ prompt: 'x', width: 64, height: 64, steps: 1 })).rejects.toThrow(/the refiner's text encoder, OpenCLIP bigG/);
  });
});
