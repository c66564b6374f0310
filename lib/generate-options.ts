/**
 * model.generate()'s options: GenerateOptions (the public contract and its documentation) and
 * GENERATE_OPTIONS, one entry per option saying how a given value is checked, what its default
 * is, and which fields of the engine's job a plain option fills. resolveGenerateOptions() turns
 * what the caller gave, with what the model is, into ResolvedGenerateOptions, throwing a
 * TypeError / RangeError naming the option before anything is queued.
 *
 * Adding an option: its field in GenerateOptions, its entry in GENERATE_OPTIONS (with `native`
 * when it maps onto one field of NativeGenerateParams), that field in lib/native.ts (a required
 * one also in PlainField, below).
 */
import { checkImage, type Image } from './image.js';
import type { JobOptions } from './job.js';
import { checkLoraOptions, type LoraOption, type ResolvedLoraOption } from './lora.js';
import type { ModelDetection, ModelFamily } from './model-detect.js';
import type { NativeGenerateParams, NativeVaeTiling } from './native.js';
import { checkHires, type HiresOption, type ResolvedHires } from './hires.js';
import { checkControlNets, type ControlNetOption, type ResolvedControlNet } from './controlnet.js';
import { checkGenerateUpscale, type GenerateUpscaleOption, type UpscaleSettings, type Upscaler } from './upscaler.js';
import { checkCropCoords, checkSize, type CropCoords, type Size } from './sdxl-conditioning.js';
import { checkPromptText } from './text/prompt-limits.js';
import { MAX_PIXELS, MAX_SIDE, checkVaeTilingOption, type VaeTilingOption } from './tiling.js';
import { checkEnum, checkFinite, checkFunction, checkInteger, checkKeys, checkObject, checkSignal, MAX_SEED } from './validate.js';

import { familyProfile, type FamilyProfile } from './families.js';
import { SAMPLERS, SCHEDULERS, checkSampler, checkScheduleSteps, checkScheduler, defaultScheduler, type Sampler, type Scheduler } from './samplers.js';

export { SAMPLERS, SCHEDULERS, type Sampler, type Scheduler };

