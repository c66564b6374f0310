/** Paths of the shared test data and small image helpers used across suites. */
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import type { Image } from '../../lib/index.js';

const here = dirname(fileURLToPath(import.meta.url));

/** ../shared/data beside the repository (read-only test data), or $SDNODE_SHARED_DATA. */
export const dataDir = process.env.SDNODE_SHARED_DATA ?? resolve(here, '..', '..', '..', 'shared', 'data');
if (!existsSync(dataDir)) throw new Error(`test data not found at ${dataDir}: set SDNODE_SHARED_DATA`);

export const taeEncoder = join(dataDir, 'tae', 'taef2_encoder.pth');
export const taeDecoder = join(dataDir, 'tae', 'taef2_decoder.pth');
export const imagePath = (name: string) => join(dataDir, 'images', name);

/** The top-left region of `image` whose sides are multiples of `multiple` (at most max×max). */
export function cropTopLeft(image: Image, multiple: number, max = Infinity): Image {
  const width = Math.min(max, image.width - (image.width % multiple));
  const height = Math.min(max, image.height - (image.height % multiple));
  const c = image.channels;
  const data = new Uint8Array(width * height * c);
  for (let y = 0; y < height; y++) {
    data.set(image.data.subarray(y * image.width * c, (y * image.width + width) * c), y * width * c);
  }
  return { width, height, channels: image.channels, data };
}

/** PSNR in dB of two 8-bit images of the same size. */
export function psnr(a: Image, b: Image): number {
  if (a.width !== b.width || a.height !== b.height || a.data.length !== b.data.length) {
    throw new Error(`size mismatch: ${a.width}×${a.height} vs ${b.width}×${b.height}`);
  }
  let se = 0;
  for (let i = 0; i < a.data.length; i++) {
    const d = a.data[i]! - b.data[i]!;
    se += d * d;
  }
  const mse = se / a.data.length;
  return mse === 0 ? Infinity : 10 * Math.log10((255 * 255) / mse);
}
