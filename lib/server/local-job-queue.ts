/**
 * LocalJobQueue: the JobQueue that runs jobs in this process, one at a time, on models loaded
 * here (lib/server/models.ts's ModelPool), LoRAs named from the server's LoRA folder.
 *
 * What a request names is checked when it is submitted (the model, LoRA names, images decode,
 * the mask fits the init image), so that a bad request is refused at once rather than after the
 * jobs ahead of it; what depends on the loaded model (the size multiple, the prompt's length) is
 * checked by model.generate() when the job's turn comes, and comes back as an `error` event.
 * Checking and running a job is lib/server/job-runner.ts's, shared with `sdnode worker`.
 */
import { randomUUID } from 'node:crypto';
import type { Image } from '../image.js';
import { LORA_EXTENSIONS } from '../lora.js';
import type { Progress } from '../job.js';
import { encodePng, toBase64 } from './images.js';
import {
  QueueClosedError,
  QueueFullError,
  type JobEvent,
  type JobQueue,
  type JobRequest,
  type QueueSnapshot,
  type Unwatch,
} from './job-queue.js';
import { JOB_DEFAULTS, prepareJob, runPreparedJob, type PreparedJob, type TerminalEvent } from './job-runner.js';
import type { NamedFolder } from './names.js';
import type { ModelPool } from './models.js';

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

interface Job {
  id: string;
  request: JobRequest;
  prepared: PreparedJob;
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
    let prepared: PreparedJob;
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

  async #prepare(request: JobRequest): Promise<PreparedJob> {
    const model = (await this.#models.catalog.resolve(request.model, 'model')).name;
    return prepareJob(request, model, {
      ...(this.#loraFolder ? { loraFolder: this.#loraFolder } : {}),
      ...(this.#maxPixels !== undefined ? { maxPixels: this.#maxPixels } : {}),
    });
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

  /** Runs a job to its terminal event (lib/server/job-runner.ts); never rejects. */
  #run(job: Job): Promise<TerminalEvent> {
    return runPreparedJob(() => this.#models.get(job.prepared.model), job.request, job.prepared, {
      signal: job.abort.signal,
      submittedAt: job.submittedAt,
      startedAt: job.startedAt!,
      onProgress: (p) => this.#progress(job, p),
    });
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
