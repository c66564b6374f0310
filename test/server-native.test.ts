// The native API of `sdnode serve` over real HTTP on the tiny model: a job's Server-Sent Events
// come in order (queued with its position, started, every step with a preview, done with PNGs);
// DELETE cancels through the job's signal; a client that closes its event stream or its
// waiting request cancels its job; a full queue answers 429 with Retry-After.
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { pngPixels, sseEvents, tinyModelDir, listeningServer, waitFor, type SseEvent } from './support/server.js';

let remove: () => void;
let app: FastifyInstance;
let url: string;
// Long enough to be caught running (the tiny model takes milliseconds a step), short enough for a test.
const LONG = { prompt: 'a long one', width: 64, height: 64, steps: 150, seed: 1 };
const QUEUE_LIMIT = 2;

beforeAll(async () => {
  const tiny = await tinyModelDir('sdnode-server-native-');
  remove = tiny.remove;
  ({ app, url } = await listeningServer({ model: tiny.model, limits: { queue: QUEUE_LIMIT } }));
}, 120_000);

afterAll(async () => {
  await app?.close();
  remove?.();
});

async function submit(body: object): Promise<string> {
  const res = await fetch(`${url}/sdnode/v1/jobs`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  expect(res.status).toBe(202);
  return ((await res.json()) as { id: string }).id;
}

async function state(id: string): Promise<Record<string, unknown>> {
  return (await (await fetch(`${url}/sdnode/v1/jobs/${id}`)).json()) as Record<string, unknown>;
}

async function collect(id: string): Promise<SseEvent[]> {
  const res = await fetch(`${url}/sdnode/v1/jobs/${id}/events`);
  expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
  const events: SseEvent[] = [];
  for await (const e of sseEvents(res)) events.push(e);
  return events;
}

describe('native API', () => {
  it('tells a job in order: queued (its position), started, each step with a preview, done with PNGs', async () => {
    const first = await submit({ ...LONG, steps: 20 });
    const second = await submit({ prompt: 'a cat', width: 64, height: 48, steps: 3, seed: 9, batchCount: 2, preview: 'latent2rgb', previewInterval: 1 });
    const events = await collect(second);
    const types = events.map((e) => e.event);
    expect(types[0]).toBe('queued');
    expect(events[0]!.data.position).toBe(1); // the first job runs ahead of it
    expect(types.slice(types.indexOf('started'))).toEqual(['started', ...Array(6).fill('progress'), 'done']);
    const progress = events.filter((e) => e.event === 'progress').map((e) => e.data);
    expect(progress.map((p) => p.step)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(progress.every((p) => p.steps === 6 && typeof p.elapsedMs === 'number')).toBe(true);
    for (const p of progress) expect(await pngPixels(p.preview as string)).toMatchObject({ width: 64, height: 48 });
    const result = events.at(-1)!.data.result as { images: string[]; seeds: number[]; infotexts: string[] };
    expect(result.seeds).toEqual([9, 10]);
    for (const png of result.images) expect(await pngPixels(png)).toMatchObject({ width: 64, height: 48 });
    expect(result.infotexts[1]).toContain('Seed: 10');
    // The first job ended too, and its result stays available.
    await waitFor(async () => ((await state(first)).state === 'done' ? true : undefined));
  });

  it('DELETE cancels a running job: its stream ends with cancelled; a second DELETE is 404', async () => {
    const id = await submit(LONG);
    const res = await fetch(`${url}/sdnode/v1/jobs/${id}/events`);
    const seen: string[] = [];
    for await (const e of sseEvents(res)) {
      seen.push(e.event);
      if (e.event === 'progress' && seen.filter((t) => t === 'progress').length === 1) {
        const del = await fetch(`${url}/sdnode/v1/jobs/${id}`, { method: 'DELETE' });
        expect(del.status).toBe(200);
      }
      if (e.event === 'cancelled') expect(e.data.reason).toBe('cancelled by DELETE');
    }
    expect(seen.at(-1)).toBe('cancelled');
    expect(seen.filter((t) => t === 'progress').length).toBeLessThan(LONG.steps);
    const again = await fetch(`${url}/sdnode/v1/jobs/${id}`, { method: 'DELETE' });
    expect(again.status).toBe(404);
    expect(((await again.json()) as { error: { code: string } }).error.code).toBe('unknown_job');
  });

  it('a client that closes its event stream cancels its job', async () => {
    const id = await submit(LONG);
    const abort = new AbortController();
    const res = await fetch(`${url}/sdnode/v1/jobs/${id}/events`, { signal: abort.signal });
    for await (const e of sseEvents(res)) if (e.event === 'progress') break;
    abort.abort();
    const ended = await waitFor(async () => {
      const s = await state(id);
      return s.state === 'running' ? undefined : s;
    });
    expect(ended).toMatchObject({ state: 'cancelled', reason: 'the client disconnected' });
  });

  it('a client that drops its waiting webui request cancels its job', async () => {
    const abort = new AbortController();
    const request = fetch(`${url}/sdapi/v1/txt2img`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(LONG), signal: abort.signal });
    request.catch(() => undefined);
    const job = await waitFor(async () => {
      const p = (await (await fetch(`${url}/sdapi/v1/progress`)).json()) as { state: { job: string; sampling_step: number } };
      return p.state.job && p.state.sampling_step > 0 ? p.state.job.replace(/^sdnode-/, '') : undefined;
    });
    abort.abort();
    const ended = await waitFor(async () => {
      const s = await state(job);
      return s.state === 'running' ? undefined : s;
    });
    expect(ended).toMatchObject({ state: 'cancelled', reason: 'the client disconnected' });
  });

  it(`a full queue (${QUEUE_LIMIT} waiting) answers 429 with Retry-After; the server goes on`, async () => {
    const ids = [await submit(LONG), await submit(LONG), await submit(LONG)];
    const full = await fetch(`${url}/sdnode/v1/jobs`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(LONG) });
    expect(full.status).toBe(429);
    expect(Number(full.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect(((await full.json()) as { error: { code: string } }).error.code).toBe('queue_full');
    for (const id of ids.reverse()) await fetch(`${url}/sdnode/v1/jobs/${id}`, { method: 'DELETE' });
    const id = await submit({ prompt: 'after', width: 64, height: 64, steps: 2, seed: 3 });
    const events = await collect(id);
    expect(events.at(-1)!.event).toBe('done');
  });
});
