/**
 * Loading a Stable Diffusion model: a checkpoint file, a diffusers folder, or separate component
 * files, into one set of weights on one device, in the stored types or quantized on load.
 */
import { availableParallelism } from 'node:os';
import { join } from 'node:path';

import { Autoencoder } from './autoencoder.js';
import { diffusersAttentionHeads, type AttentionHeads } from './diffusers-config.js';
import { listEmbeddings } from './embeddings.js';
import { BackendError, ModelCompatibilityError, fromNative } from './errors.js';
import { JobQueue, type JobOptions } from './job.js';
import { metadataFromChunks } from './metadata.js';
import { detectModel } from './model-detect.js';
import { Model, type ModelInfo, type SourceInfo } from './model.js';
import { native, type NativeModel } from './native.js';
import { resolveDevice } from './system.js';
import { familyProfile } from './families.js';
import { ClipTokenizer } from './text/clip-tokenizer.js';
import { checkBoolean, checkEnum, checkFunction, checkInteger, checkKeys, checkObject, checkPath, checkSignal } from './validate.js';
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
   * every floating-point weight; a quantized type quantizes the linear weights and UNet conv
   * kernels the rules allow (see convertModel) and keeps the VAE's kernels, embeddings and the
   * timestep MLP in f16, biases and norms in f32. `model.weights()` says what each tensor became.
   */
  weightType?: WeightType;
  /** UNet weights from a training checkpoint's EMA copy (model_ema.*), when it has one. Default false. */
  ema?: boolean;
  /** Cancels the load: the promise rejects with AbortError. Default: none. */
  signal?: AbortSignal;
  /** One step per tensor placed on the device. Default: none. */
  onProgress?: JobOptions['onProgress'];
  /**
   * A folder of textual-inversion embeddings (.safetensors, .pt, .bin, .gguf): a prompt word equal
   * to a file's name without extension stands for its vectors (lib/embeddings.ts). Listed at load;
   * each file read on first use. Default: none.
   */
  embeddingDir?: string;
  /** A folder of LoRAs (.safetensors, .gguf, .pt, .ckpt) that `<lora:name:weight>` prompt tags name (lib/lora.ts). Default: none. */
  loraDir?: string;
}

const LOAD_KEYS = ['device', 'threads', 'weightType', 'ema', 'signal', 'onProgress', 'embeddingDir', 'loraDir'] as const;
const COMPONENT_KEYS = ['model', 'unet', 'vae', 'textEncoder', 'textEncoder2', 'tae'] as const;

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

/** What a model needs from JS besides its weights, made without holding the JS thread for long. */
interface ModelExtras {
  /** The file metadata (built from the addon's JSON texts between event-loop turns). */
  metadata: Record<string, string>;
  /** Entries of the file's metadata past the limits, not in `metadata`. */
  metadataOmitted: number;
  /** A diffusers folder's own tokenizer, or why it could not be read (tokenize() and generate() throw it). */
  tokenizer?: ClipTokenizer | Error;
  /** Attention heads from a diffusers folder's config.json files. */
  configHeads?: AttentionHeads;
}

async function loadExtras(handle: NativeModel): Promise<ModelExtras> {
  const { chunks, omitted: metadataOmitted } = handle.metadata();
  const metadata = await metadataFromChunks(chunks);
  const configHeads = await diffusersAttentionHeads(handle.info().sources);
  const dir = handle.info().tokenizerDir;
  if (!dir) return { metadata, metadataOmitted, configHeads };
  // A broken tokenizer/ folder fails tokenize() and generate() with its coded error, not the load.
  const tokenizer = await ClipTokenizer.loadVocabAndMerges(join(dir, 'vocab.json'), join(dir, 'merges.txt')).catch((err: unknown) =>
    err instanceof Error ? err : new Error(String(err)),
  );
  return { metadata, metadataOmitted, tokenizer, configHeads };
}

/** What the loaded weights are (detected) and how they were loaded; sets what the detection decides on the handle. */
function modelInfo(handle: NativeModel, extras: ModelExtras): ModelInfo {
  const raw = handle.info();
  const openClipTextEncoder = raw.sources.some((s) => ['textEncoder', 'checkpoint'].includes(s.component) && ['ldm-sd2', 'openclip'].includes(s.convention));
  const detection = detectModel(handle.weights(), extras.metadata, { openClipTextEncoder });
  // SDXL's own VAE makes activations past f16's range where its kernels are f16: scaled by
  // 1/32 around every convolution, as stable-diffusion.cpp does. A separate VAE file (the
  // fp16-fix VAE) needs none.
  const convScale = familyProfile(detection.family)?.ownVaeConvInputScale ?? 1;
  if (convScale !== 1 && !raw.sources.some((s) => s.component === 'vae')) handle.setVaeConvInputScale(convScale);
  return {
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
  const embeddingDir = o.embeddingDir === undefined ? undefined : checkPath('options.embeddingDir', o.embeddingDir);
  const loraDir = o.loraDir === undefined ? undefined : checkPath('options.loraDir', o.loraDir);

  const { tae: taePath, ...modelFiles } = files;
  // The CLIP vocabulary is parsed while the weights load, yielding to the event loop, so the
  // first tokenize()/generate() does not stall it. A failure here surfaces there, with its code.
  const vocabulary = ClipTokenizer.loadDefault().catch(() => undefined);
  const load = async (id: string) => {
    const embeddings = embeddingDir === undefined ? undefined : await listEmbeddings(embeddingDir);
    const handle = await new JobQueue('loadModel').run(
      (progress) => native().NativeModel.load({ ...modelFiles, ema, device: id, threads, weightType }, progress),
      { signal, onProgress },
    );
    await vocabulary;
    let extras: ModelExtras;
    try {
      extras = await loadExtras(handle);
    } catch (err) {
      handle.dispose();
      throw err;
    }
    const info = modelInfo(handle, extras);
    if (!taePath) return new Model(handle, info, extras.tokenizer, undefined, extras.configHeads, embeddings, loraDir);
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
      return new Model(handle, info, extras.tokenizer, { js: tae, native: taeNative }, extras.configHeads, embeddings, loraDir);
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
