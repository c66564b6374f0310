/**
 * Loading a Stable Diffusion model: a checkpoint file, a diffusers folder, or separate component
 * files, into one set of weights on one device, in the stored types or quantized on load.
 */
import { availableParallelism } from 'node:os';

import { randomInt } from 'node:crypto';
import { join } from 'node:path';

import { Autoencoder, type Latent } from './autoencoder.js';
import { AbortError, BackendError, DisposedError, ModelCompatibilityError, fromNative } from './errors.js';
import { checkImage, type Image } from './image.js';
import { JobQueue, type JobOptions } from './job.js';
import { diffusersAttentionHeads, isCount, type AttentionHeads } from './diffusers-config.js';
import { detectModel, type ModelDetection } from './model-detect.js';
import {
  native,
  type NativeAutoencoder,
  type NativeJob,
  type NativeModel,
  type NativeProgress,
  type NativeTextEncoderParams,
  type NativeTokens,
  type NativeVaeTiling,
} from './native.js';
import { probePrediction } from './prediction-probe.js';
import { secondEncoderIds, sizeConditioning, type CropCoords, type Size } from './sdxl-conditioning.js';
import { resizeImage } from './resize.js';
import { freeMemoryOn, resolveDevice } from './system.js';
import {
  checkBoolean,
  checkEnum,
  checkFinite,
  checkFunction,
  checkInteger,
  checkKeys,
  checkObject,
  checkPath,
  checkSignal,
  MAX_SEED,
} from './validate.js';
import { metadataFromChunks } from './metadata.js';
import { ClipTokenizer } from './text/clip-tokenizer.js';
import { MAX_PIXELS, MAX_SIDE, checkVaeTilingOption, resolveTiling, type VaeTilingOption } from './tiling.js';
import { encodePrompt, type EncodedPrompt } from './text/prompt-weights.js';
import { WEIGHT_TYPES, type WeightType } from './weight-types.js';

/** The samplers generate() offers (k-diffusion's, as the webui and stable-diffusion.cpp name them; euler_a: Euler ancestral). */
export const SAMPLERS = ['euler_a', 'euler', 'heun', 'dpm2', 'dpm++2m', 'dpm++2s_a', 'lcm', 'ddim'] as const;
/** One of SAMPLERS. */
export type Sampler = (typeof SAMPLERS)[number];
/** The noise schedules generate() offers: the model's own ('discrete'), Karras et al., exponential, SGM uniform. */
export const SCHEDULERS = ['discrete', 'karras', 'exponential', 'sgm_uniform'] as const;
/** One of SCHEDULERS. */
export type Scheduler = (typeof SCHEDULERS)[number];

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
  /** Default 'discrete'. */
  scheduler?: Scheduler;
  /** 0 … 2^64−1 (number or bigint); -1 or absent (the default): a random one, reported in the result. */
  seed?: number | bigint;
  /** 'cuda' (default): torch's CUDA randn, the webui's GPU seed and stable-diffusion.cpp's; 'cpu': torch's CPU randn (ComfyUI). */
  rng?: 'cuda' | 'cpu';
  /** Images to make, 1–64; image i uses seed + i. Default 1. */
  batchCount?: number;
  /** 1: the text encoder's last layer (default for SD1.x); 2: the penultimate one (default for SD2.x and SDXL, both of whose encoders it applies to), as the webui; up to the encoder's layers. */
  clipSkip?: number;
  /** SDXL: the size the training image had before it was resized (the conditioning's original_size). Default: width × height. */
  originalSize?: Size;
  /** SDXL: the size the model is told it makes (target_size). Default: width × height. */
  targetSize?: Size;
  /** SDXL: where the training crop started (crop_coords_top_left). Default { left: 0, top: 0 }. */
  cropCoords?: CropCoords;
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

/** What model.generate() made. */
export interface GenerateResult {
  /** batchCount images, 8-bit RGB, width × height. */
  images: Array<Image & { channels: 3 }>;
  /** The seed of the first image (as given, or the random one picked). */
  seed: number | bigint;
  /** imageEncodeMs: the VAE encoding the init image (and an inpainting model's masked image). */
  timings: { textEncodeMs: number; imageEncodeMs: number; samplingMs: number; decodeMs: number };
}

const GENERATE_KEYS = [
  'prompt', 'negativePrompt', 'width', 'height', 'steps', 'cfgScale', 'sampler', 'scheduler', 'seed', 'rng',
  'batchCount', 'clipSkip', 'prediction', 'vae', 'initImage', 'strength', 'mask', 'maskBlur', 'signal', 'onProgress',
  'preview', 'previewInterval',
  'vaeTiling', 'originalSize', 'targetSize', 'cropCoords',
] as const;
/** Default previewInterval per preview method: previews stay under 5% of sampling time (bench/previews.mjs). */
export const PREVIEW_INTERVAL = { latent2rgb: 1, tae: 5 } as const;
/** 75-token windows per prompt: 2400 tokens, far past what any UI lets users type. */
const MAX_PROMPT_WINDOWS = 32;
/** Tokens per prompt, BOS and EOS aside: what MAX_PROMPT_WINDOWS windows hold at most. */
const MAX_PROMPT_TOKENS = MAX_PROMPT_WINDOWS * 75;
/**
 * UTF-8 bytes in a prompt's words (what BPE merges), at most: three times what 2400 tokens of
 * ordinary text hold (English or CJK: 3–5 bytes a token). Bounds the merging on the caller's
 * thread, which a few long repeated runs (emoji, punctuation) could otherwise take to 77 KB.
 */
const MAX_PROMPT_WORD_BYTES = 32 * 1024;
/**
 * Characters per prompt (and per tokenize() call): ten times what 2400 tokens of ordinary text
 * take. Prompts are tokenized on the caller's thread, so this bounds the time it is held.
 */
const MAX_PROMPT_CHARS = 100_000;

function checkPromptText(what: string, text: unknown): string {
  if (typeof text !== 'string') throw new TypeError(`${what} must be a string, got ${typeof text}`);
  if (text.length > MAX_PROMPT_CHARS) throw new RangeError(`${what} has ${text.length} characters; at most ${MAX_PROMPT_CHARS} are taken`);
  return text;
}

