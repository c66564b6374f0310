// The scale-out's queue in one process, over a real redis-server: a front end (createServer
// with the Redis queue: it loads no model) and two workers holding different models. Requests
// come back with the PNGs a single local server makes, byte for byte; jobs reach only the
// worker holding their model; the native API's events (with previews), /progress and
// cancellation work through Redis; errors found on the worker come back with the local
// server's status, code and field; a full queue answers 429; --concurrency runs jobs side by
// side; a worker closed mid-job gives its job back to another; Redis lost → 503 → recovered.
import type { FastifyInstance } from 'fastify';
import { copyFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { connectRedisQueue, startRedisWorker, type RedisWorker } from '../lib/index.js';
// @ts-expect-error: plain JavaScript module with JSDoc types
import { generateModel } from '../scripts/generate-model.mjs';
// @ts-expect-error: plain JavaScript module with JSDoc types
import { generateLora } from '../scripts/generator/lora.mjs';
import { RedisServer } from './support/redis-server.js';
import { listeningServer, pngPixels, sseEvents, tinyModelDir, waitFor, type SseEvent } from './support/server.js';

let redis: RedisServer;
let remove: () => void;
let dir: string;
let local: { app: FastifyInstance; url: string };
let front: { app: FastifyInstance; url: string };
/** The workers, each with its log lines. */
const workers: Array<{ worker: RedisWorker; log: string[] }> = [];
let workerOptions: Omit<Parameters<typeof startRedisWorker>[0], 'model'>;
const QUEUE_LIMIT = 3;
// Long enough to be caught running (the tiny model takes milliseconds a step).
const LONG = { prompt: 'a long one', width: 64, height: 64, steps: 150, seed: 1 };

beforeAll(async () => {
  redis = await RedisServer.start();
  const tiny = await tinyModelDir('sdnode-server-queue-');
  ({ dir, remove } = tiny);
  // A second model, other weights: routing shows in the pixels too.
  await generateModel({ out: join(dir, 'other.safetensors'), preset: 'tiny', dtype: 'f32', seed: 5 });
  mkdirSync(join(dir, 'loras'));
  await generateLora({ model: tiny.model, out: join(dir, 'loras', 'style.safetensors'), format: 'lora', targets: ['attn'], rank: 4, alpha: 2, seed: 7 });
  copyFileSync(tiny.model, join(dir, 'unused.safetensors'));
  workerOptions = { url: redis.url, modelsDir: dir, loraModelDir: join(dir, 'loras'), device: 'cpu', threads: 1, lockDurationMs: 2_000, stalledIntervalMs: 1_000 };
  for (const model of ['tiny.safetensors', 'other.safetensors']) await addWorker(model);
  const queue = await connectRedisQueue({ url: redis.url, maxWaiting: QUEUE_LIMIT, lostGraceMs: 1_000 });
  front = await listeningServer({ queue, loraModelDir: join(dir, 'loras'), shutdownGraceMs: 0 });
  local = await listeningServer({ model: tiny.model, modelsDir: dir, loraModelDir: join(dir, 'loras') });
}, 180_000);

afterAll(async () => {
  await front?.app.close();
  await local?.app.close();
  for (const { worker } of workers) await worker.close(0);
  await redis?.remove();
  remove?.();
}, 60_000);

async function addWorker(model: string, concurrency = 1) {
  const log: string[] = [];
  const entry = { worker: await startRedisWorker({ ...workerOptions, model: join(dir, model), concurrency, log: (line) => log.push(line) }), log };
  workers.push(entry);
  return entry;
}

/** The lines of the workers holding `model` that say `what` (' done ', ' started', …). */
function logLines(model: string, what: RegExp): string[] {
  return workers.filter((w) => w.worker.model === model).flatMap((w) => w.log.filter((l) => what.test(l)));
}

function post(url: string, path: string, body: object) {
  return fetch(`${url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
}

async function json<T = Record<string, unknown>>(res: Response): Promise<{ status: number; body: T }> {
  return { status: res.status, body: (await res.json()) as T };
}

async function submit(body: object): Promise<string> {
  const res = await post(front.url, '/sdnode/v1/jobs', body);
  if (res.status !== 202) throw new Error(`submit: ${res.status} ${await res.text()}`);
  return ((await res.json()) as { id: string }).id;
}

async function collect(id: string, url = front.url): Promise<SseEvent[]> {
  const events: SseEvent[] = [];
  for await (const e of sseEvents(await fetch(`${url}/sdnode/v1/jobs/${id}/events`))) events.push(e);
  return events;
}

describe('the Redis queue behind createServer', () => {
  it("lists the workers' models and makes the local server's PNGs byte for byte, on the worker holding the model", async () => {
    const models = (await json<Array<{ title: string }>>(await fetch(`${front.url}/sdapi/v1/sd-models`))).body.map((m) => m.title);
    expect(models).toEqual(['other.safetensors', 'tiny.safetensors']); // not unused.safetensors: no worker holds it (yet)
    for (const model of ['tiny.safetensors', 'other']) {
      const body = { prompt: 'a cat <lora:style:0.8>', negative_prompt: 'blurry', width: 64, height: 48, steps: 3, seed: 42, batch_size: 2, sampler_name: 'DPM++ 2M', override_settings: { sd_model_checkpoint: model } };
      const [viaQueue, viaLocal] = await Promise.all([json<{ images: string[]; info: string }>(await post(front.url, '/sdapi/v1/txt2img', body)), json<{ images: string[]; info: string }>(await post(local.url, '/sdapi/v1/txt2img', body))]);
      expect(viaQueue.status).toBe(200);
      expect(viaLocal.status).toBe(200);
      expect(viaQueue.body.images).toHaveLength(2);
      expect(viaQueue.body.images).toEqual(viaLocal.body.images);
      const info = JSON.parse(viaQueue.body.info) as { all_seeds: number[]; sd_model_name: string };
      expect(info).toMatchObject({ all_seeds: [42, 43], sd_model_name: model.replace('.safetensors', '') });
    }
    const other = JSON.parse((await json<{ images: string[]; info: string }>(await post(front.url, '/sdapi/v1/txt2img', { prompt: 'x', width: 64, height: 64, steps: 2, seed: 1, override_settings: { sd_model_checkpoint: 'other' } }))).body.info) as { job_timestamp: string };
    expect(other).toBeDefined();
    // Routing: each worker ran only its model's jobs.
    expect(logLines('tiny.safetensors', / done /)).toHaveLength(1);
    expect(logLines('other.safetensors', / done /)).toHaveLength(2);
    // A model no worker holds is refused by name.
    const unheld = await json<{ error: { code: string; field: string } }>(await post(front.url, '/sdnode/v1/jobs', { prompt: 'x', model: 'unused' }));
    expect(unheld).toMatchObject({ status: 400, body: { error: { code: 'unknown_model', field: 'model' } } });
  });

  it('tells a job in order over Redis: queued, started, each step with a preview, done', async () => {
    const first = await submit({ ...LONG, model: 'tiny', steps: 30 });
    const request = { model: 'tiny', prompt: 'a cat', width: 64, height: 48, steps: 3, seed: 9, batchCount: 2, preview: 'latent2rgb', previewInterval: 1 };
    const second = await submit(request);
    const events = await collect(second);
    const types = events.map((e) => e.event);
    expect(types[0]).toBe('queued');
    expect(events[0]!.data.position).toBe(1); // the first job runs ahead of it
    expect(types.slice(types.indexOf('started'))).toEqual(['started', ...Array(6).fill('progress'), 'done']);
    const progress = events.filter((e) => e.event === 'progress').map((e) => e.data);
    expect(progress.map((p) => p.step)).toEqual([1, 2, 3, 4, 5, 6]);
    for (const p of progress) expect(await pngPixels(p.preview as string)).toMatchObject({ width: 64, height: 48 });
    const result = events.at(-1)!.data.result as { seeds: number[]; images: string[] };
    expect(result.seeds).toEqual([9, 10]);
    const localId = ((await (await post(local.url, '/sdnode/v1/jobs', request)).json()) as { id: string }).id;
    const localEvents = await collect(localId, local.url);
    expect(result.images).toEqual((localEvents.at(-1)!.data.result as { images: string[] }).images);
    // The first job's result is kept in Redis: a later watcher gets it.
    await waitFor(async () => ((await json<{ state: string }>(await fetch(`${front.url}/sdnode/v1/jobs/${first}`))).body.state === 'done' ? true : undefined));
  });

  it('/progress shows the running job rising with a preview; /interrupt and DELETE cancel through the worker', async () => {
    const waiting = (async () => json<{ error: { code: string } }>(await post(front.url, '/sdapi/v1/txt2img', LONG)))();
    const seen: number[] = [];
    const preview = await waitFor(async () => {
      const p = (await json<{ progress: number; state: { sampling_step: number }; current_image: string | null }>(await fetch(`${front.url}/sdapi/v1/progress`))).body;
      if (p.state.sampling_step > 0) seen.push(p.state.sampling_step);
      return seen.length >= 2 && seen.at(-1)! > seen[0]! && p.current_image ? p.current_image : undefined;
    });
    expect(await pngPixels(preview)).toMatchObject({ width: 64, height: 64 });
    expect((await json(await post(front.url, '/sdapi/v1/interrupt', {}))).status).toBe(200);
    expect(await waiting).toMatchObject({ status: 409, body: { error: { code: 'cancelled' } } });

    // DELETE: a running job and one waiting behind it.
    const running = await submit(LONG);
    const behind = await submit(LONG);
    const stream = sseEvents(await fetch(`${front.url}/sdnode/v1/jobs/${running}/events`));
    // Read by hand: leaving a for-await loop would close the stream, and that cancels the job.
    while ((await stream.next()).value?.event !== 'progress');
    expect((await fetch(`${front.url}/sdnode/v1/jobs/${behind}`, { method: 'DELETE' })).status).toBe(200);
    expect((await fetch(`${front.url}/sdnode/v1/jobs/${running}`, { method: 'DELETE' })).status).toBe(200);
    const rest: SseEvent[] = [];
    for await (const e of stream) rest.push(e);
    expect(rest.at(-1)).toMatchObject({ event: 'cancelled', data: { reason: 'cancelled by DELETE' } });
    expect(rest.filter((e) => e.event === 'progress').length).toBeLessThan(LONG.steps - 1);
    expect((await collect(behind)).map((e) => e.event)).toEqual(['cancelled']);
    expect((await fetch(`${front.url}/sdnode/v1/jobs/${running}`, { method: 'DELETE' })).status).toBe(404);
  });

  it("errors found on the worker come back as the local server's: status, code, field", async () => {
    const bodies = [
      { prompt: 'x <lora:nope:1>', width: 64, height: 64, steps: 2 },
      { prompt: 'x', width: 64, height: 64, steps: 2, init_images: ['bm90IGFuIGltYWdl'] },
      { prompt: 'x', width: 60, height: 64, steps: 2 },
    ];
    for (const body of bodies) {
      const path = 'init_images' in body ? '/sdapi/v1/img2img' : '/sdapi/v1/txt2img';
      const [viaQueue, viaLocal] = [await json<{ error: object }>(await post(front.url, path, body)), await json<{ error: object }>(await post(local.url, path, body))];
      expect(viaLocal.status).toBeGreaterThanOrEqual(400);
      const { message: _q, ...queued } = viaQueue.body.error as { message: string };
      const { message: _l, ...locally } = viaLocal.body.error as { message: string };
      expect({ status: viaQueue.status, ...queued }).toEqual({ status: viaLocal.status, ...locally });
    }
  });

  it(`a full queue (${QUEUE_LIMIT} waiting) answers 429 with Retry-After`, async () => {
    const ids = [await submit(LONG)];
    await waitFor(async () => ((await json<{ state: string }>(await fetch(`${front.url}/sdnode/v1/jobs/${ids[0]}`))).body.state === 'running' ? true : undefined));
    for (let i = 0; i < QUEUE_LIMIT; i++) ids.push(await submit(LONG));
    const full = await post(front.url, '/sdnode/v1/jobs', LONG);
    expect(full.status).toBe(429);
    expect(Number(full.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect(((await full.json()) as { error: { code: string } }).error.code).toBe('queue_full');
    for (const id of ids.reverse()) await fetch(`${front.url}/sdnode/v1/jobs/${id}`, { method: 'DELETE' });
  });

  it('--concurrency 2 runs two jobs at once on two copies of the model', async () => {
    const pair = await addWorker('unused.safetensors', 2);
    expect(pair.worker.model).toBe('unused.safetensors');
    const both = await Promise.all([1, 2].map(async (seed) => collect(await submit({ ...LONG, model: 'unused', seed, steps: 60 }))));
    for (const events of both) expect(events.at(-1)!.event).toBe('done');
    // Both started before either ended.
    expect(pair.log.filter((l) => / (started|done .*)$/.test(l)).map((l) => l.split(' ')[2])).toEqual(['started', 'started', 'done', 'done']);
    await pair.worker.close(0);
    workers.splice(workers.indexOf(pair), 1);
  });

  it('a worker closed mid-job (SIGTERM) gives the job back; another holding the model finishes it', async () => {
    const second = await addWorker('tiny.safetensors');
    const first = workers.find((w) => w.worker.model === 'tiny.safetensors')!;
    const id = await submit({ ...LONG, model: 'tiny', seed: 11, steps: 100 });
    const stream = collect(id);
    const holder = await waitFor(() => [first, second].find((w) => w.log.includes(`job ${id} started`)));
    const other = holder === first ? second : first;
    await holder.worker.close(0);
    workers.splice(workers.indexOf(holder), 1);
    const events = await stream;
    expect(holder.log).toContain(`job ${id} given back to the queue (shutting down)`);
    expect(other.log.some((l) => l.startsWith(`job ${id} done`))).toBe(true);
    // Its watchers saw it go back and start again, then its image.
    const types = events.map((e) => e.event);
    expect(types.filter((t) => t === 'started')).toHaveLength(2);
    expect(types.at(-1)).toBe('done');
    const localId = ((await (await post(local.url, '/sdnode/v1/jobs', { ...LONG, model: 'tiny', seed: 11, steps: 100 })).json()) as { id: string }).id;
    expect((events.at(-1)!.data.result as { images: string[] }).images).toEqual(((await collect(localId, local.url)).at(-1)!.data.result as { images: string[] }).images);
  });

  it('Redis lost: requests and the job in flight fail with 503 JSON; when Redis returns, so does the service', async () => {
    const id = await submit({ ...LONG, model: 'tiny', batchCount: 8 });
    const inFlight = collect(id);
    await waitFor(() => (workers.some((w) => w.log.includes(`job ${id} started`)) ? true : undefined));
    await redis.stop();
    const refused = await json<{ error: { code: string } }>(await post(front.url, '/sdapi/v1/txt2img', { prompt: 'x', width: 64, height: 64, steps: 2 }));
    expect(refused).toMatchObject({ status: 503, body: { error: { code: 'queue_unavailable' } } });
    expect(await json(await fetch(`${front.url}/sdapi/v1/sd-models`))).toMatchObject({ status: 503, body: { error: { code: 'queue_unavailable' } } });
    const events = await inFlight;
    expect(events.at(-1)).toMatchObject({ event: 'error', data: { error: { status: 503, code: 'queue_unavailable' } } });

    await redis.restart();
    const body = { prompt: 'back', width: 64, height: 64, steps: 2, seed: 5, override_settings: { sd_model_checkpoint: 'tiny' } };
    const again = await waitFor(async () => {
      const res = await post(front.url, '/sdapi/v1/txt2img', body);
      return res.status === 200 ? ((await res.json()) as { images: string[] }) : undefined;
    }, 60_000);
    expect(again.images).toEqual(((await (await post(local.url, '/sdapi/v1/txt2img', body)).json()) as { images: string[] }).images);
  }, 90_000);
});
