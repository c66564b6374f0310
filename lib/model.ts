/**
 * Loading a Stable Diffusion model: a checkpoint file, a diffusers folder, or separate component
 * files, into one set of weights on one device, in the stored types or quantized on load.
 */
import { availableParallelism } from 'node:os';

import { randomInt } from 'node:crypto';
import { join } from 'node:path';

import { loadAutoencoder, type Autoencoder } from './autoencoder.js';
import { BackendError, DisposedError, ModelCompatibilityError, fromNative } from './errors.js';
import type { Image } from './image.js';
import { JobQueue, type JobOptions } from './job.js';
import { detectModel, type ModelDetection } from './model-detect.js';
import { native, type NativeModel } from './native.js';
import { resolveDevice } from './system.js';
import {
  checkBoolean,
  checkEnum,
  checkFunction,
  checkInteger,
  checkKeys,
  checkObject,
  checkPath,
  checkSignal,
} from './validate.js';
import { ClipTokenizer } from './text/clip-tokenizer.js';
import { encodePrompt, type EncodedPrompt } from './text/prompt-weights.js';
import { WEIGHT_TYPES, type WeightType } from './weight-types.js';

export const SAMPLERS = ['euler_a', 'euler', 'heun', 'dpm2', 'dpm++2m', 'dpm++2s_a', 'lcm', 'ddim'] as const;
export type Sampler = (typeof SAMPLERS)[number];
export const SCHEDULERS = ['discrete', 'karras', 'exponential', 'sgm_uniform'] as const;
export type Scheduler = (typeof SCHEDULERS)[number];

export interface GenerateOptions {
  prompt: string;
  /** Default '' (the empty prompt is encoded, as the webui does). */
  negativePrompt?: string;
  /** Multiples of 8. Default 512 × 512. */
  width?: number;
  height?: number;
  /** Sampler steps, 1–1000. Default 20. */
  steps?: number;
  /** Classifier-free guidance. Default 7; 1 skips the unconditional pass. */
  cfgScale?: number;
  /** Default 'euler_a'. */
  sampler?: Sampler;
  /** Default 'discrete'. */
  scheduler?: Scheduler;
  /** 0 … 2^64−1 (number or bigint); -1 or absent: a random one, reported in the result. */
  seed?: number | bigint;
  /** 'cuda' (default): torch's CUDA randn, the webui's GPU seed and stable-diffusion.cpp's; 'cpu': torch's CPU randn (ComfyUI). */
  rng?: 'cuda' | 'cpu';
  /** Images to make; image i uses seed + i. Default 1. */
  batchCount?: number;
  /** 1: the text encoder's last layer (default for SD1.x); 2: the penultimate one (default for SD2.x), as the webui. */
  clipSkip?: number;
  /** What the UNet predicts. Default: the detected prediction, else 'epsilon'. */
  prediction?: 'epsilon' | 'v';
  /** 'full' (default): the model's VAE; 'tae': the TAESD decoder given as `tae` to loadModel (much faster, approximate). */
  vae?: 'full' | 'tae';
  signal?: AbortSignal;
  /** One step per sampler step (steps × batchCount in all). */
  onProgress?: JobOptions['onProgress'];
}

export interface GenerateResult {
  images: Array<Image & { channels: 3 }>;
  /** The seed of the first image (as given, or the random one picked). */
  seed: number | bigint;
  timings: { textEncodeMs: number; samplingMs: number; decodeMs: number };
}

const GENERATE_KEYS = [
  'prompt', 'negativePrompt', 'width', 'height', 'steps', 'cfgScale', 'sampler', 'scheduler', 'seed', 'rng',
  'batchCount', 'clipSkip', 'prediction', 'vae', 'signal', 'onProgress',
] as const;
const MAX_SEED = (1n << 64n) - 1n;
/** A pixel budget, like sharp's limitInputPixels: 4096² (SD1.x was trained at 512²). */
const MAX_PIXELS = 4096 * 4096;
/** 75-token windows per prompt: 2400 tokens, far past what any UI lets users type. */
const MAX_PROMPT_WINDOWS = 32;

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

function checkFinite(what: string, value: unknown, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isFinite(value)) throw new TypeError(`${what} must be a finite number`);
  if (value < min || value > max) throw new RangeError(`${what} must be in [${min}, ${max}], got ${value}`);
  return value;
}

interface Architecture {
  unetHeads: number;
  unetHeadDim: number;
  textEncoderHeads: number;
  quickGelu: boolean;
  vaeScale: number;
}

const tokens = (p: EncodedPrompt) => ({ ids: p.ids, weights: p.weights, windows: p.chunkCount });

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

export interface LoadModelOptions {
  /** 'auto' (default: first GPU, else CPU), 'cpu', 'cuda:0', 'vulkan:0', 'metal'. */
  device?: string;
  /** CPU threads. Default: os.availableParallelism(). */
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
  signal?: AbortSignal;
  /** One step per tensor placed on the device. */
  onProgress?: JobOptions['onProgress'];
}