/** Options of model.generate(): only `prompt` is required. */
export interface GenerateOptions {
  /**
   * What to draw, in the webui's syntax: `(word)` ×1.1, `[word]` ÷1.1, `(word:1.3)`, `BREAK`.
   * At most 32 windows of 75 tokens, 100,000 characters, 32 KiB (UTF-8) of text in words and
   * brackets nested 100 deep (RangeError beyond, thrown before long words are merged). Required.
   */
  prompt: string;
  /** Default '' (the empty prompt is encoded, as the webui does). */
  negativePrompt?: string;
  /**
   * Image size in pixels: multiples of 8 × 2^(the UNet's downsampling levels), i.e. 64 for
   * SD1.x/SD2.x (RangeError naming the multiple otherwise), at most 4096² pixels. Default 512 ×
   * 512, or the init image's size rounded down to that multiple.
   */
  width?: number;
  /** See width. Default 512, or the init image's height rounded down to the size multiple. */
  height?: number;
  /** Sampler steps, 1–1000. Default 20. */
  steps?: number;
  /** Classifier-free guidance, 0–100. Default 7; 1 skips the unconditional pass. */
  cfgScale?: number;
  /** Default 'euler_a'. */
  sampler?: Sampler;
  /**
   * Default: the sampler's own, as stable-diffusion.cpp picks it: 'lcm' for lcm, 'simple' for
   * ddim_trailing, else 'discrete'. 'simple' takes at most 1000 steps, 'lcm' 50 (RangeError).
   */
  scheduler?: Scheduler;
  /** 0 … 2^64−1 (number or bigint); -1 or absent (the default): a random one, reported in the result. */
  seed?: number | bigint;
  /** 'cuda' (default): torch's CUDA randn, the webui's GPU seed and stable-diffusion.cpp's; 'cpu': torch's CPU randn (ComfyUI). */
  rng?: 'cuda' | 'cpu';
  /** Images to make, 1–64; image i uses seed + i. Default 1. */
  batchCount?: number;
  /** 1: the text encoder's last layer (default for SD1.x); 2: the penultimate one (default for SD2.x, SDXL — both of whose encoders it applies to — and the SDXL refiner), as the webui; up to the encoder's layers. */
  clipSkip?: number;
  /** SDXL and its refiner: the size the training image had before it was resized (the conditioning's original_size). Default: width × height. */
  originalSize?: Size;
  /** SDXL (not the refiner): the size the model is told it makes (target_size). Default: width × height. */
  targetSize?: Size;
  /** SDXL and its refiner: where the training crop started (crop_coords_top_left). Default { left: 0, top: 0 }. */
  cropCoords?: CropCoords;
  /** The SDXL refiner: the aesthetic score the prompt's half is conditioned on (sgm's aesthetic_score), 0–10. Default 6. */
  aestheticScore?: number;
  /** The SDXL refiner: the negative prompt's aesthetic score (sgm's negative_aesthetic_score), 0–10. Default 2.5. */
  negativeAestheticScore?: number;
  /** What the UNet predicts. Default: what the file says; for SD2.x files that do not say, one probe evaluation of the UNet decides, as stable-diffusion.cpp's does; else 'epsilon'. */
  prediction?: 'epsilon' | 'v';
  /** 'full' (default): the model's VAE; 'tae': the TAESD decoder given as `tae` to loadModel (much faster, approximate). */
  vae?: 'full' | 'tae';
  /** The init image's VAE encode and the final decode in tiles: 'auto' (default), true, false; see VaeTilingOption. */
  vaeTiling?: VaeTilingOption;
  /**
   * Live previews in `onProgress` events (`preview`: 8-bit RGB, the image's size) of the
   * sampler's current denoised estimate — the guided D(x, σ) of the step's last model call,
   * i.e. where the image is heading, not the noisy latent. 'latent2rgb': a linear projection of
   * the latent channels to RGB (stable-diffusion-webui's "Approx cheap" SD1.x factors), blocky
   * (8×8 pixels per latent cell) but nearly free; 'tae': the TAESD decoder given as `tae` to
   * loadModel (TypeError without one). Default 'none'.
   */
  preview?: 'none' | 'latent2rgb' | 'tae';
  /**
   * Sampler steps between previews, counted per image; each image's last step always has one.
   * An integer ≥ 1. Default PREVIEW_INTERVAL[preview]: 1 for 'latent2rgb' (its cost is below
   * measurement noise), 5 for 'tae' (a TAESD decode costs 11–21% of an SD1.5 step at 256² on
   * a CPU), which keeps previews under 5% of sampling time (bench/previews.mjs).
   */
  previewInterval?: number;
  /**
   * Image-to-image: the image to start from (RGB, or RGBA with alpha ignored). width and height
   * default to its size rounded down to the model's size multiple (see width); an image of another size than width ×
   * height is stretched to it (sharp, Lanczos-3). Default: none (text-to-image).
   */
  initImage?: Image;
  /**
   * How much of the init image is redrawn, 0–1: the last ⌈steps × strength⌉ steps of the
   * schedule run, starting from the init image noised to that step's sigma (webui semantics).
   * Default 0.75. 0 returns the init image through one VAE round trip.
   */
  strength?: number;
  /**
   * Inpainting: white = repaint, black = keep, gray = partly; 1, 3 (luminance) or 4 (alpha
   * ignored) channels, the init image's size. Needs initImage. Pixels outside the blurred mask
   * keep the init image's exact values. Default: none (no inpainting).
   */
  mask?: MaskImage;
  /** Radius in pixels (0–64) of the Gaussian (σ = radius / 3) that softens the mask's edge. Default 4. */
  maskBlur?: number;
  /**
   * LoRAs for this image: `[{ lora, weight }]` with handles from model.loadLora(), or
   * `[{ path, weight }]` (loaded once for the model and kept). weight multiplies the file's own
   * scale (alpha / rank), −10 … 10, default 1. `<lora:name:weight>` tags in the prompt add
   * LoRAs from loadModel's `loraDir` (the tags are removed before tokenizing). Applying a set
   * costs a fraction of a step and is kept for the next request with the same set; the base
   * weights are never changed. Default: none.
   */
  loras?: LoraOption[];
  /**
   * The hires fix (text-to-image only): the image made at width × height, enlarged to
   * `scale` (default 2) × its size or to `width`/`height`, then refined by an image-to-image
   * pass of about `steps` steps (0: as many as the first) at `strength` (default 0.7), as
   * stable-diffusion.cpp's --hires. `upscaler`: 'latent' (default) and the other latent modes,
   * 'lanczos', 'nearest', or an Upscaler (ESRGAN). Progress counts both passes; the result is the
   * target's size. See HiresOption (lib/hires.ts). Default: none.
   */
  hires?: HiresOption;
  /**
   * ESRGAN upscaling of every image after decoding: `{ upscaler, repeats = 1, tile = 128,
   * tileOverlap = tile / 4 }` with an Upscaler from loadUpscaler(). The images come back
   * `upscaler.scale`^repeats times larger (at most 4096² pixels: RangeError otherwise); the
   * upscale runs in the upscaler's queue once the model's job is done, cancelled by `signal`
   * too, and is not counted in `onProgress`. Default: none.
   */
  upscale?: GenerateUpscaleOption;
  /**
   * ControlNets guiding the UNet: `[{ model, image, strength = 1, start = 0, end = 1,
   * preprocess = 'none' | 'canny', canny }]` with handles from model.loadControlNet(). Each
   * image is stretched to the output size like an init image; each network runs before the
   * UNet in the steps i of n with start ≤ i / n ≤ end, its residuals × strength (0 … 2) summed
   * with the others'. Works with text-to-image, image-to-image and inpainting, and with
   * `hires`: both passes guided, each by the image stretched to its size. See
   * ControlNetOption (lib/controlnet.ts). Default: none.
   */
  controlNets?: ControlNetOption[];
  /** Cancels the job, queued or running: the promise rejects with AbortError. Default: none. */
  signal?: AbortSignal;
  /** One step per sampler step run (steps × batchCount in all; ⌈steps × strength⌉ × batchCount for image-to-image). Default: none. */
  onProgress?: JobOptions['onProgress'];
}

