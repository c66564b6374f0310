/**
 * LocalJobQueue: the JobQueue that runs jobs in this process, one at a time, on models loaded
 * here (lib/server/models.ts's ModelPool), LoRAs named from the server's LoRA folder.
 *
 * What a request names is checked when it is submitted (the model, LoRA names, images decode,
 * the mask fits the init image), so that a bad request is refused at once rather than after the
 * jobs ahead of it; what depends on the loaded model (the size multiple, the prompt's length) is
 * checked by model.generate() when the job's turn comes, and comes back as an `error` event.
 */
import { randomUUID } from 'node:crypto';
import type { GenerateOptions } from '../generate-options.js';
import type { Image } from '../image.js';
import { LORA_EXTENSIONS, extractLoraTags } from '../lora.js';
import type { Progress } from '../job.js';
import { defaultScheduler } from '../samplers.js';
import { AbortError } from '../errors.js';
import { infotext } from '../cli/infotext.js';
import { packageVersion } from '../cli/version.js';
import { toJobError } from './errors.js';
import { base64Bytes, decodeImage, decodeMask, encodePng, toBase64, type GrayMask } from './images.js';
import {
  JobError,
  QueueClosedError,
  QueueFullError,
  type JobEvent,
  type JobQueue,
  type JobRequest,
  type JobResult,
  type JobSettings,
  type QueueSnapshot,
  type Unwatch,
} from './job-queue.js';
import { resolveName, type NamedFolder } from './names.js';
import { checkpointName, type ModelPool } from './models.js';

/**
 * The settings a job runs with when the request leaves them out: model.generate()'s own
 * defaults (lib/generate-options.ts), passed explicitly so that each PNG's infotext states them.
 */
export const JOB_DEFAULTS = { negativePrompt: '', steps: 20, cfgScale: 7, sampler: 'euler_a', rng: 'cuda', batchCount: 1, strength: 0.75, maskBlur: 4 } as const;

export interface LocalJobQueueOptions {
  /** The models jobs run on, by name. */
  models: ModelPool;
  /** The folder `<lora:name:weight>` tags and JobRequest.loras name files in; without it, LoRAs are refused. */
  loraDir?: string;
  /** Jobs that may wait besides the running one; one more is refused with QueueFullError. Default 32. */
  maxWaiting?: number;
  /** Width × height a job may make, the init image's size included when it sets the size. Default: the library's limit. */
  maxPixels?: number;
  /** How long an ended job's last event (its result) stays available to watch(). Default 10 minutes. */
  retainMs?: number;
  /** How many ended jobs are remembered at most (results hold PNGs). Default 64. */
  retainJobs?: number;
}

const DEFAULT_MAX_WAITING = 32;
const DEFAULT_RETAIN_MS = 10 * 60_000;
const DEFAULT_RETAIN_JOBS = 64;
/** Weight of the newest job in the running mean of job durations that Retry-After is estimated from. */
const DURATION_SMOOTHING = 0.3;

/** What submit() found out about a request: decoded images, LoRA files. */
interface Prepared {
  model: string;
  prompt: string;
  initImage?: Image;
  mask?: GrayMask;
  loras: Array<{ path: string; weight: number }>;
}

interface Job {
  id: string;
  request: JobRequest;
  prepared: Prepared;
  state: 'waiting' | 'running' | 'ended';
  listeners: Set<(event: JobEvent) => void>;
  submittedAt: number;
  startedAt?: number;
  /** The latest progress event (its preview left out: see previewImage). */
  latest?: Extract<JobEvent, { type: 'progress' }>;
  /** The latest preview, raw; encoded once someone asks (previewPng). */
  previewImage?: Image;
  previewPng?: Promise<string>;
  terminal?: JobEvent;
  abort: AbortController;
  /** Events after started, in order: previews are encoded before their event is sent. */
  chain: Promise<void>;
  /** When an ended job is forgotten. */
  forget?: NodeJS.Timeout;
}

