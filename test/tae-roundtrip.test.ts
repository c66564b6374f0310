// The whole stack on real pretrained weights: TAEF2 encode -> decode, PSNR against the input.
// Protocol: image cropped top-left to multiples of 8, no latent quantization, 8-bit output.
// PyTorch on the same protocol: chelsea 32.78 dB, astronaut 31.18 dB, coffee 29.62 dB.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { loadAutoencoder, readImage, type Autoencoder } from '../lib/index.js';
import { cropTopLeft, imagePath, psnr, taeDecoder, taeEncoder } from './support/data.js';

const device = process.env.SDNODE_TEST_DEVICE ?? 'cpu';

describe(`TAEF2 round trip on ${device}`, () => {
  let tae: Autoencoder;
  beforeAll(async () => {
    tae = await loadAutoencoder({ encoder: taeEncoder, decoder: taeDecoder }, { device });
  });
  afterAll(() => tae?.dispose());

  it('reads the architecture from the weights', () => {
    expect(tae.latentChannels).toBe(32);
    expect(tae.scale).toBe(8);
    expect(tae.device).toBe(device);
  });

  it.each([
    ['chelsea.png', 32.5],
    ['astronaut.png', 30.9],
    ['coffee.png', 29.3],
  ])('%s reconstructs at >= %f dB', async (name, floor) => {
    const image = cropTopLeft(await readImage(imagePath(name)), 8);
    const latent = await tae.encode(image);
    expect(latent.channels).toBe(32);
    expect(latent.width).toBe(image.width / 8);
    expect(latent.height).toBe(image.height / 8);
    expect(latent.data.every(Number.isFinite)).toBe(true);
    const out = await tae.decode(latent);
    expect(out.width).toBe(image.width);
    expect(out.height).toBe(image.height);
    const db = psnr(image, out);
    console.log(`[psnr] ${device} ${name} ${image.width}x${image.height}: ${db.toFixed(2)} dB`);
    expect(db).toBeGreaterThanOrEqual(floor);
  });
});
