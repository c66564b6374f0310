#!/usr/bin/env node
// Image parity with stable-diffusion.cpp: runs each case with sdnode and with a peer `sd-cli`
// binary (built by you, outside this repository) on the same file and settings, and prints the
// PSNR between the two images. Cases: txt2img with euler_a, dpm++2m + karras, a non-square
// size, a weighted prompt with a negative prompt, and img2img and inpainting from a photo of ../shared/data.
//   node bench/parity.mjs --model FILE --peer PATH/sd-cli [--cases a,b] [--steps 2] [--prediction v] [--size 512]
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import { loadModel, readImage, writeImage } from '../dist/index.js';
import { imageDiff, runPeer } from '../scripts/compare-peer.mjs';

const { values } = parseArgs({
  options: {
    model: { type: 'string' },
    peer: { type: 'string' },
    cases: { type: 'string' },
    steps: { type: 'string', default: '2' },
    threads: { type: 'string', default: '2' },
    prediction: { type: 'string' },
    size: { type: 'string', default: '512' },
  },
});
if (!values.model || !values.peer) throw new Error('usage: node bench/parity.mjs --model FILE --peer PATH/sd-cli [--cases names] [--steps N]');
const steps = Number(values.steps), threads = Number(values.threads);
const photo = fileURLToPath(new URL('../../shared/data/images/chelsea.png', import.meta.url));
const side = Number(values.size);
const base = { prompt: 'a lovely cat', negativePrompt: '', width: side, height: side, steps, cfgScale: 7, sampler: 'euler_a', scheduler: 'discrete', seed: 42, rng: 'cuda' };
const CASES = {
  euler_a: {},
  'dpm++2m-karras': { sampler: 'dpm++2m', scheduler: 'karras' },
  'non-square': { width: 640, height: 448 },
  weighted: { prompt: '(masterpiece:1.2) a lovely cat, [blurry]', negativePrompt: 'ugly, lowres' },
  // The two halves of 'weighted' on their own.
  'weights-only': { prompt: '(masterpiece:1.2) a lovely cat, [blurry]' },
  'negative-only': { prompt: 'a lovely cat', negativePrompt: 'ugly, lowres' },
  img2img: { init: photo, strength: 0.6 },
  // Inpainting: the photo with its middle half repainted (white in the mask), full strength.
  // With a standard UNet the two tools differ by design: stable-diffusion.cpp blends each
  // denoised estimate with the init latent and decodes the whole latent; sdnode, as the webui,
  // puts back the init latent noised to each step's sigma and composites the original pixels
  // outside the blurred mask. Expect a low PSNR (13.9 dB on a random-weight SDXL, whose VAE
  // cannot reproduce the photo outside the mask); for 9-channel models compare the masked area.
  inpaint: { init: photo, strength: 1, mask: 'middle' },
};
const names = values.cases ? values.cases.split(',') : Object.keys(CASES);
const dir = mkdtempSync(join(tmpdir(), 'sdnode-parity-'));
const model = await loadModel(values.model, { device: 'cpu', threads });
const prediction = values.prediction === 'v' ? 'v' : values.prediction === 'eps' ? 'epsilon' : undefined;
console.log(`parity with ${values.peer} on ${values.model} (${model.info.family}), ${steps} steps, seed 42\n`);
console.log('| case | size | sampler | PSNR dB | max abs diff |');
console.log('|---|---|---|---|---|');
for (const name of names) {
  const c = { ...base, ...CASES[name] };
  if (!CASES[name]) throw new Error(`unknown case ${name}`);
  let initImage, initPath;
  if (c.init) {
    // The init image at the job's size for both tools, so neither resizes it its own way.
    const { default: sharp } = await import('sharp');
    initPath = join(dir, `${name}-init.png`);
    await sharp(c.init).removeAlpha().resize(c.width, c.height, { fit: 'fill' }).png().toFile(initPath);
    initImage = await readImage(initPath);
  }
  let maskImage, maskPath;
  if (c.mask) {
    const { default: sharp } = await import('sharp');
    const [w, h] = [c.width, c.height];
    const data = new Uint8Array(w * h);
    for (let y = h / 4; y < (3 * h) / 4; y++) data.fill(255, y * w + w / 4, y * w + (3 * w) / 4);
    maskPath = join(dir, `${name}-mask.png`);
    await sharp(Buffer.from(data), { raw: { width: w, height: h, channels: 1 } }).png().toFile(maskPath);
    maskImage = { width: w, height: h, channels: 1, data };
  }
  const { init, strength, mask: _mask, ...options } = c;
  const ours = await model.generate({
    ...options, ...(prediction ? { prediction } : {}), ...(initImage ? { initImage, strength } : {}), ...(maskImage ? { mask: maskImage } : {}),
  });
  const oursPath = join(dir, `${name}-sdnode.png`);
  await writeImage(oursPath, ours.images[0]);
  const peerPath = join(dir, `${name}-peer.png`);
  const peerArgs = ['--eager-load', ...(initPath ? ['-i', initPath, '--strength', String(strength)] : []), ...(maskPath ? ['--mask', maskPath] : []),
    ...(values.prediction ? ['--prediction', values.prediction] : [])];
  await runPeer(values.peer, { ...options, model: values.model, threads, peerArgs }, peerPath);
  const d = imageDiff(await readImage(oursPath), await readImage(peerPath));
  console.log(`| ${name} | ${c.width}×${c.height} | ${c.sampler}${c.scheduler !== 'discrete' ? ` + ${c.scheduler}` : ''} | ${d.psnr.toFixed(2)} | ${d.maxDiff} |`);
}
await model.dispose();
console.log(`\nimages: ${dir}`);