export class LocalJobQueue implements JobQueue {
  readonly #models: ModelPool;
  readonly #loraFolder: NamedFolder | undefined;
  readonly #maxWaiting: number;
  readonly #maxPixels: number | undefined;
  readonly #retainMs: number;
  readonly #retainJobs: number;
  readonly #jobs = new Map<string, Job>();
  readonly #waiting: Job[] = [];
  /** Submissions being checked: they hold a place in the queue's limit. */
  #preparing = 0;
  #running: Job | undefined;
  #ended: Job[] = [];
  #closed = false;
  #idleWaiters: Array<() => void> = [];
  /** Running mean of job durations (ms), for Retry-After. */
  #meanJobMs = 0;

  constructor(options: LocalJobQueueOptions) {
    this.#models = options.models;
    this.#loraFolder = options.loraDir !== undefined ? { dir: options.loraDir, extensions: LORA_EXTENSIONS, kind: 'LoRA' } : undefined;
    this.#maxWaiting = options.maxWaiting ?? DEFAULT_MAX_WAITING;
    this.#maxPixels = options.maxPixels;
    this.#retainMs = options.retainMs ?? DEFAULT_RETAIN_MS;
    this.#retainJobs = options.retainJobs ?? DEFAULT_RETAIN_JOBS;
  }

