/**
 * The job queue behind `sdnode serve`: what every HTTP route hands its generations to.
 *
 * A JobQueue takes a JobRequest (plain JSON: images as base64 strings, the seed a number, the
 * model and LoRAs by name) and gives back an id; the job's life is told as JobEvents (plain JSON
 * too) to whoever watches it. Requests, events and results travel unchanged through any
 * transport (JSON.stringify / JSON.parse round-trips them), so one implementation runs jobs in
 * this process (LocalJobQueue, lib/server/local-job-queue.ts) and another can put them on a
 * distributed queue; the routes see only this interface.
 *
 * The contract, for implementers:
 * - submit(request) resolves with the job's id once it is queued. It rejects with QueueFullError
 *   (status 429, retryAfterSeconds) when the queue already holds its limit of waiting jobs, with
 *   QueueClosedError (503) after close(), and with a JobError (4xx, naming the `field`) for a
 *   request it can refuse without running it (an image that does not decode, an unknown model or
 *   LoRA name). Requests reach submit already shaped by the routes' JSON schemas.
 * - watch(id, listener) tells the listener the job's present state first — `queued` with its
 *   position, or `started` and the latest `progress`, or the terminal event of a job that ended
 *   and is still remembered — then every later event, in order, ending with exactly one terminal
 *   event: `done`, `error` or `cancelled`. The listener may be called before watch's promise
 *   resolves. The promise resolves with a function that stops the watching, or undefined for an
 *   id the queue does not know (never submitted, or ended and forgotten).
 * - cancel(id) cancels a waiting or running job (its watchers get `cancelled`); false when the
 *   id is unknown or the job had already ended.
 * - snapshot() is what the AUTOMATIC1111 API's /progress and /interrupt need: the job running
 *   now (the oldest running one where several run) with its latest step and preview, and how
 *   many wait.
 * - close(graceMs) refuses new jobs, lets the queued and running ones finish for up to graceMs,
 *   then cancels what is left; it resolves once nothing of this queue runs in this process.
 */
import type { HiresUpscalerName } from '../hires.js';
import type { Sampler, Scheduler } from '../samplers.js';

/** A LoRA from the server's LoRA folder (--lora-model-dir), named as `<lora:name:weight>` names it. */
export interface JobLora {
  /** The file's path inside the LoRA folder without extension, e.g. 'style' or 'sdxl/detail'. */
  name: string;
  /** Multiplier of the LoRA's own scale, −10 … 10. */
  weight: number;
}

/**
 * One generation, as model.generate() takes it (lib/generate-options.ts names and documents
 * the settings), in JSON. Absent settings take the library's defaults.
 */
export interface JobRequest {
  /** The model's name as the server lists it: its path inside --models-dir, or the -m file's name. */
  model: string;
  /** May hold `<lora:name:weight>` tags: LoRAs from the LoRA folder. */
  prompt: string;
  negativePrompt?: string;
  width?: number;
  height?: number;
  steps?: number;
  cfgScale?: number;
  sampler?: Sampler;
  scheduler?: Scheduler;
  /** 0 … 2^53−1, or -1 for a random one. Image i of a batch uses seed + i. */
  seed?: number;
  rng?: 'cuda' | 'cpu';
  batchCount?: number;
  clipSkip?: number;
  /** Image-to-image: the image to start from, base64 (PNG, JPEG or WebP). */
  initImage?: string;
  strength?: number;
  /** Inpainting: base64 image whose luminance is the mask (white = repaint, black = keep), the init image's size. */
  mask?: string;
  maskBlur?: number;
  /** LoRAs besides the prompt's tags. */
  loras?: JobLora[];
  /** Live previews in `progress` events. Default 'none'. */
  preview?: 'none' | 'latent2rgb' | 'tae';
  previewInterval?: number;
  /** The hires fix (text-to-image): model.generate()'s `hires` option, with an upscaler by name. */
  hires?: JobHires;
}

/** The hires fix as a job request carries it (plain data: no Upscaler handle). */
export interface JobHires {
  scale?: number;
  width?: number;
  height?: number;
  steps?: number;
  strength?: number;
  upscaler?: HiresUpscalerName;
}

/** The settings a job ran with, defaults filled in: what APIs echo back (the webui's `info`). */
export interface JobSettings {
  prompt: string;
  negativePrompt: string;
  width: number;
  height: number;
  steps: number;
  cfgScale: number;
  sampler: Sampler;
  scheduler: Scheduler;
  rng: 'cuda' | 'cpu';
  batchCount: number;
  /** Only when the request gave one. */
  clipSkip?: number;
  /** Image-to-image only. */
  strength?: number;
  /** Inpainting only. */
  maskBlur?: number;
  /** The hires fix, as requested; width and height above are then the first pass's. */
  hires?: JobHires;
}

/** What a finished job made. */
export interface JobResult {
  /** The model's name (as JobRequest.model). */
  model: string;
  /** batchCount PNGs, base64, each with the webui's `parameters` text chunk (its infotext). */
  images: string[];
  /** Each image's seed. */
  seeds: number[];
  /** Each image's infotext, as in its PNG. */
  infotexts: string[];
  settings: JobSettings;
  /** Milliseconds: waiting in the queue, then the library's phases, then encoding the PNGs. */
  timings: { queuedMs: number; textEncodeMs: number; imageEncodeMs: number; samplingMs: number; decodeMs: number; loraMs: number; encodeMs: number; totalMs: number };
}

/** Why a job failed or a request was refused: HTTP status, stable code, message, the request field at fault. */
export interface JobErrorInfo {
  /** 4xx: the request's fault; 5xx: the server's. */
  status: number;
  /** Stable, machine-readable: 'invalid_request', 'unknown_model', 'unknown_lora', 'invalid_image', 'queue_full', … */
  code: string;
  message: string;
  /** The JobRequest field at fault (e.g. 'width', 'initImage', 'loras[0].name'). */
  field?: string;
}

