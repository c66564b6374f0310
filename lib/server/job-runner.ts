/**
 * One job from request to terminal event, on a loaded model: what every queue that runs jobs
 * shares — LocalJobQueue in the server's process, the `sdnode worker` of the Redis queue on
 * other machines — so that a request makes the same PNGs, infotexts and errors wherever it runs.
 *
 * prepareJob checks what a request names without the model (LoRA files inside the LoRA folder,
 * images that decode, a mask that fits, the pixel limit, the seed range); runPreparedJob runs it
 * and encodes the PNGs with their `parameters` text.
 */
import type { GenerateOptions } from '../generate-options.js';
import type { Image } from '../image.js';
import { extractLoraTags } from '../lora.js';
import { loraHashesField } from '../lora-hash.js';
import type { Progress } from '../job.js';
import type { Model } from '../model.js';
import { defaultScheduler } from '../samplers.js';
import { AbortError } from '../errors.js';
import { hiresInfotext, infotext } from '../cli/infotext.js';
import { packageVersion } from '../cli/version.js';
import { toJobError } from './errors.js';
import { base64Bytes, decodeImage, decodeMask, encodePng, toBase64, type GrayMask } from './images.js';
import { JobError, type JobEvent, type JobRequest, type JobResult, type JobSettings } from './job-queue.js';
import { checkpointName } from './models.js';
import { resolveName, type NamedFolder } from './names.js';

/**
 * The settings a job runs with when the request leaves them out: model.generate()'s own
 * defaults (lib/generate-options.ts), passed explicitly so that each PNG's infotext states them.
 */
export const JOB_DEFAULTS = { negativePrompt: '', steps: 20, cfgScale: 7, sampler: 'euler_a', rng: 'cuda', batchCount: 1, strength: 0.75, maskBlur: 4 } as const;

/** What prepareJob found out about a request: decoded images, LoRA files. */
export interface PreparedJob {
  /** The model's name, resolved. */
  model: string;
  /** The prompt without its `<lora:…>` tags. */
  prompt: string;
  initImage?: Image;
  mask?: GrayMask;
  /** `name` as the request or the prompt's tag gave it. */
  loras: Array<{ name: string; path: string; weight: number }>;
}

export interface PrepareOptions {
  /** The folder LoRA names resolve in; without it, LoRAs are refused. */
  loraFolder?: NamedFolder;
  /** Width × height a job may make, the init image's size included when it sets the size. */
  maxPixels?: number;
}

/** The events that end a job. */
export type TerminalEvent = Extract<JobEvent, { type: 'done' | 'error' | 'cancelled' }>;

/**
 * Checks `request` (its model already resolved to `model`) against what it names: JobError 400
 * naming the field for a malformed prompt tag, an unknown LoRA, an image that does not decode,
 * a mask of another size, too many pixels, a seed range past 2^53−1.
 */
export async function prepareJob(request: JobRequest, model: string, options: PrepareOptions = {}): Promise<PreparedJob> {
  let tags: Array<{ name: string; weight: number }>;
  let prompt: string;
  try {
    ({ tags, prompt } = extractLoraTags(request.prompt));
  } catch (err) {
    throw new JobError({ status: 400, code: 'invalid_request', field: 'prompt', message: (err as Error).message }, { cause: err });
  }
  const wanted = [
    ...(request.loras ?? []).map((l, i) => ({ ...l, field: `loras[${i}].name` })),
    ...tags.map((t) => ({ ...t, field: 'prompt' })),
  ];
  const folder = options.loraFolder;
  if (wanted.length > 0 && !folder)
    throw new JobError({ status: 400, code: 'unknown_lora', field: wanted[0]!.field, message: `LoRA '${wanted[0]!.name}': this server has no LoRA folder (start it with --lora-model-dir)` });
  const loras = await Promise.all(wanted.map(async (w) => ({ name: w.name, path: await resolveName(w.name, w.field, folder!), weight: w.weight })));

  const initImage = request.initImage !== undefined ? await decodeImage(base64Bytes(request.initImage, 'initImage'), 'initImage') : undefined;
  let mask: GrayMask | undefined;
  if (request.mask !== undefined) {
    if (!initImage) throw new JobError({ status: 400, code: 'invalid_request', field: 'mask', message: 'mask: inpainting needs an init image to paint into' });
    mask = await decodeMask(base64Bytes(request.mask, 'mask'), 'mask', 'luminance');
    if (mask.width !== initImage.width || mask.height !== initImage.height)
      throw new JobError({ status: 400, code: 'invalid_image', field: 'mask', message: `mask: ${mask.width}×${mask.height}, the init image ${initImage.width}×${initImage.height}: they must be the same size` });
  }
  const maxPixels = options.maxPixels;
  if (maxPixels !== undefined) {
    const width = request.width ?? initImage?.width, height = request.height ?? initImage?.height;
    if (width !== undefined && height !== undefined && width * height > maxPixels)
      throw new JobError({ status: 400, code: 'too_large', field: request.width !== undefined ? 'width' : 'initImage', message: `width × height is ${width}×${height}; this server makes at most ${maxPixels} pixels` });
    // The hires fix's target (before rounding up to the model's size multiple).
    const h = request.hires, scale = h?.scale ?? 2;
    const target = h && (h.width !== undefined || h.height !== undefined ? [h.width ?? h.height!, h.height ?? h.width!] : [(request.width ?? 512) * scale, (request.height ?? 512) * scale]);
    if (target && target[0]! * target[1]! > maxPixels)
      throw new JobError({ status: 400, code: 'too_large', field: 'hires', message: `the hires target is about ${target[0]}×${target[1]}; this server makes at most ${maxPixels} pixels` });
  }
  const seed = request.seed ?? -1, batch = request.batchCount ?? JOB_DEFAULTS.batchCount;
  if (seed !== -1 && seed + batch - 1 > Number.MAX_SAFE_INTEGER)
    throw new JobError({ status: 400, code: 'invalid_request', field: 'seed', message: `seed: seed + batch − 1 must be at most 2^53−1 (JSON's exact integers)` });
  return { model, prompt, ...(initImage ? { initImage } : {}), ...(mask ? { mask } : {}), loras };
}

