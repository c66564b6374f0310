/**
 * The model's VAE on its own: model.decodeLatent() and model.encodeImage(), and the tiling
 * policy every pass of that VAE shares (generate's included).
 */
import type { Latent } from './autoencoder.js';
import { ModelCompatibilityError } from './errors.js';
import { checkImage, type Image } from './image.js';
import type { JobOptions } from './job.js';
import type { ModelParts } from './model.js';
import type { NativeVaeTiling } from './native.js';
import { freeMemoryOn } from './system.js';
import { MAX_PIXELS, checkVaeTilingOption, resolveTiling, type VaeTilingOption } from './tiling.js';
import { checkEnum, checkFunction, checkInteger, checkKeys, checkObject, checkSignal, MAX_SEED } from './validate.js';

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

/**
 * The native tiling for a checked `vaeTiling` option (checkVaeTilingOption) and the passes
 * over a width × height pixel image; undefined runs whole. 'auto' weighs the compute buffer
 * the largest untiled pass would need against half the memory free on the model's device.
 */
export function modelVaeTiling(
  model: ModelParts,
  option: 'auto' | NativeVaeTiling | undefined,
  width: number,
  height: number,
  passes: ReadonlyArray<'decode' | 'encode'>,
): NativeVaeTiling | undefined {
  if (option === 'auto' && passes.length === 0) return undefined;
  return resolveTiling(
    option,
    () => {
      const bytes = model.native.vaeComputeBytes(width, height);
      // A missing half (null) is refused by the job that needs it.
      return Math.max(0, ...passes.map((p) => bytes[p] ?? 0));
    },
    () => freeMemoryOn(model.info.device),
  );
}

/** model.decodeLatent(): bad options throw; a model without a VAE decoder rejects. */
export function decodeLatent(model: ModelParts, latent: Latent, options?: DecodeLatentOptions): Promise<Image & { channels: 3 }> {
  checkLatent('latent', latent);
  const o = checkObject('options', options);
  checkKeys('options', o, DECODE_KEYS);
  const signal = checkSignal('options.signal', o.signal);
  const onProgress = checkFunction<NonNullable<JobOptions['onProgress']>>('options.onProgress', o.onProgress);
  const tilingOption = checkVaeTilingOption(o.vaeTiling);
  const decoder = model.architecture.vaeShape().decoder;
  if (!decoder) return Promise.reject(new ModelCompatibilityError('the model has no VAE decoder: load it with a VAE file'));
  if (latent.channels !== decoder.latentChannels)
    throw new RangeError(`latent.channels is ${latent.channels}, the VAE decoder takes ${decoder.latentChannels}`);
  const width = latent.width * decoder.scale, height = latent.height * decoder.scale;
  if (width * height > MAX_PIXELS)
    throw new RangeError(`the decoded image would be ${width}×${height}; at most ${MAX_PIXELS} pixels (4096²) are made`);
  const tiling = modelVaeTiling(model, tilingOption, width, height, ['decode']);
  const scale = model.architecture.vaeScale();
  return model.queue.run((progress) => model.native.decodeLatent(latent, scale, tiling, progress), { signal, onProgress }) as Promise<
    Image & { channels: 3 }
  >;
}

/** model.encodeImage(): bad options throw; a model without a VAE encoder rejects. */
export function encodeImage(model: ModelParts, image: Image, options?: EncodeImageOptions): Promise<Latent> {
  checkImage('image', image);
  const o = checkObject('options', options);
  checkKeys('options', o, ENCODE_KEYS);
  const seed = checkEncodeSeed(o.seed);
  const rng = o.rng === undefined ? 'cuda' : checkEnum('options.rng', o.rng, ['cuda', 'cpu'] as const);
  const signal = checkSignal('options.signal', o.signal);
  const onProgress = checkFunction<NonNullable<JobOptions['onProgress']>>('options.onProgress', o.onProgress);
  const tilingOption = checkVaeTilingOption(o.vaeTiling);
  const encoder = model.architecture.vaeShape().encoder;
  if (!encoder) return Promise.reject(new ModelCompatibilityError('the model has no VAE encoder: load it with a VAE file'));
  const f = encoder.scale;
  if (image.width % f || image.height % f)
    throw new RangeError(`image sides must be multiples of ${f}, got ${image.width}×${image.height}: crop or resize first`);
  if (image.width * image.height > MAX_PIXELS)
    throw new RangeError(`image must be at most ${MAX_PIXELS} pixels (4096²), got ${image.width}×${image.height}`);
  const tiling = modelVaeTiling(model, tilingOption, image.width, image.height, ['encode']);
  const params = { scale: model.architecture.vaeScale(), rng, ...(seed === undefined ? {} : { seed }), ...(tiling ? { tiling } : {}) };
  return model.queue.run((progress) => model.native.encodeImage(image, params, progress), { signal, onProgress });
}
