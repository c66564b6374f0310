/**
 * RedisWorker: what `sdnode worker` runs on each machine of a scale-out. It holds one model,
 * takes that model's jobs from its BullMQ queue (so jobs reach only workers that hold their
 * model), runs each with the server's own job runner (lib/server/job-runner.ts: the same PNGs,
 * infotexts and errors as a single server) and reports through Redis:
 *
 * - BullMQ progress: the job's `started` and each `progress` event (the step; the preview itself
 *   goes to the job's hash, see ./redis.ts for why);
 * - the job's hash: the terminal event (`result`), for the retention time;
 * - its announcement: the model it holds, renewed every few seconds with a TTL, which the front
 *   ends list as their models.
 *
 * A running job is cancelled through the cancel channel (the front publishes its id; the worker
 * holding it aborts it through BullMQ's per-job AbortSignal); the `cancel` field of the hash
 * covers a job cancelled while it was being taken. A worker that dies mid-job (SIGKILL, a lost
 * machine) stops renewing the job's lock; BullMQ's stalled-job check in another worker puts the
 * job back on the queue and it runs again there (same seed: the same image). close() — SIGTERM —
 * stops taking jobs, lets the running ones finish for a grace period, and puts those still
 * running then back on the queue for other workers.
 */
import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import { WaitingError, Worker, type Job } from 'bullmq';
import type { Redis } from 'ioredis';

import { loadModel } from '../../load-model.js';
import { LORA_EXTENSIONS } from '../../lora.js';
import type { Model } from '../../model.js';
import type { Progress } from '../../job.js';
import type { WeightType } from '../../weight-types.js';
import { toJobError } from '../errors.js';
import { encodePng, toBase64 } from '../images.js';
import { prepareJob, runPreparedJob, type TerminalEvent } from '../job-runner.js';
import { ModelCatalog } from '../models.js';
import type { NamedFolder } from '../names.js';
import {
  ANNOUNCE_EVERY_MS,
  ANNOUNCE_TTL_MS,
  DEFAULT_PREFIX,
  DEFAULT_RETAIN_MS,
  RedisKeys,
  bullConnection,
  connectRedis,
  queueNameOf,
  type QueuedJob,
  type WireProgress,
  type WorkerAnnouncement,
} from './redis.js';

/**
 * BullMQ's lock and stalled-check timings. Its defaults (30 s each) suit real use: a job's lock
 * is renewed every 15 s while it runs (the engine computes off the event loop, so renewals are
 * not held up by a running job), and a dead worker's job runs again elsewhere within about a
 * minute. A job that stalls more than maxStalledCount times (it keeps killing its workers?)
 * fails instead of running again.
 */
export const STALL_DEFAULTS = { lockDurationMs: 30_000, stalledIntervalMs: 30_000, maxStalledCount: 2 } as const;

export interface RedisWorkerOptions {
  /** redis://[user:password@]host:port[/db] */
  url: string;
  /** Prefix of every key, as the front end's. Default 'sdnode'. */
  prefix?: string;
  /** The model this worker holds: a checkpoint file. */
  model: string;
  /** The folder the model is named in (its path there, as `sdnode serve --models-dir` names it); otherwise by its file name. */
  modelsDir?: string;
  /** LoRAs that requests name; only files inside it. */
  loraModelDir?: string;
  /** Textual-inversion embeddings. */
  embdDir?: string;
  /** Jobs run at once, each on its own copy of the model (memory × n). Default 1. */
  concurrency?: number;
  device?: string;
  threads?: number;
  weightType?: WeightType;
  /** BullMQ's lock and stalled-check timings; see STALL_DEFAULTS. */
  lockDurationMs?: number;
  stalledIntervalMs?: number;
  maxStalledCount?: number;
  /** How long a result stays in Redis for the front end. Default 10 minutes. */
  retainMs?: number;
  /** One line per event of note (a job taken, ended, given back). Default: none. */
  log?: (line: string) => void;
}