/** An inpainting mask: an Image, or single-channel pixels. */
export interface MaskImage {
  /** Pixels: the init image's width. */
  width: number;
  /** Pixels: the init image's height. */
  height: number;
  /** 1: gray; 3: RGB (its luminance is taken); 4: RGBA (alpha ignored). */
  channels: 1 | 3 | 4;
  /** width × height × channels bytes, interleaved, rows top to bottom. */
  data: Uint8Array;
}

/** Default previewInterval per preview method: previews stay under 5% of sampling time (bench/previews.mjs). */
export const PREVIEW_INTERVAL = { latent2rgb: 1, tae: 5 } as const;

/**
 * Every option given or defaulted, and checked. Those whose resolved form differs from the
 * given one are listed here; every other option is its own type, always present.
 */
export interface ResolvedGenerateOptions
  extends Required<
    Omit<
      GenerateOptions,
      'seed' | 'originalSize' | 'targetSize' | 'cropCoords' | 'aestheticScore' | 'negativeAestheticScore' | 'prediction' | 'vaeTiling' | 'initImage' | 'mask' | 'loras' | 'hires' | 'upscale' | 'controlNets' | 'signal' | 'onProgress'
    >
  > {
  /** Each entry checked, weight defaulted. */
  loras: ResolvedLoraOption[];
  /** As given (checked); -1: a random one, picked when the job is made. */
  seed: number | bigint;
  /** SDXL's size conditioning, given or defaulted; undefined for other families. */
  originalSize: Size | undefined;
  targetSize: Size | undefined;
  cropCoords: CropCoords | undefined;
  /** The refiner's aesthetic scores, given or defaulted; undefined for other families. */
  aestheticScore: number | undefined;
  negativeAestheticScore: number | undefined;
  /** undefined: the file does not say and the family (SD2.x) needs the probe's answer. */
  prediction: 'epsilon' | 'v' | undefined;
  /** 'auto' (decided per job from free memory), the tiles, or undefined (untiled). */
  vaeTiling: 'auto' | NativeVaeTiling | undefined;
  initImage: Image | undefined;
  mask: MaskImage | undefined;
  /** The hires fix's target, steps and upscaler, or undefined (none). */
  hires: ResolvedHires | undefined;
  /** Each entry checked and defaulted, its hint made (Canny edges with preprocess 'canny'). */
  controlNets: ResolvedControlNet[];
  /** The upscaler and its settings, or undefined (none). */
  upscale: (UpscaleSettings & { upscaler: Upscaler }) | undefined;
  signal: AbortSignal | undefined;
  onProgress: JobOptions['onProgress'];
}

