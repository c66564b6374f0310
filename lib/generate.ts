/**
 * The generate job: resolved options (lib/generate-options.ts) and the model's architecture
 * become the engine's NativeGenerateParams, queued FIFO on the model; the engine's result
 * becomes a GenerateResult.
 */
import { randomInt } from 'node:crypto';

import { AbortError, DisposedError, SdnodeError } from './errors.js';
import { isRandomSeed, plainNativeParams, type ResolvedGenerateOptions } from './generate-options.js';
import type { Image } from './image.js';
import { extractLoraTags, type Lora, type LoraReport } from './lora.js';
import type { Architecture } from './model-architecture.js';
import type { ModelParts } from './model.js';
import type { NativeGenerateParams, NativeJob, NativeProgress, NativeTokens } from './native.js';
import { nativeHires } from './hires.js';
import { resizeImage } from './resize.js';
import { Upscaler } from './upscaler.js';
import { FAMILIES, familyProfile } from './families.js';
import { secondEncoderIds, sizeConditioning } from './sdxl-conditioning.js';
import type { ClipTokenizer } from './text/clip-tokenizer.js';
import { encodePromptOption } from './text/prompt-limits.js';
import { CHUNK_WINDOW, encodePrompt, type EncodedPrompt } from './text/prompt-weights.js';
import { modelVaeTiling } from './vae-jobs.js';

/** What model.generate() made. */
export interface GenerateResult {
  /** batchCount images, 8-bit RGB, width × height. */
  images: Array<Image & { channels: 3 }>;
  /** The seed of the first image (as given, or the random one picked). */
  seed: number | bigint;
  /**
   * imageEncodeMs: the VAE encoding the init image (and an inpainting model's masked image);
   * loraMs: applying the LoRAs (0 when the set kept from the last request served); upscaleMs:
   * the `upscale` option's ESRGAN passes over every image (0 without); hiresUpscaleMs: the
   * hires fix's enlarging (in pixel space with its VAE decode and encode), hiresSamplingMs its
   * second pass (both 0 without); samplingMs and textEncodeMs count the first pass (text: both);
   * controlNetMs: the part of samplingMs spent in the ControlNets (0 without).
   */
  timings: {
    textEncodeMs: number;
    imageEncodeMs: number;
    samplingMs: number;
    decodeMs: number;
    loraMs: number;
    upscaleMs: number;
    hiresUpscaleMs: number;
    hiresSamplingMs: number;
    controlNetMs: number;
  };
  /** The LoRAs applied (the `loras` option's, then the prompt's tags'), each with what of it fits the model. */
  loras: Array<{ name: string; path: string; weight: number; report: LoraReport }>;
}

/** A prompt as the engine takes it; `second` adds the ids SDXL's OpenCLIP bigG reads. */
function tokens(p: EncodedPrompt, second?: { eos: number }): NativeTokens {
  return {
    ids: p.ids,
    weights: p.weights,
    windows: p.chunkCount,
    ...(second ? { ids2: secondEncoderIds(p.ids, CHUNK_WINDOW, second.eos) } : {}),
  };
}

