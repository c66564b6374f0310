/**
 * The models a scale-out front end offers: those its workers announce in Redis (each worker
 * renews its announcement every few seconds, with a TTL, so a worker that is gone drops out of
 * the list by itself). Names are the workers' (a checkpoint's path inside their --models-dir,
 * or its file name); a request may leave out the extension or add the webui's ' [hash]'.
 */
import type { Redis } from 'ioredis';

import { JobError, type ModelDirectory } from '../job-queue.js';
import { MODEL_EXTENSIONS } from '../models.js';
import { ANNOUNCE_EVERY_MS, RedisKeys, queueUnavailable, type WorkerAnnouncement } from './redis.js';

/** Announcements read at most this often; requests in between use the last reading. */
const REFRESH_MS = 1_000;
/** SCAN's batch size: workers are few. */
const SCAN_COUNT = 100;

/** The webui appends the checkpoint's short hash to its titles ('name.safetensors [6ce0161689]'). */
const TITLE_HASH = /\s+\[[0-9a-fA-F]{8,12}\]$/;

export class WorkerModels implements ModelDirectory {
  readonly #redis: Redis;
  readonly #keys: RedisKeys;
  /** Model name → workers holding it (their concurrency summed), from the last reading. */
  #models = new Map<string, number>();
  #readAt = 0;
  #reading: Promise<Map<string, number>> | undefined;
  #selected: string | undefined;
  #refresher: NodeJS.Timeout | undefined;

  constructor(redis: Redis, keys: RedisKeys) {
    this.#redis = redis;
    this.#keys = keys;
  }

  /**
   * Reads the announcements now, then every ANNOUNCE_EVERY_MS until stop(), so that `current`
   * (read without waiting) follows workers coming and going. Rejects when Redis cannot be read.
   */
  async start(): Promise<void> {
    await this.#read(true);
    this.#refresher ??= setInterval(() => void this.#read(true).catch(() => {}), ANNOUNCE_EVERY_MS).unref();
  }

  stop(): void {
    clearInterval(this.#refresher);
    this.#refresher = undefined;
  }

  /** The model requests use unless they name one: the one selected, else the first announced. */
  get current(): string | undefined {
    if (this.#selected !== undefined) return this.#selected;
    return [...this.#models.keys()].sort()[0];
  }

  /** Every model some worker holds, by name. */
  async list(): Promise<Array<{ name: string }>> {
    const models = await this.#read(true);
    return [...models.keys()].sort().map((name) => ({ name }));
  }

  /** How many jobs of `model` the workers run at once (0: none holds it). */
  async capacity(model: string): Promise<number> {
    return (await this.#read(false)).get(model) ?? 0;
  }

  /**
   * The announced model a name means: JobError 400 'unknown_model' naming `field` when no
   * worker holds it, 503 'no_workers' when none is connected at all.
   */
  async resolve(name: unknown, field = 'model'): Promise<{ name: string }> {
    if (typeof name !== 'string' || name === '') throw new JobError({ status: 400, code: 'invalid_name', field, message: `${field}: a model name must be a non-empty string` });
    const bare = name.replace(TITLE_HASH, '');
    const models = await this.#read(false);
    const found = models.has(bare) ? bare : [...models.keys()].find((m) => stripExtension(m) === bare);
    if (found !== undefined) return { name: found };
    // Announcements may be a second old: read again before refusing.
    const fresh = await this.#read(true);
    const again = fresh.has(bare) ? bare : [...fresh.keys()].find((m) => stripExtension(m) === bare);
    if (again !== undefined) return { name: again };
    if (fresh.size === 0) throw new JobError({ status: 503, code: 'no_workers', message: 'no worker is connected to the job queue; start one with `sdnode worker --queue <url> -m <model>`' });
    throw new JobError({ status: 400, code: 'unknown_model', field, message: `${field}: no worker holds a model named '${bare}'; they hold ${[...fresh.keys()].sort().join(', ')}` });
  }

  /** Makes `name` the model requests use (the webui's sd_model_checkpoint). */
  async select(name: unknown, field = 'sd_model_checkpoint'): Promise<{ name: string }> {
    const entry = await this.resolve(name, field);
    this.#selected = entry.name;
    return entry;
  }

  /** Reads the announcements (at most every REFRESH_MS unless `fresh`). */
  async #read(fresh: boolean): Promise<Map<string, number>> {
    if (!fresh && Date.now() - this.#readAt < REFRESH_MS) return this.#models;
    this.#reading ??= this.#scan().finally(() => (this.#reading = undefined));
    return this.#reading;
  }

  async #scan(): Promise<Map<string, number>> {
    const keys: string[] = [];
    try {
      let cursor = '0';
      do {
        const [next, batch] = await this.#redis.scan(cursor, 'MATCH', this.#keys.workerPattern, 'COUNT', SCAN_COUNT);
        keys.push(...batch);
        cursor = next;
      } while (cursor !== '0');
      const models = new Map<string, number>();
      const values = keys.length > 0 ? await this.#redis.mget(...keys) : [];
      for (const value of values) {
        if (value === null) continue; // expired between SCAN and MGET
        let worker: WorkerAnnouncement;
        try {
          worker = JSON.parse(value) as WorkerAnnouncement;
        } catch {
          continue;
        }
        for (const model of worker.models ?? []) models.set(model, (models.get(model) ?? 0) + (worker.concurrency ?? 1));
      }
      this.#models = models;
      this.#readAt = Date.now();
      return models;
    } catch (err) {
      throw queueUnavailable(err, 'listing the models its workers hold');
    }
  }
}

function stripExtension(name: string): string {
  const lower = name.toLowerCase();
  const ext = MODEL_EXTENSIONS.find((e) => lower.endsWith(e));
  return ext ? name.slice(0, name.length - ext.length) : name;
}
