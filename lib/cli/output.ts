/**
 * Output files of `generate`: their names for a batch (a -o template), their encoding (sharp;
 * PNG with the webui's parameters chunk), and writing them under the library's destination
 * policy (lib/output-path.ts): every destination is checked before the model loads (a FIFO,
 * socket, device, directory or symlink out of its folder is refused, nothing replaced), and each
 * file is written to an exclusively created temporary file beside its target, fsynced, and
 * renamed into place only once every one is complete and the job was not interrupted.
 */
import { unlink } from 'node:fs/promises';
import { extname } from 'node:path';
import sharp from 'sharp';

import { AbortError, ImageError, type Image } from '../index.js';
import { commitTemporary, resolveOutputPath, temporaryPathFor, writeTemporary } from '../output-path.js';
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

/** The widest zero-padded image number a template may ask for (%09d). */
export const MAX_COUNTER_WIDTH = 9;

/** What the template syntax is, for messages and --help. */
export const TEMPLATE_HELP = '%d (or %02d … %09d) for the image number, %% for a literal %';

/**
 * A -o template as printf-style sequences, as stable-diffusion.cpp's --output takes for image
 * sequences: at most one counter (%d, %3d, %03d: zero-padded to that width, at most 9), `%%` a
 * literal %, any other % sequence a UsageError. `before`/`after` are the literal text around the
 * counter (the whole name, %% unescaped, when there is none).
 */
interface OutputTemplate {
  before: string;
  after: string;
  counter?: { width: number };
}

export function parseOutputTemplate(path: string, flag = '--output'): OutputTemplate {
  const parts: string[] = [''];
  let counter: { width: number } | undefined;
  for (let i = 0; i < path.length; i++) {
    const c = path[i]!;
    if (c !== '%') {
      parts[parts.length - 1] += c;
      continue;
    }
    if (path[i + 1] === '%') {
      parts[parts.length - 1] += '%';
      i++;
      continue;
    }
    const m = /^%0?(\d*)d/.exec(path.slice(i));
    if (!m) {
      const seq = path.slice(i, i + 2) || '%';
      throw new UsageError(`${flag} '${path}': '${seq}' is not a template sequence; use ${TEMPLATE_HELP}`);
    }
    if (counter) throw new UsageError(`${flag} '${path}': more than one image number (%d); use one, and %% for a literal %`);
    // Digits compared as text first: a width like 10^400 must not become a number at all.
    const digits = m[1]!.replace(/^0+/, '');
    if (digits.length > 1 || Number(digits || '0') > MAX_COUNTER_WIDTH)
      throw new UsageError(`${flag} '${path}': the image number's width in '${m[0]}' is too large; at most ${MAX_COUNTER_WIDTH} digits (%0${MAX_COUNTER_WIDTH}d)`);
    counter = { width: Number(digits || '0') };
    parts.push('');
    i += m[0].length - 1;
  }
  return { before: parts[0]!, after: parts[1] ?? '', ...(counter ? { counter } : {}) };
}

/**
 * The files for `count` images: a template with %d (or %03d …) numbers them from 1 in its place;
 * otherwise one image keeps the name as it is (%% as %) and a batch gets `_1`, `_2`, … before
 * the extension (output.png → output_1.png, output_2.png). A malformed template is a UsageError.
 */
export function outputPaths(path: string, count: number, flag = '--output'): string[] {
  const t = parseOutputTemplate(path, flag);
  if (t.counter) {
    const width = t.counter.width;
    return Array.from({ length: count }, (_, i) => `${t.before}${String(i + 1).padStart(width, '0')}${t.after}`);
  }
  const literal = t.before;
  if (count === 1) return [literal];
  const ext = extname(literal);
  const stem = literal.slice(0, literal.length - ext.length);
  return Array.from({ length: count }, (_, i) => `${stem}_${i + 1}${ext}`);
}

/**
 * The files `paths` will be written to (a symlink in its folder resolved to its target), each
 * checked under the destination policy: OutputPathError for one that exists and is not a regular
 * file or links out of its folder, FileAccessError for a missing or unwritable folder. Run
 * before the model loads, so nothing is computed for a destination that would be refused.
 */
export async function prepareOutputs(paths: string[], flag = '--output'): Promise<string[]> {
  const targets: string[] = [];
  for (const path of paths) targets.push(await resolveOutputPath(path, {}, flag));
  return targets;
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

/**
 * Writes every file, or none: temporaries first, then (unless `interrupt` fired meanwhile: an
 * AbortError) renames, each after the policy is checked again for its target. Anything that
 * fails removes the temporaries and rejects with a coded error naming the file.
 */
export async function writeAll(files: Array<{ path: string; target: string; data: Uint8Array }>, interrupt: Interrupt, flag = '--output'): Promise<void> {
  const temporaries: string[] = [];
  const cleanUp = async () => {
    for (const t of temporaries) {
      await unlink(t).catch(() => undefined);
      interrupt.untrack(t);
    }
  };
  try {
    for (const { target, data } of files) {
      const t = temporaryPathFor(target);
      temporaries.push(t);
      interrupt.track(t);
      await writeTemporary(t, data, target);
    }
    if (interrupt.signal.aborted) throw new AbortError();
    for (const [i, { target }] of files.entries()) {
      await commitTemporary(temporaries[i]!, target, flag);
      interrupt.untrack(temporaries[i]!);
    }
  } catch (err) {
    await cleanUp();
    throw err;
  }
}