/** The prompt's windows, with the option named in any error of its syntax. */
function encodeOption(what: string, tokenizer: ClipTokenizer, text: string, padId: number): EncodedPrompt {
  try {
    return encodePrompt(tokenizer, text, { maxChunks: MAX_PROMPT_WINDOWS, maxWordBytes: MAX_PROMPT_WORD_BYTES, padId });
  } catch (err) {
    if (err instanceof RangeError) throw new RangeError(err.message.replace(/^prompt /, `${what} `));
    throw err;
  }
}

/** What a model needs from JS besides its weights, made without holding the JS thread for long. */
interface ModelExtras {
  /** The file metadata (built from the addon's JSON texts between event-loop turns). */
  metadata: Record<string, string>;
  /** Entries of the file's metadata past the limits, not in `metadata`. */
  metadataOmitted: number;
  /** A diffusers folder's own tokenizer, or why it could not be read (tokenize() and generate() throw it). */
  tokenizer?: ClipTokenizer | Error;
}

async function loadExtras(handle: NativeModel): Promise<ModelExtras> {
  const { chunks, omitted: metadataOmitted } = handle.metadata();
  const metadata = await metadataFromChunks(chunks);
  const dir = handle.info().tokenizerDir;
  if (!dir) return { metadata, metadataOmitted };
  // A broken tokenizer/ folder fails tokenize() and generate() with its coded error, not the load.
  const tokenizer = await ClipTokenizer.loadVocabAndMerges(join(dir, 'vocab.json'), join(dir, 'merges.txt')).catch((err: unknown) =>
    err instanceof Error ? err : new Error(String(err)),
  );
  return { metadata, metadataOmitted, tokenizer };
}

function checkSeed(value: unknown): bigint | undefined {
  if (value === undefined || value === -1 || value === -1n) return undefined;
  if (typeof value === 'number') {
    if (!Number.isSafeInteger(value) || value < 0) throw new RangeError(`seed must be an integer 0 … 2^53−1 (or a bigint up to 2^64−1), or -1; got ${value}`);
    return BigInt(value);
  }
  if (typeof value === 'bigint') {
    if (value < 0n || value > MAX_SEED) throw new RangeError(`seed must be 0 … 2^64−1, or -1; got ${value}`);
    return value;
  }
  throw new TypeError(`seed must be a number or a bigint, got ${typeof value}`);
}

/**
 * The `sdnode.attention_heads` metadata (what shapes cannot tell; the generator writes it):
 * JSON {"unet": {"numHeads": n} | {"headDim": d}, "clip": {"numHeads": n}, "clip2": {"numHeads": n}}
 * (clip2: SDXL's second text encoder), every part optional.
 * Anything else is a ModelCompatibilityError naming what is wrong, never a TypeError from inside.
 */
function attentionHeads(raw: string | undefined): AttentionHeads {
  if (!raw) return {};
  const bad = (why: string) => new ModelCompatibilityError(`the model's sdnode.attention_heads metadata ${why}`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch {
    throw bad('is not JSON');
  }
  const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);
  if (!isObject(parsed)) throw bad('is not a JSON object');
  const count = (part: string, key: string, v: unknown) => {
    if (v === undefined) return undefined;
    if (!isCount(v)) throw bad(`has ${part}.${key} ${JSON.stringify(v)}: not an integer 1 … 4096`);
    return v;
  };
  const out: AttentionHeads = {};
  for (const part of ['unet', 'clip', 'clip2'] as const) {
    const v = parsed[part];
    if (v === undefined) continue;
    if (!isObject(v)) throw bad(`has a ${part} that is not an object`);
    const numHeads = count(part, 'numHeads', v.numHeads);
    const headDim = part === 'unet' ? count(part, 'headDim', v.headDim) : undefined;
    out[part] = { ...(numHeads !== undefined ? { numHeads } : {}), ...(headDim !== undefined ? { headDim } : {}) };
  }
  return out;
}

interface Architecture {
  unetHeads: number;
  unetHeadDim: number;
  /** The text encoders in the order their hidden states are joined, without clipSkip (an option). */
  textEncoders: Array<Omit<NativeTextEncoderParams, 'clipSkip'>>;
  vaeScale: number;
}

/** stable-diffusion.cpp's conv scale for SDXL's VAE (set_conv2d_scale(1/32)). */
const SDXL_VAE_CONV_INPUT_SCALE = 1 / 32;

/** Internal name prefix of SDXL's second text encoder (native/engine/io/name_map_internal.h). */
const TEXT_ENCODER_2_PREFIX = 'cond_stage_model.1.transformer.text_model.';
/** Tokens per window: BOS, 75 tokens, EOS. */
const WINDOW_TOKENS = 77;

/** A prompt as the engine takes it; `second` adds the ids SDXL's OpenCLIP bigG reads. */
function tokens(p: EncodedPrompt, second?: { eos: number }): NativeTokens {
  return {
    ids: p.ids,
    weights: p.weights,
    windows: p.chunkCount,
    ...(second ? { ids2: secondEncoderIds(p.ids, WINDOW_TOKENS, second.eos) } : {}),
  };
}

/** Files of a model; each component file replaces that component of `model`. */
export interface ModelComponents {
  /** A single-file checkpoint (.safetensors, .ckpt, .gguf) or a diffusers folder. */
  model?: string;
  /** A UNet-only file (LDM or diffusers names, with or without the `model.diffusion_model.` prefix). */
  unet?: string;
  /** A VAE file, e.g. vae-ft-mse-840000-ema-pruned.safetensors. */
  vae?: string;
  /** A CLIP text encoder file (HF CLIPTextModel names, or LDM `cond_stage_model.*`). */
  textEncoder?: string;
  /** SDXL's second text encoder (OpenCLIP bigG). */
  textEncoder2?: string;
  /** A TAESD-format decoder (e.g. taesd_decoder.pth) for `generate({ vae: 'tae' })`: fast, approximate. */
  tae?: string;
}

/** A path to a checkpoint file or diffusers folder, or the component files. */
export type ModelSource = string | ModelComponents;

