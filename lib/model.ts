/**
 * A loaded model (loadModel() in lib/load-model.ts makes it): what it is, and its jobs, each
 * done by its own module — generate (lib/generate-options.ts, lib/generate.ts), the VAE's
 * decodeLatent / encodeImage (lib/vae-jobs.ts), tokenize (lib/text/prompt-limits.ts) — on one
 * FIFO queue, until dispose().
 */
import { resolve } from 'node:path';

import type { Autoencoder, Latent } from './autoencoder.js';
import type { AttentionHeads } from './diffusers-config.js';
import { ControlNet, controlNetFile } from './controlnet.js';
import { EmbeddingLibrary, embeddingTarget, type EmbeddingFolder } from './embeddings.js';
import { DisposedError } from './errors.js';
import { generate, type GenerateResult } from './generate.js';
import { resolveGenerateOptions, type GenerateModelFacts, type GenerateOptions } from './generate-options.js';
import type { Image } from './image.js';
import { JobQueue, type JobOptions } from './job.js';
import { checkStrict, checkStrictOption, Lora, resolveLoraTag, type LoraTag, type ResolvedLoraOption } from './lora.js';
import { ModelArchitecture } from './model-architecture.js';
import type { ModelDetection } from './model-detect.js';
import type { NativeAutoencoder, NativeModel } from './native.js';
import { ClipTokenizer } from './text/clip-tokenizer.js';
import { tokenizeWithinLimits } from './text/prompt-limits.js';
import { checkFunction, checkKeys, checkObject, checkPath, checkSignal } from './validate.js';
import { decodeLatent, encodeImage, type DecodeLatentOptions, type EncodeImageOptions } from './vae-jobs.js';
import type { WeightType } from './weight-types.js';

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

/** @internal What the job modules (lib/generate.ts, lib/vae-jobs.ts) use of a loaded model. */
export interface ModelParts {
  readonly native: NativeModel;
  /** The model's jobs, one at a time in call order. */
  readonly queue: JobQueue;
  readonly info: ModelInfo;
  readonly architecture: ModelArchitecture;
  /** The TAESD decoder given as `tae` to loadModel. */
  readonly tae?: Autoencoder;
  /** The TAE's native handle: the engine decodes 'tae' previews with it inside the generate job. */
  readonly taeNative?: NativeAutoencoder;
  /** The CLIP tokenizer: the model's own (a diffusers folder's tokenizer/), else OpenAI's; throws why the own one could not be read. */
  tokenizer(): ClipTokenizer;
  /** The textual-inversion embeddings of loadModel's `embeddingDir`. */
  readonly embeddings?: EmbeddingLibrary;
  /** generate()'s `loras` and the prompt's `<lora:…>` tags as loaded handles (path ones loaded once and kept). */
  resolveLoras(entries: readonly ResolvedLoraOption[], tags: readonly LoraTag[]): Promise<Array<{ lora: Lora; weight: number }>>;
}

/** Options of model.loadLora(). */
export interface LoadLoraOptions {
  /** Reject with ModelCompatibilityError when any tensor of the file patches no weight of this model. Default false: such tensors are reported (lora.report) and left out. */
  strict?: boolean;
  signal?: AbortSignal;
  onProgress?: JobOptions['onProgress'];
}

/**
 * A loaded model. Jobs on one instance run one at a time in call order (FIFO); separate
 * instances run concurrently.
 */
export class Model implements AsyncDisposable {
  /** Family, components, inpainting, prediction — detected from the loaded weights — and load facts. */
  readonly info: ModelInfo;

  readonly #parts: ModelParts;
  #disposed?: Promise<void>;
  /** Every LoRA handle loaded for this model (disposed with it), and those loaded by path for generate(). */
  readonly #loras = new Set<Lora>();
  readonly #lorasByPath = new Map<string, Promise<Lora>>();
  /** Every ControlNet loaded for this model, disposed with it. */
  readonly #controlNets = new Set<ControlNet>();
  readonly #loraDir: string | undefined;

