// Text-to-image on another device gives what the CPU gives. Runs on SDNODE_TEST_DEVICE
// (scripts/test-vulkan.sh sets vulkan:0 on Mesa's lavapipe; a CUDA machine can set cuda:0) and
// compares it with the CPU: the UNet's raw output, then whole images. With no device set it
// compares the CPU with itself at another thread count.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { loadModel, type Model } from '../lib/index.js';
import { native, type NativeModel } from '../lib/native.js';
// @ts-expect-error: plain JavaScript module with JSDoc types
import { generateModel } from '../scripts/generate-model.mjs';
import { psnr } from './support/data.js';
import { SDXL_VAE_SCALE } from './support/sdxl-compose.js';
import { relativeError } from './support/reference-nn.js';

const device = process.env.SDNODE_TEST_DEVICE || 'cpu';
const dir = mkdtempSync(join(tmpdir(), 'sdnode-parity-'));
const path = join(dir, 'tiny.safetensors');
let cpu: Model, other: Model, cpuParts: NativeModel, otherParts: NativeModel;

beforeAll(async () => {
  await generateModel({ out: path, preset: 'tiny', dtype: 'f32', seed: 5 });
  cpu = await loadModel(path, { device: 'cpu', threads: 2 });
  other = await loadModel(path, { device, threads: 1 });
  const load = (d: string, threads: number) => native().NativeModel.load({ model: path, ema: false, device: d, threads, weightType: '' }).promise;
  [cpuParts, otherParts] = [await load('cpu', 2), await load(device, 1)];
}, 120_000);

afterAll(async () => {
  await cpu?.dispose();
  await other?.dispose();
  cpuParts?.dispose();
  otherParts?.dispose();
});

describe(`${device} against the CPU`, () => {
  // GPU backends multiply in f16 where the CPU keeps f32 (Vulkan on lavapipe: 2.5e-3).
  const tolerance = device === 'cpu' ? 1e-6 : 1e-2;
  it(`the UNet: same output to ${tolerance}`, async () => {
    const n = 4 * 8 * 8;
    const x = Float32Array.from({ length: 2 * n }, (_, i) => Math.sin(i * 0.37));
    const context = Float32Array.from({ length: 2 * 77 * 32 }, (_, i) => Math.cos(i * 0.11));
    const params = { x, batch: 2, channels: 4, height: 8, width: 8, timesteps: Float32Array.of(999, 20), context, contextTokens: 77, headDim: 32 };
    const [a, b] = [await cpuParts.runUnet(params).promise, await otherParts.runUnet(params).promise];
    const err = relativeError(b, a);
    console.log(`[parity] ${device} UNet relative error ${err.toExponential(2)}`);
    expect(err).toBeLessThan(tolerance);
  });

  it('a whole image: same seed, same picture', async () => {
    const options = { prompt: 'a lovely cat', width: 64, height: 64, steps: 3, seed: 42 } as const;
    const [a, b] = [await cpu.generate(options), await other.generate(options)];
    const db = psnr(a.images[0]!, b.images[0]!);
    console.log(`[parity] ${device} image PSNR ${db.toFixed(1)} dB`);
    expect(db).toBeGreaterThan(40);
  }, 900_000);

  it("SDXL's f16 VAE: a latent past f16's range decodes as the CPU's f32 file does, its inputs scaled", async () => {
    // The device unfolds convolution inputs in f16 (the CPU in f32): values beyond 65504 need
    // the 1/32 scale lib/ sets for SDXL (Model::set_vae_conv_input_scale).
    const latent = { channels: 4, width: 4, height: 4, data: Float32Array.from({ length: 64 }, (_, i) => (i % 2 ? 1 : -1) * (9000 + 37 * i)) };
    const f16Path = join(dir, 'tiny-sdxl-f16.safetensors'), f32Path = join(dir, 'tiny-sdxl-f32.safetensors');
    await generateModel({ out: f16Path, preset: 'tiny-sdxl', dtype: 'f16', seed: 3 });
    await generateModel({ out: f32Path, preset: 'tiny-sdxl', dtype: 'f32', seed: 3 });
    const load = (p: string, d: string) => native().NativeModel.load({ model: p, ema: false, device: d, threads: 1, weightType: '' }).promise;
    const [onDevice, reference] = [await load(f16Path, device), await load(f32Path, 'cpu')];
    try {
      onDevice.setVaeConvInputScale(1 / 32);
      const [a, b] = [await onDevice.decodeLatent(latent, SDXL_VAE_SCALE).promise, await reference.decodeLatent(latent, SDXL_VAE_SCALE).promise];
      const db = psnr({ ...a, channels: 3 }, { ...b, channels: 3 });
      console.log(`[parity] ${device} SDXL f16 VAE, scaled inputs, vs the CPU's f32: ${db.toFixed(1)} dB`);
      expect(db).toBeGreaterThan(35);
    } finally {
      onDevice.dispose();
      reference.dispose();
    }
  }, 900_000);
});
