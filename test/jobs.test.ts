// Jobs run off the JS thread: progress in order, cancellation, FIFO per object, dispose.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { AbortError, DisposedError, loadAutoencoder, readImage, type Autoencoder, type Image, type Progress } from '../lib/index.js';
import { cropTopLeft, imagePath, taeDecoder, taeEncoder } from './support/data.js';

describe('jobs', () => {
  let tae: Autoencoder;
  let image: Image;
  beforeAll(async () => {
    tae = await loadAutoencoder({ encoder: taeEncoder, decoder: taeDecoder }, { device: 'cpu' });
    image = cropTopLeft(await readImage(imagePath('chelsea.png')), 8, 192);
  });
  afterAll(() => tae?.dispose());

  it('reports progress in order, every step, before the promise settles', async () => {
    const events: Progress[] = [];
    let settled = false;
    const latent = await tae.encode(image, {
      onProgress: (p) => {
        expect(settled).toBe(false);
        events.push(p);
      },
    });
    settled = true;
    expect(latent.channels).toBe(32);
    expect(events.length).toBeGreaterThan(1);
    expect(events.map((e) => e.step)).toEqual(events.map((_, i) => i + 1));
    expect(events.every((e) => e.steps === events.length)).toBe(true);
    for (let i = 1; i < events.length; i++) expect(events[i]!.elapsedMs).toBeGreaterThanOrEqual(events[i - 1]!.elapsedMs);
  });

  it('keeps the event loop turning while it computes', async () => {
    let turns = 0;
    const timer = setInterval(() => turns++, 1);
    let progressEvents = 0;
    await tae.encode(image, { onProgress: () => progressEvents++ });
    clearInterval(timer);
    // A blocked loop would see zero turns until the job ended; we see many, interleaved
    // with the progress events.
    expect(turns).toBeGreaterThan(progressEvents);
  });

  it('rejects with AbortError when aborted mid-job, before it would have finished', async () => {
    const controller = new AbortController();
    const steps: number[] = [];
    let total = 0;
    const job = tae.encode(image, {
      signal: controller.signal,
      onProgress: (p) => {
        steps.push(p.step);
        total = p.steps;
        if (p.step === 2) controller.abort();
      },
    });
    await expect(job).rejects.toBeInstanceOf(AbortError);
    await expect(job).rejects.toMatchObject({ code: 'ABORT_ERR' });
    expect(steps.at(-1)!).toBeLessThan(total);
    // The object is still usable afterwards.
    const latent = await tae.encode(image);
    expect(latent.width).toBe(image.width / 8);
  });

  it('rejects at once for an already-aborted signal and while queued', async () => {
    await expect(tae.encode(image, { signal: AbortSignal.abort() })).rejects.toBeInstanceOf(AbortError);

    const running = tae.encode(image);
    const controller = new AbortController();
    const queued = tae.encode(image, { signal: controller.signal });
    controller.abort();
    await expect(queued).rejects.toBeInstanceOf(AbortError);
    await expect(running).resolves.toMatchObject({ channels: 32 });
  });

  it('aborting after completion is a no-op', async () => {
    const controller = new AbortController();
    const latent = await tae.encode(image, { signal: controller.signal });
    controller.abort();
    expect(latent.channels).toBe(32);
  });

  it('runs jobs on one object one at a time, in order, with identical results', async () => {
    const order: number[] = [];
    const jobs = [0, 1, 2].map((i) => tae.encode(image).then((l) => (order.push(i), l)));
    const latents = await Promise.all(jobs);
    expect(order).toEqual([0, 1, 2]);
    expect(latents[1]!.data).toEqual(latents[0]!.data);
    expect(latents[2]!.data).toEqual(latents[0]!.data);
  });

  it('an onProgress that throws cancels the job and rejects with its error', async () => {
    const boom = new Error('boom');
    await expect(tae.encode(image, { onProgress: () => { throw boom; } })).rejects.toBe(boom);
  });

  it('dispose lets running jobs settle, then refuses new ones; it is idempotent', async () => {
    const own = await loadAutoencoder({ decoder: taeDecoder }, { device: 'cpu' });
    const latent = { channels: 32, width: 32, height: 32, data: new Float32Array(32 * 32 * 32) };
    const running = own.decode(latent);
    const disposed = own.dispose();
    await expect(running).resolves.toMatchObject({ width: 256, height: 256 });
    await disposed;
    await own.dispose();
    await expect(own.decode(latent)).rejects.toBeInstanceOf(DisposedError);
    await expect(own.decode(latent)).rejects.toMatchObject({ code: 'ERR_DISPOSED' });
  });

  it('supports await using', async () => {
    let ref: Autoencoder | undefined;
    {
      await using own = await loadAutoencoder({ decoder: taeDecoder }, { device: 'cpu' });
      ref = own;
      expect(own.hasDecoder).toBe(true);
    }
    const latent = { channels: 32, width: 8, height: 8, data: new Float32Array(32 * 64) };
    await expect(ref!.decode(latent)).rejects.toBeInstanceOf(DisposedError);
  });

  it('two objects run concurrently, each with its own progress', async () => {
    const other = await loadAutoencoder({ encoder: taeEncoder }, { device: 'cpu', threads: 1 });
    const a: number[] = [];
    const b: number[] = [];
    const [la, lb] = await Promise.all([
      tae.encode(image, { onProgress: (p) => a.push(p.step) }),
      other.encode(image, { onProgress: (p) => b.push(p.step) }),
    ]);
    await other.dispose();
    expect(a).toEqual(a.map((_, i) => i + 1));
    expect(b).toEqual(b.map((_, i) => i + 1));
    expect(lb.data).toEqual(la.data);
  });
});
