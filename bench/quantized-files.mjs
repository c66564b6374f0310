#!/usr/bin/env node
// Quantized files: converts the full-size SD1.5-shaped random model to q8_0 and q4_0 GGUF with
// convertModel (and, with --peer, with stable-diffusion.cpp's `-M convert`), then prints each
// file's size as a fraction of the f16 file, each tool's image from each file against the same
// tool's image from the f16 file (PSNR), and the sampling time per step.
//   node bench/quantized-files.mjs [--model FILE] [--peer PATH/sd-cli] [--types q8_0,q4_0] [--size 256] [--steps 2]
// Converted files are written next to the model (reused when present: delete them to convert again).
import { existsSync, statSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { parseArgs } from 'node:util';

import { convertModel, loadModel, readImage } from '../dist/index.js';
import { imageDiff, runPeer, timedRun } from '../scripts/compare-peer.mjs';

const { values } = parseArgs({
  options: {
    model: { type: 'string', default: join(homedir(), '.cache', 'sdnode', 'bench', 'sd15-f16.safetensors') },
    peer: { type: 'string' },
    types: { type: 'string', default: 'q8_0,q4_0' },
    size: { type: 'string', default: '256' },
    steps: { type: 'string', default: '2' },
    threads: { type: 'string', default: '2' },
  },
});
const size = Number(values.size), steps = Number(values.steps), threads = Number(values.threads);
const settings = {
  prompt: 'a lovely cat', negativePrompt: '', width: size, height: size, steps, cfgScale: 7,
  sampler: 'euler_a', scheduler: 'discrete', seed: 42, rng: 'cuda',
};
const stem = join(dirname(values.model), basename(values.model).replace(/\.[^.]+$/, ''));
const mib = (n) => `${(n / 2 ** 20).toFixed(0)} MiB`;
const fileSize = (p) => statSync(p).size;

async function ours(path) {
  const model = await loadModel(path, { device: 'cpu', threads });
  try {
    const r = await model.generate(settings);
    return { image: r.images[0], msPerStep: r.timings.samplingMs / steps };
  } finally {
    await model.dispose();
  }
}

async function peers(path, tag) {
  const out = join(tmpdir(), `sdnode-qfiles-peer-${tag}.png`);
  const r = await runPeer(values.peer, { ...settings, model: path, threads, peerArgs: ['--eager-load'] }, out);
  return { image: await readImage(out), msPerStep: r.samplingMs / steps };
}

const f16Size = fileSize(values.model);
console.log(`${values.model}: ${mib(f16Size)}; images ${size}², ${steps} steps euler_a, ${threads} threads\n`);
const rows = [];
const oursF16 = await ours(values.model);
const peerF16 = values.peer ? await peers(values.model, 'f16') : undefined;
rows.push({ tool: 'sdnode', type: 'f16', size: f16Size, psnr: Infinity, msPerStep: oursF16.msPerStep });
if (peerF16) rows.push({ tool: 'stable-diffusion.cpp', type: 'f16', size: f16Size, psnr: Infinity, msPerStep: peerF16.msPerStep });

for (const type of values.types.split(',')) {
  const mine = `${stem}-${type}.gguf`;
  if (!existsSync(mine)) await convertModel(values.model, mine, { weightType: type });
  const q = await ours(mine);
  rows.push({ tool: 'sdnode', type, size: fileSize(mine), psnr: imageDiff(q.image, oursF16.image).psnr, msPerStep: q.msPerStep });
  if (!values.peer) continue;
  const theirs = `${stem}-${type}-peer.gguf`;
  if (!existsSync(theirs)) await timedRun(values.peer, ['-M', 'convert', '-m', values.model, '-o', theirs, '--type', type]);
  const p = await peers(theirs, type);
  rows.push({ tool: 'stable-diffusion.cpp', type, size: fileSize(theirs), psnr: imageDiff(p.image, peerF16.image).psnr, msPerStep: p.msPerStep });
}

console.log('| tool | type | file | × f16 file | image PSNR vs its f16 image | sampling s/step |');
console.log('|---|---|---|---|---|---|');
for (const r of rows) {
  console.log(`| ${r.tool} | ${r.type} | ${mib(r.size)} | ${(r.size / f16Size).toFixed(3)} | ${r.psnr === Infinity ? '—' : `${r.psnr.toFixed(2)} dB`} | ${(r.msPerStep / 1000).toFixed(2)} |`);
}
