/**
 * What SDXL's UNet takes besides the text: the size conditioning of its vector `y` (sgm's
 * original_size_as_tuple, crop_coords_top_left, target_size_as_tuple), and the token ids its
 * second encoder (OpenCLIP bigG) reads.
 */
import type { NativeSizeConditioning } from './native.js';
import { checkInteger, checkKeys, checkObject } from './validate.js';

/** A size in pixels (SDXL's originalSize / targetSize). */
export interface Size {
  width: number;
  height: number;
}

/** Where the training crop started, pixels from the top-left corner (SDXL's cropCoords). */
export interface CropCoords {
  left: number;
  top: number;
}

/** The largest side a size conditioning takes: far past any training resolution. */
const MAX_CONDITIONING_SIDE = 65536;

/** `{ [a]: integer, [b]: integer }`, each in [min, MAX_CONDITIONING_SIDE]: TypeError / RangeError naming the field. */
function checkPair<A extends string, B extends string>(what: string, value: unknown, a: A, b: B, min: number): Record<A | B, number> {
  const o = checkObject(what, value);
  checkKeys(what, o, [a, b]);
  return { [a]: checkInteger(`${what}.${a}`, o[a], min, MAX_CONDITIONING_SIDE), [b]: checkInteger(`${what}.${b}`, o[b], min, MAX_CONDITIONING_SIDE) } as Record<A | B, number>;
}

/**
 * The size conditioning of a width × height job, as stable-diffusion.cpp defaults it: original
 * and target size the job's size, no crop. Throws TypeError / RangeError for malformed options.
 */
export function sizeConditioning(
  options: { originalSize?: unknown; targetSize?: unknown; cropCoords?: unknown },
  width: number,
  height: number,
): NativeSizeConditioning {
  const original = options.originalSize === undefined ? { width, height } : checkPair('options.originalSize', options.originalSize, 'width', 'height', 1);
  const target = options.targetSize === undefined ? { width, height } : checkPair('options.targetSize', options.targetSize, 'width', 'height', 1);
  const crop = options.cropCoords === undefined ? { left: 0, top: 0 } : checkPair('options.cropCoords', options.cropCoords, 'left', 'top', 0);
  return {
    originalWidth: original.width,
    originalHeight: original.height,
    cropLeft: crop.left,
    cropTop: crop.top,
    targetWidth: target.width,
    targetHeight: target.height,
  };
}

/**
 * The ids SDXL's second encoder reads: each window's tokens up to and with its first EOS, zeros
 * after it (OpenCLIP pads with 0; stable-diffusion.cpp derives them so from the first
 * encoder's windows).
 */
export function secondEncoderIds(ids: Int32Array, windowLength: number, eos: number): Int32Array {
  const out = Int32Array.from(ids);
  for (let start = 0; start < out.length; start += windowLength) {
    const end = Math.min(start + windowLength, out.length);
    const first = out.subarray(start, end).indexOf(eos);
    if (first >= 0) out.fill(0, start + first + 1, end);
  }
  return out;
}
