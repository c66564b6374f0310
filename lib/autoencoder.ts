/**
 * The tiny autoencoder (TAESD family) on its own: images to latents and back.
 */
import { availableParallelism } from 'node:os';

import { BackendError, DisposedError, fromNative } from './errors.js';
import { checkImage, type Image } from './image.js';
import { JobQueue, type JobOptions } from './job.js';
import { native, type NativeAutoencoder, type NativeVaeTiling } from './native.js';
import { freeMemoryOn, resolveDevice } from './system.js';
import { checkPixelBudget, checkVaeTilingOption, resolveTiling, type VaeTilingOption } from './tiling.js';
import { checkEnum, checkFunction, checkInteger, checkKeys, checkObject, checkPath, checkSignal } from './validate.js';

/** A latent: planar floats [channels][height][width], as PyTorch's C×H×W. */
export interface Latent {
  /** Latent channels: 4 for SD1.x/SD2.x/SDXL, 16 for FLUX.1/SD3, 32 for FLUX.2. */
  channels: number;
  /** Cells along x: the image width / 8. */
  width: number;
  /** Cells along y: the image height / 8. */
  height: number;
  /** channels × height × width floats, channel-major (all of channel 0 first, rows top to bottom). */
  data: Float32Array;
}

/** The checkpoint files of a tiny autoencoder: an encoder, a decoder, or both. */
export interface AutoencoderFiles {
  /** TAESD-format encoder checkpoint (.pth), e.g. taesd_encoder.pth. */
  encoder?: string;
  /** TAESD-format decoder checkpoint (.pth), e.g. taesd_decoder.pth. */
  decoder?: string;
}

/** Options of loadAutoencoder(); every one is optional. */
export interface LoadAutoencoderOptions {
  /** 'auto' (default: first GPU, else CPU), 'cpu', 'cuda:0', 'vulkan:0', 'metal'. */
  device?: string;
  /** The most CPU threads one computation uses, taken from the process-wide budget (a cap, not a claim). Default: os.availableParallelism(). */
  threads?: number;
  /** Conv weights in 'f32' (default, exact) or 'f16' (half the memory, faster on GPUs). */
  weightType?: 'f32' | 'f16';
  /** Cancels the load; the promise rejects with AbortError. Default: none. */
  signal?: AbortSignal;
}

/** Options of autoencoder.encode() and decode(); every one is optional. */
export interface AutoencoderJobOptions extends JobOptions {
  /** Default 'auto': tiles when one pass would need more than half the free memory (see VaeTilingOption). */
  tiling?: VaeTilingOption;
}

const LOAD_KEYS = ['device', 'threads', 'weightType', 'signal'] as const;
const JOB_KEYS = ['tiling', 'signal', 'onProgress'] as const;

function checkJobOptions(what: string, options: unknown): JobOptions & { tiling: 'auto' | NativeVaeTiling | undefined } {
  const o = checkObject(what, options);
  checkKeys(what, o, JOB_KEYS);
  return {
    tiling: checkVaeTilingOption(o.tiling, `${what}.tiling`),
    signal: checkSignal(`${what}.signal`, o.signal),
    onProgress: checkFunction(`${what}.onProgress`, o.onProgress),
  };
}

/**
 * A loaded tiny autoencoder. Jobs on one instance run one at a time in call order (FIFO);
 * separate instances run concurrently.
 */
export class Autoencoder implements AsyncDisposable {
  /** Channels of its latents (4 for SD, 16 for FLUX.1/SD3, 32 for FLUX.2). */
  readonly latentChannels: number;
  /** Pixels per latent cell along each side (8). */
  readonly scale: number;
  /** The device it runs on, e.g. "cpu". */
  readonly device: string;
  /** Loaded with an encoder: encode() works (else it throws TypeError). */
  readonly hasEncoder: boolean;
  /** Loaded with a decoder: decode() works (else it throws TypeError). */
  readonly hasDecoder: boolean;

  readonly #native: NativeAutoencoder;
  readonly #queue = new JobQueue('the autoencoder');
  #disposed?: Promise<void>;

  /** @internal Use loadAutoencoder(). */
  constructor(handle: NativeAutoencoder) {
    const info = handle.info();
    this.#native = handle;
    this.latentChannels = info.latentChannels;
    this.scale = info.scale;
    this.device = info.device;
    this.hasEncoder = info.hasEncoder;
    this.hasDecoder = info.hasDecoder;
  }

