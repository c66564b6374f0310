// A model's life through the public API (HOSTILE-INPUTS 24–29): concurrent generate() calls on
// one model are serialized FIFO with the results they give alone; two models keep their progress
// apart; abort at every stage of a job; dispose() during jobs, twice, with `await using`, and
// DisposedError after; progress callbacks that throw or are slow; 100 generations without RSS
// growth; process exit, worker.terminate() and a dropped reference mid-generation.
import { spawnSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { AbortError, DisposedError, loadModel, type GenerateOptions, type GenerateResult, type Model, type Progress } from '../lib/index.js';
// @ts-expect-error: plain JavaScript module with JSDoc types
import { generateModel } from '../scripts/generate-model.mjs';

const dir = mkdtempSync(join(tmpdir(), 'sdnode-lifecycle-'));
const path = join(dir, 'tiny.safetensors');
// One thread: on a busy 2-core machine ggml's threads wait on each other at every node, and a
// tiny graph runs far slower with two than with one.
const cpu = { device: 'cpu', threads: 1 } as const;
let model: Model;

beforeAll(async () => {
  await generateModel({ out: path, preset: 'tiny', dtype: 'f32', seed: 3 });
  model = await loadModel(path, cpu);
}, 60_000);

afterAll(async () => {
  await model?.dispose();
});

const same = (a: Uint8Array, b: Uint8Array) => a.length === b.length && a.every((v, i) => v === b[i]);
const bytes = (r: { images: Array<{ data: Uint8Array }> }) => r.images[0]!.data;
/** 64×64, 3 steps: about 100 ms on one thread. */
const small = { width: 64, height: 64, steps: 3 } as const;
/** 256×256: a decode of about a second, long enough to abort in the middle of it. */
const large = { width: 256, height: 256, steps: 2 } as const;
/** A photo-like 64×64 RGB test image and a mask over its middle. */
const initImage = {
  width: 64,
  height: 64,
  channels: 3 as const,
  data: Uint8Array.from({ length: 64 * 64 * 3 }, (_, i) => (i * 7 + ((i / 192) | 0) * 3) % 256),
};
const mask = { width: 64, height: 64, channels: 1 as const, data: Uint8Array.from({ length: 64 * 64 }, (_, i) => (i % 64 > 16 && i % 64 < 48 ? 255 : 0)) };

/** A job's settlement without throwing, to look at later. */
const outcome = <T>(p: Promise<T>) => p.then((value) => ({ value }), (error: unknown) => ({ error }));

describe('one model, many calls (24)', () => {
  it('4 concurrent generate() run one at a time, FIFO, never interleaved, each giving what it gives alone', async () => {
    const calls: GenerateOptions[] = [
      { prompt: 'a red house', ...small, seed: 11 },
      { prompt: 'a red house', ...small, seed: 12, sampler: 'euler' },
      { prompt: 'a blue tree', ...small, seed: 11, cfgScale: 3 },
      { prompt: 'a red house', ...small, seed: 11 },
    ];
    const alone: GenerateResult[] = [];
    for (const c of calls) alone.push(await model.generate(c));

    const log: string[] = [];
    const results = await Promise.all(
      calls.map((c, k) =>
        model.generate({ ...c, onProgress: (p) => log.push(`${k}:${p.step}`) }).then((r) => (log.push(`${k}:done`), r)),
      ),
    );
    // Job k's progress ends, and its promise settles, before job k+1's first step.
    expect(log).toEqual([0, 1, 2, 3].flatMap((k) => [`${k}:1`, `${k}:2`, `${k}:3`, `${k}:done`]));
    results.forEach((r, k) => expect(same(bytes(r), bytes(alone[k]!)), `job ${k}`).toBe(true));
    expect(same(bytes(results[0]!), bytes(results[3]!))).toBe(true);
    expect(same(bytes(results[0]!), bytes(results[1]!))).toBe(false);
  });

  it('image-to-image and inpainting jobs queue in order with text-to-image ones, with their results alone', async () => {
    const calls: GenerateOptions[] = [
      { prompt: 'a cat', initImage, strength: 0.5, steps: 4, seed: 5 },
      { prompt: 'a cat', ...small, seed: 5 },
      { prompt: 'a cat', initImage, mask, strength: 1, steps: 2, seed: 5 },
    ];
    const alone: GenerateResult[] = [];
    for (const c of calls) alone.push(await model.generate(c));
    const order: number[] = [];
    const results = await Promise.all(calls.map((c, k) => model.generate(c).then((r) => (order.push(k), r))));
    expect(order).toEqual([0, 1, 2]);
    results.forEach((r, k) => expect(same(bytes(r), bytes(alone[k]!)), `job ${k}`).toBe(true));
  });
});

describe('two models at once (25)', () => {
  it('run concurrently, each onProgress seeing only its own steps, with the results they give alone', async () => {
    await using other = await loadModel(path, cpu);
    const a = { prompt: 'a boat', width: 128, height: 128, steps: 4, seed: 1 } as const;
    const b = { prompt: 'a boat', width: 128, height: 128, steps: 7, seed: 2 } as const;
    const aloneA = await model.generate(a);
    const aloneB = await other.generate(b);

    const events: Array<{ who: 'a' | 'b' } & Progress> = [];
    const [ra, rb] = await Promise.all([
      model.generate({ ...a, onProgress: (p) => events.push({ who: 'a', ...p }) }),
      other.generate({ ...b, onProgress: (p) => events.push({ who: 'b', ...p }) }),
    ]);
    const of = (who: string) => events.filter((e) => e.who === who);
    expect(of('a').map((e) => [e.step, e.steps])).toEqual([1, 2, 3, 4].map((s) => [s, 4]));
    expect(of('b').map((e) => [e.step, e.steps])).toEqual([1, 2, 3, 4, 5, 6, 7].map((s) => [s, 7]));
    // Concurrent, not one after the other: some of b's steps land between a's first and last.
    const whos = events.map((e) => e.who).join('');
    console.log(`two models, progress order: ${whos}`);
    expect(whos.lastIndexOf('b')).toBeGreaterThan(whos.indexOf('a'));
    expect(whos.lastIndexOf('a')).toBeGreaterThan(whos.indexOf('b'));
    expect(same(bytes(ra), bytes(aloneA))).toBe(true);
    expect(same(bytes(rb), bytes(aloneB))).toBe(true);
  });
});

describe('abort at every stage (26)', () => {
  const expectAbort = async (p: Promise<unknown>) => {
    const err = await p.then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(AbortError);
    expect(err).toMatchObject({ name: 'AbortError', code: 'ABORT_ERR' });
  };
  const stillWorks = async () => {
    const r = await model.generate({ prompt: 'a dog', ...small, seed: 3 });
    expect(r.images[0]).toMatchObject({ width: 64, height: 64, channels: 3 });
  };

  it('an already-aborted signal: rejected at once, nothing run', async () => {
    const steps: number[] = [];
    const reason = new Error('not wanted');
    const p = model.generate({ prompt: 'x', ...small, signal: AbortSignal.abort(reason), onProgress: (e) => steps.push(e.step) });
    await expectAbort(p);
    await expect(p).rejects.toMatchObject({ cause: reason });
    expect(steps).toEqual([]);
    await stillWorks();
  });

  it('while queued behind another job: rejected before that job ends, which is unaffected', async () => {
    const alone = await model.generate({ prompt: 'a ship', ...large, seed: 4 });
    const controller = new AbortController();
    const queuedSteps: number[] = [];
    let runningDone = false;
    const running = model.generate({ prompt: 'a ship', ...large, seed: 4 }).then((r) => ((runningDone = true), r));
    const queued = model.generate({ prompt: 'x', ...small, signal: controller.signal, onProgress: (e) => queuedSteps.push(e.step) });
    controller.abort();
    await expectAbort(queued);
    expect(runningDone).toBe(false);
    expect(same(bytes(await running), bytes(alone))).toBe(true);
    expect(queuedSteps).toEqual([]);
  });

  it('during text encoding (the job started, its first step not reached)', async () => {
    // 32 windows of 75 tokens each for the prompt and the negative prompt: the longest text encoding.
    const long = 'word '.repeat(32 * 75 - 10);
    const controller = new AbortController();
    const steps: number[] = [];
    const p = model.generate({ prompt: long, negativePrompt: long, ...large, seed: 1, signal: controller.signal, onProgress: (e) => steps.push(e.step) });
    setImmediate(() => controller.abort());
    await expectAbort(p);
    expect(steps).toEqual([]);
    await stillWorks();
  });

  it('while an image-to-image job prepares its init image (resized to the job size)', async () => {
    const controller = new AbortController();
    const steps: number[] = [];
    const p = model.generate({ prompt: 'x', initImage, width: 128, height: 128, strength: 1, steps: 3, signal: controller.signal, onProgress: (e) => steps.push(e.step) });
    controller.abort();
    await expectAbort(p);
    expect(steps).toEqual([]);
    await stillWorks();
  });

  it('mid-sampling: within one step of the abort', async () => {
    const controller = new AbortController();
    const steps: number[] = [];
    let abortedAt = 0;
    const p = model.generate({
      prompt: 'x',
      ...large,
      steps: 6,
      seed: 1,
      signal: controller.signal,
      onProgress: (e) => {
        steps.push(e.step);
        if (e.step === 2) {
          abortedAt = performance.now();
          controller.abort();
        }
      },
    });
    await expectAbort(p);
    console.log(`mid-sampling abort: rejected ${(performance.now() - abortedAt).toFixed(1)} ms after abort(), steps seen ${steps.join(',')}`);
    expect(steps[0]).toBe(1);
    expect(steps.at(-1)).toBeLessThanOrEqual(3);
    await stillWorks();
  });

  it('during the VAE decode (after the last step was reported)', async () => {
    const controller = new AbortController();
    const steps: number[] = [];
    let abortedAt = 0;
    const p = model.generate({
      prompt: 'x',
      ...large,
      seed: 1,
      signal: controller.signal,
      onProgress: (e) => {
        steps.push(e.step);
        if (e.step === e.steps) {
          abortedAt = performance.now();
          controller.abort();
        }
      },
    });
    await expectAbort(p);
    console.log(`abort during decode: rejected ${(performance.now() - abortedAt).toFixed(1)} ms after abort()`);
    expect(steps).toEqual([1, 2]);
    await stillWorks();
  });

  it('after completion: a no-op', async () => {
    const controller = new AbortController();
    const r = await model.generate({ prompt: 'a dog', ...small, seed: 3, signal: controller.signal });
    controller.abort();
    const again = await model.generate({ prompt: 'a dog', ...small, seed: 3 });
    expect(same(bytes(r), bytes(again))).toBe(true);
  });
});

describe('dispose (27)', () => {
  it('during jobs: running and queued jobs settle first; twice is the same promise; then DisposedError (rejected by async methods, thrown by sync ones)', async () => {
    const m = await loadModel(path, cpu);
    const log: string[] = [];
    const jobs = [
      m.generate({ prompt: 'x', ...small, seed: 1 }).then(() => log.push('txt2img')),
      m.generate({ prompt: 'x', initImage, width: 128, height: 128, strength: 0.5, steps: 2, seed: 1 }).then(() => log.push('img2img')),
      m.generate({ prompt: 'x', initImage, mask, strength: 1, steps: 2, seed: 1 }).then(() => log.push('inpaint')),
    ];
    const first = m.dispose();
    const second = m.dispose();
    expect(second).toBe(first);
    await first.then(() => log.push('disposed'));
    await Promise.all(jobs);
    expect(log).toEqual(['txt2img', 'img2img', 'inpaint', 'disposed']);
    await m.dispose();

    const latent = { channels: 4, width: 8, height: 8, data: new Float32Array(256) };
    const rejecting: Array<[string, () => Promise<unknown>]> = [
      ['generate', () => m.generate({ prompt: 'x' })],
      ['generate img2img', () => m.generate({ prompt: 'x', initImage })],
      // Even with bad options: the disposal is the first thing said.
      ['generate with bad options', () => m.generate({ prompt: 'x', width: -1 })],
      ['encodeImage', () => m.encodeImage(initImage)],
      ['decodeLatent', () => m.decodeLatent(latent)],
      ['checksums', () => m.checksums()],
    ];
    for (const [name, call] of rejecting) {
      let result: Promise<unknown> | undefined;
      expect(() => (result = call()), name).not.toThrow();
      await expect(result, name).rejects.toBeInstanceOf(DisposedError);
      await expect(result, name).rejects.toMatchObject({ code: 'ERR_DISPOSED' });
    }
    for (const [name, call] of [['tokenize', () => m.tokenize('x')], ['weights', () => m.weights()]] as const) {
      expect(call, name).toThrow(DisposedError);
    }
    // What was read at load stays readable.
    expect(m.info.family).toBe('sd1');
  });

  it('dispose right after an image-to-image call, while its init image is being resized: the job still completes', async () => {
    const m = await loadModel(path, cpu);
    const job = outcome(m.generate({ prompt: 'x', initImage, width: 96, height: 96, strength: 0.5, steps: 2, seed: 1 }));
    await m.dispose();
    const r = await job;
    expect('value' in r && r.value.images[0]).toMatchObject({ width: 96, height: 96 });
  });

  it('await using: leaving the block waits for the job, then the model is disposed', async () => {
    let ref: Model | undefined;
    let settled = false;
    let job: Promise<unknown> | undefined;
    {
      await using m = await loadModel(path, cpu);
      ref = m;
      job = m.generate({ prompt: 'x', ...small, seed: 1 }).then((r) => ((settled = true), r));
    }
    expect(settled).toBe(true);
    await expect(job).resolves.toMatchObject({ seed: 1 });
    await expect(ref!.generate({ prompt: 'x' })).rejects.toThrow(DisposedError);
  });

  it('dispose during a job the engine refuses (ResourceError): the rejection comes first, then disposal', async () => {
    const m = await loadModel(path, cpu);
    // An untiled VAE encode of a 4096² init image is over the engine's size limit.
    const huge = { width: 4096, height: 4096, channels: 3 as const, data: new Uint8Array(4096 * 4096 * 3) };
    const log: string[] = [];
    const failed = outcome(m.generate({ prompt: 'x', initImage: huge, steps: 1, vaeTiling: false })).then((o) => (log.push('job'), o));
    await m.dispose().then(() => log.push('disposed'));
    expect(log).toEqual(['job', 'disposed']);
    expect((await failed) as { error: unknown }).toMatchObject({ error: { name: 'ResourceError', code: 'ERR_RESOURCE' } });
  });
});

describe('progress callbacks (28)', () => {
  it('one that throws cancels the job and rejects with what it threw; no calls after', async () => {
    const boom = new Error('boom');
    let calls = 0;
    let settled = false;
    const p = model.generate({ prompt: 'x', ...large, steps: 5, seed: 1, onProgress: () => {
      calls++;
      expect(settled).toBe(false);
      throw boom;
    } });
    const err = await p.then(() => undefined, (e: unknown) => e);
    settled = true;
    expect(err).toBe(boom);
    expect(calls).toBe(1);
    await new Promise((r) => setTimeout(r, 50));
    expect(calls).toBe(1);
  });

  it('a slow one (30 ms of blocking per step) does not change the output; every call comes before the promise settles', async () => {
    const settings = { prompt: 'a slow boat', ...small, steps: 5, seed: 8 } as const;
    const quick = await model.generate(settings);
    let settled = false;
    const steps: number[] = [];
    const slow = await model.generate({
      ...settings,
      onProgress: (e) => {
        expect(settled).toBe(false);
        const until = performance.now() + 30;
        while (performance.now() < until);
        steps.push(e.step);
      },
    });
    settled = true;
    expect(steps).toEqual([1, 2, 3, 4, 5]);
    expect(same(bytes(slow), bytes(quick))).toBe(true);
  });
});

describe('memory over many generations (26, 27)', () => {
  /** A real gc: from --expose-gc if the fork has it, else enabled at run time. */
  function collector(): () => void {
    const own = (globalThis as { gc?: () => void }).gc;
    if (own) return own;
    setFlagsFromString('--expose-gc');
    return runInNewContext('gc') as () => void;
  }
  const mb = (n: number) => (n / 2 ** 20).toFixed(1);

  it('100 sequential generations, then 30 aborted mid-sampling: RSS grows under 5% after a warm-up', async () => {
    const gc = collector();
    const settings = { prompt: 'a lighthouse', width: 32, height: 32, steps: 1, seed: 1 } as const;
    const measure = () => {
      gc();
      gc();
      return process.memoryUsage();
    };
    const first = await model.generate(settings);
    for (let i = 0; i < 10; i++) await model.generate({ ...settings, seed: i });
    const before = measure();
    const t0 = performance.now();
    for (let i = 0; i < 100; i++) {
      const r = await model.generate({ ...settings, seed: i % 10 });
      if (i % 10 === 1 && i < 11) expect(same(bytes(r), bytes(first))).toBe(true);
    }
    const perGeneration = (performance.now() - t0) / 100;
    const after = measure();

    for (let i = 0; i < 30; i++) {
      const controller = new AbortController();
      const p = model.generate({ ...settings, steps: 4, seed: i, signal: controller.signal, onProgress: () => controller.abort() });
      await expect(p).rejects.toBeInstanceOf(AbortError);
    }
    const afterAborts = measure();
    const growth = (after.rss - before.rss) / before.rss;
    const abortGrowth = (afterAborts.rss - before.rss) / before.rss;
    console.log(
      `leak check: ${perGeneration.toFixed(1)} ms per generation; RSS ${mb(before.rss)} MiB after warm-up, ` +
        `${mb(after.rss)} MiB after 100 generations (${(growth * 100).toFixed(2)}%), ${mb(afterAborts.rss)} MiB after 30 aborted ` +
        `(${(abortGrowth * 100).toFixed(2)}%); JS heap ${mb(before.heapUsed)} → ${mb(after.heapUsed)} → ${mb(afterAborts.heapUsed)} MiB; ` +
        `external ${mb(before.external)} → ${mb(after.external)} → ${mb(afterAborts.external)} MiB`,
    );
    expect(growth).toBeLessThan(0.05);
    expect(abortGrowth).toBeLessThan(0.05);
  }, 300_000);
});

describe('teardown mid-generation (27, 29)', () => {
  const root = resolve(import.meta.dirname, '..');
  const entry = resolve(root, 'dist', 'index.js');
  const runNode = (source: string) =>
    spawnSync(process.execPath, ['--expose-gc', '--input-type=module', '-e', source], { cwd: root, encoding: 'utf8', timeout: 120_000 });
  const load = `
    import { loadModel } from ${JSON.stringify(entry)};
    const model = await loadModel(${JSON.stringify(path)}, { device: 'cpu', threads: 1 });
    const job = { prompt: 'x', width: 256, height: 256, steps: 20, seed: 1 };
  `;

  it('process.exit() from onProgress exits with its code, no crash (repeated: a race)', () => {
    for (let i = 0; i < 4; i++) {
      const r = runNode(`${load} model.generate({ ...job, onProgress: () => process.exit(7) });`);
      expect(r.stderr).not.toMatch(/Abort|Segmentation|terminate called/);
      expect(r.signal).toBeNull();
      expect(r.status).toBe(7);
    }
  });

  it('worker.terminate() during a generation leaves the main thread able to generate', () => {
    const r = runNode(`
      import { Worker } from 'node:worker_threads';
      const src = ${JSON.stringify(`${load}
        const { parentPort } = await import('node:worker_threads');
        model.generate({ ...job, onProgress: (p) => parentPort.postMessage(p.step) });`)};
      for (let round = 0; round < 3; round++) {
        const w = new Worker(src, { eval: true, type: 'module' });
        await new Promise((res, rej) => { w.once('message', res); w.once('error', rej); });
        await w.terminate();
      }
      ${load}
      const r = await model.generate({ ...job, width: 32, height: 32, steps: 1 });
      console.log('main alive', r.images[0].width);`);
    expect(r.stderr).not.toMatch(/Abort|Segmentation|terminate called/);
    expect(r.signal).toBeNull();
    expect(r.stdout).toContain('main alive 32');
    expect(r.status).toBe(0);
  });

  // HOSTILE-INPUTS 32: the worker's environment is torn down while its job still reports progress.
  for (const [how, end] of [
    ['throws', "throw new Error('worker gives up')"],
    ['calls process.exit()', 'process.exit(3)'],
    ['throws from onProgress', null],
  ] as const) {
    it(`a worker that ${how} while its job runs leaves the main thread able to generate (repeated: a race)`, () => {
      const work = end
        ? `model.generate({ ...job, onProgress: (p) => { if (p.step === 1) setTimeout(() => { ${end}; }, 5 * n); } });`
        : `model.generate({ ...job, onProgress: () => { setTimeout(() => { throw new Error('late'); }, 5 * n); } });`;
      const r = runNode(`
        import { Worker } from 'node:worker_threads';
        for (let n = 0; n < 6; n++) {
          const src = 'const n = ' + n + ';' + ${JSON.stringify(`${load} ${work}`)};
          const w = new Worker(src, { eval: true, type: 'module' });
          w.on('error', () => {});
          await new Promise((res) => w.once('exit', res));
        }
        ${load}
        const r = await model.generate({ ...job, width: 32, height: 32, steps: 1 });
        console.log('main alive', r.images[0].width);`);
      expect(r.stderr).not.toMatch(/Abort|Segmentation|terminate called/);
      expect(r.signal).toBeNull();
      expect(r.stdout).toContain('main alive 32');
      expect(r.status).toBe(0);
    }, 300_000);
  }

  it('dropping every reference to the model mid-job: the job settles, no use-after-free', () => {
    // The model lives in a variable of its own only, so nothing but the job holds it after `m = null`.
    const r = runNode(`
      import { loadModel } from ${JSON.stringify(entry)};
      let m = await loadModel(${JSON.stringify(path)}, { device: 'cpu', threads: 1 });
      const done = m.generate({ prompt: 'x', width: 64, height: 64, steps: 3, seed: 1 }).then((r) => r.images[0].width);
      m = null;
      globalThis.gc();
      await new Promise((r) => setTimeout(r, 10));
      globalThis.gc();
      console.log('generated', await done);`);
    expect(r.stderr).not.toMatch(/Abort|Segmentation|terminate called/);
    expect(r.signal).toBeNull();
    expect(r.stdout).toContain('generated 64');
  });
});
