#!/usr/bin/env node
// ControlNet's extra cost per sampler step: the time a step takes with one ControlNet over the
// time it takes without, on the full-size random SD1.5 and ControlNet-v1-1-shaped ControlNet from
// our generator (the ControlNet written once to ~/.cache/sdnode/bench), txt2img with euler and
// guidance (each step evaluates both for the conditional and unconditional batch entries).
// A step's time is the marginal one: (sampling time of `--steps` steps − that of 1 step) /
// (steps − 1), so what a job does once (graphs built and allocated, the hint encoded) is not
// counted as a step's. With --peer, stable-diffusion.cpp's ratio measured the same way (its log's
// "sampling completed" times). The hint is the Canny edges of a photo of ../shared/data. On a
// machine shared with other jobs, --repeats N alternates plain and guided runs N times and takes
// each one's fastest, so that a burst of load in one run does not decide the ratio.
//   node bench/controlnet.mjs [--size 512] [--steps 3] [--threads 2] [--repeats 1] [--peer PATH/sd-cli] [--model FILE] [--controlnet FILE]
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';


import { loadModel, writeImage } from '../dist/index.js';
import { runPeer } from '../scripts/compare-peer.mjs';
import { benchCache, benchControlNet, cannyHint } from './controlnet-common.mjs';

const { values } = parseArgs({
  options: {
    size: { type: 'string', default: '512' },
    steps: { type: 'string', default: '3' },
    repeats: { type: 'string', default: '1' },
    threads: { type: 'string', default: '2' },
    peer: { type: 'string' },
    model: { type: 'string' },
    controlnet: { type: 'string' },
  },
});
const modelPath = values.model ?? join(benchCache, 'sd15-f16.safetensors');
const cnPath = await benchControlNet(values.controlnet);
const side = Number(values.size), steps = Number(values.steps), threads = Number(values.threads), repeats = Number(values.repeats);
const dir = mkdtempSync(join(tmpdir(), 'sdnode-bench-controlnet-'));
const hint = await cannyHint('chelsea.png', side);
const hintPath = join(dir, 'hint.png');
await writeImage(hintPath, hint);
const job = { prompt: 'a lovely cat', negativePrompt: '', width: side, height: side, steps, cfgScale: 7, sampler: 'euler', scheduler: 'discrete', seed: 42, rng: 'cuda' };
console.log(`${side}², ${steps} step(s) euler with guidance, ${threads} threads`);

const model = await loadModel(modelPath, { device: 'cpu', threads });
const controlNet = await model.loadControlNet(cnPath);
// Warm-up: the first job pages the memory-mapped weights in.
await model.generate({ ...job, steps: 1 });
const per = (ms) => (ms / 1000).toFixed(2);
if (!(steps >= 2)) throw new RangeError('--steps must be at least 2 (a step\'s time is the difference to a 1-step job)');
/** Fastest marginal step times of `plain` and `guided` (each given a step count), run alternately `repeats` times. */
async function fastest(plain, guided) {
  let a = Infinity, b = Infinity;
  for (let r = 0; r < repeats; r++) {
    a = Math.min(a, ((await plain(steps)) - (await plain(1))) / (steps - 1));
    b = Math.min(b, ((await guided(steps)) - (await guided(1))) / (steps - 1));
    console.log(`  run ${r + 1}: plain ${per(a)} s, guided ${per(b)} s a step so far`);
  }
  return [a, b];
}
const [plain, guided] = await fastest(
  async (n) => (await model.generate({ ...job, steps: n })).timings.samplingMs,
  async (n) => (await model.generate({ ...job, steps: n, controlNets: [{ model: controlNet, image: hint }] })).timings.samplingMs,
);
console.log(`sdnode: ${per(plain)} s a step plain, ${per(guided)} s with the ControlNet: ×${(guided / plain).toFixed(3)}`);
await model.dispose();

if (values.peer) {
  const peerArgs = ['--control-net', cnPath, '--control-image', hintPath, '--control-strength', '1'];
  const [p0, p1] = await fastest(
    async (n) => (await runPeer(values.peer, { ...job, steps: n, model: modelPath, threads }, join(dir, 'peer-plain.png'))).samplingMs,
    async (n) => (await runPeer(values.peer, { ...job, steps: n, model: modelPath, threads, peerArgs }, join(dir, 'peer-cn.png'))).samplingMs,
  );
  console.log(`stable-diffusion.cpp: ${per(p0)} s a step plain, ${per(p1)} s with the ControlNet: ×${(p1 / p0).toFixed(3)}`);
}
