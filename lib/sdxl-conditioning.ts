/**
 * What SDXL's UNet takes besides the text: the size conditioning of its vector `y` (sgm's
 * original_size_as_tuple, crop_coords_top_left, target_size_as_tuple), and the token ids its
 * second encoder (OpenCLIP bigG) reads.
 */
import type { NativeSizeConditioning } from './native.js';
import { checkInteger, checkObject } from './validate.js';

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

function checkSize(what: string, value: unknown): Size {
  const o = checkObject(what, value) as Record<string, unknown>;
  for (const k of Object.keys(o)) if (k !== 'width' && k !== 'height') throw new TypeError(`${what} has an unknown key '${k}': it takes width and height`);
  return {
    width: checkInteger(`${what}.width`, o.width, 1, MAX_CONDITIONING_SIDE),
    height: checkInteger(`${what}.height`, o.height, 1, MAX_CONDITIONING_SIDE),
  };
}

function checkCrop(what: string, value: unknown): CropCoords {
  const o = checkObject(what, value) as Record<string, unknown>;
  for (const k of Object.keys(o)) if (k !== 'left' && k !== 'top') throw new TypeError(`${what} has an unknown key '${k}': it takes left and top`);
  return { left: checkInteger(`${what}.left`, o.left, 0, MAX_CONDITIONING_SIDE), top: checkInteger(`${what}.top`, o.top, 0, MAX_CONDITIONING_SIDE) };
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
  const original = options.originalSize === undefined ? { width, height } : checkSize('options.originalSize', options.originalSize);
  const target = options.targetSize === undefined ? { width, height } : checkSize('options.targetSize', options.targetSize);
  const crop = options.cropCoords === undefined ? { left: 0, top: 0 } : checkCrop('options.cropCoords', options.cropCoords);
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