/** Options of loadModel(); every one is optional. */
export interface LoadModelOptions {
  /** 'auto' (default: first GPU, else CPU), 'cpu', 'cuda:0', 'vulkan:0', 'metal'. */
  device?: string;
  /** The most CPU threads one computation uses, taken from the process-wide budget (a cap, not a claim). Default: os.availableParallelism(). */
  threads?: number;
  /**
   * Default: as stored (f32/f16/quantized GGUF kept; bf16, f64, f8 become f16). f32/f16 convert
   * every floating-point weight; a quantized type quantizes the 2-D linear weights the rules
   * allow (see convertModel) and keeps conv kernels, embeddings and the timestep MLP in f16,
   * biases and norms in f32. `model.weights()` says what each tensor became.
   */
  weightType?: WeightType;
  /** UNet weights from a training checkpoint's EMA copy (model_ema.*), when it has one. Default false. */
  ema?: boolean;
  /** Cancels the load: the promise rejects with AbortError. Default: none. */
  signal?: AbortSignal;
  /** One step per tensor placed on the device. Default: none. */
  onProgress?: JobOptions['onProgress'];
}

/** One file a model was loaded from. */
export interface SourceInfo {
  /** What it supplied: 'checkpoint' (the `model` source) or the component it was given as. */
  component: 'checkpoint' | 'unet' | 'vae' | 'textEncoder' | 'textEncoder2';
  /** The file read. */
  path: string;
  /** Its container format, told from the bytes. */
  format: 'safetensors' | 'gguf' | 'torch';
  /** The key naming the file uses, e.g. 'ldm', 'diffusers'. */
  convention: string;
  /** Tensors taken from this file. */
  tensors: number;
  /** Names in the file that map to no component (EMA copies, training buffers, unknown keys). */
  dropped: string[];
}

/** A loaded model: what it is (ModelDetection) and how it was loaded. */
export interface ModelInfo extends ModelDetection {
  /** The device it runs on ("cpu", "cuda:0", …): after an 'auto' fallback, the CPU. */
  device: string;
  /** As asked; undefined = as stored. */
  weightType?: WeightType;
  /** The files the weights came from, in load order. */
  sources: SourceInfo[];
  /** A diffusers folder's tokenizer/ (vocab.json + merges.txt), when it has one. */
  tokenizerDir?: string;
  /** Weights copied into device memory. */
  deviceBytes: number;
  /** Weights used in place from the files' memory maps (CPU, stored type = target type). */
  mappedBytes: number;
  /** Milliseconds the load took. */
  loadMs: number;
  /** The checkpoint's own metadata (safetensors __metadata__, GGUF key-values), in key order up to METADATA_LIMITS. */
  metadata: Record<string, string>;
  /** Entries of the file's metadata past METADATA_LIMITS, left out of `metadata` (0 for every real checkpoint). */
  metadataOmitted: number;
}

/** One weight of a loaded model (model.weights()). */
export interface WeightRecord {
  /** Internal name (LDM single-file naming, e.g. model.diffusion_model.out.2.weight). */
  name: string;
  /** Outermost first, as PyTorch reports it. */
  shape: number[];
  /** Type in the file: F32, F16, BF16, Q8_0, … */
  from: string;
  /** Type on the device. */
  to: string;
  /** Bytes it takes on the device (or in the memory map). */
  bytes: number;
  /** Used in place from the file's memory map rather than copied (CPU, stored type kept). */
  mapped: boolean;
}

export type { VaeTilingOption } from './tiling.js';

/** Options of model.decodeLatent(); every one is optional. */
export interface DecodeLatentOptions {
  /** Default 'auto'. */
  vaeTiling?: VaeTilingOption;
  /** Cancels the job, queued or running: the promise rejects with AbortError. Default: none. */
  signal?: AbortSignal;
  /** About 16 steps untiled; tiled, one step per tile and stage (a stage per GroupNorm, about 30). Default: none. */
  onProgress?: JobOptions['onProgress'];
}

/** Options of model.encodeImage(); every one is optional. */
export interface EncodeImageOptions {
  /**
   * 0 … 2^64−1 (number or bigint): the latent is sampled from the encoder's posterior, mean +
   * std · noise, the noise from this seed's RNG (as image-to-image draws it). Absent (the
   * default): the posterior mean, deterministic.
   */
  seed?: number | bigint;
  /** The noise's RNG with a seed: 'cuda' (default) or 'cpu', as in generate(). */
  rng?: 'cuda' | 'cpu';
  /** Default 'auto'. */
  vaeTiling?: VaeTilingOption;
  /** Cancels the job, queued or running: the promise rejects with AbortError. Default: none. */
  signal?: AbortSignal;
  /** About 16 steps untiled; tiled, one step per tile and stage (a stage per GroupNorm, about 30). Default: none. */
  onProgress?: JobOptions['onProgress'];
}

const DECODE_KEYS = ['vaeTiling', 'signal', 'onProgress'] as const;
const ENCODE_KEYS = ['seed', 'rng', 'vaeTiling', 'signal', 'onProgress'] as const;
const VAE_PREFIX = 'first_stage_model.';

/** What the weights tell about the VAE's halves: latent channels, and pixels per latent cell. */
interface VaeShape {
  decoder?: { latentChannels: number; scale: number };
  encoder?: { scale: number };
}

function checkLatent(what: string, latent: unknown): asserts latent is Latent {
  if (latent === null || typeof latent !== 'object') throw new TypeError(`${what} must be an object { channels, width, height, data }`);
  const l = latent as Record<string, unknown>;
  checkInteger(`${what}.channels`, l.channels, 1, 4096);
  checkInteger(`${what}.width`, l.width, 1, 8192);
  checkInteger(`${what}.height`, l.height, 1, 8192);
  if (!(l.data instanceof Float32Array)) throw new TypeError(`${what}.data must be a Float32Array`);
  const expected = (l.channels as number) * (l.width as number) * (l.height as number);
  if (l.data.length !== expected) throw new RangeError(`${what}.data has ${l.data.length} values, channels × width × height is ${expected}`);
}

