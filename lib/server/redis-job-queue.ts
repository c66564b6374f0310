/**
 * RedisJobQueue: the JobQueue of a scale-out front end (`sdnode serve --queue redis://…`). It
 * runs nothing itself: each job goes on a BullMQ queue of its model, which only the workers
 * holding that model take (lib/server/queue/redis-worker.ts, `sdnode worker`); the job's life
 * comes back through BullMQ's QueueEvents (progress, completed, removed, …) and the job's hash
 * (previews, the result; see lib/server/queue/redis.ts for the layout and why).
 *
 * As the JobQueue contract asks (lib/server/job-queue.ts), with these choices:
 * - submit refuses at once what needs no worker: an unknown model (none of the workers holds
 *   it: 400; no worker at all: 503), a full queue (the model's queue already holds maxWaiting
 *   jobs: 429). What needs files (LoRA names, images that decode, a mask that fits) is checked
 *   by the worker, as the local queue checks it, and comes back as an `error` event with the
 *   same status, code and field. A random seed (-1) is drawn here, so that a job that runs
 *   again on another worker (its first worker died) makes the same image.
 * - A job whose worker died starts again elsewhere: its watchers see `queued` and `started`
 *   again, then its steps from the first.
 * - Redis unreachable: requests fail at once with 503 'queue_unavailable' (the connection does
 *   not queue commands while it is down) and succeed again once Redis is back. Jobs watched
 *   here when the connection drops end with a 503 error unless it is back within lostGraceMs
 *   and still knows them (a Redis restarted without its data does not).
 */
import { randomInt, randomUUID } from 'node:crypto';
import { Job, Queue, QueueEvents } from 'bullmq';
import type { Redis } from 'ioredis';

import {
  QueueClosedError,
  QueueFullError,
  type JobErrorInfo,
  type JobEvent,
  type JobQueue,
  type JobRequest,
  type QueueSnapshot,
  type RunningJob,
  type Unwatch,
} from './job-queue.js';
import { DEFAULT_PREFIX, DEFAULT_RETAIN_MS, RedisKeys, bullConnection, connectRedis, queueNameOf, queueUnavailable, type QueuedJob, type WireProgress } from './queue/redis.js';
import { WorkerModels } from './queue/worker-models.js';

export interface RedisJobQueueOptions {
  /** redis://[user:password@]host:port[/db] */
  url: string;
  /** Prefix of every key, as the workers'. Default 'sdnode'. */
  prefix?: string;
  /** Jobs that may wait on one model's queue; one more is refused with QueueFullError. Default 32. */
  maxWaiting?: number;
  /** Width × height a job may make (the worker checks it against the init image's size). */
  maxPixels?: number;
  /** How long the result of a job cancelled here stays in Redis (workers keep theirs as long). Default 10 minutes. */
  retainMs?: number;
  /** How long a lost connection to Redis may take to come back before the jobs watched here fail with 503. Default 5 s. */
  lostGraceMs?: number;
}

const DEFAULT_MAX_WAITING = 32;
const DEFAULT_LOST_GRACE_MS = 5_000;
/** A job's hash lives this long before the job ends (a job no worker ever takes is forgotten then). */
const UNENDED_TTL_MS = 24 * 60 * 60_000;
/** After close()'s grace, how long the jobs it cancelled may take to say so before they are ended here. */
const CANCEL_WAIT_MS = 5_000;
/** Weight of the newest job in the running mean of job durations that Retry-After is estimated from. */
const DURATION_SMOOTHING = 0.3;
/** The seeds a random seed is drawn from, as the library draws them (lib/generate.ts). */
const RANDOM_SEEDS = 2 ** 32;

type Listener = (event: JobEvent) => void;
type Progress = Extract<WireProgress, { type: 'progress' }>;

/** A job this front end follows: its own, or one a client watches here. */
interface Tracked {
  id: string;
  queueName: string;
  /** Submitted here: close() waits for it. */
  own: boolean;
  phase: 'waiting' | 'running' | 'ended';
  startedAt?: number;
  latest?: Progress;
  listeners: Set<Listener>;
  /** Events delivered in order: a preview or position is fetched before its event goes out. */
  chain: Promise<void>;
}

