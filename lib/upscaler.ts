/**
 * ESRGAN upscaling: RRDBNet weights (Real-ESRGAN x4plus / x2plus, 4x-UltraSharp and the other
 * BasicSR or original-ESRGAN layouts) applied to 8-bit images, whole or in blended tiles.
 */
import { availableParallelism } from 'node:os';

import { BackendError, DisposedError, fromNative } from './errors.js';
import { checkImage, type Image } from './image.js';
import { JobQueue, type JobOptions } from './job.js';
import { native, type NativeUpscaler } from './native.js';
import { resolveDevice } from './system.js';
import { MAX_PIXELS } from './tiling.js';
import { checkEnum, checkFunction, checkInteger, checkKeys, checkObject, checkPath, checkSignal } from './validate.js';

/** Input pixels per tile side by default: stable-diffusion.cpp's --upscale-tile-size default. */
export const UPSCALE_TILE = 128;
/** Tile sides upscale() takes (0: the whole image in one pass). */
export const UPSCALE_TILE_RANGE = [16, 4096] as const;
/** The most times one call applies the upscaler. */
export const MAX_UPSCALE_REPEATS = 4;

/** Options of loadUpscaler(); every one is optional. */
export interface LoadUpscalerOptions {
  /** 'auto' (default: first GPU, else CPU), 'cpu', 'cuda:0', 'vulkan:0', 'metal'. */
  device?: string;
  /** The most CPU threads one computation uses (a cap from the process-wide budget). Default: os.availableParallelism(). */
  threads?: number;
  /** Conv weights in 'f32' (default, exact) or 'f16' (half the memory). */
  weightType?: 'f32' | 'f16';
  /** Cancels the load; the promise rejects with AbortError. Default: none. */
  signal?: AbortSignal;
  /** Two steps: the file read and its network known, then the weights on the device. Default: none. */
  onProgress?: JobOptions['onProgress'];
}

/** Options of upscaler.upscale(); every one is optional. */
export interface UpscaleOptions extends JobOptions {
  /**
   * Input pixels per tile side, 16 … 4096, or 0 for the whole image in one pass. Default 128.
   * Compute memory grows with the tile's area (a 128² tile of RealESRGAN_x4plus: about 1 GB).
   */
  tile?: number;
  /**
   * Pixels neighbouring tiles share, 0 … tile / 2; their seam is blended across it. Default
   * tile / 4. Wider than twice the network's `reach`, tiles give the untiled result exactly.
   */
  tileOverlap?: number;
  /** Apply the upscaler this many times (1 … 4), each on the last result. Default 1. */
  repeats?: number;
}

const LOAD_KEYS = ['device', 'threads', 'weightType', 'signal', 'onProgress'] as const;
const UPSCALE_KEYS = ['tile', 'tileOverlap', 'repeats', 'signal', 'onProgress'] as const;

/** The tiling and repeats of an upscale, checked. */
export interface UpscaleSettings {
  tile: number;
  overlap: number;
  repeats: number;
}

/** `tile`, `tileOverlap` and `repeats` of `o` checked and defaulted (TypeError/RangeError otherwise). */
function checkUpscaleSettings(what: string, o: Record<string, unknown>): UpscaleSettings {
  const tile = o.tile === undefined ? UPSCALE_TILE : checkInteger(`${what}.tile`, o.tile, 0, UPSCALE_TILE_RANGE[1]);
  if (tile !== 0 && tile < UPSCALE_TILE_RANGE[0])
    throw new RangeError(`${what}.tile must be 0 (untiled) or ${UPSCALE_TILE_RANGE[0]} … ${UPSCALE_TILE_RANGE[1]}, got ${tile}`);
  const overlap = o.tileOverlap === undefined ? Math.floor(tile / 4) : checkInteger(`${what}.tileOverlap`, o.tileOverlap, 0, Math.floor(tile / 2));
  const repeats = o.repeats === undefined ? 1 : checkInteger(`${what}.repeats`, o.repeats, 1, MAX_UPSCALE_REPEATS);
  return { tile, overlap, repeats };
}

/** upscale()'s options checked (TypeError/RangeError otherwise). */
function checkUpscaleOptions(what: string, options: unknown): UpscaleSettings & JobOptions {
  const o = checkObject(what, options);
  checkKeys(what, o, UPSCALE_KEYS);
  return { ...checkUpscaleSettings(what, o), signal: checkSignal(`${what}.signal`, o.signal), onProgress: checkFunction(`${what}.onProgress`, o.onProgress) };
}

/** generate()'s `upscale` option: an upscaler applied to every image after decoding. */
export interface GenerateUpscaleOption {
  /** From loadUpscaler(); its jobs queue behind its own others. */
  upscaler: Upscaler;
  /** Times it is applied, 1 … 4. Default 1. */
  repeats?: number;
  /** As upscale()'s: default 128. */
  tile?: number;
  /** As upscale()'s: default tile / 4. */
  tileOverlap?: number;
}

/** generate()'s `upscale` option, checked: the output of a width × height image must stay within 4096² pixels. */
export function checkGenerateUpscale(what: string, value: unknown, width: number, height: number): UpscaleSettings & { upscaler: Upscaler } {
  const o = checkObject(what, value);
  checkKeys(what, o, ['upscaler', 'repeats', 'tile', 'tileOverlap']);
  if (!(o.upscaler instanceof Upscaler)) throw new TypeError(`${what}.upscaler must be an Upscaler from loadUpscaler()`);
  const settings = checkUpscaleSettings(what, o);
  const factor = o.upscaler.scale ** settings.repeats;
  if (width * factor * height * factor > MAX_PIXELS)
    throw new RangeError(`${what}: the upscaled image would be ${width * factor}×${height * factor}; at most ${MAX_PIXELS} pixels (4096²) are made`);
  return { ...settings, upscaler: o.upscaler };
}

