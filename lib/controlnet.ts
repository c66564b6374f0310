/**
 * ControlNet: a ControlNet-v1-1 network (.pth, .safetensors, GGUF, or a diffusers `controlnet/`
 * folder) loaded for one model with model.loadControlNet(), and generate()'s `controlNets`
 * option that guides the UNet with it: each entry's hint image (resized to the output size,
 * optionally turned into Canny edges) is encoded, the network runs before the UNet in every
 * step of its [start, end] window, and its residuals × strength (summed over the entries, as
 * the webui does) are added to the UNet's skip connections and middle block.
 */
import { statSync } from 'node:fs';
import { join } from 'node:path';

import { canny, type CannyOptions } from './canny.js';
import { DisposedError } from './errors.js';
import { checkImage, type Image } from './image.js';
import type { NativeControlNet } from './native.js';
import { checkEnum, checkKeys, checkObject } from './validate.js';

/** The widest strength accepted: twice the trained effect (the webui's slider stops at 2). */
export const MAX_CONTROL_STRENGTH = 2;

/** One entry of generate()'s `controlNets`. */
export interface ControlNetOption {
  /** From model.loadControlNet() on the same model. */
  model: ControlNet;
  /** The hint: RGB(A) (alpha ignored), stretched to the output size like an init image. With `preprocess: 'canny'`, a photo. */
  image: Image;
  /** Factor on the residuals, 0 … 2. Default 1. */
  strength?: number;
  /** The fraction of the steps (0 … 1) from which it is active: step i of n counts while start ≤ i / n ≤ end. Default 0. */
  start?: number;
  /** The fraction of the steps until which it is active. Default 1. */
  end?: number;
  /** 'canny': the image's Canny edges (lib/canny.ts, thresholds from `canny`) are the hint; 'none' (default): the image is. */
  preprocess?: 'none' | 'canny';
  /** Canny thresholds with preprocess 'canny'. Default { low: 100, high: 200 }. */
  canny?: CannyOptions;
}

/** An entry checked and defaulted, its hint made. */
export interface ResolvedControlNet {
  model: ControlNet;
  image: Image;
  strength: number;
  start: number;
  end: number;
}

/** A number in [0, max]: TypeError for a non-number, RangeError for NaN, ±Infinity or out of range. */
function checkFraction(what: string, value: unknown, max: number): number {
  if (typeof value !== 'number') throw new TypeError(`${what} must be a number`);
  if (!(value >= 0 && value <= max)) throw new RangeError(`${what} must be a finite number in [0, ${max}], got ${value}`);
  return value;
}

const OPTION_KEYS = ['model', 'image', 'strength', 'start', 'end', 'preprocess', 'canny'] as const;

/** generate()'s `controlNets` checked (TypeError / RangeError / DisposedError naming the entry). */
export function checkControlNets(what: string, value: unknown, owner: object): ResolvedControlNet[] {
  if (!Array.isArray(value)) throw new TypeError(`${what} must be an array of { model, image, strength?, start?, end? }`);
  if (value.length > 8) throw new RangeError(`${what}: at most 8 ControlNets`);
  const out: ResolvedControlNet[] = [];
  value.forEach((entry, i) => {
    const at = `${what}[${i}]`;
    const o = checkObject(at, entry);
    checkKeys(at, o, OPTION_KEYS);
    if (!(o.model instanceof ControlNet)) throw new TypeError(`${at}.model must be a ControlNet from model.loadControlNet()`);
    if (o.model.disposed) throw new DisposedError(`${at}.model has been disposed`);
    if (o.model.owner !== owner) throw new TypeError(`${at}.model was loaded for another model: load it with this model's loadControlNet()`);
    if (out.some((c) => c.model === o.model)) throw new TypeError(`${at}.model is used twice: one entry per ControlNet`);
    try {
      checkImage(`${at}.image`, o.image);
    } catch (err) {
      // A hint that is no usable image (wrong channels, empty) is the wrong kind of value: TypeError, as the issue has it.
      throw err instanceof RangeError ? new TypeError(err.message) : err;
    }
    const strength = o.strength === undefined ? 1 : checkFraction(`${at}.strength`, o.strength, MAX_CONTROL_STRENGTH);
    const start = o.start === undefined ? 0 : checkFraction(`${at}.start`, o.start, 1);
    const end = o.end === undefined ? 1 : checkFraction(`${at}.end`, o.end, 1);
    if (start > end) throw new RangeError(`${at}.start (${start}) must not exceed ${at}.end (${end})`);
    const preprocess = o.preprocess === undefined ? 'none' : checkEnum(`${at}.preprocess`, o.preprocess, ['none', 'canny'] as const);
    if (o.canny !== undefined && preprocess !== 'canny') throw new TypeError(`${at}.canny applies to preprocess: 'canny'`);
    const image = preprocess === 'canny' ? canny(o.image as Image, o.canny as CannyOptions | undefined) : (o.image as Image);
    out.push({ model: o.model, image, strength, start, end });
  });
  return out;
}