/** What the options' defaults and checks need to know about the model. */
export interface GenerateModelFacts {
  family: ModelFamily;
  /** What the file says the UNet predicts. */
  prediction: ModelDetection['prediction'];
  /** loadModel was given a TAESD decoder (`tae`). */
  hasTae: boolean;
  /** Pixels image sides must be a multiple of (64 for SD1.x/SD2.x). */
  sizeMultiple(): number;
  /** Layers of the text encoder; 0 without one. */
  textEncoderLayers(): number;
  /** The model generating: ControlNets must have been loaded for it. */
  owner?: object;
}

/** What an option's rules see besides its own value. */
interface ResolveContext {
  facts: GenerateModelFacts;
  /** An option before this one in GENERATE_OPTIONS, resolved. */
  get<K extends keyof ResolvedGenerateOptions>(name: K): ResolvedGenerateOptions[K];
}

/** How one option is taken. Absent, an option is `default` (or what `derive` makes); without either, undefined. */
interface GenerateOption<T> {
  /** The option must be given: `check` runs on undefined too. */
  required?: true;
  /** The value when the option is absent. */
  default?: T;
  /** The value when the option is absent, from the model or the options before this one. */
  derive?: (ctx: ResolveContext) => T;
  /** A given value, checked: TypeError / RangeError naming `what` ('options.<name>'). */
  check: (value: unknown, what: string, ctx: ResolveContext) => T;
  /** A rule across this option (given or defaulted) and those before it. */
  also?: (value: T, ctx: ResolveContext) => void;
  /** The engine job's fields this option fills by itself; lib/generate.ts composes the others. */
  native?: (value: T, options: ResolvedGenerateOptions) => Partial<NativeGenerateParams>;
}

/** The pixel size generate() makes without width / height or an init image: SD1.x's training size. */
const DEFAULT_SIDE = 512;

/** A side taken from the init image: rounded down to the size multiple, at least one multiple. */
function sideFrom(image: Image | undefined, side: 'width' | 'height', facts: GenerateModelFacts): number {
  if (!image) return DEFAULT_SIDE;
  const multiple = facts.sizeMultiple();
  return Math.max(multiple, image[side] - (image[side] % multiple));
}

/** Both sides, given or taken from the init image: within the limits and multiples of the UNet's size multiple. */
function checkImageSize(width: number, height: number, multiple: number): void {
  // Sizes taken from the init image pass the same limits as given ones.
  for (const [what, side] of [['width', width], ['height', height]] as const) {
    if (side > MAX_SIDE) throw new RangeError(`options.${what} (from options.initImage) must be at most ${MAX_SIDE}, got ${side}: give width and height`);
  }
  if (width % 8 || height % 8) throw new RangeError(`width and height must be multiples of 8, got ${width}×${height}`);
  for (const [what, side] of [['width', width], ['height', height]] as const) {
    if (side % multiple)
      throw new RangeError(`options.${what} must be a multiple of ${multiple} for this model (its UNet halves the 1/8-size latent ${Math.log2(multiple / 8)} times), got ${side}`);
  }
  if (width * height > MAX_PIXELS) throw new RangeError(`width × height must be at most ${MAX_PIXELS} pixels (4096²), got ${width}×${height}`);
}

