#!/usr/bin/env node
// Abort latency: how long after `controller.abort()` a running generate() rejects, by image
// size, on the tiny generated model (CPU). Each case aborts `--after` seconds after the call;
// the column "steps done" says where the job was (0: inside the first UNet step, which is where
// the largest single graph nodes — attention over the most tokens — run). A warm-up generate at
// the same size is not made: the first step builds and allocates its graph, as a user's would.
// Run after `npm install`: `node bench/abort-latency.mjs`. Options: --model (default: the tiny
// preset, written to the cache folder if missing), --sizes (default 256,1024,2048,4096),
// --after (seconds, comma-separated; default 2,8,20), --threads, --device.
import { existsSync, mkdirSync } from 'node:fs';
import { availableParallelism, homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';

import { AbortError, loadModel } from '../dist/index.js';

const { values } = parseArgs({
  options: {
    model: { type: 'string', default: join(homedir(), '.cache', 'sdnode', 'bench', 'tiny-f16.safetensors') },
    sizes: { type: 'string', default: '256,1024,2048,4096' },
    after: { type: 'string', default: '2,8,20' },
    threads: { type: 'string', default: String(availableParallelism()) },
    device: { type: 'string', default: 'cpu' },
  },
});
const sizes = values.sizes.split(',').map(Number);
const delays = values.after.split(',').map(Number);

if (!existsSync(values.model)) {
  mkdirSync(dirname(values.model), { recursive: true });
  const { generateModel } = await import('../scripts/generate-model.mjs');
  await generateModel({ out: values.model, preset: 'tiny', dtype: 'f16', seed: 1 });
}

const model = await loadModel(values.model, { device: values.device, threads: Number(values.threads) });
console.log(`abort latency: ${values.model}, device ${values.device}, ${values.threads} threads\n`);
console.log(' size  abort at  steps done  rejected after  peak RSS so far');
for (const size of sizes) {
  for (const after of delays) {
    const controller = new AbortController();
    let steps = 0;
    const job = model.generate({
      prompt: 'a lovely cat', width: size, height: size, steps: 20, seed: 1, signal: controller.signal,
      onProgress: (p) => { steps = p.step; },
    });
    let abortedAt = 0;
    let stepsAtAbort = 0;
    const timer = setTimeout(() => {
      stepsAtAbort = steps;
      abortedAt = performance.now();
      controller.abort();
    }, after * 1000);
    let outcome;
    try {
      await job;
      outcome = 'finished before the abort';
    } catch (error) {
      if (!(error instanceof AbortError)) outcome = `failed: ${error.code ?? ''} ${error.message}`;
      else outcome = `${((performance.now() - abortedAt) / 1000).toFixed(2)} s`;
    }
    clearTimeout(timer);
    const rss = `${(process.resourceUsage().maxRSS / 1024 ** 2).toFixed(2)} GiB`;
    console.log(`${String(size).padStart(5)}  ${`${after} s`.padStart(8)}  ${String(stepsAtAbort).padStart(10)}  ${outcome.padStart(14)}  ${rss.padStart(15)}`);
  }
}
await model.dispose();