  /** @internal Use loadModel(). */
  constructor(
    handle: NativeModel,
    info: ModelInfo,
    tokenizer: ClipTokenizer | Error | undefined,
    tae?: { js: Autoencoder; native: NativeAutoencoder },
    configHeads?: AttentionHeads,
    embeddingFolder?: EmbeddingFolder,
    loraDir?: string,
  ) {
    this.info = info;
    this.#loraDir = loraDir;
    // A model with a tokenizer/ folder got its tokenizer (or its error) at load.
    let clip = tokenizer instanceof ClipTokenizer ? tokenizer : undefined;
    const architecture = new ModelArchitecture(handle, info, configHeads);
    this.#parts = {
      native: handle,
      queue: new JobQueue('the model'),
      info,
      architecture,
      ...(embeddingFolder ? { embeddings: new EmbeddingLibrary(embeddingFolder, () => embeddingTarget(architecture, handle)) } : {}),
      ...(tae ? { tae: tae.js, taeNative: tae.native } : {}),
      tokenizer: () => {
        if (tokenizer instanceof Error) throw tokenizer;
        clip ??= ClipTokenizer.default();
        return clip;
      },
      resolveLoras: (entries, tags) => this.#resolveLoras(entries, tags),
    };
  }

  /**
   * Reads a LoRA file (safetensors, GGUF, .pt/.ckpt read without executing pickle code; kohya
   * LoRA / LoCon, LyCORIS LoHa / LoKr, diffusers / PEFT, DoRA, full diffs) and matches it to this
   * model's weights once; the handle is reused across generate() calls (`loras: [{ lora, weight }]`)
   * and disposed with the model. `lora.report` says what fits: tensors applied, tensors that name
   * no weight, modules whose shapes do not fit (left out). Malformed files reject with
   * ModelFormatError (a rank of 0 or past the weight's size, values that are not finite, a part
   * twice), and `strict: true` makes anything left out a ModelCompatibilityError.
   */
  loadLora(path: string, options?: LoadLoraOptions): Promise<Lora> {
    if (this.#disposed) return Promise.reject(this.#disposedError());
    if (typeof path !== 'string' || path === '') throw new TypeError('path must be a non-empty string');
    const o = checkObject('options', options);
    checkKeys('options', o, ['strict', 'signal', 'onProgress']);
    const strict = checkStrictOption('options.strict', o.strict);
    const job = { signal: checkSignal('options.signal', o.signal), onProgress: checkFunction<NonNullable<JobOptions['onProgress']>>('options.onProgress', o.onProgress) };
    // Not on the model's queue: matching reads only the weights' names and shapes, so a LoRA
    // loads while a long generate runs.
    return new JobQueue('loadLora').run((onProgress) => this.#parts.native.loadLora(path, onProgress), job).then((native) => {
      const lora = new Lora(native, this);
      if (this.#disposed) {
        void lora.dispose();
        throw this.#disposedError();
      }
      for (const old of this.#loras) if (old.disposed) this.#loras.delete(old);
      this.#loras.add(lora);
      if (strict) {
        try {
          checkStrict(lora);
        } catch (err) {
          void lora.dispose();
          throw err;
        }
      }
      return lora;
    });
  }

  /** @internal For tests: the named weights (f32, PyTorch layout) as the networks take them with these LoRAs applied. */
  patchedWeights(loras: ReadonlyArray<{ lora: Lora; weight: number }>, names: string[]): Promise<Float32Array[]> {
    if (this.#disposed) return Promise.reject(this.#disposedError());
    const uses = loras.map((u) => ({ lora: u.lora.nativeHandle(), weight: u.weight }));
    return this.#parts.queue.run((onProgress) => this.#parts.native.patchedWeights(uses, names, onProgress));
  }

  #resolveLoras(entries: readonly ResolvedLoraOption[], tags: readonly LoraTag[]): Promise<Array<{ lora: Lora; weight: number }>> {
    const byPath = (path: string): Promise<Lora> => {
      let p = this.#lorasByPath.get(path);
      if (!p) {
        p = this.loadLora(path);
        this.#lorasByPath.set(path, p);
        // A failed load is not kept: the next request tries again (the file may be fixed).
        p.catch(() => this.#lorasByPath.delete(path));
      }
      return p;
    };
    // Checked before any file is read.
    if (tags.length > 0 && this.#loraDir === undefined)
      throw new TypeError(`the prompt has <lora:${tags[0]!.name}> tags: give loadModel a loraDir to find them in`);
    for (const e of entries) {
      if (e.lora && e.lora.owner !== this) throw new TypeError(`the LoRA '${e.lora.name}' was loaded for another model: load it with this model's loadLora()`);
      if (e.lora?.disposed) throw new DisposedError(`the LoRA '${e.lora.name}' has been disposed`);
    }
    const dir = this.#loraDir!;
    const wanted = [
      ...entries.map((e) => ({ weight: e.weight, lora: e.lora ? Promise.resolve(e.lora) : byPath(resolve(e.path!)) })),
      // A tag that names no file rejects (FileAccessError), as other file problems do.
      ...tags.map((t) => ({ weight: t.weight, lora: Promise.resolve().then(() => byPath(resolveLoraTag(dir, t.name))) })),
    ];
    return Promise.all(wanted.map(async (w) => ({ lora: await w.lora, weight: w.weight })));
  }

  /**
   * Reads a ControlNet (ControlNet-v1-1 .pth / .safetensors with or without `control_model.`,
   * GGUF, or a diffusers `controlnet/` folder) for this model: its layout comes from the
   * weights and must fit this model's UNet, else ModelCompatibilityError naming what does not
   * (channels, levels, context width, SDXL's vector input); a file that is no ControlNet
   * rejects with ModelFormatError. Queued FIFO behind this model's jobs; the weights go on the
   * model's device. Use the handle in generate()'s `controlNets`; dispose() frees it, as does the model's dispose().
   */
  loadControlNet(path: string, options?: { signal?: AbortSignal; onProgress?: JobOptions['onProgress'] }): Promise<ControlNet> {
    if (this.#disposed) return Promise.reject(this.#disposedError());
    const file = controlNetFile(checkPath('path', path));
    const o = checkObject('options', options);
    checkKeys('options', o, ['signal', 'onProgress']);
    const job = { signal: checkSignal('options.signal', o.signal), onProgress: checkFunction<NonNullable<JobOptions['onProgress']>>('options.onProgress', o.onProgress) };
    // Its computes take the model's thread cap (the engine reads it from the model).
    const params = { device: this.info.device };
    return this.#parts.queue
      .run((onProgress) => this.#parts.native.loadControlNet(file, params, onProgress), job)
      .then((native) => {
        const controlNet = new ControlNet(native, file, this);
        for (const old of this.#controlNets) if (old.disposed) this.#controlNets.delete(old);
        this.#controlNets.add(controlNet);
        return controlNet;
      });
  }

  /** Every weight: internal name, shape, stored type, type on the device, bytes, mapped or copied. */
  weights(): WeightRecord[] {
    this.#checkOpen();
    return this.#parts.native.weights();
  }

  /**
   * FNV-1a 64 (hex) of each named weight's values as they are on the device (quantized ones
   * decoded), comparable with inspectModel's checksums: equal means bit-identical weights.
   * Default: every weight.
   */
  checksums(names?: string[], options?: JobOptions): Promise<Record<string, string>> {
    if (this.#disposed) return Promise.reject(this.#disposedError());
    const { native, queue } = this.#parts;
    const list = names === undefined ? native.weights().map((w) => w.name) : names;
    if (!Array.isArray(list) || list.some((n) => typeof n !== 'string')) throw new TypeError('names must be an array of strings');
    const o = checkObject('options', options);
    checkKeys('options', o, ['signal', 'onProgress']);
    const job = { signal: checkSignal('options.signal', o.signal), onProgress: checkFunction<NonNullable<JobOptions['onProgress']>>('options.onProgress', o.onProgress) };
    return queue.run((onProgress) => native.checksums(list, onProgress), job).then((sums) => Object.fromEntries(list.map((n, i) => [n, sums[i]!])));
  }

  /**
   * The prompt's CLIP token ids with BOS and EOS, without padding or prompt syntax (count
   * them against 75 per window): `tokenize('a lovely cat')` → [49406, 320, 2165, 2368, 49407].
   * From the model's own tokenizer/ files when it has them, else OpenAI's CLIP vocabulary.
   * A prompt's limits apply: 100,000 characters, 32 KiB of words, 2,400 tokens (RangeError).
   * A textual-inversion embedding's name (loadModel's `embeddingDir`) gives one id per vector,
   * past the vocabulary; `{ withText: true }` names each token: its text, or the embedding's name.
   */
  tokenize(text: string): number[];
  tokenize(text: string, options: { withText: true }): Array<{ id: number; text: string }>;
  tokenize(text: string, options?: { withText?: boolean }): number[] | Array<{ id: number; text: string }> {
    this.#checkOpen();
    const tokenizer = this.#parts.tokenizer();
    const use = this.#parts.embeddings?.use(tokenizer);
    const ids = tokenizeWithinLimits(tokenizer, text, use);
    if (!checkObject('options', options).withText) return ids;
    return ids.map((id) => ({ id, text: use?.nameOf(id) ?? tokenizer.decode([id]) }));
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
    const { info, architecture, taeNative } = this.#parts;
    const facts: GenerateModelFacts = {
      family: info.family,
      prediction: info.prediction,
      hasTae: taeNative !== undefined,
      sizeMultiple: () => architecture.sizeMultiple(),
      textEncoderLayers: () => architecture.textEncoderLayers(),
      owner: this,
    };
    return generate(this.#parts, resolveGenerateOptions(options, facts));
  }

  /**
   * Decodes a latent as the sampler leaves it (scaled by the VAE's factor: 0.18215 for SD1.x and
   * SD2.x, 0.13025 for SDXL) with the model's VAE into an 8-bit RGB image 8× its size (at most
   * 4096² pixels). `latent` is planar `{ channels, width, height, data: Float32Array }`.
   * Options: `vaeTiling` ('auto' default, see VaeTilingOption), `signal`, `onProgress`.
   */
  decodeLatent(latent: Latent, options?: DecodeLatentOptions): Promise<Image & { channels: 3 }> {
    if (this.#disposed) return Promise.reject(this.#disposedError());
    return decodeLatent(this.#parts, latent, options);
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
    return encodeImage(this.#parts, image, options);
  }

  /**
   * Frees the weights once queued and running jobs have settled (they complete normally).
   * Idempotent: every call returns the same promise. Afterwards methods that return a promise
   * (generate, encodeImage, decodeLatent, checksums) reject with DisposedError and the others
   * (weights, tokenize) throw it.
   */
  dispose(): Promise<void> {
    this.#disposed ??= this.#parts.queue.close().then(async () => {
      for (const lora of this.#loras) await lora.dispose();
      for (const controlNet of this.#controlNets) await controlNet.dispose();
      this.#parts.native.dispose();
      await this.#parts.tae?.dispose();
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
