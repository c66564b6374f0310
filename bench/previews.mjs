#!/usr/bin/env node
// What live previews cost: sampling time of the full-size SD1.5-shaped random-weight model with
// no preview, 'latent2rgb' and 'tae' (a random-weight decoder of the real TAESD shape) at
// interval 1; the cost of one preview, measured in jobs on the tiny generated model at the same
// image size (its UNet steps take milliseconds, so a preview's cost stands out of the noise of a
// shared machine); and from the two the smallest previewInterval that keeps previews under 5%
// of sampling time. Run after `npm install`: `npm run bench:previews`.
// Options: --model (default ~/.cache/sdnode/bench/sd15-f16.safetensors, written if missing),
// --size, --steps, --threads, --device, --repeat (runs of each mode, alternating).
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

import { loadModel, systemInfo } from '../dist/index.js';

const here = dirname(fileURLToPath(import.meta.url));
const { values } = parseArgs({
  options: {
    model: { type: 'string', default: join(homedir(), '.cache', 'sdnode', 'bench', 'sd15-f16.safetensors') },
    size: { type: 'string', default: '256' },
    steps: { type: 'string', default: '2' },
    threads: { type: 'string', default: '2' },
    device: { type: 'string', default: 'cpu' },
    repeat: { type: 'string', default: '2' },
  },
});
const size = Number(values.size), steps = Number(values.steps), threads = Number(values.threads), repeat = Number(values.repeat);

const { generateModel } = await import('../scripts/generate-model.mjs');
if (!existsSync(values.model)) {
  console.log(`writing ${values.model} (SD1.5 shape, random weights)…`);
  mkdirSync(dirname(values.model), { recursive: true });
  await generateModel({ out: values.model, preset: 'sd15', dtype: 'f16', seed: 1 });
}

// A TAESD-shaped decoder (64 channels, 3 blocks × 3 upsampling stages, 4 latent channels) from the
// tests' generator, which is TypeScript: bundled to a temporary module with the dev build tool.
// Under node_modules so that the bundle's package imports resolve.
mkdirSync(resolve(here, '../node_modules/.cache'), { recursive: true });
const work = mkdtempSync(resolve(here, '../node_modules/.cache/sdnode-bench-previews-'));
const { build } = await import('tsup');
await build({
  entry: { 'tiny-tae': resolve(here, '../test/support/tiny-tae.ts'), 'torch-zip': resolve(here, '../test/support/torch-zip.ts') },
  format: ['esm'], outDir: work, config: false, dts: false, silent: true, splitting: false, target: 'node20',
});
const { tinyTaeDecoder } = await import(pathToFileURL(join(work, 'tiny-tae.js')).href);
const { writeTorchCheckpoint } = await import(pathToFileURL(join(work, 'torch-zip.js')).href);
const taePath = join(work, 'taesd_decoder.pth');
writeTorchCheckpoint(taePath, tinyTaeDecoder({ latentChannels: 4, width: 64, blocks: 3, stages: 3, pool: false }));

const info = systemInfo();
console.log(`sdnode previews bench: ggml ${info.ggmlVersion}, device ${values.device}, ${threads} threads`);
console.log(`${values.model}: ${size}x${size}, ${steps} steps euler_a, cfg 7; TAESD-shaped decoder, random weights; ${repeat} runs per mode\n`);

const modes = ['none', 'latent2rgb', 'tae'];
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const mean = (xs) => xs.reduce((a, b) => a + b, 0) / xs.length;

