// The tiny autoencoder at sizes past what memory holds (HOSTILE-INPUTS 30, 33): a compute buffer
// that cannot be allocated is a ResourceError (it was a SIGSEGV inside ggml's scheduler), the
// same 4096² pixel budget as generate(), and tiles — as the VAE has — so large images fit.
import { spawnSync } from 'node:child_process';
import { resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { ResourceError, loadAutoencoder, readImage, type Autoencoder, type Image } from '../lib/index.js';
import { cropTopLeft, imagePath, psnr, taeDecoder, taeEncoder } from './support/data.js';

const root = resolve(import.meta.dirname, '..');

describe('tiny autoencoder limits', () => {
  let tae: Autoencoder;
  let photo: Image;
  beforeAll(async () => {
    tae = await loadAutoencoder({ encoder: taeEncoder, decoder: taeDecoder }, { device: 'cpu' });
    photo = cropTopLeft(await readImage(imagePath('astronaut.png')), 8, 192);
  });
  afterAll(() => tae?.dispose());

  it('a 2048² decode whose 12 GB compute buffer cannot be allocated (ulimit -v 6 GB) rejects with ResourceError, no crash', () => {
    const script = `
      import { loadAutoencoder } from ${JSON.stringify(resolve(root, 'dist', 'index.js'))};
      const ae = await loadAutoencoder({ decoder: ${JSON.stringify(taeDecoder)} }, { device: 'cpu', threads: 1 });
      const latent = { channels: ae.latentChannels, width: 256, height: 256, data: new Float32Array(ae.latentChannels * 256 * 256) };
      try {
        await ae.decode(latent, { tiling: false });
        console.log('decoded');
      } catch (e) {
        console.log('rejected', e.constructor.name, e.code);
      }
      await ae.dispose();`;
    const r = spawnSync('bash', ['-c', `ulimit -v 6000000 && exec "${process.execPath}" --input-type=module -e "$SCRIPT"`], {
      cwd: root,
      encoding: 'utf8',
      env: { ...process.env, SCRIPT: script },
      timeout: 120_000,
    });
    expect(r.signal).toBeNull();
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('rejected ResourceError ERR_RESOURCE');
  });

  it('the pixel budget: at most 4096² pixels in and out, refused before anything is queued', () => {
    const latent = (w: number, h: number) => ({ channels: tae.latentChannels, width: w, height: h, data: new Float32Array(tae.latentChannels * w * h) });
    expect(() => tae.decode(latent(520, 512))).toThrow(RangeError);
    expect(() => tae.decode(latent(520, 512))).toThrow(/the decoded image would be 4160×4096; at most 16777216 pixels/);
    expect(() => tae.decode(latent(1024, 1024))).toThrow(/at most 16777216 pixels/);
    const big = { width: 4104, height: 4096, channels: 3 as const, data: new Uint8Array(4104 * 4096 * 3) };
    expect(() => tae.encode(big)).toThrow(/image would be 4104×4096; at most 16777216 pixels/);
    // The tiling option is checked like the model's vaeTiling.
    expect(() => tae.decode(latent(8, 8), { tiling: { tile: 4 } })).toThrow(/options\.tiling\.tile must be an integer in \[16, 4096\], got 4/);
    expect(() => tae.decode(latent(8, 8), { tiling: 'yes' as never })).toThrow(RangeError);
  });

  it('tiled encode and decode agree with the untiled ones (the pool GroupNorms see the whole image)', async () => {
    const whole = await tae.encode(photo, { tiling: false });
    const tiled = await tae.encode(photo, { tiling: { tile: 16, overlap: 8 } });
    let num = 0;
    let den = 0;
    for (let i = 0; i < whole.data.length; i++) {
      num += (tiled.data[i]! - whole.data[i]!) ** 2;
      den += whole.data[i]! ** 2;
    }
    const relative = Math.sqrt(num / den);
    const imageWhole = await tae.decode(whole, { tiling: false });
    const imageTiled = await tae.decode(whole, { tiling: { tile: 16, overlap: 8 } });
    const db = psnr(imageWhole, imageTiled);
    console.log(`TAEF2 ${photo.width}×${photo.height}: tiled encode relative error ${relative.toExponential(2)}, tiled decode ${db.toFixed(1)} dB vs untiled`);
    expect(relative).toBeLessThan(0.05);
    expect(db).toBeGreaterThan(30);
  }, 900_000);
});
