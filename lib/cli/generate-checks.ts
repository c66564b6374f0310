/**
 * `generate`'s numeric flags checked before anything is read or loaded, with the ranges and
 * messages of the library's own checks (Model.generate, loadModel), so that `-W -64` or
 * `--steps 0` is refused in milliseconds rather than after the model has loaded. What depends on
 * the model (a size that must be a multiple of 64 for SD1.x, a clip skip deeper than its text
 * encoder) is still the library's to check.
 * The messages name `options.width` …; the CLI's error report turns those into flag names.
 */
import { MAX_PIXELS, MAX_SIDE } from '../tiling.js';
import { MAX_SEED, checkFinite, checkInteger } from '../validate.js';
// The deepest text encoder of any family (SDXL's OpenCLIP ViT-bigG: 32 layers); the model then
// checks its own depth once loaded.
const MAX_CLIP_SKIP = 32;

/** The numeric flags of `generate`, as commander parsed them. */
export interface NumericFlags {
  width?: number;
  height?: number;
  steps: number;
  cfgScale: number;
  seed: number | bigint;
  batchCount: number;
  strength?: number;
  maskBlur?: number;
  clipSkip?: number;
  previewInterval?: number;
  threads?: number;
}

/** Throws the library's TypeError / RangeError for the first numeric flag out of range. */
export function checkNumericFlags(f: NumericFlags): void {
  for (const [what, side] of [['width', f.width], ['height', f.height]] as const) {
    if (side === undefined) continue;
    checkInteger(`options.${what}`, side, 8, MAX_SIDE);
    if (side % 8) throw new RangeError(`options.${what} must be a multiple of 8, got ${side}`);
  }
  if (f.width !== undefined && f.height !== undefined && f.width * f.height > MAX_PIXELS)
    throw new RangeError(`width × height must be at most ${MAX_PIXELS} pixels (4096²), got ${f.width}×${f.height}`);
  checkInteger('options.steps', f.steps, 1, 1000);
  checkFinite('options.cfgScale', f.cfgScale, 0, 100);
  checkInteger('options.batchCount', f.batchCount, 1, 64);
  // The seed parser already made every negative -1 (random); a bigint is past 2^53.
  if (typeof f.seed === 'bigint' && f.seed > MAX_SEED) throw new RangeError(`seed must be 0 … 2^64−1, or -1; got ${f.seed}`);
  if (f.seed !== -1 && BigInt(f.seed) + BigInt(f.batchCount - 1) > MAX_SEED) throw new RangeError('seed + batchCount − 1 must fit in 64 bits');
  if (f.strength !== undefined) checkFinite('options.strength', f.strength, 0, 1);
  if (f.maskBlur !== undefined) checkInteger('options.maskBlur', f.maskBlur, 0, 64);
  // ≤ 0 means the model's default (as stable-diffusion.cpp); anything else must be a layer count.
  if (f.clipSkip !== undefined && f.clipSkip > 0) checkInteger('options.clipSkip', f.clipSkip, 1, MAX_CLIP_SKIP);
  if (f.previewInterval !== undefined) checkInteger('options.previewInterval', f.previewInterval, 1, 1000);
  if (f.threads !== undefined) checkInteger('options.threads', f.threads, 1, 1024);
}