/** The vector y's size (and aesthetic) conditioning, for the families whose UNet takes one. */
function sizeOptions(o: ResolvedGenerateOptions): Pick<NativeGenerateParams, 'size'> {
  const { originalSize, cropCoords, targetSize, aestheticScore, negativeAestheticScore } = o;
  if (!originalSize || !cropCoords) return {};
  if (targetSize) return { size: sizeConditioning(originalSize, cropCoords, { target: targetSize }) };
  if (aestheticScore !== undefined && negativeAestheticScore !== undefined)
    return { size: sizeConditioning(originalSize, cropCoords, { aestheticScore, negativeAestheticScore }) };
  return {};
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

/**
 * Queues a generate job on the model. A model that cannot generate (missing components, a
 * broken tokenizer) rejects with its coded error; prompt syntax errors throw RangeError.
 */
export function generate(model: ModelParts, o: ResolvedGenerateOptions): Promise<GenerateResult> {
  // A disposed upscaler would fail only after the images are made.
  if (o.upscale?.upscaler.disposed) return Promise.reject(new DisposedError('options.upscale.upscaler has been disposed'));
  if (o.hires?.upscaler instanceof Upscaler && o.hires.upscaler.disposed)
    return Promise.reject(new DisposedError('options.hires.upscaler has been disposed'));
  let arch: Architecture;
  let tokenizer: ClipTokenizer;
  try {
    arch = model.architecture.forGenerate();
    tokenizer = model.tokenizer();
  } catch (err) {
    return Promise.reject(err instanceof Error ? err : new Error(String(err)));
  }
  const profile = familyProfile(model.info.family) ?? FAMILIES.sd1;
  const seed = isRandomSeed(o.seed) ? BigInt(randomInt(0, 2 ** 32)) : BigInt(o.seed);
  const reported = typeof o.seed === 'bigint' || seed > BigInt(Number.MAX_SAFE_INTEGER) ? seed : Number(seed);
  // OpenCLIP pads with 0 (SD2.x, the refiner's bigG; as the webui and stable-diffusion.cpp), CLIP-L with EOS.
  const padId = profile.encoders[0]!.padWithZero ? 0 : tokenizer.eos;
  // Embedding names become placeholder ids; their files are read here, on first use (small, capped).
  const embeddings = model.embeddings?.use(tokenizer);
  // The prompt's <lora:name:weight> tags name LoRAs; the text encoders read the prompt without them.
  const tagged = extractLoraTags(o.prompt);
  const loras = o.loras.length > 0 || tagged.tags.length > 0 ? model.resolveLoras(o.loras, tagged.tags) : Promise.resolve([]);
  loras.catch(() => {});  // rejections reach the caller through the job below
  let prompt: EncodedPrompt, negative: EncodedPrompt;
  try {
    prompt = encodePromptOption('options.prompt', tokenizer, tagged.prompt, padId, embeddings);
    negative = encodePromptOption('options.negativePrompt', tokenizer, o.negativePrompt, padId, embeddings);
  } catch (err) {
    // A bad embedding file rejects, as other file problems do; prompt syntax errors throw.
    if (err instanceof SdnodeError) return Promise.reject(err);
    throw err;
  }
  const tables = embeddings?.tables(arch.textEncoders.length);
  // A second encoder that pads otherwise than the first reads its own ids (SDXL's bigG beside CLIP-L).
  const second = profile.encoders.length > 1 && profile.encoders[1]!.padWithZero !== profile.encoders[0]!.padWithZero ? { eos: tokenizer.eos } : undefined;
  const { width, height, initImage, mask, vae, preview, onProgress } = o;
  // The final decode (and a hires pass's encode in pixel space) works at the output's size.
  const hires = o.hires && nativeHires(o.hires, o.steps);
  const [outWidth, outHeight] = hires ? [hires.width, hires.height] : [width, height];
  const vaeTiling = modelVaeTiling(model, o.vaeTiling, outWidth, outHeight, [
    ...(vae === 'full' || hires?.pixelSpace ? (['decode'] as const) : []),
    ...(initImage || hires?.pixelSpace ? (['encode'] as const) : []),
  ]);
  const taeTiling = vae === 'tae' ? model.tae?.tilingFor(o.vaeTiling, outWidth, outHeight, 'decode') : undefined;
  const { textEncoders, ...unetAndVae } = arch;
  const params: Omit<NativeGenerateParams, 'prediction'> = {
    // width, height, steps, sampler, … : the options that map onto one field each.
    ...plainNativeParams(o),
    prompt: tokens(prompt, second),
    negative: tokens(negative, second),
    empty: tokens(encodePrompt(tokenizer, '', { padId }), second),
    ...unetAndVae,
    textEncoders: textEncoders.map((e, k) => ({ ...e, clipSkip: o.clipSkip, ...(tables ? { embeddings: tables[k]! } : {}) })),
    // SDXL without a negative prompt conditions on zeros, as stable-diffusion.cpp and sgm do.
    zeroNegative: profile.zeroEmptyNegative && o.negativePrompt === '',
    ...sizeOptions(o),
    seed,
    decode: true,
    ...(vaeTiling ? { vaeTiling } : {}),
    // Previews travel only with progress events: without onProgress none are made.
    preview: onProgress ? preview : 'none',
    latentFormat: profile.latentFormat,
    ...(onProgress && preview === 'tae' ? { tae: model.taeNative } : {}),
    ...(vae === 'tae' ? { taeDecoder: model.taeNative } : {}),
    ...(taeTiling ? { taeTiling } : {}),
    ...(hires ? { hires } : {}),
  };
  const prediction = o.prediction;
  // The init image and mask are stretched to the job's size, and the prediction probed, in the job's turn, so the queue keeps its order.
  // The LoRA handles are made (or found) and checked open when the job's turn comes.
  let used: Array<{ lora: Lora; weight: number }> = [];
  const start = (progress?: (p: NativeProgress) => void) =>
    afterPreparation(
      Promise.all([
        prediction ?? model.architecture.probedPrediction(arch),
        initImage && resizeImage(initImage, width, height),
        mask && resizeImage(mask, width, height),
        loras,
        Promise.all(o.controlNets.map((c) => resizeImage(c.image, width, height))),
        // The hires pass's hints: the control images stretched to its size (not the first pass's hints enlarged).
        hires ? Promise.all(o.controlNets.map((c) => resizeImage(c.image, hires.width, hires.height))) : [],
      ]).then(([p, i, m, l, hints, hiresHints]) => {
        used = l;
        const nativeLoras = l.map((u) => ({ lora: u.lora.nativeHandle(), weight: u.weight }));
        // Checked open in the job's turn: a handle disposed while the job waited rejects with DisposedError.
        const controlNets = o.controlNets.map((c, k) => ({
          controlNet: c.model.nativeHandle(), image: hints[k]!, ...(hires ? { hiresImage: hiresHints[k]! } : {}), strength: c.strength, start: c.start, end: c.end,
        }));
        return () =>
          model.native.generate(
            { ...params, prediction: p, ...(i ? { initImage: i } : {}), ...(m ? { mask: m } : {}), ...(nativeLoras.length ? { loras: nativeLoras } : {}), ...(controlNets.length ? { controlNets } : {}) },
            progress,
          );
      }),
    );
  return model.queue.run(start, { signal: o.signal, onProgress }).then(async (r) => {
    const upscaled = o.upscale ? await upscaleAll(r.images as Array<Image & { channels: 3 }>, o.upscale, o.signal) : undefined;
    return {
      images: upscaled?.images ?? (r.images as Array<Image & { channels: 3 }>),
      seed: reported,
      timings: {
        textEncodeMs: r.textEncodeMs,
        imageEncodeMs: r.imageEncodeMs,
        samplingMs: r.samplingMs,
        decodeMs: r.decodeMs,
        loraMs: r.loraMs,
        upscaleMs: upscaled?.ms ?? 0,
        hiresUpscaleMs: r.hiresUpscaleMs,
        hiresSamplingMs: r.hiresSamplingMs,
        controlNetMs: r.controlNetMs,
      },
      loras: used.map((u) => ({ name: u.lora.name, path: u.lora.path, weight: u.weight, report: u.lora.report })),
    };
  });
}

/** The `upscale` option's passes, one image after another in the upscaler's queue. */
async function upscaleAll(
  images: Array<Image & { channels: 3 }>,
  upscale: NonNullable<ResolvedGenerateOptions['upscale']>,
  signal: AbortSignal | undefined,
): Promise<{ images: Array<Image & { channels: 3 }>; ms: number }> {
  const started = performance.now();
  const out: Array<Image & { channels: 3 }> = [];
  for (const image of images) out.push(await upscale.upscaler.run(image, upscale, { signal }));
  return { images: out, ms: performance.now() - started };
}
