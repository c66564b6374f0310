/**
 * The hires fix: generate()'s `hires` option. The image is made at width × height, enlarged
 * (in latent space with one of PyTorch's interpolations, as the webui's "Latent" upscalers, or
 * in pixel space with Lanczos, nearest or an ESRGAN Upscaler), then refined by an
 * image-to-image pass at the target size. stable-diffusion.cpp's --hires does the same; its
 * rules for sizes and step counts are followed here, so one seed gives both tools' image.
 */
import type { NativeGenerateParams } from './native.js';
import { MAX_PIXELS, MAX_SIDE } from './tiling.js';
import { Upscaler, UPSCALE_TILE } from './upscaler.js';
import { checkFinite, checkInteger, checkKeys, checkObject } from './validate.js';

/** The latent-space upscalers: the webui's "Latent …" names, lower-case with dashes. */
export const LATENT_UPSCALERS = [
  'latent',
  'latent-nearest',
  'latent-nearest-exact',
  'latent-antialiased',
  'latent-bicubic',
  'latent-bicubic-antialiased',
] as const;
/** The pixel-space interpolations. */
export const PIXEL_UPSCALERS = ['lanczos', 'nearest'] as const;

export type HiresUpscalerName = (typeof LATENT_UPSCALERS)[number] | (typeof PIXEL_UPSCALERS)[number];

/** generate()'s `hires` option. Give `scale`, or `width` and/or `height`, or neither (scale 2). */
export interface HiresOption {
  /** Target = the first pass's size × scale, rounded, then up to the size multiple (as stable-diffusion.cpp). > 1, ≤ 8. Default 2. */
  scale?: number;
  /** Target width in pixels, a multiple of the size multiple. Alone, the height follows the aspect ratio (rounded up to the multiple). */
  width?: number;
  /** Target height; see width. */
  height?: number;
  /** Steps the second pass runs (about: the README's "Hires fix" gives the rule), 0–1000; 0 (default): the first pass's steps. */
  steps?: number;
  /** How much the second pass changes the enlarged image, (0, 1]. Default 0.7. */
  strength?: number;
  /**
   * 'latent' (default: bilinear in latent space), 'latent-nearest', 'latent-nearest-exact',
   * 'latent-antialiased', 'latent-bicubic', 'latent-bicubic-antialiased'; 'lanczos' or
   * 'nearest' in pixel space; or an Upscaler from loadUpscaler() (ESRGAN, then Lanczos to the target).
   */
  upscaler?: HiresUpscalerName | Upscaler;
}

/** The `hires` option resolved: the target size, the steps and how the image is enlarged. */
export interface ResolvedHires {
  width: number;
  height: number;
  /** As given (0: the first pass's). */
  steps: number;
  strength: number;
  upscaler: HiresUpscalerName | Upscaler;
}

/** The webui's names of the upscalers (and stable-diffusion.cpp's --hires-upscaler values). */
export const HIRES_UPSCALER_LABELS: Record<HiresUpscalerName, string> = {
  latent: 'Latent',
  'latent-nearest': 'Latent (nearest)',
  'latent-nearest-exact': 'Latent (nearest-exact)',
  'latent-antialiased': 'Latent (antialiased)',
  'latent-bicubic': 'Latent (bicubic)',
  'latent-bicubic-antialiased': 'Latent (bicubic antialiased)',
  lanczos: 'Lanczos',
  nearest: 'Nearest',
};

/** The largest `scale`: beyond it no first pass of 64² fits the pixel budget anyway. */
export const MAX_HIRES_SCALE = 8;

/** A side rounded up to the size multiple. */
function alignUp(side: number, multiple: number): number {
  return Math.ceil(side / multiple) * multiple;
}

/**
 * The `hires` option checked against the first pass's size: TypeError / RangeError naming
 * the field. The target must be larger than the first pass and within the pixel budget.
 */