/** A job's life, in order: queued (again as its position moves), started, progress per step, then one of done, error, cancelled. */
export type JobEvent =
  /** Waiting: `position` jobs are ahead of it, the running one included (0: it starts next). */
  | { type: 'queued'; position: number }
  /** Running since `startedAt` (milliseconds since the epoch). */
  | { type: 'started'; startedAt: number }
  /**
   * Step `step` of `steps` (steps × batchCount in all; fewer for image-to-image) is done;
   * `preview`: a base64 PNG of where the image is heading, when the request asked for previews.
   */
  | { type: 'progress'; step: number; steps: number; elapsedMs: number; preview?: string }
  | { type: 'done'; result: JobResult }
  | { type: 'error'; error: JobErrorInfo }
  /** Cancelled by cancel(), a client gone, or shutdown; `reason` says which. */
  | { type: 'cancelled'; reason: string };

/** The terminal events: a watched job ends with exactly one of them. */
export const TERMINAL_EVENTS: ReadonlySet<JobEvent['type']> = new Set(['done', 'error', 'cancelled']);

/** The running job, as the webui's /progress shows it. */
export interface RunningJob {
  id: string;
  model: string;
  /** Images the job makes. */
  batchCount: number;
  startedAt: number;
  /** Latest progress; 0 of 0 before the first step. */
  step: number;
  steps: number;
  /** The latest preview, base64 PNG, when the job makes them. */
  preview?: string;
}

export interface QueueSnapshot {
  running?: RunningJob;
  /** Jobs waiting (not running). */
  waiting: number;
}

/** Stops a watch. */
export type Unwatch = () => void;

/**
 * The models requests may name, as the routes list and resolve them: the server's own -m and
 * --models-dir (ModelCatalog, lib/server/models.ts), or a queue's when it runs jobs elsewhere.
 */
export interface ModelDirectory {
  /** The model requests use unless they name one; undefined when there is none. */
  readonly current: string | undefined;
  list(): Promise<Array<{ name: string }>>;
  /** The model a name means: JobError (4xx naming `field`, or 503) when there is none. */
  resolve(name: unknown, field?: string): Promise<{ name: string }>;
  /** Makes the model a name means the current one; rejects as resolve. */
  select(name: unknown, field?: string): Promise<{ name: string }>;
}

/** The queue behind the HTTP routes; see the module comment for the contract. */
export interface JobQueue {
  /**
   * The models this queue runs, for a queue that knows them rather than the server (a
   * distributed queue: the models its workers hold). Absent: the server's -m and --models-dir.
   */
  readonly models?: ModelDirectory;
  submit(request: JobRequest): Promise<string>;
  watch(id: string, listener: (event: JobEvent) => void): Promise<Unwatch | undefined>;
  cancel(id: string, reason?: string): Promise<boolean>;
  snapshot(): Promise<QueueSnapshot>;
  close(graceMs: number): Promise<void>;
}

/** A request refused or a job failed: the HTTP status, code and field travel with it. */
export class JobError extends Error {
  readonly status: number;
  readonly code: string;
  readonly field: string | undefined;
  constructor(info: JobErrorInfo, options?: { cause?: unknown }) {
    super(info.message, options);
    this.name = new.target.name;
    this.status = info.status;
    this.code = info.code;
    this.field = info.field;
  }

  /** The plain form, for a JobEvent. */
  toInfo(): JobErrorInfo {
    return { status: this.status, code: this.code, message: this.message, ...(this.field !== undefined ? { field: this.field } : {}) };
  }
}

/** The queue holds its limit of waiting jobs: HTTP 429 with Retry-After. */
export class QueueFullError extends JobError {
  /** When a client might try again: about the time the jobs ahead take. */
  readonly retryAfterSeconds: number;
  constructor(limit: number, retryAfterSeconds: number) {
    super({ status: 429, code: 'queue_full', message: `the queue is full (${limit} jobs waiting); try again in ${retryAfterSeconds} s` });
    this.retryAfterSeconds = retryAfterSeconds;
  }
}

/** The queue is shutting down: HTTP 503. */
export class QueueClosedError extends JobError {
  constructor() {
    super({ status: 503, code: 'shutting_down', message: 'the server is shutting down and takes no new jobs' });
  }
}

/** A job that ended cancelled, for those waiting on its result. */
export class JobCancelledError extends Error {
  readonly reason: string;
  constructor(reason: string) {
    super(`the job was cancelled: ${reason}`);
    this.name = 'JobCancelledError';
    this.reason = reason;
  }
}

/**
 * The result of job `id`, through watch: rejects with JobError for an `error` event,
 * JobCancelledError for `cancelled`, JobError 404 for an unknown id. `onEvent` sees every event
 * on the way.
 */
export async function jobResult(queue: JobQueue, id: string, onEvent?: (event: JobEvent) => void): Promise<JobResult> {
  let unwatch: Unwatch | undefined;
  let ended = false;
  const result = new Promise<JobResult>((resolve, reject) => {
    queue
      .watch(id, (event) => {
        if (ended) return;
        onEvent?.(event);
        if (!TERMINAL_EVENTS.has(event.type)) return;
        ended = true;
        unwatch?.();
        if (event.type === 'done') resolve(event.result);
        else if (event.type === 'error') reject(new JobError(event.error));
        else if (event.type === 'cancelled') reject(new JobCancelledError(event.reason));
      })
      .then((stop) => {
        if (!stop) reject(new JobError({ status: 404, code: 'unknown_job', message: `no job '${id}'` }));
        else if (ended) stop();
        else unwatch = stop;
      }, reject);
  });
  return result;
}