  /**
   * Encodes an RGB(A) image (alpha ignored) into a latent of width/scale × height/scale.
   * Sides must be multiples of `scale` (8): crop or resize first (RangeError otherwise); at most
   * 4096² pixels. Options: `tiling` ('auto'), `signal`, `onProgress` (none by default). Queued FIFO
   * behind this object's other jobs.
   */
  encode(image: Image, options?: AutoencoderJobOptions): Promise<Latent> {
    if (this.#disposed) return Promise.reject(new DisposedError('the autoencoder has been disposed'));
    checkImage('image', image);
    const job = checkJobOptions('options', options);
    if (!this.hasEncoder) throw new TypeError('this autoencoder was loaded without an encoder');
    if (image.width % this.scale || image.height % this.scale) {
      throw new RangeError(`image sides must be multiples of ${this.scale}, got ${image.width}×${image.height}`);
    }
    checkPixelBudget('image', image.width, image.height);
    const tiling = this.tilingFor(job.tiling, image.width, image.height, 'encode');
    return this.#queue.run((onProgress) => this.#native.encode(image, tiling, onProgress), job);
  }

  /**
   * Decodes a latent into an 8-bit RGB image of width·scale × height·scale (at most 4096²
   * pixels). Options: `tiling` ('auto'), `signal`, `onProgress` (none by default). Queued FIFO
   * behind this object's other jobs.
   */
  decode(latent: Latent, options?: AutoencoderJobOptions): Promise<Image & { channels: 3 }> {
    if (this.#disposed) return Promise.reject(new DisposedError('the autoencoder has been disposed'));
    checkLatent('latent', latent, this.latentChannels);
    const job = checkJobOptions('options', options);
    if (!this.hasDecoder) throw new TypeError('this autoencoder was loaded without a decoder');
    const width = latent.width * this.scale, height = latent.height * this.scale;
    checkPixelBudget('the decoded image', width, height);
    const tiling = this.tilingFor(job.tiling, width, height, 'decode');
    return this.#queue.run((onProgress) => this.#native.decode(latent, tiling, onProgress), job) as Promise<Image & { channels: 3 }>;
  }

  /**
   * @internal The tiles for a checked tiling option and one pass over a width × height pixel
   * image: 'auto' weighs the planned compute buffer against half the device's free memory.
   */
  tilingFor(option: 'auto' | NativeVaeTiling | undefined, width: number, height: number, pass: 'encode' | 'decode'): NativeVaeTiling | undefined {
    return resolveTiling(
      option,
      () => this.#native.computeBytes(width, height)[pass],
      () => freeMemoryOn(this.device),
    );
  }

  /**
   * Frees the weights once queued and running jobs have settled. Idempotent; later calls to
   * encode/decode reject with DisposedError.
   */
  dispose(): Promise<void> {
    this.#disposed ??= this.#queue.close().then(() => this.#native.dispose());
    return this.#disposed;
  }

  /** dispose(), for `await using autoencoder = await loadAutoencoder(…)`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.dispose();
  }
}

function checkLatent(what: string, latent: unknown, channels: number): asserts latent is Latent {
  if (latent === null || typeof latent !== 'object') throw new TypeError(`${what} must be an object { channels, width, height, data }`);
  const l = latent as Record<string, unknown>;
  checkInteger(`${what}.channels`, l.channels, 1, 4096);
  checkInteger(`${what}.width`, l.width, 1, 8192);
  checkInteger(`${what}.height`, l.height, 1, 8192);
  if (l.channels !== channels) throw new RangeError(`${what}.channels is ${String(l.channels)}, the decoder takes ${channels}`);
  if (!(l.data instanceof Float32Array)) throw new TypeError(`${what}.data must be a Float32Array`);
  const expected = (l.channels as number) * (l.width as number) * (l.height as number);
  if (l.data.length !== expected) throw new RangeError(`${what}.data has ${l.data.length} values, channels × width × height is ${expected}`);
}

/**
 * Loads a TAESD-format encoder and/or decoder (PyTorch .pth files). Shapes, latent channels
 * and the optional mid-block GroupNorm come from the weights. Loading runs off the JS thread;
 * bad options throw TypeError/RangeError synchronously, file problems reject with a coded error.
 */
export function loadAutoencoder(files: AutoencoderFiles, options?: LoadAutoencoderOptions): Promise<Autoencoder> {
  const f = checkObject('files', files);
  checkKeys('files', f, ['encoder', 'decoder']);
  const encoder = f.encoder === undefined ? undefined : checkPath('files.encoder', f.encoder);
  const decoder = f.decoder === undefined ? undefined : checkPath('files.decoder', f.decoder);
  if (!encoder && !decoder) throw new TypeError('files must name an encoder, a decoder, or both');
  const o = checkObject('options', options);
  checkKeys('options', o, LOAD_KEYS);
  const threads = o.threads === undefined ? availableParallelism() : checkInteger('options.threads', o.threads, 1, 1024);
  const weightType = o.weightType === undefined ? 'f32' : checkEnum('options.weightType', o.weightType, ['f32', 'f16'] as const);
  const signal = checkSignal('options.signal', o.signal);
  const device = resolveDevice(o.device);

  const load = async (id: string) =>
    new Autoencoder(
      await new JobQueue('loadAutoencoder').run(
        () => native().NativeAutoencoder.load({ encoder, decoder, device: id, threads, f16Weights: weightType === 'f16' }),
        { signal },
      ),
    );
  return load(device.id).catch((err: unknown) => {
    const e = fromNative(err);
    if (!(device.auto && device.id !== 'cpu' && e instanceof BackendError)) throw e;
    process.emitWarning(`sdnode: device '${device.id}' failed (${e.message}); using the CPU`, { code: 'SDNODE_DEVICE_FALLBACK' });
    return load('cpu');
  });
}