/** How long close() waits for Redis to take its goodbye (the announcement withdrawn). */
const GOODBYE_MS = 2_000;
/** How long close() waits, after the grace, for running jobs to go back to the queue. */
const GIVE_BACK_MS = 5_000;
/** The same error is logged at most once in this time (Redis away: BullMQ tells each reconnection's failure). */
const REPEAT_LOG_MS = 60_000;

/** Waits for `promise` at most `ms`, whatever it does: 'late' when it had not settled. */
async function settled(promise: Promise<unknown>, ms: number): Promise<'settled' | 'late'> {
  let timer: NodeJS.Timeout | undefined;
  const outcome = await Promise.race([promise.then(() => 'settled' as const, () => 'settled' as const), new Promise<'late'>((resolve) => (timer = setTimeout(() => resolve('late'), ms)))]);
  clearTimeout(timer);
  return outcome;
}

/** Loaded copies of the model, one per concurrent job. */
class ModelCopies {
  readonly #free: Model[];
  readonly #all: Model[];
  constructor(models: Model[]) {
    this.#all = models;
    this.#free = [...models];
  }

  /** A free copy: BullMQ never runs more jobs than the concurrency, which is the number of copies. */
  take(): Model {
    const model = this.#free.pop();
    if (!model) throw new Error('more jobs than model copies');
    return model;
  }

  give(model: Model): void {
    this.#free.push(model);
  }

  async dispose(): Promise<void> {
    await Promise.all(this.#all.map((m) => m.dispose()));
  }
}

export class RedisWorker {
  /** This worker's id: host, process and a random tag. */
  readonly id: string;
  /** The model's name, as requests name it. */
  readonly model: string;
  readonly #keys: RedisKeys;
  readonly #redis: Redis;
  readonly #subscriber: Redis;
  readonly #copies: ModelCopies;
  readonly #worker: Worker<QueuedJob, string>;
  readonly #loraFolder: NamedFolder | undefined;
  readonly #retainMs: number;
  readonly #log: (line: string) => void;
  readonly #announcement: WorkerAnnouncement;
  #announcer: NodeJS.Timeout | undefined;
  /** Set by close() once the grace is over: cancelled jobs go back to the queue rather than end. */
  #givingBack = false;
  #closing: Promise<void> | undefined;

