#!/usr/bin/env node
// Text-to-image benchmark on the full-size SD1.5-shaped random-weight model: time per sampler
// step, stage timings, peak RSS, event-loop lag while generating.
// Run after `npm install`: `node bench/txt2img.mjs`. Options: --model (default
// ~/.cache/sdnode/bench/sd15-f16.safetensors, written if missing), --size, --steps, --sampler,
// --cfg, --seed, --threads, --device, --weight-type (quantize on load, e.g. q8_0), --out PNG, and --peer PATH: a stable-diffusion.cpp `sd-cli`
// binary (built by you, outside this repository) to run at the same settings, after ours, for
// its times and the PSNR between the two images (--peer-args: extra arguments for it).
import { existsSync, mkdirSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { parseArgs } from 'node:util';

import { loadModel, readImage, systemInfo, writeImage } from '../dist/index.js';
import { imageDiff, runPeer } from '../scripts/compare-peer.mjs';

const { values } = parseArgs({
  options: {
    model: { type: 'string', default: join(homedir(), '.cache', 'sdnode', 'bench', 'sd15-f16.safetensors') },
    size: { type: 'string', default: '256' },
    steps: { type: 'string', default: '4' },
    sampler: { type: 'string', default: 'euler_a' },
    cfg: { type: 'string', default: '7' },
    seed: { type: 'string', default: '42' },
    threads: { type: 'string', default: '2' },
    device: { type: 'string', default: 'cpu' },
    'weight-type': { type: 'string' },
    out: { type: 'string', default: join(tmpdir(), 'sdnode-txt2img.png') },
    peer: { type: 'string' },
    'peer-args': { type: 'string', default: '--eager-load' },  // load weights before timing sampling
  },
});
const size = Number(values.size), steps = Number(values.steps), threads = Number(values.threads);
const settings = {
  prompt: 'a lovely cat', negativePrompt: '', width: size, height: size, steps, cfgScale: Number(values.cfg),
  sampler: values.sampler, scheduler: 'discrete', seed: Number(values.seed), rng: 'cuda',
};

if (!existsSync(values.model)) {
  console.log(`writing ${values.model} (SD1.5 shape, random weights)…`);
  mkdirSync(dirname(values.model), { recursive: true });
  const { generateModel } = await import('../scripts/generate-model.mjs');
  await generateModel({ out: values.model, preset: 'sd15', dtype: 'f16', seed: 1 });
}

const info = systemInfo();
console.log(`sdnode txt2img bench: ggml ${info.ggmlVersion}, device ${values.device}, ${threads} threads${values['weight-type'] ? `, weights ${values['weight-type']} on load` : ''}`);
console.log(`${values.model}: ${size}x${size}, ${steps} steps ${values.sampler}, cfg ${values.cfg}, seed ${values.seed}\n`);

const t0 = performance.now();
const model = await loadModel(values.model, { device: values.device, threads, ...(values['weight-type'] ? { weightType: values['weight-type'] } : {}) });
const loadMs = performance.now() - t0;
// The first tokenize loads the CLIP vocabulary synchronously, on this thread: timed on its own.
const t2 = performance.now();
model.tokenize(settings.prompt);
const tokenizerMs = performance.now() - t2;
const stepMs = [];
let last = 0;
const lag = monitorEventLoopDelay({ resolution: 1 });
lag.enable();
const t1 = performance.now();
const { images, timings } = await model.generate({
  ...settings,
  onProgress: ({ elapsedMs }) => { stepMs.push(elapsedMs - last); last = elapsedMs; },
});
const totalMs = performance.now() - t1;
lag.disable();
await model.dispose();
await writeImage(values.out, images[0]);
const ours = { ...timings, totalMs, loadMs, peakRss: process.resourceUsage().maxRSS * 1024 };

const rows = [['sdnode', ours]];
let diff;
if (values.peer) {
  const out = values.out.replace(/(\.png)?$/, '-peer.png');
  const peer = await runPeer(values.peer, { ...settings, model: values.model, threads, peerArgs: values['peer-args'].split(' ').filter(Boolean) }, out);
  rows.push(['peer', { ...peer, totalMs: peer.ms }]);
  diff = imageDiff(images[0], await readImage(out));
}

const s = (ms) => (Number.isFinite(ms) ? (ms / 1000).toFixed(2) : '-').padStart(8);
const mib = (b) => (Number.isFinite(b) ? `${(b / 2 ** 20).toFixed(0)} MiB` : '-').padStart(10);
console.log('          s/step  text enc  sampling    decode  total (wall)   peak RSS');
for (const [name, r] of rows) {
  console.log(`${name.padEnd(8)}${s(r.samplingMs / steps)}${s(r.textEncodeMs)}  ${s(r.samplingMs)}  ${s(r.decodeMs)}      ${s(r.totalMs)}${mib(r.peakRss)}`);
}
const sorted = stepMs.slice(stepMs.length > 1 ? 1 : 0).sort((a, b) => a - b);  // the first step also builds the graph
console.log(`\nsdnode: load ${s(loadMs).trim()} s, first tokenize (JS thread) ${tokenizerMs.toFixed(0)} ms, step times ${stepMs.map((m) => (m / 1000).toFixed(2)).join(' ')} s ` +
  `(median after the first ${(sorted[Math.floor(sorted.length / 2)] / 1000).toFixed(2)}), event-loop lag max ${(lag.max / 1e6).toFixed(1)} ms, p99 ${(lag.percentile(99) / 1e6).toFixed(1)} ms`);
console.log(`image: ${values.out}`);
if (diff) console.log(`sdnode vs peer: PSNR ${diff.psnr.toFixed(2)} dB, max abs pixel diff ${diff.maxDiff}`);
