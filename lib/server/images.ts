/**
 * Images over HTTP: base64 (or data: URL) and uploaded bytes decoded with sharp under a pixel
 * limit, masks in the APIs' own conventions turned into the library's (white = repaint), and
 * PNGs out with the webui's `parameters` chunk.
 */
import sharp from 'sharp';

import type { Image } from '../image.js';
import { addPngText, PARAMETERS_KEY } from '../cli/png-parameters.js';
import { JobError } from './job-queue.js';

// sharp refuses to decode images with more pixels than this before it allocates them (a
// decompression bomb is a small file that claims a huge size): the library's largest image.
export const MAX_INPUT_PIXELS = 4096 * 4096;

const BASE64 = /^[A-Za-z0-9+/_-]*={0,2}$/;

function invalidImage(field: string, why: string, cause?: unknown): JobError {
  return new JobError({ status: 400, code: 'invalid_image', field, message: `${field}: ${why}` }, { cause });
}

/** The bytes of a base64 image, with or without a `data:image/…;base64,` prefix; JobError 400 naming `field` otherwise. */
export function base64Bytes(text: unknown, field: string): Buffer {
  if (typeof text !== 'string') throw invalidImage(field, 'must be a base64 string');
  const comma = text.startsWith('data:') ? text.indexOf(',') : -1;
  if (text.startsWith('data:') && (comma < 0 || !text.slice(0, comma).endsWith(';base64'))) throw invalidImage(field, 'a data: URL must be base64 (data:image/png;base64,…)');
  const body = (comma >= 0 ? text.slice(comma + 1) : text).replace(/\s+/g, '');
  if (body === '') throw invalidImage(field, 'is empty');
  if (!BASE64.test(body)) throw invalidImage(field, 'is not base64');
  return Buffer.from(body, body.includes('-') || body.includes('_') ? 'base64url' : 'base64');
}

/** Raw pixels of an encoded image (PNG, JPEG, WebP, …) as stored: gray or colour, alpha included. */
async function decodeRaw(bytes: Uint8Array, field: string): Promise<{ data: Buffer; width: number; height: number; channels: number }> {
  try {
    const { data, info } = await sharp(bytes, { limitInputPixels: MAX_INPUT_PIXELS }).raw().toBuffer({ resolveWithObject: true });
    return { data, width: info.width, height: info.height, channels: info.channels };
  } catch (cause) {
    throw invalidImage(field, `is not an image sdnode can read (PNG, JPEG, WebP) of at most ${MAX_INPUT_PIXELS} pixels: ${(cause as Error).message}`, cause);
  }
}

/** An encoded image as 8-bit RGB, alpha dropped (as readImage); JobError 400 naming `field` when it does not decode. */
export async function decodeImage(bytes: Uint8Array, field: string): Promise<Image & { channels: 3 }> {
  let decoded: { data: Buffer; info: sharp.OutputInfo };
  try {
    decoded = await sharp(bytes, { limitInputPixels: MAX_INPUT_PIXELS }).toColourspace('srgb').removeAlpha().raw().toBuffer({ resolveWithObject: true });
  } catch (cause) {
    throw invalidImage(field, `is not an image sdnode can read (PNG, JPEG, WebP) of at most ${MAX_INPUT_PIXELS} pixels: ${(cause as Error).message}`, cause);
  }
  const { data, info } = decoded;
  if (info.channels !== 3) throw invalidImage(field, `decodes to ${info.channels} channels, not RGB`);
  return { width: info.width, height: info.height, channels: 3, data: new Uint8Array(data.buffer, data.byteOffset, data.length) };
}

/** A one-channel mask, white = repaint. */
export interface GrayMask {
  width: number;
  height: number;
  channels: 1;
  data: Uint8Array;
}

/**
 * How a mask image says where to repaint:
 * - 'luminance': white repaints, black keeps (sdnode, stable-diffusion.cpp); alpha ignored.
 * - 'webui': as the webui's create_binary_mask — an image whose alpha is not all opaque repaints
 *   where alpha > 128 (the painted strokes of its canvas), any other its luminance.
 * - 'openai': OpenAI's images.edit — the fully transparent pixels (alpha 0) repaint; a mask
 *   without alpha is read by luminance.
 */
export type MaskConvention = 'luminance' | 'webui' | 'openai';

// The webui binarizes an alpha mask at this level (create_binary_mask: x > 128).
const WEBUI_ALPHA_THRESHOLD = 128;
const OPAQUE = 255;

/** A mask image decoded and read in `convention`, optionally inverted (the webui's inpainting_mask_invert). */
export async function decodeMask(bytes: Uint8Array, field: string, convention: MaskConvention, invert = false): Promise<GrayMask> {
  const raw = await decodeRaw(bytes, field);
  const { width, height, channels } = raw;
  const pixels = width * height;
  const out = new Uint8Array(pixels);
  const hasAlpha = channels === 2 || channels === 4;
  const alphaAt = (i: number) => raw.data[i * channels + channels - 1]!;
  let alphaUsed = false;
  if (hasAlpha && convention !== 'luminance') {
    let translucent = false;
    for (let i = 0; i < pixels && !translucent; i++) translucent = alphaAt(i) !== OPAQUE;
    alphaUsed = convention === 'openai' || translucent;
  }
  if (alphaUsed) {
    for (let i = 0; i < pixels; i++) {
      const a = alphaAt(i);
      out[i] = (convention === 'openai' ? a === 0 : a > WEBUI_ALPHA_THRESHOLD) ? OPAQUE : 0;
    }
  } else {
    const gray = await sharp(raw.data, { raw: { width, height, channels: channels as 1 | 2 | 3 | 4 } }).removeAlpha().greyscale().raw().toBuffer();
    out.set(gray.subarray(0, pixels));
  }
  if (invert) for (let i = 0; i < pixels; i++) out[i] = OPAQUE - out[i]!;
  return { width, height, channels: 1, data: out };
}

/** An image or mask as PNG bytes, with the webui's `parameters` text chunk when given. */
export async function encodePng(image: { width: number; height: number; channels: 1 | 3 | 4; data: Uint8Array }, parameters?: string): Promise<Uint8Array> {
  const png = await sharp(image.data, { raw: { width: image.width, height: image.height, channels: image.channels } }).png().toBuffer();
  return parameters === undefined ? png : addPngText(png, PARAMETERS_KEY, parameters);
}

/** PNG bytes as base64 text. */
export function toBase64(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).toString('base64');
}