  private constructor(init: { id: string; model: string; keys: RedisKeys; redis: Redis; subscriber: Redis; copies: ModelCopies; options: RedisWorkerOptions }) {
    const { options } = init;
    this.id = init.id;
    this.model = init.model;
    this.#keys = init.keys;
    this.#redis = init.redis;
    this.#subscriber = init.subscriber;
    this.#copies = init.copies;
    this.#loraFolder = options.loraModelDir !== undefined ? { dir: options.loraModelDir, extensions: LORA_EXTENSIONS, kind: 'LoRA' } : undefined;
    this.#retainMs = options.retainMs ?? DEFAULT_RETAIN_MS;
    this.#log = options.log ?? (() => {});
    const concurrency = options.concurrency ?? 1;
    this.#announcement = { id: this.id, models: [this.model], concurrency, host: hostname(), pid: process.pid, startedAt: Date.now() };
    this.#worker = new Worker<QueuedJob, string>(queueNameOf(this.model), (job, token, signal) => this.#process(job, token!, signal!), {
      connection: bullConnection(options.url),
      prefix: this.#keys.prefix,
      name: this.id,
      concurrency,
      lockDuration: options.lockDurationMs ?? STALL_DEFAULTS.lockDurationMs,
      stalledInterval: options.stalledIntervalMs ?? STALL_DEFAULTS.stalledIntervalMs,
      maxStalledCount: options.maxStalledCount ?? STALL_DEFAULTS.maxStalledCount,
      autorun: false,
    });
    // BullMQ reconnects by itself; its errors while Redis is away are told (once a minute each), not thrown.
    let lastError = { message: '', at: 0 };
    this.#worker.on('error', (err) => {
      if (err.message === lastError.message && Date.now() - lastError.at < REPEAT_LOG_MS) return;
      lastError = { message: err.message, at: Date.now() };
      this.#log(`error: ${err.message}`);
    });
    this.#worker.on('stalled', (jobId) => this.#log(`job ${jobId} stalled (its worker stopped renewing its lock): back on the queue`));
  }

  /**
   * Connects to Redis (rejecting at once, naming the URL, when it cannot), loads the model
   * (`concurrency` copies), announces it and starts taking jobs.
   */
  static async start(options: RedisWorkerOptions): Promise<RedisWorker> {
    const concurrency = options.concurrency ?? 1;
    if (!Number.isSafeInteger(concurrency) || concurrency < 1) throw new RangeError(`concurrency must be a positive integer, got ${concurrency}`);
    const id = `${hostname()}:${process.pid}:${randomBytes(3).toString('hex')}`;
    // Redis first: a wrong URL should not wait for a model to load.
    const redis = await connectRedis(options.url, { failFast: false, name: `sdnode-worker:${id}` });
    let subscriber: Redis | undefined;
    let copies: ModelCopies | undefined;
    try {
      subscriber = await connectRedis(options.url, { failFast: false, name: `sdnode-worker-cancel:${id}` });
      const catalog = await ModelCatalog.create(options.model, options.modelsDir);
      const entry = await catalog.resolve(catalog.current);
      const loadOptions = {
        ...(options.device !== undefined ? { device: options.device } : {}),
        ...(options.threads !== undefined ? { threads: options.threads } : {}),
        ...(options.weightType !== undefined ? { weightType: options.weightType } : {}),
        ...(options.embdDir !== undefined ? { embeddingDir: options.embdDir } : {}),
      };
      const models: Model[] = [];
      try {
        for (let i = 0; i < concurrency; i++) models.push(await loadModel(entry.path!, loadOptions));
      } catch (err) {
        await Promise.all(models.map((m) => m.dispose()));
        throw err;
      }
      copies = new ModelCopies(models);
      const worker = new RedisWorker({ id, model: entry.name, keys: new RedisKeys(options.prefix ?? DEFAULT_PREFIX), redis, subscriber, copies, options });
      await worker.#begin();
      return worker;
    } catch (err) {
      redis.disconnect();
      subscriber?.disconnect();
      await copies?.dispose();
      throw err;
    }
  }

  async #begin(): Promise<void> {
    const keys = this.#keys;
    this.#subscriber.on('message', (channel: string, jobId: string) => {
      if (channel !== keys.cancelChannel) return;
      // Only the worker running the job has it; for the others this is no-op.
      void this.#redis.hget(keys.job(jobId), 'cancel').then(
        (reason) => this.#worker.cancelJob(jobId, reason ?? 'cancelled'),
        () => this.#worker.cancelJob(jobId, 'cancelled'),
      );
    });
    await this.#subscriber.subscribe(keys.cancelChannel);
    await this.#announce();
    this.#announcer = setInterval(() => void this.#announce(), ANNOUNCE_EVERY_MS);
    void this.#worker.run().catch((err: Error) => this.#log(`error: ${err.message}`));
    await this.#worker.waitUntilReady();
    this.#log(`${this.id} takes jobs of model '${this.model}' (concurrency ${this.#announcement.concurrency})`);
  }

  async #announce(): Promise<void> {
    try {
      await this.#redis.set(this.#keys.worker(this.id), JSON.stringify(this.#announcement), 'PX', ANNOUNCE_TTL_MS);
    } catch (err) {
      this.#log(`cannot announce the model: ${(err as Error).message}`);
    }
  }

  /** One BullMQ job: its terminal event goes to the job's hash; BullMQ's return value is only its type. */
  async #process(job: Job<QueuedJob, string>, token: string, signal: AbortSignal): Promise<string> {
    const id = job.id!;
    const hashKey = this.#keys.job(id);
    const cancelled = await this.#redis.hget(hashKey, 'cancel');
    let event: TerminalEvent;
    if (cancelled !== null) event = { type: 'cancelled', reason: cancelled };
    else {
      this.#log(`job ${id} started`);
      event = await this.#run(job, signal);
      if (event.type === 'cancelled' && this.#givingBack && (await this.#redis.hget(hashKey, 'cancel')) === null) {
        // Shutting down, not cancelled by anyone: another worker takes it.
        await this.#redis.hdel(hashKey, 'preview');
        await job.moveToWait(token);
        this.#log(`job ${id} given back to the queue (shutting down)`);
        throw new WaitingError();
      }
    }
    await this.#redis.multi().hset(hashKey, 'result', JSON.stringify(event)).hdel(hashKey, 'preview').pexpire(hashKey, this.#retainMs).exec();
    this.#log(`job ${id} ${event.type}${event.type === 'done' ? ` in ${Math.round(Date.now() - job.timestamp)} ms` : event.type === 'error' ? `: ${event.error.code}` : ''}`);
    return event.type;
  }

  async #run(job: Job<QueuedJob, string>, signal: AbortSignal): Promise<TerminalEvent> {
    const { request, maxPixels } = job.data;
    let prepared;
    try {
      prepared = await prepareJob(request, this.model, {
        ...(this.#loraFolder ? { loraFolder: this.#loraFolder } : {}),
        ...(maxPixels !== undefined ? { maxPixels } : {}),
      });
    } catch (err) {
      return { type: 'error', error: toJobError(err).toInfo() };
    }
    const hashKey = this.#keys.job(job.id!);
    const startedAt = Date.now();
    // Progress reports in order, each preview in the hash before the step that shows it.
    let reports: Promise<unknown> = job.updateProgress({ type: 'started', startedAt } satisfies WireProgress);
    const report = (p: Progress) => {
      const step: WireProgress = { type: 'progress', step: p.step, steps: p.steps, elapsedMs: p.elapsedMs, ...(p.preview ? { hasPreview: true as const } : {}) };
      const png = p.preview ? encodePng(p.preview).then(toBase64) : undefined;
      reports = reports.then(async () => {
        if (png) await this.#redis.hset(hashKey, 'preview', await png);
        await job.updateProgress(step);
      });
      // A report that fails (Redis away for a moment) is lost; the job goes on.
      reports = reports.catch(() => {});
    };
    const model = this.#copies.take();
    try {
      const event = await runPreparedJob(async () => model, request, prepared, { signal, submittedAt: job.timestamp, startedAt, onProgress: report });
      await reports;
      return event;
    } finally {
      this.#copies.give(model);
    }
  }

  /**
   * Stops taking jobs; lets running ones finish for `graceMs`, then gives those still running
   * back to the queue (another worker runs them); withdraws the announcement; disposes the
   * model copies. Resolves when all is closed.
   */
  close(graceMs: number): Promise<void> {
    this.#closing ??= (async () => {
      clearInterval(this.#announcer);
      const timer = setTimeout(() => {
        this.#givingBack = true;
        this.#worker.cancelAllJobs('the worker is shutting down');
      }, graceMs);
      // Giving back needs Redis; without it the job's lock lapses and another worker's stalled
      // check hands the job on, as for a worker that died.
      const closed = this.#worker.close();
      if ((await settled(closed, graceMs + GIVE_BACK_MS)) === 'late') {
        this.#log('Redis does not answer: leaving the running jobs to the stalled-job check');
        await settled(this.#worker.disconnect(), GOODBYE_MS);
      }
      clearTimeout(timer);
      // Redis may be away: the announcement then expires by itself.
      await settled(this.#redis.del(this.#keys.worker(this.id)), GOODBYE_MS);
      this.#subscriber.disconnect();
      await settled(this.#redis.quit(), GOODBYE_MS);
      this.#redis.disconnect();
      await this.#copies.dispose();
    })();
    return this.#closing;
  }
}