export function checkHires(what: string, value: unknown, width: number, height: number, multiple: number): ResolvedHires {
  const o = checkObject(what, value);
  checkKeys(what, o, ['scale', 'width', 'height', 'steps', 'strength', 'upscaler']);
  if (o.scale !== undefined && (o.width !== undefined || o.height !== undefined))
    throw new TypeError(`${what}: give scale, or width and/or height, not both`);
  let tw: number, th: number;
  if (o.width !== undefined || o.height !== undefined) {
    const side = (key: 'width' | 'height') => {
      const v = checkInteger(`${what}.${key}`, o[key], 8, MAX_SIDE);
      if (v % multiple) throw new RangeError(`${what}.${key} must be a multiple of ${multiple} for this model, got ${v}`);
      return v;
    };
    tw = o.width !== undefined ? side('width') : alignUp(Math.round((side('height') * width) / height), multiple);
    th = o.height !== undefined ? side('height') : alignUp(Math.round((tw * height) / width), multiple);
    if (tw < width || th < height || (tw === width && th === height))
      throw new RangeError(`${what}: the target ${tw}×${th} must be larger than the image's ${width}×${height}`);
  } else {
    if (o.scale !== undefined && typeof o.scale !== 'number') throw new TypeError(`${what}.scale must be a number, got ${typeof o.scale}`);
    const scale = o.scale === undefined ? 2 : o.scale;
    if (!(scale > 1 && scale <= MAX_HIRES_SCALE)) throw new RangeError(`${what}.scale must be > 1 and ≤ ${MAX_HIRES_SCALE}, got ${scale}`);
    tw = alignUp(Math.round(width * scale), multiple);
    th = alignUp(Math.round(height * scale), multiple);
  }
  if (tw > MAX_SIDE || th > MAX_SIDE || tw * th > MAX_PIXELS)
    throw new RangeError(`${what}: the target ${tw}×${th} is beyond the pixel budget (sides ≤ ${MAX_SIDE}, ${MAX_PIXELS} pixels)`);
  const steps = o.steps === undefined ? 0 : checkInteger(`${what}.steps`, o.steps, 0, 1000);
  const strength = o.strength === undefined ? 0.7 : checkFinite(`${what}.strength`, o.strength, 0, 1);
  if (strength === 0) throw new RangeError(`${what}.strength must be > 0 (0 would leave the enlarged image as it is)`);
  const upscaler = o.upscaler === undefined ? 'latent' : o.upscaler;
  if (!(upscaler instanceof Upscaler) && !(typeof upscaler === 'string' && Object.hasOwn(HIRES_UPSCALER_LABELS, upscaler)))
    throw new TypeError(`${what}.upscaler must be one of ${Object.keys(HIRES_UPSCALER_LABELS).join(', ')} or an Upscaler from loadUpscaler()`);
  return { width: tw, height: th, steps, strength, upscaler: upscaler as HiresUpscalerName | Upscaler };
}

/**
 * The second pass's schedule, as stable-diffusion.cpp (after the webui) makes it: a schedule of
 * floor(steps / strength) steps, of which the last floor(that × strength) + 1 run (at most all),
 * so about `steps` run at any strength. Float32 arithmetic, as the peer's.
 */
export function hiresSchedule(steps: number, strength: number): { scheduleSteps: number; runSteps: number } {
  const f = Math.fround;
  const s = f(strength);
  const scheduleSteps = Math.max(1, Math.trunc(f(steps / s)));
  const tEnc = Math.min(Math.trunc(f(scheduleSteps * s)), scheduleSteps - 1);
  return { scheduleSteps, runSteps: tEnc + 1 };
}

const FILTERS: Record<HiresUpscalerName, { filter: string; antialias: boolean; pixelSpace: boolean }> = {
  latent: { filter: 'bilinear', antialias: false, pixelSpace: false },
  'latent-nearest': { filter: 'nearest', antialias: false, pixelSpace: false },
  'latent-nearest-exact': { filter: 'nearest-exact', antialias: false, pixelSpace: false },
  'latent-antialiased': { filter: 'bilinear', antialias: true, pixelSpace: false },
  'latent-bicubic': { filter: 'bicubic', antialias: false, pixelSpace: false },
  'latent-bicubic-antialiased': { filter: 'bicubic', antialias: true, pixelSpace: false },
  lanczos: { filter: 'lanczos', antialias: false, pixelSpace: true },
  nearest: { filter: 'nearest', antialias: false, pixelSpace: true },
};

/** The engine's `hires` field for a first pass of `firstSteps` steps. */
export function nativeHires(h: ResolvedHires, firstSteps: number): NonNullable<NativeGenerateParams['hires']> {
  const { scheduleSteps, runSteps } = hiresSchedule(h.steps > 0 ? h.steps : firstSteps, h.strength);
  const base = { width: h.width, height: h.height, scheduleSteps, runSteps };
  if (h.upscaler instanceof Upscaler)
    return { ...base, pixelSpace: true, filter: 'lanczos', antialias: false, upscaler: h.upscaler.nativeHandle(), tile: UPSCALE_TILE, overlap: UPSCALE_TILE / 4 };
  return { ...base, ...FILTERS[h.upscaler] };
}