/** undefined (the posterior mean), or a seed 0 … 2^64−1. */
function checkEncodeSeed(value: unknown): bigint | undefined {
  if (value === undefined) return undefined;
  if (typeof value === 'number') {
    if (!Number.isSafeInteger(value) || value < 0)
      throw new RangeError(`options.seed must be an integer 0 … 2^53−1 (or a bigint up to 2^64−1); leave it out for the posterior mean; got ${value}`);
    return BigInt(value);
  }
  if (typeof value === 'bigint') {
    if (value < 0n || value > MAX_SEED) throw new RangeError(`options.seed must be 0 … 2^64−1; leave it out for the posterior mean; got ${value}`);
    return value;
  }
  throw new TypeError(`options.seed must be a number or a bigint, got ${typeof value}`);
}

const LOAD_KEYS = ['device', 'threads', 'weightType', 'ema', 'signal', 'onProgress'] as const;
const COMPONENT_KEYS = ['model', 'unet', 'vae', 'textEncoder', 'textEncoder2', 'tae'] as const;

/**
 * A loaded model. Jobs on one instance run one at a time in call order (FIFO); separate
 * instances run concurrently.
 */
export class Model implements AsyncDisposable {
  /** Family, components, inpainting, prediction — detected from the loaded weights — and load facts. */
  readonly info: ModelInfo;

  readonly #native: NativeModel;
  readonly #queue = new JobQueue('the model');
  #disposed?: Promise<void>;
  #tokenizer?: ClipTokenizer;
  #tokenizerError?: Error;
  #vae?: VaeShape;
  #sizeMultiple?: number;
  #clipLayers?: number;
  #probe?: Promise<'v' | 'epsilon'>;
  readonly #tae?: Autoencoder;
  /** The TAE's native handle: the engine decodes 'tae' previews with it inside the generate job. */
  readonly #taeNative?: NativeAutoencoder;
  /** Attention heads from a diffusers folder's config.json files. */
  readonly #configHeads?: AttentionHeads;

  /** @internal Use loadModel(). */
  constructor(handle: NativeModel, extras: ModelExtras, tae?: Autoencoder, taeNative?: NativeAutoencoder, configHeads?: AttentionHeads) {
    this.#native = handle;
    if (extras.tokenizer instanceof ClipTokenizer) this.#tokenizer = extras.tokenizer;
    else this.#tokenizerError = extras.tokenizer;
    this.#configHeads = configHeads;
    this.#tae = tae;
    this.#taeNative = taeNative;
    const raw = handle.info();
    const openClipTextEncoder = raw.sources.some((s) => ['textEncoder', 'checkpoint'].includes(s.component) && ['ldm-sd2', 'openclip'].includes(s.convention));
    const detection = detectModel(handle.weights(), extras.metadata, { openClipTextEncoder });
    // SDXL's own VAE makes activations past f16's range where its kernels are f16: scaled by
    // 1/32 around every convolution, as stable-diffusion.cpp does. A separate VAE file (the
    // fp16-fix VAE) needs none.
    if (detection.family === 'sdxl' && !raw.sources.some((s) => s.component === 'vae')) handle.setVaeConvInputScale(SDXL_VAE_CONV_INPUT_SCALE);
    this.info = {
      ...detection,
      device: raw.device,
      ...(raw.weightType ? { weightType: raw.weightType as WeightType } : {}),
      sources: raw.sources as SourceInfo[],
      ...(raw.tokenizerDir ? { tokenizerDir: raw.tokenizerDir } : {}),
      deviceBytes: raw.deviceBytes,
      mappedBytes: raw.mappedBytes,
      loadMs: raw.loadMs,
      metadata: extras.metadata,
      metadataOmitted: extras.metadataOmitted,
    };
  }

  /** Every weight: internal name, shape, stored type, type on the device, bytes, mapped or copied. */
  weights(): WeightRecord[] {
    this.#checkOpen();
    return this.#native.weights();
  }

