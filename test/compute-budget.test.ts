// One process-wide CPU budget: models generating at once share the cores compute by compute
// (native/engine/pipeline/cpu_budget.h). Both finish with the images they make alone, and a
// job waiting for the budget stops promptly when cancelled.
import { mkdtempSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { AbortError, loadModel, type Model } from '../lib/index.js';
// @ts-expect-error: plain JavaScript module with JSDoc types
import { generateModel } from '../scripts/generate-model.mjs';

const dir = mkdtempSync(join(tmpdir(), 'sdnode-budget-'));
// Every model claims all cores, as the default does: without a shared budget two jobs would
// run twice as many threads as there are cores.
const cpu = { device: 'cpu', threads: availableParallelism() } as const;
let a: Model;
let b: Model;

beforeAll(async () => {
  const path = join(dir, 'tiny.safetensors');
  await generateModel({ out: path, preset: 'tiny', dtype: 'f16', seed: 5 });
  a = await loadModel(path, cpu);
  b = await loadModel(path, cpu);
}, 60_000);

afterAll(async () => {
  await a?.dispose();
  await b?.dispose();
});

const settings = (seed: number) => ({ prompt: 'a lovely cat', width: 64, height: 64, steps: 3, seed });

describe('compute budget', () => {
  it('two models generating at once both give the images they give one after the other', async () => {
    const first = await a.generate(settings(1));
    const second = await b.generate(settings(2));
    const [x, y] = await Promise.all([a.generate(settings(1)), b.generate(settings(2))]);
    expect(Buffer.compare(x.images[0]!.data, first.images[0]!.data)).toBe(0);
    expect(Buffer.compare(y.images[0]!.data, second.images[0]!.data)).toBe(0);
    expect(Buffer.compare(x.images[0]!.data, y.images[0]!.data)).not.toBe(0);  // two different seeds
  }, 60_000);

  it('a job waiting for the budget rejects with AbortError promptly when aborted', async () => {
    // a's decode at 512² is one long CPU compute holding every thread of the budget; b's job
    // starts once a is in it and waits for the budget (its first compute, the text encoder).
    let aDone = false;
    let inDecode!: () => void;
    const decoding = new Promise<void>((resolve) => (inDecode = resolve));
    const running = a
      .generate({ ...settings(3), width: 512, height: 512, steps: 1, vaeTiling: false, onProgress: () => inDecode() })
      .finally(() => (aDone = true));
    await decoding;
    const controller = new AbortController();
    const waiting = b.generate({ ...settings(4), signal: controller.signal });
    await new Promise((resolve) => setTimeout(resolve, 100));
    const abortedAt = performance.now();
    controller.abort();
    await expect(waiting).rejects.toBeInstanceOf(AbortError);
    const latency = performance.now() - abortedAt;
    // Without a cancellable wait the job would reject only after a's decode (seconds).
    expect(aDone).toBe(false);
    expect(latency).toBeLessThan(1000);
    // The budget is whole again: b runs, then a finishes.
    await expect(b.generate(settings(4))).resolves.toMatchObject({ images: [{ width: 64, height: 64 }] });
    await running;
  }, 120_000);

  it('dispose of a model whose job waits for the budget settles once that job has run', async () => {
    let inDecode!: () => void;
    const decoding = new Promise<void>((resolve) => (inDecode = resolve));
    const running = a.generate({ ...settings(5), width: 512, height: 512, steps: 1, vaeTiling: false, onProgress: () => inDecode() });
    await decoding;
    const path = join(dir, 'tiny.safetensors');
    const c = await loadModel(path, cpu);
    const waiting = c.generate(settings(6));
    const disposed = c.dispose();
    await expect(waiting).resolves.toMatchObject({ images: [{ width: 64, height: 64 }] });
    await disposed;
    await running;
  }, 120_000);
});