/** A model's BullMQ queue and its events, as this front end uses them. */
interface ModelQueue {
  name: string;
  queue: Queue<QueuedJob>;
  events: QueueEvents;
  ready: Promise<void>;
  /** Submissions counted against the limit that are not on the queue yet. */
  adding: number;
}

/** Whether the job has ended (read anew after an await, which TypeScript's narrowing does not know). */
function ended(t: Tracked): boolean {
  return t.phase === 'ended';
}

export class RedisJobQueue implements JobQueue {
  readonly models: WorkerModels;
  readonly #url: string;
  readonly #redis: Redis;
  readonly #keys: RedisKeys;
  readonly #maxWaiting: number;
  readonly #maxPixels: number | undefined;
  readonly #retainMs: number;
  readonly #lostGraceMs: number;
  readonly #queues = new Map<string, ModelQueue>();
  readonly #tracked = new Map<string, Tracked>();
  #closed = false;
  #lostTimer: NodeJS.Timeout | undefined;
  #idleWaiters: Array<() => void> = [];
  /** Running mean of job durations (ms), for Retry-After. */
  #meanJobMs = 0;

  private constructor(options: RedisJobQueueOptions, redis: Redis) {
    this.#url = options.url;
    this.#redis = redis;
    this.#keys = new RedisKeys(options.prefix ?? DEFAULT_PREFIX);
    this.#maxWaiting = options.maxWaiting ?? DEFAULT_MAX_WAITING;
    this.#maxPixels = options.maxPixels;
    this.#retainMs = options.retainMs ?? DEFAULT_RETAIN_MS;
    this.#lostGraceMs = options.lostGraceMs ?? DEFAULT_LOST_GRACE_MS;
    this.models = new WorkerModels(redis, this.#keys);
    redis.on('close', () => this.#connectionLost());
    redis.on('ready', () => void this.#connectionBack());
  }

  /** Connects to Redis: rejects at once, naming the URL, when it cannot be reached. */
  static async connect(options: RedisJobQueueOptions): Promise<RedisJobQueue> {
    const redis = await connectRedis(options.url, { failFast: true, name: 'sdnode-serve' });
    const queue = new RedisJobQueue(options, redis);
    try {
      await queue.models.start();
    } catch (err) {
      redis.disconnect();
      throw err;
    }
    return queue;
  }

  async submit(request: JobRequest): Promise<string> {
    if (this.#closed) throw new QueueClosedError();
    const model = (await this.models.resolve(request.model, 'model')).name;
    const mq = await this.#modelQueue(model);
    mq.adding++;
    const id = randomUUID();
    try {
      const waiting = await mq.queue.getWaitingCount().catch((err) => {
        throw queueUnavailable(err, 'counting the jobs waiting');
      });
      if (waiting + mq.adding > this.#maxWaiting) throw new QueueFullError(this.#maxWaiting, await this.#retryAfterSeconds(mq, model, waiting));
      if (this.#closed) throw new QueueClosedError();
      const seed = request.seed === undefined || request.seed === -1 ? randomInt(0, RANDOM_SEEDS) : request.seed;
      const data: QueuedJob = { request: { ...request, model, seed }, ...(this.#maxPixels !== undefined ? { maxPixels: this.#maxPixels } : {}) };
      // Followed before it is queued: its first events are not missed.
      this.#track(id, mq.name, true, 'waiting');
      try {
        await this.#redis.hset(this.#keys.job(id), 'queue', mq.name);
        await this.#redis.pexpire(this.#keys.job(id), UNENDED_TTL_MS);
        await mq.queue.add('generate', data, { jobId: id, attempts: 1, removeOnComplete: true, removeOnFail: { age: Math.ceil(this.#retainMs / 1000) } });
      } catch (err) {
        this.#untrack(id);
        throw queueUnavailable(err, 'queueing the job');
      }
      return id;
    } finally {
      mq.adding--;
    }
  }

  async watch(id: string, listener: Listener): Promise<Unwatch | undefined> {
    let t = this.#tracked.get(id);
    if (!t) {
      const known = await this.#follow(id);
      if (!known) return undefined;
      if ('terminal' in known) {
        listener(known.terminal);
        return () => {};
      }
      t = known.tracked;
    }
    // The state now, and every event from now, exactly: events are delivered in the chain, and
    // the state changes with them, so what is read here is what the events so far made it.
    const tracked = t;
    await tracked.chain;
    const phase = tracked.phase, startedAt = tracked.startedAt, latest = tracked.latest;
    const later: JobEvent[] = [];
    let live = false;
    const wrapped: Listener = (event) => (live ? listener(event) : later.push(event));
    tracked.listeners.add(wrapped);
    const present: JobEvent[] = [];
    try {
      if (phase === 'waiting') present.push({ type: 'queued', position: await this.#positionOf(tracked) });
      else if (phase === 'running') {
        present.push({ type: 'started', startedAt: startedAt! });
        if (latest) present.push(await this.#progressEvent(tracked, latest, true));
      }
    } catch {
      // Redis away for a moment: the state is told by the next event.
    }
    for (const event of [...present, ...later]) listener(event);
    live = true;
    return () => tracked.listeners.delete(wrapped);
  }

  async cancel(id: string, reason = 'cancelled by the client'): Promise<boolean> {
    const key = this.#keys.job(id);
    try {
      const [queueName, result] = await this.#fields(id, 'queue', 'result');
      if (queueName === null || result !== null) return false;
      await this.#redis.hset(key, 'cancel', reason);
      const mq = this.#queues.get(queueName) ?? (await this.#queueNamed(queueName));
      if ((await mq.queue.remove(id)) === 1) {
        // It was waiting: no worker will say it ended.
        await this.#redis.multi().hset(key, 'result', JSON.stringify({ type: 'cancelled', reason } satisfies JobEvent)).pexpire(key, this.#retainMs).exec();
        return true;
      }
      // Running (its lock keeps it from being removed): the worker holding it aborts it.
      const state = await mq.queue.getJobState(id);
      if (state !== 'active') return false;
      await this.#redis.publish(this.#keys.cancelChannel, id);
      return true;
    } catch (err) {
      throw queueUnavailable(err, 'cancelling the job');
    }
  }

  async snapshot(): Promise<QueueSnapshot> {
    try {
      const names = new Set([...(await this.models.list()).map((m) => queueNameOf(m.name)), ...this.#queues.keys()]);
      let waiting = 0;
      let oldest: { job: Job<QueuedJob>; queueName: string } | undefined;
      for (const name of names) {
        const mq = this.#queues.get(name) ?? (await this.#queueNamed(name));
        waiting += await mq.queue.getWaitingCount();
        for (const job of (await mq.queue.getActive()) as Array<Job<QueuedJob>>) {
          if (!oldest || (job.processedOn ?? 0) < (oldest.job.processedOn ?? 0)) oldest = { job, queueName: name };
        }
      }
      if (!oldest) return { waiting };
      const { job } = oldest;
      const progress = job.progress as WireProgress | number;
      const step = typeof progress === 'object' && progress.type === 'progress' ? progress : undefined;
      const started = typeof progress === 'object' && progress.type === 'started' ? progress.startedAt : undefined;
      // The latest preview, which may be from an earlier step than the latest.
      const preview = await this.#redis.hget(this.#keys.job(job.id!), 'preview');
      const running: RunningJob = {
        id: job.id!,
        model: job.data.request.model,
        batchCount: job.data.request.batchCount ?? 1,
        startedAt: started ?? job.processedOn ?? Date.now(),
        step: step?.step ?? 0,
        steps: step?.steps ?? 0,
        ...(preview !== null ? { preview } : {}),
      };
      return { running, waiting };
    } catch (err) {
      throw queueUnavailable(err, 'reading what runs');
    }
  }

  async close(graceMs: number): Promise<void> {
    this.#closed = true;
    const idle = () => new Promise<void>((resolve) => {
      this.#idleWaiters.push(resolve);
      this.#maybeIdle();
    });
    const within = (ms: number) => new Promise<'late'>((resolve) => setTimeout(() => resolve('late'), ms).unref());
    if ((await Promise.race([idle(), within(graceMs)])) === 'late') {
      const reason = 'the server is shutting down';
      const own = [...this.#tracked.values()].filter((t) => t.own);
      await Promise.all(own.map((t) => this.cancel(t.id, reason).catch(() => false)));
      // Those that do not say so in time (Redis away) end here.
      if ((await Promise.race([idle(), within(CANCEL_WAIT_MS)])) === 'late')
        for (const t of own) if (t.phase !== 'ended') this.#end(t, async () => ({ type: 'cancelled', reason }));
      await idle();
    }
    clearTimeout(this.#lostTimer);
    this.models.stop();
    await Promise.all([...this.#queues.values()].map(async (mq) => {
      await mq.events.close().catch(() => {});
      await mq.queue.close().catch(() => {});
    }));
    await this.#redis.quit().catch(() => this.#redis.disconnect());
  }

  /** Starts following a job not followed here: from its hash, its ended state or its queue. */
  async #follow(id: string): Promise<{ terminal: JobEvent } | { tracked: Tracked } | undefined> {
    let queueName: string | null, result: string | null;
    try {
      [queueName, result] = await this.#fields(id, 'queue', 'result');
    } catch (err) {
      throw queueUnavailable(err, 'looking the job up');
    }
    if (queueName === null) return undefined;
    if (result !== null) return { terminal: JSON.parse(result) as JobEvent };
    const mq = this.#queues.get(queueName) ?? (await this.#queueNamed(queueName));
    await mq.ready;
    const t = this.#tracked.get(id) ?? this.#track(id, queueName, false, 'waiting');
    // Its state now, in the chain: events that arrive meanwhile come after it.
    t.chain = t.chain.then(async () => {
      const job = (await Job.fromId(mq.queue, id)) as Job<QueuedJob> | undefined;
      const state = job ? await job.getState() : 'unknown';
      if (state === 'active' && job) {
        const progress = job.progress as WireProgress | number;
        t.phase = 'running';
        if (typeof progress === 'object') {
          if (progress.type === 'started') t.startedAt = progress.startedAt;
          else t.latest = progress;
        }
        t.startedAt ??= job.processedOn ?? Date.now();
      } else if (state !== 'waiting' && state !== 'prioritized' && state !== 'delayed') {
        // Ended between the two reads, or lost: the hash says how.
        this.#end(t, () => this.#terminalOf(id, 'completed'));
      }
    }).catch(() => {});
    return { tracked: t };
  }

  #track(id: string, queueName: string, own: boolean, phase: Tracked['phase']): Tracked {
    const t: Tracked = { id, queueName, own, phase, listeners: new Set(), chain: Promise.resolve() };
    this.#tracked.set(id, t);
    return t;
  }

  #untrack(id: string): void {
    this.#tracked.delete(id);
    this.#maybeIdle();
  }

  /**
   * Delivers the event `make` gives (undefined: none) after those before it; `apply` changes the
   * job's state just before the event goes out, so that watch() reads a state and then gets
   * exactly the events after it.
   */
  #deliver(t: Tracked, make: () => Promise<JobEvent | undefined> | JobEvent | undefined, apply?: () => void): void {
    t.chain = t.chain
      .then(async () => {
        if (t.phase === 'ended') return;
        const event = await make();
        if (ended(t)) return;
        apply?.();
        if (event) this.#emit(t, event);
      })
      .catch(() => {});
  }

  #emit(t: Tracked, event: JobEvent): void {
    for (const listener of [...t.listeners]) {
      try {
        listener(event);
      } catch {
        // A listener's failure is its own.
      }
    }
  }

  /** Ends a job with the terminal event `make` gives, after the events before it. */
  #end(t: Tracked, make: () => Promise<JobEvent>): void {
    t.chain = t.chain
      .then(async () => {
        if (t.phase === 'ended') return;
        const event = await make().catch((err: unknown): JobEvent => ({ type: 'error', error: queueUnavailable(err, 'reading the result').toInfo() }));
        if (ended(t)) return;
        if (t.startedAt !== undefined && event.type === 'done') {
          const ms = Date.now() - t.startedAt;
          this.#meanJobMs = this.#meanJobMs === 0 ? ms : this.#meanJobMs + DURATION_SMOOTHING * (ms - this.#meanJobMs);
        }
        t.phase = 'ended';
        this.#emit(t, event);
        t.listeners.clear();
        this.#untrack(t.id);
      })
      .catch(() => {});
  }

  /** Fields of the job's hash; null for those it lacks (or when it is gone). */
  async #fields<N extends string[]>(id: string, ...names: N): Promise<{ [K in keyof N]: string | null }> {
    const values = await this.#redis.hmget(this.#keys.job(id), ...names);
    return names.map((_, i) => values[i] ?? null) as { [K in keyof N]: string | null };
  }

  /** The terminal event the job's hash holds; `how` (BullMQ's word for its end) when it holds none. */
  async #terminalOf(id: string, how: 'completed' | 'removed' | 'failed', failedReason?: string): Promise<JobEvent> {
    const [result, cancel] = await this.#fields(id, 'result', 'cancel');
    if (result !== null) return JSON.parse(result) as JobEvent;
    if (how === 'removed' || cancel !== null) return { type: 'cancelled', reason: cancel ?? 'removed from the queue' };
    const error: JobErrorInfo =
      how === 'failed'
        ? { status: 500, code: 'job_failed', message: `the job failed on its worker: ${failedReason ?? 'unknown reason'}` }
        : { status: 503, code: 'queue_lost', message: 'the job queue (Redis) no longer knows this job' };
    return { type: 'error', error };
  }

  /** A step as its event: with the preview it made, or (`latest`) with the latest preview made so far. */
  async #progressEvent(t: Tracked, p: Progress, latest = false): Promise<JobEvent> {
    const event = { type: 'progress' as const, step: p.step, steps: p.steps, elapsedMs: p.elapsedMs };
    if (!p.hasPreview && !latest) return event;
    const preview = await this.#redis.hget(this.#keys.job(t.id), 'preview').catch(() => null);
    return preview !== null ? { ...event, preview } : event;
  }

  /** Jobs ahead of a waiting one on its model's queue, the running ones included. */
  async #positionOf(t: Tracked): Promise<number> {
    const mq = this.#queues.get(t.queueName)!;
    const [ids, active] = await Promise.all([mq.queue.getRanges(['wait', 'prioritized'], 0, -1, true), mq.queue.getActiveCount()]);
    const index = ids.indexOf(t.id);
    return (index >= 0 ? index : ids.length) + active;
  }

  /** Tells the watched waiting jobs of a queue their positions (but `started`'s, which is no longer waiting). */
  #announcePositions(queueName: string, started?: string): void {
    for (const t of this.#tracked.values())
      if (t.queueName === queueName && t.phase === 'waiting' && t.listeners.size > 0 && t.id !== started)
        this.#deliver(t, async () => (t.phase === 'waiting' ? { type: 'queued', position: await this.#positionOf(t) } : undefined));
  }

  async #retryAfterSeconds(mq: ModelQueue, model: string, waiting: number): Promise<number> {
    const [active, capacity] = await Promise.all([mq.queue.getActiveCount().catch(() => 0), this.models.capacity(model).catch(() => 1)]);
    return Math.max(1, Math.ceil((this.#meanJobMs * (waiting + active)) / Math.max(1, capacity) / 1000));
  }

  async #modelQueue(model: string): Promise<ModelQueue> {
    const mq = this.#queues.get(queueNameOf(model)) ?? (await this.#queueNamed(queueNameOf(model)));
    await mq.ready;
    return mq;
  }

  /**
   * The queue `name` and its events, made once. The events are read from the stream's last
   * entry at the time, so none between that and the first read is missed.
   */
  async #queueNamed(name: string): Promise<ModelQueue> {
    const made = this.#queues.get(name);
    if (made) return made;
    const queue = new Queue<QueuedJob>(name, { connection: this.#redis, prefix: this.#keys.prefix });
    queue.on('error', () => {}); // told by the commands that fail
    const mq: ModelQueue = { name, queue, events: undefined!, ready: Promise.resolve(), adding: 0 };
    this.#queues.set(name, mq);
    let last: string;
    try {
      const entries = await this.#redis.xrevrange(queue.toKey('events'), '+', '-', 'COUNT', 1);
      last = entries[0]?.[0] ?? '0-0';
    } catch (err) {
      this.#queues.delete(name);
      await queue.close().catch(() => {});
      throw queueUnavailable(err, 'opening the model\'s queue');
    }
    const events = new QueueEvents(name, { connection: bullConnection(this.#url), prefix: this.#keys.prefix, lastEventId: last });
    mq.events = events;
    events.on('error', () => {}); // it reconnects by itself
    this.#listen(mq);
    mq.ready = events.waitUntilReady().then(() => undefined);
    return mq;
  }

  #listen(mq: ModelQueue): void {
    const { events, name } = mq;
    const tracked = (jobId: string) => this.#tracked.get(jobId);
    events.on('progress', ({ jobId, data }) => {
      const t = tracked(jobId);
      if (!t || typeof data !== 'object' || data === null) return;
      const p = data as WireProgress;
      if (p.type === 'started') {
        this.#deliver(t, () => ({ type: 'started', startedAt: p.startedAt }), () => {
          t.phase = 'running';
          t.startedAt = p.startedAt;
          t.latest = undefined;
        });
      } else if (p.type === 'progress') {
        // The preview is read at once: the hash holds only the latest.
        const preview = p.hasPreview && t.listeners.size > 0 ? this.#progressEvent(t, p) : undefined;
        this.#deliver(t, async () => (preview ? await preview : { type: 'progress', step: p.step, steps: p.steps, elapsedMs: p.elapsedMs }), () => {
          t.phase = 'running';
          t.latest = p;
        });
      }
    });
    events.on('active', ({ jobId }) => this.#announcePositions(name, jobId));
    events.on('waiting', ({ jobId, prev }) => {
      const t = tracked(jobId);
      if (t && prev === 'active') {
        // Back on the queue: its worker died or shut down; another runs it from the start.
        this.#deliver(t, async () => ({ type: 'queued', position: await this.#positionOf(t) }), () => {
          t.phase = 'waiting';
          t.latest = undefined;
        });
      }
    });
    events.on('completed', ({ jobId }) => {
      const t = tracked(jobId);
      if (t) this.#end(t, () => this.#terminalOf(jobId, 'completed'));
    });
    events.on('failed', ({ jobId, failedReason }) => {
      const t = tracked(jobId);
      if (t) this.#end(t, () => this.#terminalOf(jobId, 'failed', failedReason));
    });
    events.on('removed', ({ jobId }) => {
      const t = tracked(jobId);
      if (t) this.#end(t, () => this.#terminalOf(jobId, 'removed'));
      this.#announcePositions(name);
    });
  }

  /** The connection dropped: the jobs followed here fail unless it is back within the grace. */
  #connectionLost(): void {
    if (this.#lostTimer || this.#closed) return;
    this.#lostTimer = setTimeout(() => {
      const error = { status: 503, code: 'queue_unavailable', message: `the connection to the job queue (Redis) was lost for over ${this.#lostGraceMs} ms; the job's fate is unknown` };
      for (const t of this.#tracked.values()) this.#end(t, async () => ({ type: 'error', error }));
    }, this.#lostGraceMs);
  }

  /** The connection is back: jobs that Redis no longer knows (it restarted empty) fail. */
  async #connectionBack(): Promise<void> {
    if (!this.#lostTimer) return;
    clearTimeout(this.#lostTimer);
    this.#lostTimer = undefined;
    for (const t of this.#tracked.values()) {
      const [queueName, result] = await this.#fields(t.id, 'queue', 'result').catch((): [null, null] => [null, null]);
      if (queueName === null || result !== null) this.#end(t, () => this.#terminalOf(t.id, 'completed'));
    }
  }

  #maybeIdle(): void {
    for (const t of this.#tracked.values()) if (t.own) return;
    const waiters = this.#idleWaiters;
    this.#idleWaiters = [];
    for (const w of waiters) w();
  }
}