  /**
   * FNV-1a 64 (hex) of each named weight's values as they are on the device (quantized ones
   * decoded), comparable with inspectModel's checksums: equal means bit-identical weights.
   * Default: every weight.
   */
  checksums(names?: string[], options?: JobOptions): Promise<Record<string, string>> {
    if (this.#disposed) return Promise.reject(this.#disposedError());
    const list = names === undefined ? this.#native.weights().map((w) => w.name) : names;
    if (!Array.isArray(list) || list.some((n) => typeof n !== 'string')) throw new TypeError('names must be an array of strings');
    const o = checkObject('options', options);
    checkKeys('options', o, ['signal', 'onProgress']);
    const job = { signal: checkSignal('options.signal', o.signal), onProgress: checkFunction<NonNullable<JobOptions['onProgress']>>('options.onProgress', o.onProgress) };
    return this.#queue
      .run((onProgress) => this.#native.checksums(list, onProgress), job)
      .then((sums) => Object.fromEntries(list.map((n, i) => [n, sums[i]!])));
  }

  /**
   * The prompt's CLIP token ids with BOS and EOS, without padding or prompt syntax (count
   * them against 75 per window): `tokenize('a lovely cat')` → [49406, 320, 2165, 2368, 49407].
   * From the model's own tokenizer/ files when it has them, else OpenAI's CLIP vocabulary.
   * A prompt's limits apply: 100,000 characters, 32 KiB of words, 2,400 tokens (RangeError).
   */
  tokenize(text: string): number[] {
    this.#checkOpen();
    const tokenizer = this.#clipTokenizer();
    const encoded = tokenizer.encodeWithin(checkPromptText('text', text), { maxTokens: MAX_PROMPT_TOKENS, maxWordBytes: MAX_PROMPT_WORD_BYTES });
    // As generate() does, a text past what the windows take is refused before its words are all merged.
    if (encoded.exceeded === 'bytes')
      throw new RangeError(`text has more than ${MAX_PROMPT_WORD_BYTES} bytes of text in its words; at most ${MAX_PROMPT_WORD_BYTES} are taken`);
    if (!encoded.ids)
      throw new RangeError(`text has more than ${MAX_PROMPT_TOKENS} tokens (${MAX_PROMPT_WINDOWS} windows of 75); at most ${MAX_PROMPT_TOKENS} are counted`);
    return [tokenizer.bos, ...encoded.ids, tokenizer.eos];
  }

  /**
   * Text-to-image, and with `initImage` image-to-image, with `mask` inpainting (see
   * GenerateOptions for every option and its default). Options are checked before anything is
   * queued (TypeError / RangeError naming the option, e.g. a size that is not a multiple of the
   * UNet's); the job is queued FIFO behind this model's others, runs off the JS thread, reports
   * every sampler step, and stops on `signal` (AbortError). Engine failures reject with a coded
   * error (e.g. ResourceError when a stage would not fit in memory).
   */
  generate(options: GenerateOptions): Promise<GenerateResult> {
    if (this.#disposed) return Promise.reject(this.#disposedError());
    const o = checkObject('options', options);
    checkKeys('options', o, GENERATE_KEYS);
    const promptText = checkPromptText('options.prompt', o.prompt);
    const negativePrompt = o.negativePrompt === undefined ? '' : checkPromptText('options.negativePrompt', o.negativePrompt);
    const initImage = o.initImage === undefined ? undefined : (checkImage('options.initImage', o.initImage), o.initImage);
    const mask = o.mask === undefined ? undefined : (checkImage('options.mask', o.mask, [1, 3, 4]), o.mask as MaskImage);
    if (mask && !initImage) throw new TypeError('options.mask needs options.initImage (the image to inpaint)');
    if (mask && initImage && (mask.width !== initImage.width || mask.height !== initImage.height))
      throw new RangeError(`options.mask is ${mask.width}×${mask.height}, options.initImage ${initImage.width}×${initImage.height}: they must be the same size`);
    if (o.strength !== undefined && !initImage) throw new TypeError('options.strength applies to image-to-image: give options.initImage');
    const strength = o.strength === undefined ? 0.75 : checkFinite('options.strength', o.strength, 0, 1);
    if (o.maskBlur !== undefined && !mask) throw new TypeError('options.maskBlur applies to inpainting: give options.mask');
    const maskBlur = o.maskBlur === undefined ? 4 : checkInteger('options.maskBlur', o.maskBlur, 0, 64);
    const multiple = this.#unetSizeMultiple();
    const fromInit = (side: number) => Math.max(multiple, side - (side % multiple));
    const width = o.width === undefined ? (initImage ? fromInit(initImage.width) : 512) : checkInteger('options.width', o.width, 8, MAX_SIDE);
    const height = o.height === undefined ? (initImage ? fromInit(initImage.height) : 512) : checkInteger('options.height', o.height, 8, MAX_SIDE);
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
    const steps = o.steps === undefined ? 20 : checkInteger('options.steps', o.steps, 1, 1000);
    const cfgScale = o.cfgScale === undefined ? 7 : checkFinite('options.cfgScale', o.cfgScale, 0, 100);
    const sampler = o.sampler === undefined ? 'euler_a' : checkEnum('options.sampler', o.sampler, SAMPLERS);
    const scheduler = o.scheduler === undefined ? 'discrete' : checkEnum('options.scheduler', o.scheduler, SCHEDULERS);
    const given = checkSeed(o.seed);
    const rng = o.rng === undefined ? 'cuda' : checkEnum('options.rng', o.rng, ['cuda', 'cpu'] as const);
    const batchCount = o.batchCount === undefined ? 1 : checkInteger('options.batchCount', o.batchCount, 1, 64);
    // SD2.x's text encoder was trained on OpenCLIP's penultimate layer (LDM's FrozenOpenCLIPEmbedder), SDXL's on both encoders' (sgm).
    const family = this.info.family;
    const clipSkip = o.clipSkip === undefined ? (family === 'sd2' || family === 'sdxl' ? 2 : 1) : checkInteger('options.clipSkip', o.clipSkip, 1, Math.max(1, this.#textEncoderLayers()));
    if (family !== 'sdxl') {
      for (const k of ['originalSize', 'targetSize', 'cropCoords'] as const)
        if (o[k] !== undefined) throw new TypeError(`options.${k} applies to SDXL models; this one is ${family}`);
    }
    const size = family === 'sdxl' ? sizeConditioning(o, width, height) : undefined;
    // Given, else what the file says, else (SD2.x, whose 512 and 768-v files look alike) the probe's answer.
    const prediction: 'epsilon' | 'v' | undefined = o.prediction !== undefined
      ? checkEnum('options.prediction', o.prediction, ['epsilon', 'v'] as const)
      : this.info.prediction !== 'unknown' ? (this.info.prediction === 'v' ? 'v' : 'epsilon')
      : family === 'sd2' ? undefined : 'epsilon';
    const vae = o.vae === undefined ? 'full' : checkEnum('options.vae', o.vae, ['full', 'tae'] as const);
    const vaeTilingOption = checkVaeTilingOption(o.vaeTiling);
    if (vae === 'tae' && !this.#taeNative) throw new TypeError("options.vae 'tae' needs a TAESD decoder: loadModel({ model, tae: 'taesd_decoder.pth' })");
    const preview = o.preview === undefined ? 'none' : checkEnum('options.preview', o.preview, ['none', 'latent2rgb', 'tae'] as const);
    if (preview === 'tae' && !this.#taeNative) throw new TypeError("options.preview 'tae' needs a TAESD decoder: loadModel({ model, tae: 'taesd_decoder.pth' })");
    const previewInterval = o.previewInterval === undefined
      ? (preview === 'none' ? 1 : PREVIEW_INTERVAL[preview])
      : checkInteger('options.previewInterval', o.previewInterval, 1, 1000);
    const signal = checkSignal('options.signal', o.signal);
    const onProgress = checkFunction<NonNullable<JobOptions['onProgress']>>('options.onProgress', o.onProgress);
    if (given !== undefined && given + BigInt(batchCount - 1) > MAX_SEED) throw new RangeError('seed + batchCount − 1 must fit in 64 bits');

    // A model that cannot generate is a coded rejection, like any file problem.
    let arch: Architecture;
    let tokenizer: ClipTokenizer;
    try {
      arch = this.#architecture();
      tokenizer = this.#clipTokenizer();
    } catch (err) {
      return Promise.reject(err instanceof Error ? err : new Error(String(err)));
    }
    const seed = given ?? BigInt(randomInt(0, 2 ** 32));
    const reported = typeof o.seed === 'bigint' || seed > BigInt(Number.MAX_SAFE_INTEGER) ? seed : Number(seed);
    // SD2.x pads with 0 (OpenCLIP's pad, as the webui and stable-diffusion.cpp); SD1.x and SDXL with EOS.
    const padId = family === 'sd2' ? 0 : tokenizer.eos;
    const prompt = encodeOption('options.prompt', tokenizer, promptText, padId);
    const negative = encodeOption('options.negativePrompt', tokenizer, negativePrompt, padId);
    const second = arch.textEncoders.length > 1 ? { eos: tokenizer.eos } : undefined;
    const vaeTiling = this.#vaeTiling(vaeTilingOption, width, height, [
      ...(vae === 'full' ? (['decode'] as const) : []),
      ...(initImage ? (['encode'] as const) : []),
    ]);
    const taeTiling = vae === 'tae' ? this.#tae?.tilingFor(vaeTilingOption, width, height, 'decode') : undefined;
    const { textEncoders, ...unetAndVae } = arch;
    const params = {
      prompt: tokens(prompt, second),
      negative: tokens(negative, second),
      empty: tokens(encodePrompt(tokenizer, '', { padId }), second),
      ...unetAndVae,
      textEncoders: textEncoders.map((e) => ({ ...e, clipSkip })),
      // SDXL without a negative prompt conditions on zeros, as stable-diffusion.cpp and sgm do.
      zeroNegative: family === 'sdxl' && negativePrompt === '',
      ...(size ? { size } : {}),
      width,
      height,
      steps,
      sampler,
      scheduler,
      cfgScale,
      seed,
      rng,
      batchCount,
      decode: true,
      ...(vaeTiling ? { vaeTiling } : {}),
      ...(initImage ? { strength } : {}),
      ...(mask ? { maskBlur } : {}),
      // Previews travel only with progress events: without onProgress none are made.
      preview: onProgress ? preview : 'none',
      previewInterval,
      latentFormat: family === 'sdxl' ? ('sdxl' as const) : ('sd' as const),
      ...(onProgress && preview === 'tae' ? { tae: this.#taeNative } : {}),
      ...(vae === 'tae' ? { taeDecoder: this.#taeNative } : {}),
      ...(taeTiling ? { taeTiling } : {}),
    };
    // The init image and mask are stretched to the job's size, and the prediction probed, in the job's turn, so the queue keeps its order.
    const start = (progress?: (p: NativeProgress) => void) =>
      initImage || !prediction
        ? afterPreparation(
            Promise.all([
              prediction ?? this.#probedPrediction(arch),
              initImage && resizeImage(initImage, width, height),
              mask && resizeImage(mask, width, height),
            ]).then(
              ([p, i, m]) => () => this.#native.generate({ ...params, prediction: p, ...(i ? { initImage: i } : {}), ...(m ? { mask: m } : {}) }, progress),
            ),
          )
        : this.#native.generate({ ...params, prediction }, progress);
    return this.#queue.run(start, { signal, onProgress }).then((r) => ({
      images: r.images as Array<Image & { channels: 3 }>,
      seed: reported,
      timings: { textEncodeMs: r.textEncodeMs, imageEncodeMs: r.imageEncodeMs, samplingMs: r.samplingMs, decodeMs: r.decodeMs },
    }));
  }

  /**
   * Decodes a latent as the sampler leaves it (scaled by the VAE's factor: 0.18215 for SD1.x and
   * SD2.x, 0.13025 for SDXL) with the model's VAE into an 8-bit RGB image 8× its size (at most
   * 4096² pixels). `latent` is planar `{ channels, width, height, data: Float32Array }`.
   * Options: `vaeTiling` ('auto' default, see VaeTilingOption), `signal`, `onProgress`.
   */
  decodeLatent(latent: Latent, options?: DecodeLatentOptions): Promise<Image & { channels: 3 }> {
    if (this.#disposed) return Promise.reject(this.#disposedError());
    checkLatent('latent', latent);
    const o = checkObject('options', options);
    checkKeys('options', o, DECODE_KEYS);
    const signal = checkSignal('options.signal', o.signal);
    const onProgress = checkFunction<NonNullable<JobOptions['onProgress']>>('options.onProgress', o.onProgress);
    const tilingOption = checkVaeTilingOption(o.vaeTiling);
    const decoder = this.#vaeShape().decoder;
    if (!decoder) return Promise.reject(new ModelCompatibilityError('the model has no VAE decoder: load it with a VAE file'));
    if (latent.channels !== decoder.latentChannels)
      throw new RangeError(`latent.channels is ${latent.channels}, the VAE decoder takes ${decoder.latentChannels}`);
    const width = latent.width * decoder.scale, height = latent.height * decoder.scale;
    if (width * height > MAX_PIXELS)
      throw new RangeError(`the decoded image would be ${width}×${height}; at most ${MAX_PIXELS} pixels (4096²) are made`);
    const tiling = this.#vaeTiling(tilingOption, width, height, ['decode']);
    const scale = this.#vaeScale();
    return this.#queue.run((progress) => this.#native.decodeLatent(latent, scale, tiling, progress), { signal, onProgress }) as Promise<
      Image & { channels: 3 }
    >;
  }

  /**
   * Encodes an RGB(A) image (alpha ignored; sides multiples of 8, at most 4096² pixels, else a
   * RangeError) with the model's VAE into a latent as the sampler takes it: 1/8 the size, scaled
   * by the VAE's factor (0.18215 for SD1.x/SD2.x). Without `seed` the posterior's mean
   * (deterministic); with `seed` mean + std · noise from that seed's `rng` ('cuda' default).
   * Also `vaeTiling` ('auto' default), `signal`, `onProgress`.
   */
  encodeImage(image: Image, options?: EncodeImageOptions): Promise<Latent> {
    if (this.#disposed) return Promise.reject(this.#disposedError());
    checkImage('image', image);
    const o = checkObject('options', options);
    checkKeys('options', o, ENCODE_KEYS);
    const seed = checkEncodeSeed(o.seed);
    const rng = o.rng === undefined ? 'cuda' : checkEnum('options.rng', o.rng, ['cuda', 'cpu'] as const);
    const signal = checkSignal('options.signal', o.signal);
    const onProgress = checkFunction<NonNullable<JobOptions['onProgress']>>('options.onProgress', o.onProgress);
    const tilingOption = checkVaeTilingOption(o.vaeTiling);
    const encoder = this.#vaeShape().encoder;
    if (!encoder) return Promise.reject(new ModelCompatibilityError('the model has no VAE encoder: load it with a VAE file'));
    const f = encoder.scale;
    if (image.width % f || image.height % f)
      throw new RangeError(`image sides must be multiples of ${f}, got ${image.width}×${image.height}: crop or resize first`);
    if (image.width * image.height > MAX_PIXELS)
      throw new RangeError(`image must be at most ${MAX_PIXELS} pixels (4096²), got ${image.width}×${image.height}`);
    const tiling = this.#vaeTiling(tilingOption, image.width, image.height, ['encode']);
    const params = { scale: this.#vaeScale(), rng, ...(seed === undefined ? {} : { seed }), ...(tiling ? { tiling } : {}) };
    return this.#queue.run((progress) => this.#native.encodeImage(image, params, progress), { signal, onProgress });
  }

  /**
   * The native tiling for a checked `vaeTiling` option (checkVaeTilingOption) and the passes
   * over a width × height pixel image; undefined runs whole. 'auto' weighs the compute buffer
   * the largest untiled pass would need against half the memory free on the model's device.
   */
  #vaeTiling(
    option: 'auto' | NativeVaeTiling | undefined,
    width: number,
    height: number,
    passes: ReadonlyArray<'decode' | 'encode'>,
  ): NativeVaeTiling | undefined {
    if (option === 'auto' && passes.length === 0) return undefined;
    return resolveTiling(
      option,
      () => {
        const bytes = this.#native.vaeComputeBytes(width, height);
        // A missing half (null) is refused by the job that needs it.
        return Math.max(0, ...passes.map((p) => bytes[p] ?? 0));
      },
      () => freeMemoryOn(this.info.device),
    );
  }

  /**
   * Pixels that image sides must be a multiple of: 8 per latent cell × 2 per UNet downsampling
   * level (64 for SD1.x/SD2.x), the levels counted from the weights (input_blocks.N.0.op).
   */
  #unetSizeMultiple(): number {
    this.#sizeMultiple ??= 8 * 2 ** this.#native.weights().filter((w) => /^model\.diffusion_model\.input_blocks\.\d+\.0\.op\.weight$/.test(w.name)).length;
    return this.#sizeMultiple;
  }

  /** Layers of the text encoder, counted from the weights (…encoder.layers.N.layer_norm1.weight); 0 without one. */
  #textEncoderLayers(): number {
    if (this.#clipLayers === undefined) {
      const names = new Set(this.#native.weights().map((w) => w.name));
      const prefix = [...names].find((n) => /^cond_stage_model\..*encoder\.layers\.0\.layer_norm1\.weight$/.test(n))?.replace(/0\.layer_norm1\.weight$/, '');
      let n = 0;
      while (prefix !== undefined && names.has(`${prefix}${n}.layer_norm1.weight`)) n++;
      this.#clipLayers = n;
    }
    return this.#clipLayers;
  }

  /** Latent scale factor of the VAE's family (LDM configs' scale_factor). */
  #vaeScale(): number {
    return this.info.family === 'sdxl' ? 0.13025 : 0.18215;
  }

  /** The VAE's halves as the weights show them: LDM's Encoder/Decoder level counts and channels. */
  #vaeShape(): VaeShape {
    if (this.#vae) return this.#vae;
    const shapes = new Map(this.#native.weights().map((w) => [w.name, w.shape]));
    const levels = (part: string) => {
      let n = 0;
      while (shapes.has(`${VAE_PREFIX}${part}.${n}.block.0.norm1.weight`)) n++;
      return n;
    };
    const vae: VaeShape = {};
    const conv = shapes.get(`${VAE_PREFIX}post_quant_conv.weight`) ?? shapes.get(`${VAE_PREFIX}decoder.conv_in.weight`);
    const up = levels('decoder.up');
    if (conv && conv.length === 4 && up > 0) vae.decoder = { latentChannels: conv[1]!, scale: 2 ** (up - 1) };
    const down = levels('encoder.down');
    if (shapes.has(`${VAE_PREFIX}encoder.conv_in.weight`) && down > 0) vae.encoder = { scale: 2 ** (down - 1) };
    this.#vae = vae;
    return vae;
  }

  /** The probe's answer for an SD2.x file that does not say its prediction (lib/prediction-probe.ts), made once. */
  #probedPrediction(arch: Architecture): Promise<'v' | 'epsilon'> {
    this.#probe ??= probePrediction(this.#native, {
      inChannels: this.info.unetInChannels ?? 4,
      contextDim: this.info.contextDim ?? 1024,
      heads: arch.unetHeads ? { heads: arch.unetHeads } : { headDim: arch.unetHeadDim },
    });
    return this.#probe;
  }

  /** What shapes cannot tell, from the model's metadata or its family. */
  #architecture(): Architecture {
    const { family, components, metadata } = this.info;
    const missing = (['unet', 'vae', 'textEncoder'] as const).filter((c) => !components[c]);
    if (missing.length) throw new ModelCompatibilityError(`the model lacks its ${missing.join(', ')}: load it with the missing component files`);
    if (family === 'sdxl' && !components.textEncoder2)
      throw new ModelCompatibilityError('the SDXL model lacks its second text encoder (OpenCLIP bigG): load it with textEncoder2');
    // The file's own metadata first, then a diffusers folder's config.json files.
    const heads = metadata['sdnode.attention_heads'] ? attentionHeads(metadata['sdnode.attention_heads']) : (this.#configHeads ?? {});
    // SD1.x: 8 heads at every level (LDM num_heads: 8); SD2.x: 64-wide heads (num_head_channels: 64).
    const unetHeads = heads.unet?.numHeads ?? (heads.unet?.headDim === undefined && family === 'sd1' ? 8 : 0);
    const unetHeadDim = heads.unet?.headDim ?? (unetHeads ? 0 : 64);
    if (family === 'unknown' && !heads.unet) throw new ModelCompatibilityError('the model family is unknown, so its attention heads are too');
    const clipHeads = heads.clip?.numHeads ?? 0;
    // CLIP ViT-L (SD1.x, SDXL's first) uses quick-GELU; OpenCLIP ViT-H (SD2.x) and bigG (SDXL's second) GELU.
    // SDXL takes both encoders' hidden states without their final norm (sgm's "hidden" / "penultimate" layers).
    const textEncoders: Architecture['textEncoders'] =
      family === 'sdxl'
        ? [
            { heads: clipHeads, quickGelu: true, finalNorm: false },
            { prefix: TEXT_ENCODER_2_PREFIX, heads: heads.clip2?.numHeads ?? 0, quickGelu: false, finalNorm: false, pooled: true },
          ]
        : [{ heads: clipHeads, quickGelu: family !== 'sd2' }];
    return { unetHeads, unetHeadDim, textEncoders, vaeScale: this.#vaeScale() };
  }

  #clipTokenizer(): ClipTokenizer {
    if (this.#tokenizerError) throw this.#tokenizerError;
    // A model with a tokenizer/ folder got its tokenizer (or its error) at load.
    this.#tokenizer ??= ClipTokenizer.default();
    return this.#tokenizer;
  }

  /**
   * Frees the weights once queued and running jobs have settled (they complete normally).
   * Idempotent: every call returns the same promise. Afterwards methods that return a promise
   * (generate, encodeImage, decodeLatent, checksums) reject with DisposedError and the others
   * (weights, tokenize) throw it.
   */
  dispose(): Promise<void> {
    this.#disposed ??= this.#queue.close().then(async () => {
      this.#native.dispose();
      await this.#tae?.dispose();
    });
    return this.#disposed;
  }

  /** dispose(), for `await using model = await loadModel(…)`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.dispose();
  }

  /** Methods that return a value throw DisposedError after dispose(); those that return a promise reject with it. */
  #checkOpen(): void {
    if (this.#disposed) throw this.#disposedError();
  }

  #disposedError(): DisposedError {
    return new DisposedError('the model has been disposed');
  }
}

/** A native job that starts once `ready` gives its starter; cancelling before then rejects with AbortError. */
function afterPreparation<T>(ready: Promise<() => NativeJob<T>>): NativeJob<T> {
  let inner: NativeJob<T> | undefined;
  let cancelled = false;
  return {
    promise: ready.then((start) => {
      if (cancelled) throw new AbortError();
      inner = start();
      return inner.promise;
    }),
    cancel: () => {
      cancelled = true;
      inner?.cancel();
    },
  };
}

function checkSource(source: unknown): ModelComponents {
  if (typeof source === 'string') return { model: checkPath('source', source) };
  const s = checkObject('source', source);
  checkKeys('source', s, COMPONENT_KEYS);
  const out: ModelComponents = {};
  for (const key of COMPONENT_KEYS) {
    if (s[key] !== undefined) out[key] = checkPath(`source.${key}`, s[key]);
  }
  if (Object.keys(out).length === 0) throw new TypeError(`source must name at least one of ${COMPONENT_KEYS.join(', ')}`);
  return out;
}

/**
 * Loads a model off the JS thread: `loadModel('sd15.safetensors')`, a diffusers folder, or
 * `loadModel({ model: 'sd15.ckpt', vae: 'vae-ft-mse.safetensors' })`. Formats: safetensors, GGUF
 * (incl. stable-diffusion.cpp's), PyTorch zip checkpoints (read without executing pickle code).
 * Names from any convention (LDM SD1/SD2/SDXL, diffusers) map to one internal naming. Bad
 * options throw TypeError/RangeError synchronously; file problems reject with a coded error.
 */
export function loadModel(source: ModelSource, options?: LoadModelOptions): Promise<Model> {
  const files = checkSource(source);
  const o = checkObject('options', options);
  checkKeys('options', o, LOAD_KEYS);
  const threads = o.threads === undefined ? availableParallelism() : checkInteger('options.threads', o.threads, 1, 1024);
  const weightType = o.weightType === undefined ? '' : checkEnum('options.weightType', o.weightType, WEIGHT_TYPES);
  const ema = o.ema === undefined ? false : checkBoolean('options.ema', o.ema);
  const signal = checkSignal('options.signal', o.signal);
  const onProgress = checkFunction<NonNullable<JobOptions['onProgress']>>('options.onProgress', o.onProgress);
  const device = resolveDevice(o.device);

  const { tae: taePath, ...modelFiles } = files;
  // The CLIP vocabulary is parsed while the weights load, yielding to the event loop, so the
  // first tokenize()/generate() does not stall it. A failure here surfaces there, with its code.
  const vocabulary = ClipTokenizer.loadDefault().catch(() => undefined);
  const load = async (id: string) => {
    const handle = await new JobQueue('loadModel').run(
      (progress) => native().NativeModel.load({ ...modelFiles, ema, device: id, threads, weightType }, progress),
      { signal, onProgress },
    );
    await vocabulary;
    let configHeads: AttentionHeads | undefined;
    let extras: ModelExtras;
    try {
      extras = await loadExtras(handle);
      configHeads = await diffusersAttentionHeads(handle.info().sources);
    } catch (err) {
      handle.dispose();
      throw err;
    }
    if (!taePath) return new Model(handle, extras, undefined, undefined, configHeads);
    try {
      // Loaded here rather than by loadAutoencoder: the model keeps the native handle too, for
      // the engine's 'tae' previews.
      const taeNative = await new JobQueue('loadModel').run(
        () => native().NativeAutoencoder.load({ decoder: taePath, device: id, threads, f16Weights: false }),
        { signal },
      );
      const tae = new Autoencoder(taeNative);
      if (tae.latentChannels !== 4) {
        await tae.dispose();
        throw new ModelCompatibilityError(`'${taePath}' decodes ${tae.latentChannels}-channel latents; SD1.x/SD2.x latents have 4 (use a TAESD decoder)`);
      }
      return new Model(handle, extras, tae, taeNative, configHeads);
    } catch (err) {
      handle.dispose();
      throw err;
    }
  };
  return load(device.id).catch((err: unknown) => {
    const e = fromNative(err);
    if (!(device.auto && device.id !== 'cpu' && e instanceof BackendError)) throw e;
    process.emitWarning(`sdnode: device '${device.id}' failed (${e.message}); using the CPU`, { code: 'SDNODE_DEVICE_FALLBACK' });
    return load('cpu');
  });
}
