// The model generator writes LDM single-file checkpoints with real tensor names and shapes;
// the engine reads them back as written.
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

import { inspectModel } from '../lib/index.js';
// @ts-expect-error: plain JavaScript module with JSDoc types
import { generateModel, PRESETS, tensorSpecs } from '../scripts/generate-model.mjs';

const dir = mkdtempSync(join(tmpdir(), 'sdnode-gen-'));
const sha = (path: string) => createHash('sha256').update(readFileSync(path)).digest('hex');

describe('generate-model', () => {
  it('writes the tiny preset, which the engine reads with every name and shape', async () => {
    const out = join(dir, 'tiny.safetensors');
    const result = await generateModel({ out, preset: 'tiny', dtype: 'f16', seed: 1 });
    const r = await inspectModel(out);
    expect(r.format).toBe('safetensors');
    expect(r.tensorCount).toBe(result.tensorCount);
    expect(r.fileSize).toBe(result.fileBytes);
    const byName = (a: [string, number[]], b: [string, number[]]) => a[0].localeCompare(b[0]);
    const expected = (tensorSpecs(PRESETS.tiny) as Array<{ name: string; shape: number[] }>).map((s): [string, number[]] => [s.name, s.shape]);
    expect(r.tensors.map((t): [string, number[]] => [t.name, t.shape]).sort(byName)).toEqual(expected.sort(byName));
    expect(r.metadata['sdnode.preset']).toBe('tiny');
    expect(r.detection).toMatchObject({ family: 'sd1', inpaint: false, convention: 'ldm' });
    expect(r.detection.components).toEqual({ unet: true, vae: true, textEncoder: true, textEncoder2: false });
    expect(r.tensors.some((t) => t.name === 'model.diffusion_model.input_blocks.0.0.weight' && t.shape[1] === 4)).toBe(true);
  });

  it('is deterministic by seed', async () => {
    const [a, b, c] = [join(dir, 'a.safetensors'), join(dir, 'b.safetensors'), join(dir, 'c.safetensors')];
    await generateModel({ out: a, preset: 'tiny', seed: 7 });
    await generateModel({ out: b, preset: 'tiny', seed: 7 });
    await generateModel({ out: c, preset: 'tiny', seed: 8 });
    expect(sha(a)).toBe(sha(b));
    expect(sha(a)).not.toBe(sha(c));
  });

  it('the inpaint preset has a 9-channel UNet input', async () => {
    const out = join(dir, 'inpaint.safetensors');
    await generateModel({ out, preset: 'tiny-inpaint' });
    const r = await inspectModel(out);
    const conv = r.tensors.find((t) => t.name === 'model.diffusion_model.input_blocks.0.0.weight');
    expect(conv?.shape[1]).toBe(9);
    expect(r.detection).toMatchObject({ family: 'sd1', inpaint: true });
  });

  it('the sd15 preset has the 1131 tensors of SD1.5 (shapes only, nothing written)', () => {
    const specs = tensorSpecs(PRESETS.sd15) as Array<{ name: string; shape: number[] }>;
    expect(specs.length).toBe(1131);
    const params = specs
      .filter((s) => !s.name.endsWith('position_ids'))
      .reduce((n, s) => n + s.shape.reduce((a, b) => a * b, 1), 0);
    expect(params).toBe(1_066_235_307);
  });

  it('refuses a bad config with a message naming the field', async () => {
    await expect(generateModel({ out: join(dir, 'x.safetensors'), preset: 'nope' })).rejects.toThrow(/preset/);
  });
});
