/**
 * Output files of `generate`: their names for a batch, their encoding (sharp; PNG with the
 * webui's parameters chunk), and writing them so that no partial file is ever left: each is
 * written to a hidden temporary file beside its target, and all are renamed into place only once
 * every one is complete and the job was not interrupted.
 */
import { constants } from 'node:fs';
import { access, rename, stat, unlink, writeFile } from 'node:fs/promises';
import { basename, dirname, extname, join, resolve } from 'node:path';
import sharp from 'sharp';

import { AbortError, FileAccessError, ImageError, type Image } from '../index.js';
import { UsageError } from './exit.js';
import type { Interrupt } from './interrupt.js';
import { addPngText, PARAMETERS_KEY } from './png-parameters.js';

export type ImageFormat = 'png' | 'jpeg' | 'webp';
const FORMATS: Record<string, ImageFormat> = { '.png': 'png', '.jpg': 'jpeg', '.jpeg': 'jpeg', '.webp': 'webp' };

/** The format an output path asks for; a UsageError for any other extension. */
export function imageFormat(path: string, flag = '--output'): ImageFormat {
  const format = FORMATS[extname(path).toLowerCase()];
  if (!format) throw new UsageError(`${flag} '${path}': use a .png, .jpg, .jpeg or .webp file name`);
  return format;
}

/**
 * Rejects with FileAccessError unless the folder `path` goes into exists and is writable:
 * checked before the model loads, so a typo does not cost a whole generation.
 */
export async function checkOutputFolder(path: string, flag = '--output'): Promise<void> {
  const folder = dirname(resolve(path));
  try {
    if (!(await stat(folder)).isDirectory()) throw new Error('not a folder');
    await access(folder, constants.W_OK);
  } catch (cause) {
    throw new FileAccessError(`${flag} '${path}': cannot write in '${folder}': ${(cause as Error).message}`, { cause });
  }
}

// printf-style %d / %03d, as stable-diffusion.cpp's --output takes for image sequences.
const SEQUENCE = /%(0?\d*)d/;

/**
 * The files for `count` images: a path with %d (or %03d …) numbers them from 1 in its place;
 * otherwise one image keeps the path as it is and a batch gets `_1`, `_2`, … before the
 * extension (output.png → output_1.png, output_2.png).
 */
export function outputPaths(path: string, count: number): string[] {
  const m = SEQUENCE.exec(path);
  if (m) {
    const width = m[1] ? Number(m[1]) : 0;
    return Array.from({ length: count }, (_, i) => path.replace(SEQUENCE, String(i + 1).padStart(width, '0')));
  }
  if (count === 1) return [path];
  const ext = extname(path);
  const stem = path.slice(0, path.length - ext.length);
  return Array.from({ length: count }, (_, i) => `${stem}_${i + 1}${ext}`);
}

/** Encodes an image; a PNG gets `parameters` (the webui's infotext) as a text chunk. */
export async function encodeImage(image: Image, format: ImageFormat, parameters?: string): Promise<Uint8Array> {
  let bytes: Uint8Array;
  try {
    bytes = await sharp(image.data, { raw: { width: image.width, height: image.height, channels: image.channels } })
      .toFormat(format)
      .toBuffer();
  } catch (cause) {
    throw new ImageError(`cannot encode the image as ${format}: ${(cause as Error).message}`, { cause });
  }
  return format === 'png' && parameters !== undefined ? addPngText(bytes, PARAMETERS_KEY, parameters) : bytes;
}

function temporaryPath(path: string): string {
  return join(dirname(path), `.${basename(path)}.partial-${process.pid}`);
}

/**
 * Writes every file, or none: temporaries first, then (unless `interrupt` fired meanwhile: an
 * AbortError) renames. Anything that fails removes the temporaries and rejects with an
 * ImageError naming the file.
 */
export async function writeAll(files: Array<{ path: string; data: Uint8Array }>, interrupt: Interrupt): Promise<void> {
  const temporaries: string[] = [];
  const cleanUp = async () => {
    for (const t of temporaries) {
      await unlink(t).catch(() => undefined);
      interrupt.untrack(t);
    }
  };
  try {
    for (const { path, data } of files) {
      const t = temporaryPath(path);
      temporaries.push(t);
      interrupt.track(t);
      await writeFile(t, data).catch((cause: Error) => {
        throw new ImageError(`cannot write '${path}': ${cause.message}`, { cause });
      });
    }
    if (interrupt.signal.aborted) throw new AbortError();
    for (const [i, { path }] of files.entries()) {
      await rename(temporaries[i]!, path).catch((cause: Error) => {
        throw new ImageError(`cannot write '${path}': ${cause.message}`, { cause });
      });
      interrupt.untrack(temporaries[i]!);
    }
  } catch (err) {
    await cleanUp();
    throw err;
  }
}