/** 0 … 2^64−1 as a number (up to 2^53−1) or a bigint, or -1 (random). */
function checkSeed(value: unknown): number | bigint {
  if (typeof value === 'number') {
    if (value !== -1 && (!Number.isSafeInteger(value) || value < 0))
      throw new RangeError(`seed must be an integer 0 … 2^53−1 (or a bigint up to 2^64−1), or -1; got ${value}`);
    return value;
  }
  if (typeof value === 'bigint') {
    if (value !== -1n && (value < 0n || value > MAX_SEED)) throw new RangeError(`seed must be 0 … 2^64−1, or -1; got ${value}`);
    return value;
  }
  throw new TypeError(`seed must be a number or a bigint, got ${typeof value}`);
}

/** A seed option that asks for a random one. */
export function isRandomSeed(seed: number | bigint): boolean {
  return seed === -1 || seed === -1n;
}

type VectorKind = FamilyProfile['vector'];

/** The family's UNet takes a vector y of one of these kinds. */
function takesVector(facts: GenerateModelFacts, ...kinds: VectorKind[]): boolean {
  const vector = familyProfile(facts.family)?.vector;
  return vector !== undefined && kinds.includes(vector);
}

/** TypeError for an option of SDXL's (or its refiner's) vector y on a family whose UNet does not take it. */
function vectorOnly(what: string, facts: GenerateModelFacts, ...kinds: VectorKind[]): void {
  if (takesVector(facts, ...kinds)) return;
  const which = kinds.includes('size') ? (kinds.includes('size-aesthetic') ? 'SDXL models and the SDXL refiner' : 'SDXL models (not the refiner)') : 'the SDXL refiner';
  throw new TypeError(`${what} applies to ${which}; this one is ${facts.family}`);
}

const TAE_NEEDED = "needs a TAESD decoder: loadModel({ model, tae: 'taesd_decoder.pth' })";

type GenerateOptionTable = { readonly [K in keyof ResolvedGenerateOptions]: GenerateOption<ResolvedGenerateOptions[K]> };

/**
 * Every option of generate(), in the order they are checked: an option's rules may read those
 * before it (ctx.get), e.g. width's default the init image.
 */
