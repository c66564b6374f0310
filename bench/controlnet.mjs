#!/usr/bin/env node
// ControlNet's extra cost per sampler step: sampling time with one ControlNet over sampling
// time without, on the full-size random SD1.5 and ControlNet-v1-1-shaped ControlNet from our
// generator (the ControlNet written once to ~/.cache/sdnode/bench), txt2img with euler and
// guidance (each step evaluates both for the conditional and unconditional batch entries).
// With --peer, stable-diffusion.cpp's ratio at the same settings beside it (its log's
// "sampling completed" times). The hint is the Canny edges of a photo of ../shared/data. On a
// machine shared with other jobs, --repeats N alternates plain and guided runs N times and
// takes each one's fastest, so that a burst of load in one run does not decide the ratio; and
// sdnode's ratio is also given from inside the guided job alone (sampling over sampling less
// timings.controlNetMs: the ControlNet's share measured under the same load as the UNet's).
//   node bench/controlnet.mjs [--size 512] [--steps 1] [--threads 2] [--repeats 1] [--peer PATH/sd-cli] [--model FILE] [--controlnet FILE]
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
    steps: { type: 'string', default: '1' },
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
let inJob = Infinity;
const per = (ms) => (ms / steps / 1000).toFixed(1);
/** Fastest sampling times of `plain` and `guided`, run alternately `repeats` times. */
async function fastest(plain, guided) {
  let a = Infinity, b = Infinity;
  for (let r = 0; r < repeats; r++) {
    a = Math.min(a, await plain());
    b = Math.min(b, await guided());
    console.log(`  run ${r + 1}: plain ${per(a)} s, guided ${per(b)} s a step so far`);
  }
  return [a, b];
}
const [plain, guided] = await fastest(
  async () => (await model.generate(job)).timings.samplingMs,
  async () => {
    const { timings } = await model.generate({ ...job, controlNets: [{ model: controlNet, image: hint }] });
    inJob = Math.min(inJob, timings.samplingMs / (timings.samplingMs - timings.controlNetMs));
    return timings.samplingMs;
  },
);
console.log(`sdnode: ${per(plain)} s a step plain, ${per(guided)} s with the ControlNet: ×${(guided / plain).toFixed(3)}; inside the guided job: ×${inJob.toFixed(3)}`);
await model.dispose();

if (values.peer) {
  const peerArgs = ['--control-net', cnPath, '--control-image', hintPath, '--control-strength', '1'];
  const [p0, p1] = await fastest(
    async () => (await runPeer(values.peer, { ...job, model: modelPath, threads }, join(dir, 'peer-plain.png'))).samplingMs,
    async () => (await runPeer(values.peer, { ...job, model: modelPath, threads, peerArgs }, join(dir, 'peer-cn.png'))).samplingMs,
  );
  console.log(`stable-diffusion.cpp: ${per(p0)} s a step plain, ${per(p1)} s with the ControlNet: ×${(p1 / p0).toFixed(3)}`);
}