export interface SourceInfo {
  component: 'checkpoint' | 'unet' | 'vae' | 'textEncoder' | 'textEncoder2';
  path: string;
  format: 'safetensors' | 'gguf' | 'torch';
  /** The key naming the file uses, e.g. 'ldm', 'diffusers'. */
  convention: string;
  /** Tensors taken from this file. */
  tensors: number;
  /** Names in the file that map to no component (EMA copies, training buffers, unknown keys). */
  dropped: string[];
}

export interface ModelInfo extends ModelDetection {
  device: string;
  /** As asked; undefined = as stored. */
  weightType?: WeightType;
  sources: SourceInfo[];
  /** A diffusers folder's tokenizer/ (vocab.json + merges.txt), when it has one. */
  tokenizerDir?: string;
  /** Weights copied into device memory. */
  deviceBytes: number;
  /** Weights used in place from the files' memory maps (CPU, stored type = target type). */
  mappedBytes: number;
  loadMs: number;
  /** The checkpoint's own metadata (safetensors __metadata__, GGUF key-values). */
  metadata: Record<string, string>;
}

export interface WeightRecord {
  /** Internal name (LDM single-file naming, e.g. model.diffusion_model.out.2.weight). */
  name: string;
  shape: number[];
  /** Type in the file: F32, F16, BF16, Q8_0, … */
  from: string;
  /** Type on the device. */
  to: string;
  bytes: number;
  mapped: boolean;
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
  readonly #tae?: Autoencoder;

  /** @internal Use loadModel(). */
  constructor(handle: NativeModel, tae?: Autoencoder) {
    this.#native = handle;
    this.#tae = tae;
    const raw = handle.info();
    const detection = detectModel(handle.weights(), raw.metadata);
    this.info = {
      ...detection,
      device: raw.device,
      ...(raw.weightType ? { weightType: raw.weightType as WeightType } : {}),
      sources: raw.sources as SourceInfo[],
      ...(raw.tokenizerDir ? { tokenizerDir: raw.tokenizerDir } : {}),
      deviceBytes: raw.deviceBytes,
      mappedBytes: raw.mappedBytes,
      loadMs: raw.loadMs,
      metadata: raw.metadata,
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
    this.#checkOpen();
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
   */
  tokenize(text: string): number[] {
    this.#checkOpen();
    if (typeof text !== 'string') throw new TypeError(`text must be a string, got ${typeof text}`);
    return this.#clipTokenizer().tokenize(text);
  }

  /**
   * Text-to-image. Options are checked before anything is queued (TypeError / RangeError);
   * the job runs off the JS thread, reports every sampler step, and stops on `signal`.
   */
  generate(options: GenerateOptions): Promise<GenerateResult> {
    this.#checkOpen();
    const o = checkObject('options', options);
    checkKeys('options', o, GENERATE_KEYS);
    if (typeof o.prompt !== 'string') throw new TypeError('options.prompt must be a string');
    const negativePrompt = o.negativePrompt === undefined ? '' : o.negativePrompt;
    if (typeof negativePrompt !== 'string') throw new TypeError('options.negativePrompt must be a string');
    const width = o.width === undefined ? 512 : checkInteger('options.width', o.width, 8, 8192);
    const height = o.height === undefined ? 512 : checkInteger('options.height', o.height, 8, 8192);
    if (width % 8 || height % 8) throw new RangeError(`width and height must be multiples of 8, got ${width}×${height}`);
    if (width * height > MAX_PIXELS) throw new RangeError(`width × height must be at most ${MAX_PIXELS} pixels (4096²), got ${width}×${height}`);
    const steps = o.steps === undefined ? 20 : checkInteger('options.steps', o.steps, 1, 1000);
    const cfgScale = o.cfgScale === undefined ? 7 : checkFinite('options.cfgScale', o.cfgScale, 0, 100);
    const sampler = o.sampler === undefined ? 'euler_a' : checkEnum('options.sampler', o.sampler, SAMPLERS);
    const scheduler = o.scheduler === undefined ? 'discrete' : checkEnum('options.scheduler', o.scheduler, SCHEDULERS);
    const given = checkSeed(o.seed);
    const rng = o.rng === undefined ? 'cuda' : checkEnum('options.rng', o.rng, ['cuda', 'cpu'] as const);
    const batchCount = o.batchCount === undefined ? 1 : checkInteger('options.batchCount', o.batchCount, 1, 64);
    // SD2.x's text encoder was trained on OpenCLIP's penultimate layer (LDM's FrozenOpenCLIPEmbedder).
    const clipSkip = o.clipSkip === undefined ? (this.info.family === 'sd2' ? 2 : 1) : checkInteger('options.clipSkip', o.clipSkip, 1, 12);
    const prediction = o.prediction === undefined
      ? (this.info.prediction === 'v' ? 'v' : 'epsilon')
      : checkEnum('options.prediction', o.prediction, ['epsilon', 'v'] as const);
    const vae = o.vae === undefined ? 'full' : checkEnum('options.vae', o.vae, ['full', 'tae'] as const);
    const tae = this.#tae;
    if (vae === 'tae' && !tae) throw new TypeError("options.vae 'tae' needs a TAESD decoder: loadModel({ model, tae: 'taesd_decoder.pth' })");
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
    const prompt = encodePrompt(tokenizer, o.prompt);
    const negative = encodePrompt(tokenizer, negativePrompt);
    for (const [what, p] of [['prompt', prompt], ['negativePrompt', negative]] as const) {
      if (p.chunkCount > MAX_PROMPT_WINDOWS)
        throw new RangeError(`options.${what} has ${p.chunkCount} windows of 75 tokens; at most ${MAX_PROMPT_WINDOWS} are taken`);
    }
    const params = {
      prompt: tokens(prompt),
      negative: tokens(negative),
      empty: tokens(encodePrompt(tokenizer, '')),
      ...arch,
      clipSkip,
      prediction,
      width,
      height,
      steps,
      sampler,
      scheduler,
      cfgScale,
      seed,
      rng,
      batchCount,
      decode: vae === 'full',
    };
    return this.#queue.run((progress) => this.#native.generate(params, progress), { signal, onProgress }).then(async (r) => {
      let images = r.images as Array<Image & { channels: 3 }>;
      let decodeMs = r.decodeMs;
      if (tae && vae === 'tae') {
        const t0 = performance.now();
        images = [];
        for (const latent of r.latents) images.push(await tae.decode(latent, { signal }));
        decodeMs = performance.now() - t0;
      }
      return { images, seed: reported, timings: { textEncodeMs: r.textEncodeMs, samplingMs: r.samplingMs, decodeMs } };
    });
  }