const GENERATE_OPTIONS: GenerateOptionTable = {
  prompt: { required: true, check: (v, what) => checkPromptText(what, v) },
  negativePrompt: { default: '', check: (v, what) => checkPromptText(what, v) },
  initImage: {
    check: (v, what) => {
      checkImage(what, v);
      return v;
    },
  },
  mask: {
    check: (v, what, { get }) => {
      checkImage(what, v, [1, 3, 4]);
      const mask = v as MaskImage, init = get('initImage');
      if (!init) throw new TypeError('options.mask needs options.initImage (the image to inpaint)');
      if (mask.width !== init.width || mask.height !== init.height)
        throw new RangeError(`options.mask is ${mask.width}×${mask.height}, options.initImage ${init.width}×${init.height}: they must be the same size`);
      return mask;
    },
  },
  strength: {
    default: 0.75,
    check: (v, what, { get }) => {
      if (!get('initImage')) throw new TypeError('options.strength applies to image-to-image: give options.initImage');
      return checkFinite(what, v, 0, 1);
    },
    native: (strength, o) => (o.initImage ? { strength } : {}),
  },
  maskBlur: {
    default: 4,
    check: (v, what, { get }) => {
      if (!get('mask')) throw new TypeError('options.maskBlur applies to inpainting: give options.mask');
      return checkInteger(what, v, 0, 64);
    },
    native: (maskBlur, o) => (o.mask ? { maskBlur } : {}),
  },
  width: {
    derive: ({ get, facts }) => sideFrom(get('initImage'), 'width', facts),
    check: (v, what) => checkInteger(what, v, 8, MAX_SIDE),
    native: (width) => ({ width }),
  },
  height: {
    derive: ({ get, facts }) => sideFrom(get('initImage'), 'height', facts),
    check: (v, what) => checkInteger(what, v, 8, MAX_SIDE),
    also: (height, { get, facts }) => checkImageSize(get('width'), height, facts.sizeMultiple()),
    native: (height) => ({ height }),
  },
  steps: { default: 20, check: (v, what) => checkInteger(what, v, 1, 1000), native: (steps) => ({ steps }) },
  cfgScale: { default: 7, check: (v, what) => checkFinite(what, v, 0, 100), native: (cfgScale) => ({ cfgScale }) },
  sampler: { default: 'euler_a', check: (v, what) => checkSampler(what, v), native: (sampler) => ({ sampler }) },
  scheduler: {
    derive: ({ get }) => defaultScheduler(get('sampler')),
    check: (v, what) => checkScheduler(what, v),
    also: (scheduler, { get }) => checkScheduleSteps('options.steps', scheduler, get('steps')),
    native: (scheduler) => ({ scheduler }),
  },
  seed: { default: -1, check: (v) => checkSeed(v) },
  rng: { default: 'cuda', check: (v, what) => checkEnum(what, v, ['cuda', 'cpu'] as const), native: (rng) => ({ rng }) },
  batchCount: {
    default: 1,
    check: (v, what) => checkInteger(what, v, 1, 64),
    also: (batchCount, { get }) => {
      const seed = get('seed');
      if (!isRandomSeed(seed) && BigInt(seed) + BigInt(batchCount - 1) > MAX_SEED) throw new RangeError('seed + batchCount − 1 must fit in 64 bits');
    },
    native: (batchCount) => ({ batchCount }),
  },
  clipSkip: {
    // SD2.x's text encoder was trained on OpenCLIP's penultimate layer (LDM's FrozenOpenCLIPEmbedder), SDXL's on both encoders' (sgm).
    derive: ({ facts }) => familyProfile(facts.family)?.clipSkip ?? 1,
    check: (v, what, { facts }) => checkInteger(what, v, 1, Math.max(1, facts.textEncoderLayers())),
  },
  // SDXL's size conditioning, defaulted as stable-diffusion.cpp does: original and target size the job's size, no crop.
  originalSize: {
    derive: ({ get, facts }) => (takesVector(facts, 'size', 'size-aesthetic') ? { width: get('width'), height: get('height') } : undefined),
    check: (v, what, { facts }) => (vectorOnly(what, facts, 'size', 'size-aesthetic'), checkSize(what, v)),
  },
  targetSize: {
    derive: ({ get, facts }) => (takesVector(facts, 'size') ? { width: get('width'), height: get('height') } : undefined),
    check: (v, what, { facts }) => (vectorOnly(what, facts, 'size'), checkSize(what, v)),
  },
  cropCoords: {
    derive: ({ facts }) => (takesVector(facts, 'size', 'size-aesthetic') ? { left: 0, top: 0 } : undefined),
    check: (v, what, { facts }) => (vectorOnly(what, facts, 'size', 'size-aesthetic'), checkCropCoords(what, v)),
  },
  // The refiner's aesthetic scores, defaulted as sgm's sampling does.
  aestheticScore: {
    derive: ({ facts }) => (takesVector(facts, 'size-aesthetic') ? 6 : undefined),
    check: (v, what, { facts }) => (vectorOnly(what, facts, 'size-aesthetic'), checkFinite(what, v, 0, 10)),
  },
  negativeAestheticScore: {
    derive: ({ facts }) => (takesVector(facts, 'size-aesthetic') ? 2.5 : undefined),
    check: (v, what, { facts }) => (vectorOnly(what, facts, 'size-aesthetic'), checkFinite(what, v, 0, 10)),
  },
  prediction: {
    // What the file says, else (SD2.x, whose 512 and 768-v files look alike) the probe's answer.
    derive: ({ facts }) => (facts.prediction !== 'unknown' ? facts.prediction : facts.family === 'sd2' ? undefined : 'epsilon'),
    check: (v, what) => checkEnum(what, v, ['epsilon', 'v'] as const),
  },
  vae: {
    default: 'full',
    check: (v, what, { facts }) => {
      const vae = checkEnum(what, v, ['full', 'tae'] as const);
      if (vae === 'tae' && !facts.hasTae) throw new TypeError(`${what} 'tae' ${TAE_NEEDED}`);
      return vae;
    },
  },
  vaeTiling: { default: 'auto', check: (v, what) => checkVaeTilingOption(v, what) },
  preview: {
    default: 'none',
    check: (v, what, { facts }) => {
      const preview = checkEnum(what, v, ['none', 'latent2rgb', 'tae'] as const);
      if (preview === 'tae' && !facts.hasTae) throw new TypeError(`${what} 'tae' ${TAE_NEEDED}`);
      return preview;
    },
  },
  previewInterval: {
    derive: ({ get }) => {
      const preview = get('preview');
      return preview === 'none' ? 1 : PREVIEW_INTERVAL[preview];
    },
    check: (v, what) => checkInteger(what, v, 1, 1000),
    native: (previewInterval) => ({ previewInterval }),
  },
  loras: { default: [], check: (v, what) => checkLoraOptions(what, v) },
  hires: {
    check: (v, what, { get, facts }) => {
      if (get('initImage')) throw new TypeError(`${what} applies to text-to-image: leave out options.initImage`);
      return checkHires(what, v, get('width'), get('height'), facts.sizeMultiple());
    },
  },
  upscale: { check: (v, what, { get }) => checkGenerateUpscale(what, v, get('hires')?.width ?? get('width'), get('hires')?.height ?? get('height')) },
  controlNets: {
    default: [],
    check: (v, what, { facts }) => checkControlNets(what, v, facts.owner ?? {}),
  },
  signal: { check: (v, what) => checkSignal(what, v) },
  onProgress: { check: (v, what) => checkFunction<NonNullable<JobOptions['onProgress']>>(what, v) },
};

