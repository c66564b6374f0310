// SD2.x files do not say whether their UNet predicts v or noise; generate() decides as
// stable-diffusion.cpp does, with one UNet evaluation on constant inputs (lib/prediction-probe.ts).
// The test makes that evaluation by hand through the native UNet and checks that generate()
// follows its answer, that a given `prediction` wins, and that SD1.x is never probed.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { loadModel, type Model } from '../lib/index.js';
import { native, type NativeModel } from '../lib/native.js';
// @ts-expect-error: plain JavaScript module with JSDoc types
import { generateModel } from '../scripts/generate-model.mjs';

const dir = mkdtempSync(join(tmpdir(), 'sdnode-probe-'));
const cpu = { device: 'cpu', threads: 2 } as const;
let sd2: Model;
let parts: NativeModel;
let headDim: number;
let contextDim: number;

beforeAll(async () => {
  const path = join(dir, 'tiny-sd2.safetensors');
  const r = (await generateModel({ out: path, preset: 'tiny-sd2', dtype: 'f32', seed: 4 })) as { metadata: Record<string, string> };
  headDim = (JSON.parse(r.metadata['sdnode.attention_heads']!) as { unet: { headDim: number } }).unet.headDim;
  sd2 = await loadModel(path, cpu);
  contextDim = sd2.info.contextDim!;
  parts = await native().NativeModel.load({ model: path, ema: false, device: 'cpu', threads: 2, weightType: '' }).promise;
}, 120_000);

afterAll(async () => {
  await sd2?.dispose();
  parts?.dispose();
  rmSync(dir, { recursive: true, force: true });
});

/** stable-diffusion.cpp's rule, evaluated here: x = 0.5 [1,4,8,8], context 0.5 [1,2,C], t = 999; v when mean(out − x) < −1. */
async function byHand(): Promise<{ mean: number; prediction: 'v' | 'epsilon' }> {
  const x = new Float32Array(4 * 64).fill(0.5);
  const out = await parts.runUnet({ x, batch: 1, channels: 4, height: 8, width: 8, timesteps: Float32Array.of(999), context: new Float32Array(2 * contextDim).fill(0.5), contextTokens: 2, headDim }).promise;
  let sum = 0;
  for (let i = 0; i < x.length; i++) sum += out[i]! - x[i]!;
  const mean = sum / x.length;
  return { mean, prediction: mean < -1 ? 'v' : 'epsilon' };
}

const job = { prompt: 'a lovely cat', width: 64, height: 64, steps: 2, seed: 7, sampler: 'euler' } as const;

/** A copy of the f32 safetensors file at `path` with every value of tensor `name` set to `value`. */
function withTensorFilled(path: string, out: string, name: string, value: number): void {
  const bytes = readFileSync(path);
  const headerLength = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + headerLength).toString('utf8')) as Record<string, { dtype: string; data_offsets: [number, number] }>;
  const t = header[name]!;
  expect(t.dtype).toBe('F32');
  const start = 8 + headerLength + t.data_offsets[0];
  for (let at = start; at < 8 + headerLength + t.data_offsets[1]; at += 4) bytes.writeFloatLE(value, at);
  writeFileSync(out, bytes);
}
const same = (a: Uint8Array, b: Uint8Array) => Buffer.compare(Buffer.from(a), Buffer.from(b)) === 0;

describe('SD2.x prediction probe', () => {
  it('generate() without `prediction` follows the probe; the other prediction gives another image', async () => {
    expect(sd2.info.family).toBe('sd2');
    expect(sd2.info.prediction).toBe('unknown');
    const { mean, prediction } = await byHand();
    console.log(`probe: mean(out − x) = ${mean.toFixed(4)} → ${prediction}`);
    const auto = await sd2.generate(job);
    const chosen = await sd2.generate({ ...job, prediction });
    const other = await sd2.generate({ ...job, prediction: prediction === 'v' ? 'epsilon' : 'v' });
    expect(same(auto.images[0]!.data, chosen.images[0]!.data)).toBe(true);
    expect(same(auto.images[0]!.data, other.images[0]!.data)).toBe(false);
  }, 120_000);

  it('a UNet whose output is shifted down by 2 is probed as v, shifted up as epsilon', async () => {
    // The final convolution's bias moves every output value: mean(out − x) follows it past −1 or not.
    for (const [bias, expected] of [[-2, 'v'], [2, 'epsilon']] as const) {
      const shifted = join(dir, `tiny-sd2-bias${bias}.safetensors`);
      withTensorFilled(join(dir, 'tiny-sd2.safetensors'), shifted, 'model.diffusion_model.out.2.bias', bias);
      const m = await loadModel(shifted, cpu);
      try {
        const auto = await m.generate(job);
        const chosen = await m.generate({ ...job, prediction: expected });
        const other = await m.generate({ ...job, prediction: expected === 'v' ? 'epsilon' : 'v' });
        expect(same(auto.images[0]!.data, chosen.images[0]!.data), `bias ${bias}`).toBe(true);
        expect(same(auto.images[0]!.data, other.images[0]!.data), `bias ${bias}`).toBe(false);
      } finally {
        await m.dispose();
      }
    }
  }, 120_000);

  it('an SD1.x model is not probed: no prediction means epsilon', async () => {
    const path = join(dir, 'tiny.safetensors');
    await generateModel({ out: path, preset: 'tiny', dtype: 'f32', seed: 4 });
    const sd1 = await loadModel(path, cpu);
    try {
      const auto = await sd1.generate(job);
      const eps = await sd1.generate({ ...job, prediction: 'epsilon' });
      expect(same(auto.images[0]!.data, eps.images[0]!.data)).toBe(true);
    } finally {
      await sd1.dispose();
    }
  }, 120_000);
});
