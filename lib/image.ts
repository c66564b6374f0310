/** Images in and out: decoding and encoding files is sharp's job, not ours. */
import { stat } from 'node:fs/promises';
import { extname } from 'node:path';
import sharp from 'sharp';

import { FileAccessError, ImageError } from './errors.js';
import { checkFollowSymlinks, commitTemporary, resolveOutputPath, temporaryPathFor, writeTemporary } from './output-path.js';
import { checkKeys, checkObject, checkPath } from './validate.js';

/** Interleaved 8-bit pixels, rows top to bottom. */
export interface Image {
  /** Pixels, 1–65536. */
  width: number;
  /** Pixels, 1–65536. */
  height: number;
  /** 3: RGB; 4: RGBA (alpha ignored where an image is read). */
  channels: 3 | 4;
  /** width × height × channels bytes, interleaved (RGBRGB…), rows top to bottom. */
  data: Uint8Array;
}

/** Reads a PNG, JPEG, WebP, … file as 8-bit sRGB, alpha dropped: `channels` is 3. */
export async function readImage(path: string): Promise<Image & { channels: 3 }> {
  checkPath('path', path);
  let info: Awaited<ReturnType<typeof stat>>;
  try {
    info = await stat(path);
  } catch (cause) {
    throw new FileAccessError(`cannot read image '${path}': ${(cause as Error).message}`, { cause });
  }
  if (!info.isFile()) throw new FileAccessError(`cannot read image '${path}': not a regular file`);
  try {
    const { data, info: meta } = await sharp(path).toColourspace('srgb').removeAlpha().raw().toBuffer({ resolveWithObject: true });
    return { width: meta.width, height: meta.height, channels: 3, data: new Uint8Array(data.buffer, data.byteOffset, data.length) };
  } catch (cause) {
    throw new ImageError(`cannot decode image '${path}': ${(cause as Error).message}`, { cause });
  }
}

const FORMATS = { '.png': 'png', '.jpg': 'jpeg', '.jpeg': 'jpeg', '.webp': 'webp' } as const;

/** Options of writeImage(). */
export interface WriteImageOptions {
  /**
   * Write through a symlinked `path` wherever it points. Default false: a link is followed only
   * to a file in its own folder; any other is refused with OutputPathError.
   */
  followSymlinks?: boolean;
}

/**
 * Writes an image; the format follows the extension: .png, .jpg/.jpeg or .webp. The file is
 * replaced atomically (a temporary file beside it, renamed when complete): readers never see a
 * partial image, and a failure leaves the old file as it was. A `path` that exists and is not a
 * regular file (directory, FIFO, socket, device) or is a symlink out of its folder rejects with
 * OutputPathError before anything is encoded.
 */
export async function writeImage(path: string, image: Image, options?: WriteImageOptions): Promise<void> {
  checkPath('path', path);
  checkImage('image', image);
  const o = checkObject('options', options);
  checkKeys('options', o, ['followSymlinks']);
  const followSymlinks = checkFollowSymlinks('options.followSymlinks', o.followSymlinks);
  const format = FORMATS[extname(path).toLowerCase() as keyof typeof FORMATS];
  if (!format) throw new RangeError(`cannot tell the image format of '${path}': use .png, .jpg, .jpeg or .webp`);
  const target = await resolveOutputPath(path, { followSymlinks }, 'path');
  let bytes: Buffer;
  try {
    bytes = await sharp(image.data, { raw: { width: image.width, height: image.height, channels: image.channels } })
      .toFormat(format)
      .toBuffer();
  } catch (cause) {
    throw new ImageError(`cannot write image '${path}': ${(cause as Error).message}`, { cause });
  }
  const temporary = temporaryPathFor(target);
  await writeTemporary(temporary, bytes, target);
  await commitTemporary(temporary, target, 'path');
}

/** Throws TypeError/RangeError unless `image` is a well-formed Image (masks may also have 1 channel). */
export function checkImage(what: string, image: unknown, channelCounts: readonly number[] = [3, 4]): asserts image is Image {
  if (image === null || typeof image !== 'object') throw new TypeError(`${what} must be an object { width, height, channels, data }`);
  const { width, height, channels, data } = image as Record<string, unknown>;
  for (const [k, v] of [['width', width], ['height', height]] as const) {
    if (typeof v !== 'number') throw new TypeError(`${what}.${k} must be a number`);
    if (!Number.isInteger(v) || v < 1 || v > 65536) throw new RangeError(`${what}.${k} must be an integer in [1, 65536], got ${v}`);
  }
  if (typeof channels !== 'number' || !channelCounts.includes(channels))
    throw new RangeError(`${what}.channels must be ${channelCounts.join(' or ')}, got ${String(channels)}`);
  if (!(data instanceof Uint8Array)) throw new TypeError(`${what}.data must be a Uint8Array`);
  const expected = (width as number) * (height as number) * (channels as number);
  if (data.length !== expected) {
    throw new RangeError(`${what}.data has ${data.length} bytes, width × height × channels is ${expected}`);
  }
}
