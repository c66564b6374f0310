// `sdnode generate --hires*` run as a user runs it (dist/cli.js in a child process) on a tiny
// generated model: the image of the library's hires option, the webui's hires fields in the
// PNG, the flags' usage errors.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { loadModel, type Model } from '../lib/index.js';
import { readPngParameters } from '../lib/cli/png-parameters.js';
import { ensureDistFresh, sdnodeGenerate } from './support/cli.js';
// @ts-expect-error: plain JavaScript module with JSDoc types
import { generateModel } from '../scripts/generate-model.mjs';

const dir = mkdtempSync(join(tmpdir(), 'sdnode-hires-cli-'));
const modelPath = join(dir, 'tiny.safetensors');
let model: Model;

const sdnode = (args: string[]) => sdnodeGenerate(args, dir);

beforeAll(async () => {
  await ensureDistFresh();
  await generateModel({ out: modelPath, preset: 'tiny', dtype: 'f32', seed: 3 });
  model = await loadModel(modelPath, { device: 'cpu', threads: 1 });
}, 120_000);

afterAll(async () => {
  await model?.dispose();
});

const base = ['-m', modelPath, '-p', 'a lovely cat', '-W', '32', '-H', '32', '--steps', '3', '-s', '9', '--sampling-method', 'euler', '-t', '1', '--device', 'cpu'];

describe('sdnode generate --hires', () => {
  it('writes the library’s hires image, with the webui’s hires fields', async () => {
    const r = await sdnode([...base, '--hires', '--hires-scale', '2', '--hires-steps', '2', '--hires-denoising-strength', '0.6', '--hires-upscaler', 'Latent (bicubic)', '-o', 'h.png']);
    expect(r.code, r.stderr).toBe(0);
    const { data, info } = await sharp(join(dir, 'h.png')).raw().toBuffer({ resolveWithObject: true });
    expect([info.width, info.height]).toEqual([64, 64]);
    const lib = await model.generate({ prompt: 'a lovely cat', width: 32, height: 32, steps: 3, seed: 9, sampler: 'euler', scheduler: 'discrete', hires: { scale: 2, steps: 2, strength: 0.6, upscaler: 'latent-bicubic' } });
    expect(Buffer.compare(data, Buffer.from(lib.images[0]!.data))).toBe(0);
    const p = await readPngParameters(join(dir, 'h.png'));
    expect(p?.fields).toMatchObject({ Size: '32x32', 'Denoising strength': '0.6', 'Hires upscale': '2', 'Hires steps': '2', 'Hires upscaler': 'Latent (bicubic)' });

    const sized = await sdnode([...base, '--hires', '--hires-width', '64', '--hires-height', '48', '-o', 's.png', '--json']);
    expect(sized.code, sized.stderr).toBe(0);
    expect(JSON.parse(sized.stdout).images[0]).toMatchObject({ width: 64, height: 48 });
    const q = await readPngParameters(join(dir, 's.png'));
    expect(q?.fields).toMatchObject({ 'Hires resize': '64x48', 'Hires upscaler': 'Latent', 'Denoising strength': '0.7' });
    expect(q?.fields['Hires steps']).toBeUndefined();
  }, 60_000);

  it('usage errors exit 2 before the model loads', async () => {
    for (const args of [
      ['--hires-scale', '2'],
      ['--hires', '--hires-scale', '1'],
      ['--hires', '--hires-denoising-strength', '0'],
      ['--hires', '--hires-steps', '-1'],
      ['--hires', '--hires-upscaler', 'Bilinear'],
    ]) {
      const r = await sdnode([...base.slice(2), '-m', join(dir, 'missing.safetensors'), ...args]);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr, args.join(' ')).toMatch(/--hires/);
    }
  }, 30_000);
});
