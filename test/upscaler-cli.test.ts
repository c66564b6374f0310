// `sdnode generate -M upscale` and --upscale-model on image generation, run as a user runs them
// (dist/cli.js in a child process) on tiny generated files.
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { beforeAll, describe, expect, it } from 'vitest';

import { ensureDistFresh, sdnodeGenerate } from './support/cli.js';
// @ts-expect-error: plain JavaScript module with JSDoc types
import { generateModel } from '../scripts/generate-model.mjs';
// @ts-expect-error: plain JavaScript module with JSDoc types
import { generateEsrgan } from '../scripts/generator/esrgan.mjs';
import { imagePath, taeDecoder } from './support/data.js';

const dir = mkdtempSync(join(tmpdir(), 'sdnode-upscale-cli-'));
const esrgan = join(dir, 'tiny-x4.pth');
const model = join(dir, 'tiny.safetensors');

const sdnode = (args: string[]) => sdnodeGenerate(args, dir);

beforeAll(async () => {
  await ensureDistFresh();
  await generateEsrgan({ out: esrgan, preset: 'tiny-x4', seed: 2, gain: 0.5 });
  await generateModel({ out: model, preset: 'tiny', dtype: 'f32', seed: 3 });
}, 120_000);

describe('sdnode generate -M upscale', () => {
  it('upscales -i ×4 into -o, tiled, with a JSON summary', async () => {
    const r = await sdnode(['-M', 'upscale', '--upscale-model', esrgan, '-i', imagePath('coffee.png'), '-o', 'coffee4.png', '--upscale-tile-size', '64', '-t', '1', '--json']);
    expect(r.code).toBe(0);
    const summary = JSON.parse(r.stdout) as { mode: string; images: Array<{ width: number; height: number }>; settings: { scale: number; tile: number } };
    const input = await sharp(imagePath('coffee.png')).metadata();
    expect(summary.mode).toBe('upscale');
    expect(summary.settings).toMatchObject({ scale: 4, tile: 64, repeats: 1 });
    const meta = await sharp(join(dir, 'coffee4.png')).metadata();
    expect([meta.width, meta.height]).toEqual([input.width! * 4, input.height! * 4]);
    expect(summary.images[0]).toEqual({ file: 'coffee4.png', width: meta.width, height: meta.height });
  });

  it('usage errors exit 2 before loading; a file that is not an RRDBNet exits 1 with its code', async () => {
    expect((await sdnode(['-M', 'upscale', '-i', imagePath('coffee.png')])).stderr).toMatch(/needs the ESRGAN model: --upscale-model/);
    expect((await sdnode(['-M', 'upscale', '--upscale-model', esrgan])).code).toBe(2);
    const repeats = await sdnode(['-M', 'upscale', '--upscale-model', esrgan, '-i', imagePath('coffee.png'), '--upscale-repeats', '0']);
    expect([repeats.code, repeats.stderr]).toEqual([2, expect.stringMatching(/--upscale-repeats must be an integer 1 … 4/)]);
    expect((await sdnode(['-M', 'video'])).code).toBe(2);
    const wrong = await sdnode(['-M', 'upscale', '--upscale-model', taeDecoder, '-i', imagePath('coffee.png'), '-o', 'x.png', '--json']);
    expect(wrong.code).toBe(1);
    expect(JSON.parse(wrong.stdout)).toMatchObject({ ok: false, error: { code: 'ERR_MODEL_FORMAT' } });
    expect(existsSync(join(dir, 'x.png'))).toBe(false);
  });

  it('--upscale-model on image generation: every image ×4', async () => {
    const r = await sdnode(['-m', model, '-p', 'a boat', '-W', '64', '-H', '64', '--steps', '2', '-b', '2', '-o', 'boat.png', '--upscale-model', esrgan, '-t', '1', '--json']);
    expect(r.code).toBe(0);
    for (const f of ['boat_1.png', 'boat_2.png']) {
      const meta = await sharp(join(dir, f)).metadata();
      expect([meta.width, meta.height]).toEqual([256, 256]);
    }
    expect((JSON.parse(r.stdout) as { timings: { upscaleMs: number } }).timings.upscaleMs).toBeGreaterThan(0);
  });
});