/**
 * A loaded ESRGAN upscaler. Jobs on one instance run one at a time in call order (FIFO);
 * separate instances run concurrently.
 */
export class Upscaler implements AsyncDisposable {
  /** Output pixels per input pixel along each side (4 for RealESRGAN_x4plus, 2 for x2plus). */
  readonly scale: number;
  /** Trunk channels (64 for Real-ESRGAN). */
  readonly features: number;
  /** Channels each dense-block conv adds (32 for Real-ESRGAN). */
  readonly growth: number;
  /** RRDB blocks in the trunk (23 for Real-ESRGAN x4plus). */
  readonly blocks: number;
  /** Input pixels the network reads around each pixel it writes (tiles overlapping by twice this are exact). */
  readonly reach: number;
  /** The file's key layout: 'basicsr' (BasicSR / Real-ESRGAN) or 'esrgan' (the original ESRGAN's, 4x-UltraSharp's). */
  readonly convention: string;
  /** The device it runs on, e.g. "cpu". */
  readonly device: string;

  readonly #native: NativeUpscaler;
  readonly #queue = new JobQueue('the upscaler');
  #disposed?: Promise<void>;

  /** @internal Use loadUpscaler(). */
  constructor(handle: NativeUpscaler) {
    const info = handle.info();
    this.#native = handle;
    this.scale = info.scale;
    this.features = info.features;
    this.growth = info.growth;
    this.blocks = info.blocks;
    this.reach = info.reach;
    this.convention = info.convention;
    this.device = info.device;
  }

  /** True once dispose() has been called. */
  get disposed(): boolean {
    return this.#disposed !== undefined;
  }

  /**
   * Upscales an RGB(A) image (alpha dropped) `scale`^repeats times along each side, to at most
   * 4096² pixels. Options: `tile` (128), `tileOverlap` (tile / 4), `repeats` (1), `signal`,
   * `onProgress` (one step per tile and repeat). Bad options throw TypeError/RangeError before
   * anything is queued; queued FIFO behind this object's other jobs.
   */
  upscale(image: Image, options?: UpscaleOptions): Promise<Image & { channels: 3 }> {
    if (this.#disposed) return Promise.reject(new DisposedError('the upscaler has been disposed'));
    checkImage('image', image);
    const o = checkUpscaleOptions('options', options);
    const factor = this.scale ** o.repeats;
    const width = image.width * factor, height = image.height * factor;
    if (width * height > MAX_PIXELS)
      throw new RangeError(`the upscaled image would be ${width}×${height}; at most ${MAX_PIXELS} pixels (4096²) are made`);
    return this.run(image, o, o);
  }

  /** @internal An upscale with checked settings (generate()'s `upscale` option). */
  run(image: Image, settings: UpscaleSettings, job: JobOptions): Promise<Image & { channels: 3 }> {
    if (this.#disposed) return Promise.reject(new DisposedError('the upscaler has been disposed'));
    const params = { tile: settings.tile, overlap: settings.overlap, repeats: settings.repeats };
    return this.#queue.run((onProgress) => this.#native.upscale(image, params, onProgress), job) as Promise<Image & { channels: 3 }>;
  }

  /** @internal The addon's handle, for a job of the model's that runs this upscaler inside it (the hires fix). */
  nativeHandle(): NativeUpscaler {
    if (this.#disposed) throw new DisposedError('the upscaler has been disposed');
    return this.#native;
  }

  /** Frees the weights once queued and running jobs have settled. Idempotent; later upscale() calls reject with DisposedError. */
  dispose(): Promise<void> {
    this.#disposed ??= this.#queue.close().then(() => this.#native.dispose());
    return this.#disposed;
  }

  /** dispose(), for `await using upscaler = await loadUpscaler(…)`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.dispose();
  }
}

/**
 * Loads an ESRGAN (RRDBNet) file: .pth (read by sdnode's non-executing pickle reader),
 * .safetensors or GGUF (f32/f16/bf16 weights). Scale, features, growth channels and block count
 * come from the weights. A file whose tensors are not an RRDBNet rejects with ModelFormatError;
 * bad options throw TypeError/RangeError synchronously.
 */
export function loadUpscaler(path: string, options?: LoadUpscalerOptions): Promise<Upscaler> {
  const file = checkPath('path', path);
  const o = checkObject('options', options);
  checkKeys('options', o, LOAD_KEYS);
  const threads = o.threads === undefined ? availableParallelism() : checkInteger('options.threads', o.threads, 1, 1024);
  const weightType = o.weightType === undefined ? 'f32' : checkEnum('options.weightType', o.weightType, ['f32', 'f16'] as const);
  const signal = checkSignal('options.signal', o.signal);
  const onProgress = checkFunction<NonNullable<JobOptions['onProgress']>>('options.onProgress', o.onProgress);
  const device = resolveDevice(o.device);

  const load = async (id: string) =>
    new Upscaler(
      await new JobQueue('loadUpscaler').run(
        (progress) => native().NativeUpscaler.load({ path: file, device: id, threads, f16Weights: weightType === 'f16' }, progress),
        { signal, onProgress },
      ),
    );
  return load(device.id).catch((err: unknown) => {
    const e = fromNative(err);
    if (!(device.auto && device.id !== 'cpu' && e instanceof BackendError)) throw e;
    process.emitWarning(`sdnode: device '${device.id}' failed (${e.message}); using the CPU`, { code: 'SDNODE_DEVICE_FALLBACK' });
    return load('cpu');
  });
}
