#!/usr/bin/env node
// Small jobs on every core against one thread, on a quiet machine and beside a busy process.
// ggml's CPU threads meet at a spinning barrier after every graph node; a graph of small nodes
// (the tiny model's, a small image's) gains nothing from a second thread and, when another
// process holds a core, waits at each barrier for a descheduled thread. The engine gives such
// graphs one thread whatever `threads` allows (native/engine/pipeline/graph_work.h): the goal is
// that `threads: all` is never slower than `threads: 1` here, busy or not.
// Run after `npm install`: `node bench/small-graphs.mjs`. Options: --model (default: the tiny
// preset, written to the cache folder if missing), --size (64), --steps (2), --jobs (5 per row).
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { availableParallelism, homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';

import { loadModel } from '../dist/index.js';

const { values } = parseArgs({
  options: {
    model: { type: 'string', default: join(homedir(), '.cache', 'sdnode', 'bench', 'tiny-f16.safetensors') },
    size: { type: 'string', default: '64' },
    steps: { type: 'string', default: '2' },
    jobs: { type: 'string', default: '5' },
  },
});
if (!existsSync(values.model)) {
  mkdirSync(dirname(values.model), { recursive: true });
  const { generateModel } = await import('../scripts/generate-model.mjs');
  await generateModel({ out: values.model, preset: 'tiny', dtype: 'f16', seed: 1 });
}
const side = Number(values.size), jobs = Number(values.jobs), all = availableParallelism();
const job = { prompt: 'a lovely cat', width: side, height: side, steps: Number(values.steps), seed: 1 };

async function msPerJob(threads) {
  const model = await loadModel(values.model, { device: 'cpu', threads });
  try {
    await model.generate(job);  // buffers planned, pages touched
    const start = performance.now();
    for (let i = 0; i < jobs; i++) await model.generate(job);
    return (performance.now() - start) / jobs;
  } finally {
    await model.dispose();
  }
}

console.log(`${values.model}, ${side}², ${job.steps} steps, ${jobs} jobs a row, ${all} cores\n`);
console.log('| machine | threads: 1 ms/job | threads: ' + all + ' ms/job | ratio |');
console.log('|---|---|---|---|');
for (const busy of [false, true]) {
  // A process spinning on one core, as another service on the same machine would.
  const spinner = busy ? spawn(process.execPath, ['-e', 'for (;;) {}'], { stdio: 'ignore' }) : undefined;
  try {
    const one = await msPerJob(1), many = await msPerJob(all);
    console.log(`| ${busy ? 'one core busy' : 'quiet'} | ${one.toFixed(0)} | ${many.toFixed(0)} | ${(many / one).toFixed(2)} |`);
  } finally {
    spinner?.kill();
  }
}
