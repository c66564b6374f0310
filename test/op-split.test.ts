// Large ops split into pieces that are graph nodes of their own (native/engine/nn/op_split.h),
// so that a cancel request is honoured within a fraction of a second however large the image:
// the pieces compute the same numbers as the whole op, and an abort inside the first UNet step
// of a 2048² image rejects promptly (it took 2–7 s when one attention was one node).
import { spawnSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { AbortError, loadModel, type Model } from '../lib/index.js';
// @ts-expect-error: plain JavaScript module with JSDoc types
import { generateModel } from '../scripts/generate-model.mjs';

const root = resolve(import.meta.dirname, '..');
const entry = resolve(root, 'dist', 'index.js');
const dir = mkdtempSync(join(tmpdir(), 'sdnode-split-'));
const modelPath = join(dir, 'tiny.safetensors');
let model: Model;

beforeAll(async () => {
  await generateModel({ out: modelPath, preset: 'tiny', dtype: 'f16', seed: 9 });
  model = await loadModel(modelPath, { device: 'cpu' });
}, 60_000);

afterAll(() => model?.dispose());

/** The image a fresh process generates, as hex; `env` is read once per process by the engine. */
function generateInChild(size: number, env: Record<string, string>): string {
  const source = `
    import { loadModel } from ${JSON.stringify(entry)};
    const m = await loadModel(${JSON.stringify(modelPath)}, { device: 'cpu' });
    const r = await m.generate({ prompt: 'a lovely cat', width: ${size}, height: ${size}, steps: 2, seed: 11 });
    process.stdout.write(Buffer.from(r.images[0].data).toString('hex'));
    await m.dispose();`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', source], {
    cwd: root, encoding: 'utf8', env: { ...process.env, ...env }, timeout: 120_000, maxBuffer: 64 << 20,
  });
  expect(r.stderr).toBe('');
  expect(r.status).toBe(0);
  return r.stdout;
}

// SDNODE_SPLIT_WORK makes every op above a few thousand multiply-adds split, so a small image
// runs the split path of every convolution and attention.
const forceSplit = { SDNODE_SPLIT_WORK: '2000' };

describe('split ops', () => {
  it('give the same image as whole ops (fused attention: 256 queries in pieces of 64)', () => {
    // The CPU takes plain attention by default at this size: fused is asked for.
    const fused = { SDNODE_FLASH_ATTENTION: '1' };
    const whole = generateInChild(256, fused);
    expect(generateInChild(256, { ...fused, ...forceSplit })).toBe(whole);
  }, 120_000);

  // Plain attention's products go through tinyBLAS (GGML_LLAMAFILE) for some piece shapes and
  // ggml's own dot products for others, which sum in another order: the same numbers up to
  // float rounding, so the image agrees within a level or two; a wrong piece offset or size
  // would give another image altogether.
  it('give the same image as whole ops up to rounding (plain attention)', () => {
    const plain = { SDNODE_FLASH_ATTENTION: '0' };
    const whole = Buffer.from(generateInChild(128, plain), 'hex');
    const split = Buffer.from(generateInChild(128, { ...plain, ...forceSplit }), 'hex');
    expect(split.length).toBe(whole.length);
    let maxDiff = 0, squared = 0;
    for (let i = 0; i < whole.length; i++) {
      const d = Math.abs(whole[i]! - split[i]!);
      maxDiff = Math.max(maxDiff, d);
      squared += d * d;
    }
    const psnr = squared === 0 ? Infinity : 10 * Math.log10((255 * 255 * whole.length) / squared);
    expect(maxDiff).toBeLessThanOrEqual(2);
    expect(psnr).toBeGreaterThan(50);
  }, 120_000);

  it('an abort inside the first UNet step of a 2048² image rejects within a second or two', async () => {
    const controller = new AbortController();
    let steps = 0;
    const job = model.generate({
      prompt: 'a lovely cat', width: 2048, height: 2048, steps: 20, seed: 1, signal: controller.signal,
      onProgress: (p) => { steps = p.step; },
    });
    await new Promise((r) => setTimeout(r, 8000));
    const abortedAt = performance.now();
    controller.abort();
    await expect(job).rejects.toBeInstanceOf(AbortError);
    const latency = performance.now() - abortedAt;
    expect(steps).toBeLessThan(20);
    expect(latency).toBeLessThan(2000);
  }, 120_000);
});
