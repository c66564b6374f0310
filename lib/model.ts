/**
 * Loading a Stable Diffusion model: a checkpoint file, a diffusers folder, or separate component
 * files, into one set of weights on one device, in the stored types or quantized on load.
 */
import { availableParallelism } from 'node:os';

import { BackendError, DisposedError, fromNative } from './errors.js';
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
import { WEIGHT_TYPES, type WeightType } from './weight-types.js';

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
const COMPONENT_KEYS = ['model', 'unet', 'vae', 'textEncoder', 'textEncoder2'] as const;

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

  /** @internal Use loadModel(). */
  constructor(handle: NativeModel) {
    this.#native = handle;
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

  /** Frees the weights once queued and running jobs have settled. Idempotent. */
  dispose(): Promise<void> {
    this.#disposed ??= this.#queue.close().then(() => this.#native.dispose());
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

  const load = async (id: string) =>
    new Model(
      await new JobQueue('loadModel').run(
        (progress) => native().NativeModel.load({ ...files, ema, device: id, threads, weightType }, progress),
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
