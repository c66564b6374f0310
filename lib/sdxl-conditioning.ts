/**
 * What SDXL's UNet takes besides the text: the size conditioning of its vector `y` (sgm's
 * original_size_as_tuple, crop_coords_top_left, target_size_as_tuple — the refiner's
 * aesthetic_score in place of the target size), and the token ids its second encoder (OpenCLIP
 * bigG) reads.
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

/** An originalSize / targetSize option: `{ width, height }`, each 1 … MAX_CONDITIONING_SIDE. */
export function checkSize(what: string, value: unknown): Size {
  return checkPair(what, value, 'width', 'height', 1);
}

/** A cropCoords option: `{ left, top }`, each 0 … MAX_CONDITIONING_SIDE. */
export function checkCropCoords(what: string, value: unknown): CropCoords {
  return checkPair(what, value, 'left', 'top', 0);
}

/** The SDXL refiner's aesthetic scores: the prompt's and the negative prompt's (sgm's defaults 6 and 2.5). */
export interface AestheticScores {
  aestheticScore: number;
  negativeAestheticScore: number;
}

/**
 * The size conditioning as the engine takes it, from the checked (or defaulted) options: SDXL's
 * with a target size, the refiner's with aesthetic scores.
 */
export function sizeConditioning(original: Size, crop: CropCoords, rest: { target: Size } | AestheticScores): NativeSizeConditioning {
  return {
    originalWidth: original.width,
    originalHeight: original.height,
    cropLeft: crop.left,
    cropTop: crop.top,
    ...('target' in rest ? { targetWidth: rest.target.width, targetHeight: rest.target.height } : rest),
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