/**
 * The weights file of a ControlNet path: the path itself, or in a diffusers `controlnet/`
 * folder its diffusion_pytorch_model(.fp16).safetensors.
 */
export function controlNetFile(path: string): string {
  let isDir = false;
  try {
    isDir = statSync(path).isDirectory();
  } catch {
    return path;  // the engine names what it cannot read
  }
  if (!isDir) return path;
  for (const name of ['diffusion_pytorch_model.safetensors', 'diffusion_pytorch_model.fp16.safetensors']) {
    const file = join(path, name);
    try {
      if (statSync(file).isFile()) return file;
    } catch {
      // next
    }
  }
  return join(path, 'diffusion_pytorch_model.safetensors');
}

/**
 * A ControlNet loaded for one model (model.loadControlNet()). Its weights live on the model's
 * device; a generate job holds them until it ends, so dispose() frees them once jobs using it settle.
 */
export class ControlNet implements AsyncDisposable {
  /** The file read. */
  readonly path: string;
  /** Its key layout: 'ldm' (ControlNet-v1-1, cldm) or 'diffusers' (ControlNetModel). */
  readonly convention: 'ldm' | 'diffusers';
  /** Its container format. */
  readonly format: 'safetensors' | 'gguf' | 'torch';
  /** The device its weights are on. */
  readonly device: string;
  /** Input blocks (it makes one residual per block and one for the middle block). */
  readonly blocks: number;
  /** Channels of the UNet stem it fits (320 for SD1.x/SD2.x/SDXL). */
  readonly modelChannels: number;
  /** Width of the text context it attends to (768 SD1.x, 1024 SD2.x, 2048 SDXL). */
  readonly contextDim: number;
  /** Bytes its weights take on the device. */
  readonly weightBytes: number;
  /** File tensors that are not the ControlNet's (e.g. a whole SD model stored beside it), left out. */
  readonly dropped: number;
  /** @internal The model it was loaded for. */
  readonly owner: object;

  #native: NativeControlNet | undefined;

  /** @internal Use model.loadControlNet(). */
  constructor(native: NativeControlNet, path: string, owner: object) {
    const info = native.info();
    this.#native = native;
    this.path = path;
    this.owner = owner;
    this.convention = info.convention;
    this.format = info.format;
    this.device = info.device;
    this.blocks = info.blocks;
    this.modelChannels = info.modelChannels;
    this.contextDim = info.contextDim;
    this.weightBytes = info.weightBytes;
    this.dropped = info.dropped;
  }

  /** True once dispose() has been called. */
  get disposed(): boolean {
    return this.#native === undefined;
  }

  /** @internal The addon's handle; DisposedError after dispose(). */
  nativeHandle(): NativeControlNet {
    if (!this.#native) throw new DisposedError('the ControlNet has been disposed');
    return this.#native;
  }

  /** Drops this handle's hold on the weights (a running job keeps its own until it ends). Idempotent. */
  dispose(): Promise<void> {
    this.#native?.dispose();
    this.#native = undefined;
    return Promise.resolve();
  }

  /** dispose(), for `await using cn = await model.loadControlNet(…)`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.dispose();
  }
}