  /** What shapes cannot tell, from the model's metadata or its family. */
  #architecture(): Architecture {
    const { family, inpaint, components, metadata } = this.info;
    const missing = (['unet', 'vae', 'textEncoder'] as const).filter((c) => !components[c]);
    if (missing.length) throw new ModelCompatibilityError(`the model lacks its ${missing.join(', ')}: load it with the missing component files`);
    if (family === 'sdxl') throw new ModelCompatibilityError('SDXL generation is not supported yet (SD1.x and SD2.x are)');
    if (inpaint) throw new ModelCompatibilityError('this is an inpainting model (9-channel UNet): text-to-image with it is not supported yet');
    let heads: { unet?: { numHeads?: number; headDim?: number }; clip?: { numHeads?: number } } = {};
    try {
      if (metadata['sdnode.attention_heads']) heads = JSON.parse(metadata['sdnode.attention_heads']) as typeof heads;
    } catch {
      throw new ModelCompatibilityError("the model's sdnode.attention_heads metadata is not JSON");
    }
    // SD1.x: 8 heads at every level (LDM num_heads: 8); SD2.x: 64-wide heads (num_head_channels: 64).
    const unetHeads = heads.unet?.numHeads ?? (heads.unet?.headDim === undefined && family === 'sd1' ? 8 : 0);
    const unetHeadDim = heads.unet?.headDim ?? (unetHeads ? 0 : 64);
    if (family === 'unknown' && !heads.unet) throw new ModelCompatibilityError('the model family is unknown, so its attention heads are too');
    return {
      unetHeads,
      unetHeadDim,
      textEncoderHeads: heads.clip?.numHeads ?? 0,
      // CLIP ViT-L (SD1.x) uses quick-GELU; OpenCLIP ViT-H (SD2.x) GELU.
      quickGelu: family !== 'sd2',
      // SD1.x/SD2.x VAE latent scale (LDM configs' scale_factor).
      vaeScale: 0.18215,
    };
  }

  #clipTokenizer(): ClipTokenizer {
    const dir = this.info.tokenizerDir;
    this.#tokenizer ??= dir ? ClipTokenizer.fromVocabAndMerges(join(dir, 'vocab.json'), join(dir, 'merges.txt')) : ClipTokenizer.default();
    return this.#tokenizer;
  }

  /** Frees the weights once queued and running jobs have settled. Idempotent. */
  dispose(): Promise<void> {
    this.#disposed ??= this.#queue.close().then(async () => {
      this.#native.dispose();
      await this.#tae?.dispose();
    });
    return this.#disposed;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.dispose();
  }

  #checkOpen(): void {
    if (this.#disposed) throw new DisposedError('the model has been disposed');
  }
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
    if (!taePath) return new Model(handle);
    try {
      const tae = await loadAutoencoder({ decoder: taePath }, { device: id, threads, signal });
      if (tae.latentChannels !== 4) {
        await tae.dispose();
        throw new ModelCompatibilityError(`'${taePath}' decodes ${tae.latentChannels}-channel latents; SD1.x/SD2.x latents have 4 (use a TAESD decoder)`);
      }
      return new Model(handle, tae);
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
