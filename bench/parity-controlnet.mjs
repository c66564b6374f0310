#!/usr/bin/env node
// ControlNet parity with stable-diffusion.cpp: the full-size random SD1.5 from our generator and
// a full-size random ControlNet-v1-1-shaped ControlNet (scripts/generate-controlnet.mjs, written
// once to ~/.cache/sdnode/bench), a Canny hint made from a photo of ../shared/data by sdnode's
// canny() and given to both tools as a PNG (so that the comparison is of the ControlNet, not of
// two edge detectors), txt2img with euler. Prints the PSNR between the two tools' images with
// the ControlNet and without it, and for each tool how far the ControlNet moves its image (PSNR
// with vs without): the two must be alike, so that a ControlNet that did nothing could not pass.
//   node bench/parity-controlnet.mjs --peer PATH/sd-cli [--model FILE] [--controlnet FILE] [--size 256] [--steps 3]
//        [--threads 2] [--image chelsea.png] [--strength 1]
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';


import { loadModel, readImage, writeImage } from '../dist/index.js';
import { imageDiff, runPeer } from '../scripts/compare-peer.mjs';
import { benchCache, benchControlNet, cannyHint } from './controlnet-common.mjs';

const { values } = parseArgs({
  options: {
    peer: { type: 'string' },
    model: { type: 'string' },
    controlnet: { type: 'string' },
    size: { type: 'string', default: '256' },
    steps: { type: 'string', default: '3' },
    threads: { type: 'string', default: '2' },
    image: { type: 'string', default: 'chelsea.png' },
    strength: { type: 'string', default: '1' },
  },
});
if (!values.peer) throw new Error('usage: node bench/parity-controlnet.mjs --peer PATH/sd-cli [--model FILE] [--controlnet FILE] [--size 256] [--steps 3]');
const modelPath = values.model ?? join(benchCache, 'sd15-f16.safetensors');
const cnPath = await benchControlNet(values.controlnet);
const dir = mkdtempSync(join(tmpdir(), 'sdnode-parity-controlnet-'));
const side = Number(values.size), threads = Number(values.threads), strength = Number(values.strength);

// The hint: the photo stretched to the output size, its Canny edges.
const hint = await cannyHint(values.image, side);
const hintPath = join(dir, 'hint.png');
await writeImage(hintPath, hint);

const job = { prompt: 'a lovely cat', negativePrompt: '', width: side, height: side, steps: Number(values.steps), cfgScale: 7, sampler: 'euler', scheduler: 'discrete', seed: 42, rng: 'cuda' };
console.log(`model ${modelPath}\ncontrolnet ${cnPath}\nhint: canny of ${values.image} at ${side}², ${job.steps} steps euler, strength ${strength}, ${threads} threads`);

const peerPlain = join(dir, 'peer-plain.png'), peerCn = join(dir, 'peer-cn.png');
const peerArgs = ['--control-net', cnPath, '--control-image', hintPath, '--control-strength', String(strength)];
const p0 = await runPeer(values.peer, { ...job, model: modelPath, threads }, peerPlain);
const p1 = await runPeer(values.peer, { ...job, model: modelPath, threads, peerArgs }, peerCn);
console.log(`peer: sampling ${(p0.samplingMs / 1000).toFixed(1)} s plain, ${(p1.samplingMs / 1000).toFixed(1)} s with the ControlNet`);

const model = await loadModel(modelPath, { device: 'cpu', threads });
const controlNet = await model.loadControlNet(cnPath);
const plain = await model.generate(job);
const withCn = await model.generate({ ...job, controlNets: [{ model: controlNet, image: hint, strength }] });
await writeImage(join(dir, 'ours-plain.png'), plain.images[0]);
await writeImage(join(dir, 'ours-cn.png'), withCn.images[0]);
console.log(`sdnode: sampling ${(plain.timings.samplingMs / 1000).toFixed(1)} s plain, ${(withCn.timings.samplingMs / 1000).toFixed(1)} s with the ControlNet`);
await model.dispose();

const [pp, pc] = [await readImage(peerPlain), await readImage(peerCn)];
const f = (d) => `${d.psnr.toFixed(2)} dB (max diff ${d.maxDiff})`;
console.log(`with the ControlNet, sdnode vs peer: ${f(imageDiff(withCn.images[0], pc))}`);
console.log(`without,             sdnode vs peer: ${f(imageDiff(plain.images[0], pp))}`);
console.log(`the ControlNet's effect (with vs without): sdnode ${f(imageDiff(withCn.images[0], plain.images[0]))}, peer ${f(imageDiff(pc, pp))}`);
console.log(`images in ${dir}`);
