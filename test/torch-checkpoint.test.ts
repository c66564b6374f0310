// PyTorch zip checkpoints are read, never executed; hostile ones are refused with a code.
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

import { ModelCompatibilityError, ModelFormatError, loadAutoencoder } from '../lib/index.js';
import { tinyTaeDecoder } from './support/tiny-tae.js';
import { hostileCheckpoints, writeTorchCheckpoint } from './support/torch-zip.js';

const dir = mkdtempSync(join(tmpdir(), 'sdnode-ckpt-'));
const sentinel = join(dir, 'SENTINEL-pickle-code-ran');
const hostile = hostileCheckpoints(join(dir, 'hostile'), sentinel);

describe('hostile checkpoints', () => {
  it.each(Object.entries(hostile))('%s is a ModelFormatError', async (name, path) => {
    const err = await loadAutoencoder({ decoder: path }, { device: 'cpu' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ModelFormatError);
    expect(err).toMatchObject({ code: 'ERR_MODEL_FORMAT' });
    expect((err as Error).message.length).toBeGreaterThan(10);
  });

  it('names the forbidden global and runs nothing', async () => {
    for (const name of ['os_system', 'posix_system_stack_global', 'builtins_eval', 'subprocess_popen']) {
      await expect(loadAutoencoder({ decoder: hostile[name]! }, { device: 'cpu' })).rejects.toThrow(/forbidden global/);
    }
    expect(existsSync(sentinel)).toBe(false);
  });

  it('100 rejected loads do not grow memory', async () => {
    const before = process.memoryUsage().rss;
    for (let i = 0; i < 100; i++) {
      await expect(loadAutoencoder({ decoder: hostile.os_system! }, { device: 'cpu' })).rejects.toBeInstanceOf(ModelFormatError);
      await expect(loadAutoencoder({ decoder: hostile.storage_too_small! }, { device: 'cpu' })).rejects.toBeInstanceOf(ModelFormatError);
    }
    const growth = process.memoryUsage().rss - before;
    expect(growth).toBeLessThan(32 * 2 ** 20);
  });
});

describe('generated checkpoints', () => {
  const shape = { latentChannels: 4, width: 8, blocks: 1, stages: 3, pool: true };

  it('a random TAESD-shaped decoder (4 latent channels) loads and decodes', async () => {
    const path = join(dir, 'tiny-decoder.pth');
    writeTorchCheckpoint(path, tinyTaeDecoder(shape));
    const tae = await loadAutoencoder({ decoder: path }, { device: 'cpu' });
    expect(tae.latentChannels).toBe(4);
    expect(tae.scale).toBe(8);
    const latent = { channels: 4, width: 3, height: 2, data: Float32Array.from({ length: 24 }, (_, i) => Math.sin(i)) };
    const image = await tae.decode(latent);
    expect(image).toMatchObject({ width: 24, height: 16, channels: 3 });
    await tae.dispose();
  });

  it('the same weights wrapped in a state_dict, f16 and zip64 load alike', async () => {
    const tensors = tinyTaeDecoder(shape);
    const plain = join(dir, 'plain.pth');
    const wrapped = join(dir, 'wrapped.ckpt');
    writeTorchCheckpoint(plain, tensors);
    writeTorchCheckpoint(wrapped, tensors, { wrapStateDict: true, zip64: true, prefix: 'wrapped' });
    const latent = { channels: 4, width: 2, height: 2, data: Float32Array.from({ length: 16 }, (_, i) => Math.cos(i)) };
    const [a, b] = await Promise.all([plain, wrapped].map(async (p) => {
      const tae = await loadAutoencoder({ decoder: p }, { device: 'cpu' });
      const image = await tae.decode(latent);
      await tae.dispose();
      return image;
    }));
    expect(b!.data).toEqual(a!.data);
  });

  it('mis-shaped and missing tensors are a ModelCompatibilityError naming the tensor', async () => {
    const bad = tinyTaeDecoder(shape).map((t) =>
      t.name === '3.conv.2.weight' ? { ...t, shape: [8, 6, 3, 3], data: t.data.subarray(0, 8 * 6 * 9) } : t,
    );
    const badPath = join(dir, 'mis-shaped.pth');
    writeTorchCheckpoint(badPath, bad);
    await expect(loadAutoencoder({ decoder: badPath }, { device: 'cpu' })).rejects.toThrow(/3\.conv\.2/);
    await expect(loadAutoencoder({ decoder: badPath }, { device: 'cpu' })).rejects.toBeInstanceOf(ModelCompatibilityError);

    const missing = tinyTaeDecoder(shape).filter((t) => t.name !== '3.pool.1.bias');
    const missingPath = join(dir, 'missing.pth');
    writeTorchCheckpoint(missingPath, missing);
    await expect(loadAutoencoder({ decoder: missingPath }, { device: 'cpu' })).rejects.toThrow(/3\.pool\.1\.bias/);

    const stranger = join(dir, 'stranger.pth');
    writeTorchCheckpoint(stranger, [{ name: 'model.diffusion_model.x', shape: [2], data: Float32Array.from([1, 2]) }]);
    await expect(loadAutoencoder({ decoder: stranger }, { device: 'cpu' })).rejects.toBeInstanceOf(ModelCompatibilityError);
  });
});
