/** Stretching images to a job's size: sharp's Lanczos-3, as image editors resize. */
import sharp from 'sharp';

import { ImageError } from './errors.js';

/** Interleaved 8-bit pixels of any channel count (an Image, or a 1-channel mask). */
export interface Pixels {
  /** Pixels. */
  width: number;
  /** Pixels. */
  height: number;
  /** 1, 3 or 4. */
  channels: number;
  /** width × height × channels bytes, rows top to bottom. */
  data: Uint8Array;
}

/** `image` stretched to width × height (aspect ratio not kept); returned as is when it already fits. */
export async function resizeImage<T extends Pixels>(image: T, width: number, height: number): Promise<T> {
  if (image.width === width && image.height === height) return image;
  try {
    const { data, info } = await sharp(image.data, { raw: { width: image.width, height: image.height, channels: image.channels as 1 | 3 | 4 } })
      .resize(width, height, { fit: 'fill', kernel: 'lanczos3' })
      .raw()
      .toBuffer({ resolveWithObject: true });
    return { ...image, width: info.width, height: info.height, channels: info.channels, data: new Uint8Array(data.buffer, data.byteOffset, data.length) };
  } catch (cause) {
    throw new ImageError(`cannot resize an image to ${width}×${height}: ${(cause as Error).message}`, { cause });
  }
}
