/**
 * What the front end (RedisJobQueue) and the workers (RedisWorker) of the scale-out agree on:
 * the Redis keys and channel they share, BullMQ's queue name per model, the messages workers
 * leave for the front, and how a connection is checked at start and how losing it is told.
 *
 * Layout, under a prefix (default 'sdnode'):
 *   <prefix>:<queue>:…            BullMQ's own keys, one queue per model (queueNameOf)
 *   <prefix>:job:<id>             a hash per job: `queue` (its queue's name), `preview` (the
 *                                 latest preview, base64 PNG), `result` (the terminal JobEvent,
 *                                 JSON), `cancel` (why it was cancelled, when it was)
 *   <prefix>:worker:<worker id>   a worker's announcement (WorkerAnnouncement, JSON), with a TTL
 *   <prefix>:cancel               the channel fronts publish a running job's id on to cancel it
 *
 * Previews and results travel in the job's hash, not in BullMQ's progress and return values,
 * because BullMQ copies those into its event stream, which keeps its last 10 000 events.
 * Measured on SD 1.5 at 512²: a latent2rgb preview is 9 KB of PNG, but a finished image (and a
 * TAE preview, which looks like one) about 760 KB, 1 MB in base64: gigabytes in the stream. The
 * events carry only the step and a flag; the hash holds one preview per running job and one
 * result per job for the retention time.
 */
import { Redis, type RedisOptions } from 'ioredis';

import { JobError, type JobEvent, type JobRequest } from '../job-queue.js';

export const DEFAULT_PREFIX = 'sdnode';

/** How long a worker's announcement lives unless renewed, and how often workers renew it. */
export const ANNOUNCE_TTL_MS = 15_000;
export const ANNOUNCE_EVERY_MS = 5_000;

/** How long an ended job's result stays in Redis for watch(). */
export const DEFAULT_RETAIN_MS = 10 * 60_000;

/** How long a first connection may take before Redis counts as unreachable. */
const CONNECT_TIMEOUT_MS = 5_000;

/** What a front end puts on a model's queue. */
export interface QueuedJob {
  request: JobRequest;
  /** The front end's pixel limit, which the worker checks against the init image's size. */
  maxPixels?: number;
}

/**
 * What a worker reports as a BullMQ job's progress: the job's `started` and `progress` events,
 * a progress event's preview left in the job's hash (`hasPreview`).
 */
export type WireProgress =
  | Extract<JobEvent, { type: 'started' }>
  | { type: 'progress'; step: number; steps: number; elapsedMs: number; hasPreview?: true };

/** A worker's announcement: which models it runs jobs of. */
export interface WorkerAnnouncement {
  id: string;
  /** The models it holds, by the names requests use. */
  models: string[];
  concurrency: number;
  host: string;
  pid: number;
  startedAt: number;
}

/** The keys and channel of one deployment (prefix). */
export class RedisKeys {
  constructor(readonly prefix: string = DEFAULT_PREFIX) {}

  job(id: string): string {
    return `${this.prefix}:job:${id}`;
  }

  worker(id: string): string {
    return `${this.prefix}:worker:${id}`;
  }

  get workerPattern(): string {
    return `${this.prefix}:worker:*`;
  }

  get cancelChannel(): string {
    return `${this.prefix}:cancel`;
  }
}

/**
 * BullMQ's queue name for a model's jobs. Model names are paths ('sd15/v1-5.safetensors');
 * BullMQ refuses ':' in queue names, and encodeURIComponent leaves none.
 */
export function queueNameOf(model: string): string {
  return `model.${encodeURIComponent(model)}`;
}

/** Redis could not be reached or was lost: HTTP 503, the server's fault, retried later. */
export function queueUnavailable(err: unknown, doing: string): JobError {
  if (err instanceof JobError) return err;
  const why = err instanceof Error ? err.message : String(err);
  return new JobError({ status: 503, code: 'queue_unavailable', message: `the job queue (Redis) is unavailable while ${doing}: ${why}` }, { cause: err });
}

/** The URL without its password, for messages. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return url;
  }
}

/**
 * An ioredis client on `url` that has connected, for commands: `failFast` (a front end)
 * refuses commands while the connection is down instead of queueing them, so that requests
 * fail at once with 503; without it (a worker) commands wait for the reconnection. Either way
 * it reconnects by itself. Rejects with a message naming the URL when the first connection
 * fails: QueueUnreachableError (the CLI exits 1 with it).
 */
export async function connectRedis(url: string, { failFast, name }: { failFast: boolean; name: string }): Promise<Redis> {
  const options: RedisOptions = {
    lazyConnect: true,
    connectionName: name,
    connectTimeout: CONNECT_TIMEOUT_MS,
    enableOfflineQueue: !failFast,
    maxRetriesPerRequest: failFast ? 1 : null,
  };
  const client = new Redis(url, options);
  // Errors while reconnecting are told by the commands that fail; the client keeps trying.
  client.on('error', () => {});
  try {
    await checkedConnect(client, url);
  } catch (err) {
    client.disconnect();
    throw err;
  }
  return client;
}

/** Redis could not be reached when a front end or worker started (the CLI exits 1 with its message). */
export class QueueUnreachableError extends Error {
  readonly code = 'ERR_QUEUE_UNREACHABLE';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'QueueUnreachableError';
  }
}

/** Connects once, without retrying, and PINGs: a clear error naming the URL otherwise. */
async function checkedConnect(client: Redis, url: string): Promise<void> {
  const retry = client.options.retryStrategy;
  client.options.retryStrategy = () => null;
  // connect() rejects with "Connection is closed"; the socket's own error (ECONNREFUSED …) comes as an event.
  let cause: unknown;
  const onError = (err: unknown) => (cause ??= err);
  client.on('error', onError);
  try {
    await client.connect();
    await client.ping();
  } catch (err) {
    const why = [cause, err].map((e) => (e instanceof Error ? e.message : e === undefined ? '' : String(e))).find((m) => m !== '') ?? 'connection refused';
    throw new QueueUnreachableError(`cannot reach Redis at ${redactUrl(url)}: ${why}`, { cause: cause ?? err });
  } finally {
    client.off('error', onError);
    client.options.retryStrategy = retry;
  }
}

/** Options for BullMQ's own connections (Worker, QueueEvents): it makes them from these, blocking ones with no retry limit. */
export function bullConnection(url: string): { url: string; maxRetriesPerRequest: null; connectTimeout: number } {
  return { url, maxRetriesPerRequest: null, connectTimeout: CONNECT_TIMEOUT_MS };
}