/** What runPreparedJob needs besides the request. */
export interface RunJobHooks {
  /** Cancels the job: it ends `cancelled` with the signal's reason. */
  signal: AbortSignal;
  /** When the job was submitted and when it started running (ms since the epoch), for its timings. */
  submittedAt: number;
  startedAt: number;
  /** Each step, in order; `preview` only when the request asked for previews. */
  onProgress: (progress: Progress) => void;
}

/**
 * Runs a prepared job on the model `getModel` gives (awaited inside, so that a failed load is
 * the job's error) to its terminal event: `done` with the PNGs, `cancelled` when the signal
 * fired, `error` otherwise. Never rejects.
 */
export async function runPreparedJob(getModel: () => Promise<Model>, request: JobRequest, prepared: PreparedJob, hooks: RunJobHooks): Promise<TerminalEvent> {
  const { signal } = hooks;
  try {
    const model = await getModel();
    if (signal.aborted) throw new AbortError();
    const sampler = request.sampler ?? JOB_DEFAULTS.sampler;
    const settings = {
      prompt: request.prompt,
      negativePrompt: request.negativePrompt ?? JOB_DEFAULTS.negativePrompt,
      steps: request.steps ?? JOB_DEFAULTS.steps,
      cfgScale: request.cfgScale ?? JOB_DEFAULTS.cfgScale,
      sampler,
      scheduler: request.scheduler ?? defaultScheduler(sampler),
      rng: request.rng ?? JOB_DEFAULTS.rng,
      batchCount: request.batchCount ?? JOB_DEFAULTS.batchCount,
      ...(request.clipSkip !== undefined ? { clipSkip: request.clipSkip } : {}),
      ...(prepared.initImage ? { strength: request.strength ?? JOB_DEFAULTS.strength } : {}),
      ...(prepared.mask ? { maskBlur: request.maskBlur ?? JOB_DEFAULTS.maskBlur } : {}),
      ...(request.hires ? { hires: request.hires } : {}),
    };
    const options: GenerateOptions = {
      ...settings,
      prompt: prepared.prompt,
      ...(request.width !== undefined ? { width: request.width } : {}),
      ...(request.height !== undefined ? { height: request.height } : {}),
      seed: request.seed ?? -1,
      ...(prepared.initImage ? { initImage: prepared.initImage } : {}),
      ...(prepared.mask ? { mask: prepared.mask } : {}),
      ...(prepared.loras.length > 0 ? { loras: prepared.loras.map(({ path, weight }) => ({ path, weight })) } : {}),
      ...(request.preview && request.preview !== 'none' ? { preview: request.preview, ...(request.previewInterval !== undefined ? { previewInterval: request.previewInterval } : {}) } : {}),
      signal,
      onProgress: hooks.onProgress,
    };
    // Hashed while the job runs (each file once per server: lib/lora-hash.ts); an unreadable file leaves the field out.
    const loraHashes = loraHashesField(prepared.loras).catch(() => undefined);
    const generated = await model.generate(options);
    const encodeStart = performance.now();
    const [image] = generated.images;
    const seeds = generated.images.map((_, i) => Number(generated.seed) + i);
    // With the hires fix the webui states the first pass's size.
    // A target given by one side: both as made, for the webui's "Hires resize".
    const hires = request.hires && (request.hires.width !== undefined || request.hires.height !== undefined ? { ...request.hires, width: image!.width, height: image!.height } : request.hires);
    const full: JobSettings = hires
      ? { ...settings, hires, width: request.width ?? 512, height: request.height ?? 512 }
      : { ...settings, width: image!.width, height: image!.height };
    const modelName = checkpointName(prepared.model);
    const { hires: _hires, ...plainSettings } = full;
    const hashes = await loraHashes;
    const infotexts = seeds.map((seed) =>
      infotext({
        ...plainSettings, seed, model: modelName, taesd: false, version: packageVersion(), ...(hashes !== undefined ? { loraHashes: hashes } : {}),
        ...hiresInfotext(request.hires, image!, undefined),
      }),
    );
    const images = await Promise.all(generated.images.map(async (img, i) => toBase64(await encodePng(img, infotexts[i]))));
    const encodeMs = performance.now() - encodeStart;
    const result: JobResult = {
      model: prepared.model,
      images,
      seeds,
      infotexts,
      settings: full,
      timings: { queuedMs: hooks.startedAt - hooks.submittedAt, ...generated.timings, encodeMs, totalMs: Date.now() - hooks.submittedAt },
    };
    return { type: 'done', result };
  } catch (err) {
    if (err instanceof AbortError || signal.aborted) return { type: 'cancelled', reason: String(signal.reason ?? 'cancelled') };
    return { type: 'error', error: toJobError(err).toInfo() };
  }
}
