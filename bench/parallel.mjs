#!/usr/bin/env node
// Two models generating at once against one after the other, on the CPU. Every model's jobs
// take their threads from one process-wide budget (the cores this process may use), so two
// jobs share the cores compute by compute instead of each starting a thread per core: the
// goal is that both at once take no longer than about the two in turn (ratio ≤ 1.1).
// Run after `npm install`: `node bench/parallel.mjs`. Options: --size (default 256: 10–17 s a
// generate on two busy cores with the default model), --steps (default 8), --threads
// (per model; default all cores), --model (default: the tiny preset, written to the cache
// folder if missing), --runs (default 2: each comparison made this many times).
import { existsSync, mkdirSync } from 'node:fs';
import { availableParallelism, homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';

import { loadModel } from '../dist/index.js';

const { values } = parseArgs({
  options: {
    model: { type: 'string', default: join(homedir(), '.cache', 'sdnode', 'bench', 'tiny-f16.safetensors') },
    size: { type: 'string', default: '256' },
    steps: { type: 'string', default: '8' },
    threads: { type: 'string', default: String(availableParallelism()) },
    runs: { type: 'string', default: '2' },
  },
});
const size = Number(values.size), threads = Number(values.threads);

if (!existsSync(values.model)) {
  mkdirSync(dirname(values.model), { recursive: true });
  const { generateModel } = await import('../scripts/generate-model.mjs');
  await generateModel({ out: values.model, preset: 'tiny', dtype: 'f16', seed: 1 });
}

// Two models: the same file loaded twice is two sets of weights and two runtimes, as two
// different models would be.
const models = [await loadModel(values.model, { device: 'cpu', threads }), await loadModel(values.model, { device: 'cpu', threads })];
const settings = (seed) => ({ prompt: 'a lovely cat', width: size, height: size, steps: Number(values.steps), seed });

async function timed(fn) {
  const t0 = performance.now();
  const result = await fn();
  return { ms: performance.now() - t0, result };
}

console.log(`two models in parallel: ${values.model}, ${size}², ${values.steps} steps, ${threads} threads each, ${availableParallelism()} cores`);
await models[0].generate({ ...settings(1), steps: 1 });  // warm-up: vocabulary, first allocations
await models[1].generate({ ...settings(1), steps: 1 });
console.log('  run  first alone  second alone  sequential  parallel (both done)  parallel / sequential  same images');
for (let run = 1; run <= Number(values.runs); run++) {
  const a = await timed(() => models[0].generate(settings(1)));
  const b = await timed(() => models[1].generate(settings(2)));
  const both = await timed(() => Promise.all([models[0].generate(settings(1)), models[1].generate(settings(2))]));
  const sequential = a.ms + b.ms;
  const same = Buffer.compare(a.result.images[0].data, both.result[0].images[0].data) === 0 &&
    Buffer.compare(b.result.images[0].data, both.result[1].images[0].data) === 0;
  const s = (ms) => `${(ms / 1000).toFixed(1)} s`;
  console.log(`${String(run).padStart(5)}  ${s(a.ms).padStart(11)}  ${s(b.ms).padStart(12)}  ${s(sequential).padStart(10)}  ${s(both.ms).padStart(20)}  ${(both.ms / sequential).toFixed(2).padStart(21)}  ${same ? 'yes' : 'NO'}`);
}
await Promise.all(models.map((m) => m.dispose()));