/** The option names, in checking order. */
const GENERATE_KEYS = Object.keys(GENERATE_OPTIONS) as Array<keyof ResolvedGenerateOptions>;

/**
 * The caller's options checked and completed with their defaults, in GENERATE_OPTIONS' order:
 * unknown names, wrong types and out-of-range values throw TypeError / RangeError naming the option.
 */
export function resolveGenerateOptions(options: unknown, facts: GenerateModelFacts): ResolvedGenerateOptions {
  const given = checkObject('options', options);
  checkKeys('options', given, GENERATE_KEYS);
  const resolved: Partial<Record<keyof ResolvedGenerateOptions, unknown>> = {};
  const ctx: ResolveContext = {
    facts,
    get: (name) => {
      if (!(name in resolved)) throw new Error(`generate option '${name}' is read before it is resolved: see GENERATE_OPTIONS' order`);
      return resolved[name] as never;
    },
  };
  for (const name of GENERATE_KEYS) {
    const rule = GENERATE_OPTIONS[name] as GenerateOption<unknown>;
    const value = given[name];
    const taken = value !== undefined || rule.required ? rule.check(value, `options.${name}`, ctx) : rule.derive ? rule.derive(ctx) : rule.default;
    rule.also?.(taken, ctx);
    resolved[name] = taken;
  }
  return resolved as ResolvedGenerateOptions;
}

/** The engine job's required fields that GENERATE_OPTIONS' `native` rules fill (the job composes the rest). */
type PlainField = 'width' | 'height' | 'steps' | 'cfgScale' | 'sampler' | 'scheduler' | 'rng' | 'batchCount';

/** The engine job's fields that options fill by themselves: every `native` rule's, in GENERATE_OPTIONS' order. */
export function plainNativeParams(options: ResolvedGenerateOptions): Pick<NativeGenerateParams, PlainField> & Partial<NativeGenerateParams> {
  const params: Partial<NativeGenerateParams> = {};
  for (const name of GENERATE_KEYS) {
    const rule = GENERATE_OPTIONS[name] as GenerateOption<unknown>;
    if (rule.native) Object.assign(params, rule.native(options[name], options));
  }
  // The rules of the PlainField options fill them whatever the values: width's gives width, and so on.
  return params as Pick<NativeGenerateParams, PlainField>;
}
