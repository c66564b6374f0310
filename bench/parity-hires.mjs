#!/usr/bin/env node
// Hires-fix parity with stable-diffusion.cpp: the same file, seed and settings through sdnode's
// generate({ hires }) and the peer's `sd-cli --hires` (first pass at --size, ×2, the second pass
// image-to-image at --strength); prints the PSNR between the two images. So that a second pass
// doing nothing cannot pass, it also prints, for each tool, how far its hires image is from its
// plain first-pass image enlarged to the same size (Lanczos).
//   node bench/parity-hires.mjs --peer PATH/sd-cli [--model FILE] [--size 256] [--steps 2] [--hires-steps 2]
//        [--strength 0.7] [--upscaler Latent] [--threads 2]
//   --upscaler takes the peer's names (Latent, Latent (bicubic), Lanczos, …).
import { mkdtempSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

import sharp from 'sharp';

import { loadModel, readImage, writeImage } from '../dist/index.js';
import { imageDiff, runPeer } from '../scripts/compare-peer.mjs';

const { values } = parseArgs({
  options: {
    peer: { type: 'string' },
    model: { type: 'string', default: join(homedir(), '.cache/sdnode/bench/sd15-f16.safetensors') },
    size: { type: 'string', default: '256' },
    steps: { type: 'string', default: '2' },
    'hires-steps': { type: 'string', default: '2' },
    strength: { type: 'string', default: '0.7' },
    upscaler: { type: 'string', default: 'Latent' },
    threads: { type: 'string', default: '2' },
  },
});
if (!values.peer) throw new Error('usage: node bench/parity-hires.mjs --peer PATH/sd-cli [--model FILE] [--size 256] [--steps 2]');
// The peer's upscaler names, as sdnode's option spells them.
const NAMES = {
  Latent: 'latent', 'Latent (nearest)': 'latent-nearest', 'Latent (nearest-exact)': 'latent-nearest-exact',
  'Latent (antialiased)': 'latent-antialiased', 'Latent (bicubic)': 'latent-bicubic',
  'Latent (bicubic antialiased)': 'latent-bicubic-antialiased', Lanczos: 'lanczos', Nearest: 'nearest',
};
const upscaler = NAMES[values.upscaler];
if (!upscaler) throw new Error(`--upscaler: one of ${Object.keys(NAMES).join(', ')}`);
const side = Number(values.size), threads = Number(values.threads);
const hiresSteps = Number(values['hires-steps']), strength = Number(values.strength);
const base = { prompt: 'a lovely cat', negativePrompt: '', width: side, height: side, steps: Number(values.steps), cfgScale: 7, sampler: 'euler', scheduler: 'discrete', seed: 42, rng: 'cuda' };
const dir = mkdtempSync(join(tmpdir(), 'sdnode-parity-hires-'));
const peerHires = ['--hires', '--hires-scale', '2', '--hires-steps', String(hiresSteps), '--hires-denoising-strength', String(strength), '--hires-upscaler', values.upscaler];

/** An image enlarged ×2 with Lanczos: the plain first pass, as a no-op second pass would leave it. */
async function enlarged(path) {
  const { data, info } = await sharp(path).removeAlpha().resize(side * 2, side * 2, { kernel: 'lanczos3' }).raw().toBuffer({ resolveWithObject: true });
  return { width: info.width, height: info.height, channels: 3, data: new Uint8Array(data) };
}

const model = await loadModel(values.model, { device: 'cpu', threads });
console.log(`hires parity with ${values.peer} on ${values.model}: ${side}² → ${side * 2}², ${base.steps} + ${hiresSteps} steps (strength ${strength}), ${values.upscaler}, euler, seed 42\n`);
const t0 = performance.now();
const ours = await model.generate({ ...base, hires: { scale: 2, steps: hiresSteps, strength, upscaler } });
const oursMs = performance.now() - t0;
const oursPath = join(dir, 'hires-sdnode.png');
await writeImage(oursPath, ours.images[0]);
const oursPlainPath = join(dir, 'plain-sdnode.png');
await writeImage(oursPlainPath, (await model.generate(base)).images[0]);
await model.dispose();

const peerPath = join(dir, 'hires-peer.png');
const peer = await runPeer(values.peer, { ...base, model: values.model, threads, peerArgs: ['--eager-load', ...peerHires] }, peerPath);
const peerPlainPath = join(dir, 'plain-peer.png');
await runPeer(values.peer, { ...base, model: values.model, threads, peerArgs: ['--eager-load'] }, peerPlainPath);

const oursImage = await readImage(oursPath), peerImage = await readImage(peerPath);
const d = imageDiff(oursImage, peerImage);
const plain = imageDiff(await readImage(oursPlainPath), await readImage(peerPlainPath));
const oursChange = imageDiff(oursImage, await enlarged(oursPlainPath));
const peerChange = imageDiff(peerImage, await enlarged(peerPlainPath));
console.log('| image | size | PSNR dB | max abs diff |');
console.log('|---|---|---|---|');
console.log(`| hires: sdnode vs peer | ${oursImage.width}×${oursImage.height} | ${d.psnr.toFixed(2)} | ${d.maxDiff} |`);
console.log(`| first pass alone: sdnode vs peer | ${side}×${side} | ${plain.psnr.toFixed(2)} | ${plain.maxDiff} |`);
console.log(`| sdnode: hires vs its first pass ×2 (Lanczos) | ${side * 2}² | ${oursChange.psnr.toFixed(2)} | ${oursChange.maxDiff} |`);
console.log(`| peer: hires vs its first pass ×2 (Lanczos) | ${side * 2}² | ${peerChange.psnr.toFixed(2)} | ${peerChange.maxDiff} |`);
console.log(`\nwall: sdnode ${(oursMs / 1000).toFixed(1)} s (hires sampling ${(ours.timings.hiresSamplingMs / 1000).toFixed(1)} s), peer ${(peer.ms / 1000).toFixed(1)} s`);
console.log(`images: ${dir}`);