  async submit(request: JobRequest): Promise<string> {
    if (this.#closed) throw new QueueClosedError();
    if (this.#waiting.length + this.#preparing >= this.#maxWaiting) throw new QueueFullError(this.#maxWaiting, this.#retryAfterSeconds());
    this.#preparing++;
    let prepared: Prepared;
    try {
      prepared = await this.#prepare(request);
    } finally {
      this.#preparing--;
    }
    if (this.#closed) throw new QueueClosedError();
    const job: Job = {
      id: randomUUID(),
      request,
      prepared,
      state: 'waiting',
      listeners: new Set(),
      submittedAt: Date.now(),
      abort: new AbortController(),
      chain: Promise.resolve(),
    };
    this.#jobs.set(job.id, job);
    this.#waiting.push(job);
    queueMicrotask(() => this.#pump());
    return job.id;
  }

  async watch(id: string, listener: (event: JobEvent) => void): Promise<Unwatch | undefined> {
    const job = this.#jobs.get(id);
    if (!job) return undefined;
    // The present state first, then what follows.
    if (job.terminal) {
      listener(job.terminal);
      return () => {};
    }
    if (job.state === 'waiting') listener({ type: 'queued', position: this.#positionOf(job) });
    else {
      listener({ type: 'started', startedAt: job.startedAt! });
      if (job.latest) listener(job.previewImage ? { ...job.latest, preview: await this.#previewPng(job) } : job.latest);
    }
    if (job.terminal) {
      // It ended while the preview was encoded.
      listener(job.terminal);
      return () => {};
    }
    job.listeners.add(listener);
    return () => job.listeners.delete(listener);
  }

  async cancel(id: string, reason = 'cancelled by the client'): Promise<boolean> {
    const job = this.#jobs.get(id);
    if (!job || job.state === 'ended') return false;
    if (job.state === 'waiting') {
      this.#waiting.splice(this.#waiting.indexOf(job), 1);
      this.#end(job, { type: 'cancelled', reason });
      this.#announcePositions();
      this.#maybeIdle();
    } else {
      job.abort.abort(reason);
    }
    return true;
  }

  async snapshot(): Promise<QueueSnapshot> {
    const job = this.#running;
    if (!job) return { waiting: this.#waiting.length };
    return {
      running: {
        id: job.id,
        model: job.prepared.model,
        batchCount: job.request.batchCount ?? JOB_DEFAULTS.batchCount,
        startedAt: job.startedAt!,
        step: job.latest?.step ?? 0,
        steps: job.latest?.steps ?? 0,
        ...(job.previewImage ? { preview: await this.#previewPng(job) } : {}),
      },
      waiting: this.#waiting.length,
    };
  }

  async close(graceMs: number): Promise<void> {
    this.#closed = true;
    const idle = new Promise<void>((resolve) => {
      this.#idleWaiters.push(resolve);
      this.#maybeIdle();
    });
    const timer = setTimeout(() => {
      const reason = 'the server is shutting down';
      for (const job of [...this.#waiting]) void this.cancel(job.id, reason);
      if (this.#running) void this.cancel(this.#running.id, reason);
    }, graceMs);
    await idle;
    clearTimeout(timer);
  }

  /** Jobs ahead of a waiting one, the running one included. */
  #positionOf(job: Job): number {
    return this.#waiting.indexOf(job) + (this.#running ? 1 : 0);
  }

  #retryAfterSeconds(): number {
    const ahead = this.#waiting.length + (this.#running ? 1 : 0);
    return Math.max(1, Math.ceil((this.#meanJobMs * ahead) / 1000));
  }

  async #prepare(request: JobRequest): Promise<Prepared> {
    const model = (await this.#models.catalog.resolve(request.model, 'model')).name;
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
    const folder = this.#loraFolder;
    if (wanted.length > 0 && !folder)
      throw new JobError({ status: 400, code: 'unknown_lora', field: wanted[0]!.field, message: `LoRA '${wanted[0]!.name}': this server has no LoRA folder (start it with --lora-model-dir)` });
    const loras = await Promise.all(wanted.map(async (w) => ({ path: await resolveName(w.name, w.field, folder!), weight: w.weight })));

    const initImage = request.initImage !== undefined ? await decodeImage(base64Bytes(request.initImage, 'initImage'), 'initImage') : undefined;
    let mask: GrayMask | undefined;
    if (request.mask !== undefined) {
      if (!initImage) throw new JobError({ status: 400, code: 'invalid_request', field: 'mask', message: 'mask: inpainting needs an init image to paint into' });
      mask = await decodeMask(base64Bytes(request.mask, 'mask'), 'mask', 'luminance');
      if (mask.width !== initImage.width || mask.height !== initImage.height)
        throw new JobError({ status: 400, code: 'invalid_image', field: 'mask', message: `mask: ${mask.width}×${mask.height}, the init image ${initImage.width}×${initImage.height}: they must be the same size` });
    }
    if (this.#maxPixels !== undefined) {
      const width = request.width ?? initImage?.width, height = request.height ?? initImage?.height;
      if (width !== undefined && height !== undefined && width * height > this.#maxPixels)
        throw new JobError({ status: 400, code: 'too_large', field: request.width !== undefined ? 'width' : 'initImage', message: `width × height is ${width}×${height}; this server makes at most ${this.#maxPixels} pixels` });
    }
    const seed = request.seed ?? -1, batch = request.batchCount ?? JOB_DEFAULTS.batchCount;
    if (seed !== -1 && seed + batch - 1 > Number.MAX_SAFE_INTEGER)
      throw new JobError({ status: 400, code: 'invalid_request', field: 'seed', message: `seed: seed + batch − 1 must be at most 2^53−1 (JSON's exact integers)` });
    return { model, prompt, ...(initImage ? { initImage } : {}), ...(mask ? { mask } : {}), loras };
  }

  #emit(job: Job, event: JobEvent): void {
    for (const listener of [...job.listeners]) {
      try {
        listener(event);
      } catch {
        // A listener's failure is its own; the job and the other listeners go on.
      }
    }
  }

  #end(job: Job, event: JobEvent): void {
    job.state = 'ended';
    job.terminal = event;
    job.previewImage = undefined;
    job.previewPng = undefined;
    this.#emit(job, event);
    job.listeners.clear();
    // Remembered for a while (a client may fetch the result after the events), bounded in number;
    // a job forgotten early takes its timer with it, which would otherwise hold its result.
    job.forget = setTimeout(() => this.#forget(job), this.#retainMs).unref();
    this.#ended.push(job);
    while (this.#ended.length > this.#retainJobs) this.#forget(this.#ended[0]!);
  }

  #forget(job: Job): void {
    clearTimeout(job.forget);
    this.#jobs.delete(job.id);
    const i = this.#ended.indexOf(job);
    if (i >= 0) this.#ended.splice(i, 1);
  }

  #announcePositions(): void {
    for (const job of this.#waiting) if (job.listeners.size > 0) this.#emit(job, { type: 'queued', position: this.#positionOf(job) });
  }

  #previewPng(job: Job): Promise<string> {
    const image = job.previewImage!;
    job.previewPng ??= encodePng(image).then(toBase64);
    return job.previewPng;
  }

  #pump(): void {
    if (this.#running) return;
    const job = this.#waiting.shift();
    if (!job) return this.#maybeIdle();
    this.#running = job;
    job.state = 'running';
    job.startedAt = Date.now();
    this.#emit(job, { type: 'started', startedAt: job.startedAt });
    this.#announcePositions();
    void this.#run(job).then((event) =>
      job.chain.then(() => {
        this.#meanJobMs = this.#meanJobMs === 0 ? Date.now() - job.startedAt! : this.#meanJobMs + DURATION_SMOOTHING * (Date.now() - job.startedAt! - this.#meanJobMs);
        this.#running = undefined;
        this.#end(job, event);
        this.#pump();
      }),
    );
  }

  /** Runs a job to its terminal event; never rejects. */
  async #run(job: Job): Promise<JobEvent> {
    const { request, prepared } = job;
    const signal = job.abort.signal;
    try {
      const model = await this.#models.get(prepared.model);
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
      };
      const options: GenerateOptions = {
        ...settings,
        prompt: prepared.prompt,
        ...(request.width !== undefined ? { width: request.width } : {}),
        ...(request.height !== undefined ? { height: request.height } : {}),
        seed: request.seed ?? -1,
        ...(prepared.initImage ? { initImage: prepared.initImage } : {}),
        ...(prepared.mask ? { mask: prepared.mask } : {}),
        ...(prepared.loras.length > 0 ? { loras: prepared.loras } : {}),
        ...(request.preview && request.preview !== 'none' ? { preview: request.preview, ...(request.previewInterval !== undefined ? { previewInterval: request.previewInterval } : {}) } : {}),
        signal,
        onProgress: (p) => this.#progress(job, p),
      };
      const generated = await model.generate(options);
      const encodeStart = performance.now();
      const [image] = generated.images;
      const seeds = generated.images.map((_, i) => Number(generated.seed) + i);
      const full: JobSettings = { ...settings, width: image!.width, height: image!.height };
      const modelName = checkpointName(prepared.model);
      const infotexts = seeds.map((seed) =>
        infotext({ ...full, seed, model: modelName, taesd: false, version: packageVersion() }),
      );
      const images = await Promise.all(generated.images.map(async (img, i) => toBase64(await encodePng(img, infotexts[i]))));
      const encodeMs = performance.now() - encodeStart;
      const queuedMs = job.startedAt! - job.submittedAt;
      const result: JobResult = {
        model: prepared.model,
        images,
        seeds,
        infotexts,
        settings: full,
        timings: { queuedMs, ...generated.timings, encodeMs, totalMs: Date.now() - job.submittedAt },
      };
      return { type: 'done', result };
    } catch (err) {
      if (err instanceof AbortError || signal.aborted) return { type: 'cancelled', reason: String(signal.reason ?? 'cancelled') };
      return { type: 'error', error: toJobError(err).toInfo() };
    }
  }

  #progress(job: Job, p: Progress): void {
    const event: Extract<JobEvent, { type: 'progress' }> = { type: 'progress', step: p.step, steps: p.steps, elapsedMs: p.elapsedMs };
    job.latest = event;
    if (p.preview) {
      job.previewImage = p.preview;
      job.previewPng = undefined;
    }
    if (job.listeners.size === 0) return;
    const preview = p.preview ? this.#previewPng(job) : undefined;
    job.chain = job.chain.then(async () => {
      // A preview that fails to encode is left out; the step is still told.
      const png = preview ? await preview.catch(() => undefined) : undefined;
      if (job.state === 'running') this.#emit(job, png ? { ...event, preview: png } : event);
    });
  }

  #maybeIdle(): void {
    if (this.#running || this.#waiting.length > 0 || this.#preparing > 0) return;
    const waiters = this.#idleWaiters;
    this.#idleWaiters = [];
    for (const w of waiters) w();
  }
}
