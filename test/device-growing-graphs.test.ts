// Graphs that each need a larger compute buffer than the last, in turn on one model, as a
// generate runs them (UNet, then the VAE decoder), on SDNODE_TEST_DEVICE against the CPU.
// Every such step frees the compute buffer the previous graph used; on Mesa's lavapipe that
// corrupted the heap within a few graphs until each graph got a fresh Vulkan context (see
// Runtime::renew_primary in native/engine/pipeline/backend.cpp). With no device set it
// compares the CPU with itself at another thread count.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { native, type NativeImage, type NativeModel } from '../lib/native.js';
// @ts-expect-error: plain JavaScript module with JSDoc types
import { generateModel } from '../scripts/generate-model.mjs';
import { psnr } from './support/data.js';
import { relativeError } from './support/reference-nn.js';

const device = process.env.SDNODE_TEST_DEVICE || 'cpu';
const dir = mkdtempSync(join(tmpdir(), 'sdnode-growing-'));
const path = join(dir, 'tiny.safetensors');
let cpu: NativeModel, other: NativeModel;

beforeAll(async () => {
  await generateModel({ out: path, preset: 'tiny', dtype: 'f32', seed: 9 });
  const load = (d: string, threads: number) => native().NativeModel.load({ model: path, ema: false, device: d, threads, weightType: '' }).promise;
  [cpu, other] = [await load('cpu', 2), await load(device, 1)];
}, 120_000);

afterAll(() => {
  cpu?.dispose();
  other?.dispose();
});

const unet = (m: NativeModel, side: number) => {
  const n = 4 * side * side;
  const x = Float32Array.from({ length: 2 * n }, (_, i) => Math.sin(i * 0.29));
  const context = Float32Array.from({ length: 2 * 77 * 32 }, (_, i) => Math.cos(i * 0.13));
  const params = { x, batch: 2, channels: 4, height: side, width: side, timesteps: Float32Array.of(700, 30), context, contextTokens: 77, headDim: 32 };
  return m.runUnet(params).promise;
};

// The decoder's images are RGB.
const rgb = (image: NativeImage) => ({ ...image, channels: 3 as const });

const decode = (m: NativeModel, side: number) => {
  const data = Float32Array.from({ length: 4 * side * side }, (_, i) => Math.sin(i * 0.41));
  return m.decodeLatent({ width: side, height: side, channels: 4, data }, 0.18215).promise;
};

describe(`${device}: graphs that outgrow the last one's buffers`, () => {
  // As in device-parity: GPU backends multiply in f16 where the CPU keeps f32.
  const tolerance = device === 'cpu' ? 1e-6 : 1e-2;

  it('UNet 8×8 → 16×16 → VAE 1×1 → 2×2 → 8×8 → UNet 8×8: each as on the CPU', async () => {
    const steps: Array<['unet' | 'vae', number]> = [['unet', 8], ['unet', 16], ['vae', 1], ['vae', 2], ['vae', 8], ['unet', 8]];
    for (const [what, side] of steps) {
      if (what === 'unet') {
        const [a, b] = [await unet(cpu, side), await unet(other, side)];
        expect(relativeError(b, a), `UNet ${side}×${side}`).toBeLessThan(tolerance);
      } else {
        const [a, b] = [await decode(cpu, side), await decode(other, side)];
        expect(b.width).toBe(side * 8);
        expect(psnr(rgb(a), rgb(b)), `VAE ${side}×${side}`).toBeGreaterThan(40);
      }
    }
  }, 900_000);
});
