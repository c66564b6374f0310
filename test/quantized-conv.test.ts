// Quantized UNet conv kernels: convertModel and quantize-on-load keep a UNet kernel
// [OC, IC, KH, KW] in a block type as the [OC, IC·KH·KW] matrix it multiplies the unfolded input
// as (GGUF metadata sdnode.unfolded.<name> gives its shape back). The images they make are
// checked against the same quantized values run through the plain f32 convolution (the file
// converted back to f32), the two ways to get such weights against each other, and a hostile
// sdnode.unfolded key against the reader.
import { readFileSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';

import { ModelFormatError, convertModel, inspectModel, loadModel, type Image } from '../lib/index.js';
import { psnr } from './support/data.js';
// @ts-expect-error: plain JavaScript module with JSDoc types
import { generateModel } from '../scripts/generate-model.mjs';

const dir = mkdtempSync(join(tmpdir(), 'sdnode-qconv-'));
const cpu = { device: 'cpu', threads: 1 } as const;
const job = { prompt: 'a red house', width: 64, height: 64, steps: 2, seed: 11 } as const;
const src = join(dir, 'tiny-f16.safetensors');
const q8 = join(dir, 'tiny-q8_0.gguf');
const q4 = join(dir, 'tiny-q4_0.gguf');
const q8Dequantized = join(dir, 'tiny-q8_0-as-f32.gguf');
const q4Dequantized = join(dir, 'tiny-q4_0-as-f32.gguf');
const kernel = 'model.diffusion_model.input_blocks.1.0.in_layers.2.weight';

async function generateWith(path: string, options: { weightType?: 'q4_0' } = {}): Promise<Image> {
  const model = await loadModel(path, { ...cpu, ...options });
  try {
    return (await model.generate(job)).images[0]!;
  } finally {
    await model.dispose();
  }
}

beforeAll(async () => {
  await generateModel({ out: src, preset: 'tiny', dtype: 'f16', seed: 3 });
  await convertModel(src, q8, { weightType: 'q8_0' });
  await convertModel(src, q4, { weightType: 'q4_0' });
  await convertModel(q8, q8Dequantized, { weightType: 'f32' });
  await convertModel(q4, q4Dequantized, { weightType: 'f32' });
}, 60_000);

describe('quantized UNet conv kernels', () => {
  it('are stored unfolded in the block type, and read back with their kernel shape', async () => {
    const [f16, q] = await Promise.all([inspectModel(src), inspectModel(q4)]);
    const t = q.tensors.find((x) => x.name === kernel)!;
    expect(t.dtype).toBe('Q4_0');
    expect(t.shape).toEqual(f16.tensors.find((x) => x.name === kernel)!.shape);
    expect(q.metadata[`sdnode.unfolded.${kernel}`]).toBe(t.shape.join(','));
    const kernels = q.tensors.filter((x) => x.shape.length === 4 && x.name.startsWith('model.diffusion_model.'));
    expect(kernels.filter((x) => x.dtype === 'Q4_0').length).toBeGreaterThan(kernels.length / 2);
    // Converted back, the values are the quantized ones as a plain 4-D f32 kernel.
    const back = await inspectModel(q4Dequantized);
    expect(back.tensors.find((x) => x.name === kernel)).toMatchObject({ dtype: 'F32', shape: t.shape });
    expect(Object.keys(back.metadata).some((k) => k.startsWith('sdnode.unfolded.'))).toBe(false);
  });

  it('give the image the same quantized values give through the f32 convolution', async () => {
    for (const [file, dequantized, floor] of [
      [q8, q8Dequantized, 30],
      [q4, q4Dequantized, 25],
    ] as const) {
      const [quantized, plain] = await Promise.all([generateWith(file), generateWith(dequantized)]);
      const db = psnr(quantized, plain);
      // What remains is the activations' rounding to q8_0 blocks inside the quantized product.
      console.log(`${file.slice(-12)} vs its values in f32: ${db.toFixed(1)} dB`);
      expect(db).toBeGreaterThan(floor);
    }
    // Not a comparison of two near-identical images whatever the kernels hold: the q4_0 and
    // q8_0 images differ from each other more than either differs from its own values.
    const a = await generateWith(q4Dequantized), b = await generateWith(q8Dequantized);
    expect(psnr(a, b)).toBeLessThan(psnr(await generateWith(q4), a));
  });

  it('quantize-on-load makes the same weights as the converted file', async () => {
    const [onLoad, converted] = await Promise.all([generateWith(src, { weightType: 'q4_0' }), generateWith(q4)]);
    expect(Buffer.from(onLoad.data).equals(Buffer.from(converted.data))).toBe(true);
  });

  it('a hostile sdnode.unfolded key is a ModelFormatError, at inspection and at load', async () => {
    const bytes = readFileSync(q8);
    const value = (await inspectModel(q8)).metadata[`sdnode.unfolded.${kernel}`]!; // "OC,IC,3,3"
    const at = bytes.indexOf(Buffer.from(`sdnode.unfolded.${kernel}`));
    const valueAt = bytes.indexOf(Buffer.from(value), at);
    const cases: Array<[string, (b: Buffer) => void]> = [
      ['a shape that does not multiply out', (b) => b.write(value.slice(0, -1) + '5', valueAt)],
      ['not integers', (b) => b.write(value.slice(0, -1) + 'x', valueAt)],
      ['a key naming no tensor', (b) => b.write('Z', at + `sdnode.unfolded.${kernel}`.length - 1)],
    ];
    for (const [what, patch] of cases) {
      const b = Buffer.from(bytes);
      patch(b);
      const path = join(dir, `hostile-${what.replace(/\W+/g, '-')}.gguf`);
      writeFileSync(path, b);
      await expect(inspectModel(path), what).rejects.toBeInstanceOf(ModelFormatError);
      await expect(loadModel(path, cpu), what).rejects.toBeInstanceOf(ModelFormatError);
    }
  });
});