/** Runs each mode `repeat` times, alternating: sampling wall ms, process CPU ms, previews made. */
async function measure(model, settings, repeat) {
  const runs = Object.fromEntries(modes.map((m) => [m, []]));
  await model.generate({ ...settings, steps: 1, preview: 'tae', previewInterval: 1, onProgress: () => {} });  // warm-up
  for (let r = 0; r < repeat; r++) {
    for (const preview of modes) {
      let previews = 0;
      // Process CPU time as well as wall time: on a machine shared with other work, wall time
      // varies with their load far more than with a preview's cost.
      const cpu0 = process.cpuUsage();
      const { timings } = await model.generate({ ...settings, preview, previewInterval: 1, onProgress: (p) => { if (p.preview) previews++; } });
      const cpu = process.cpuUsage(cpu0);
      runs[preview].push({ wall: timings.samplingMs, cpu: (cpu.user + cpu.system) / 1000, previews });
    }
  }
  return runs;
}

function table(runs) {
  console.log('mode          sampling wall ms (runs)             process CPU ms (runs)               previews');
  for (const m of modes) {
    const list = (k) => runs[m].map((r) => r[k].toFixed(0)).join(', ');
    console.log(`${m.padEnd(12)}${mean(runs[m].map((r) => r.wall)).toFixed(0).padStart(8)}  (${list('wall')})`.padEnd(50) +
      `${mean(runs[m].map((r) => r.cpu)).toFixed(0).padStart(8)}  (${list('cpu')})`.padEnd(38) + String(runs[m][0].previews).padStart(6));
  }
}

// 1. The cost of one preview, in jobs on the tiny model at the same image size.
const tinyPath = join(work, 'tiny.safetensors');
await generateModel({ out: tinyPath, preset: 'tiny', dtype: 'f32', seed: 1 });
// One thread: the tiny UNet's many small ops do not then wait at thread barriers, which other
// processes' load stretches; a TAE decode on one thread is slower than on several (conservative).
const tiny = await loadModel({ model: tinyPath, tae: taePath }, { device: values.device, threads: 1 });
const tinySteps = 10;
const tinyRuns = await measure(tiny, { prompt: 'a lovely cat', width: size, height: size, steps: tinySteps, seed: 42, sampler: 'euler_a' }, 3);
await tiny.dispose();
console.log(`per-preview cost: tiny generated model, ${size}x${size}, ${tinySteps} steps, 1 thread, 3 runs per mode`);
table(tinyRuns);
// Per run pair (same repeat, adjacent in time): (mode − none) / previews; the median of those.
const cost = {};
for (const m of ['latent2rgb', 'tae']) {
  const per = (k) => median(tinyRuns[m].map((r, i) => (r[k] - tinyRuns.none[i][k]) / r.previews));
  cost[m] = { wall: per('wall'), cpu: per('cpu') };
  console.log(`${m}: ${cost[m].wall.toFixed(2)} ms wall, ${cost[m].cpu.toFixed(2)} ms CPU per preview`);
}

// 2. Sampling the SD1.5-shaped model with and without previews.
const model = await loadModel({ model: values.model, tae: taePath }, { device: values.device, threads });
const runs = await measure(model, { prompt: 'a lovely cat', width: size, height: size, steps, seed: 42, sampler: 'euler_a' }, repeat);
await model.dispose();
rmSync(work, { recursive: true, force: true });
console.log(`\nSD1.5 shape: ${size}x${size}, ${steps} steps, interval 1`);
table(runs);
// The fastest run's step: the largest share a preview can take.
const step = Math.min(...runs.none.map((r) => r.wall)) / steps;
console.log(`sampler step without previews: ${step.toFixed(0)} ms (fastest run; mean ${(mean(runs.none.map((r) => r.wall)) / steps).toFixed(0)} ms)`);

// 3. Share of sampling time at interval k: cost / (k · step), in wall time (the CPU columns
// also count text encoding and the VAE, so they serve only the per-preview differences).
console.log('');
for (const m of ['latent2rgb', 'tae']) {
  const share = (k) => (100 * Math.max(cost[m].wall, 0)) / (k * step);
  let k = 1;
  while (share(k) >= 5) k++;
  console.log(`${m}: ${cost[m].wall.toFixed(1)} ms per preview = ${share(1).toFixed(2)}% of a step at interval 1; under 5% from interval ${k} (${share(k).toFixed(2)}%)`);
}
