#!/usr/bin/env node
// Image parity with stable-diffusion.cpp: runs each case with sdnode and with a peer `sd-cli`
// binary (built by you, outside this repository) on the same file and settings, and prints the
// PSNR between the two images. Cases: txt2img with euler_a, dpm++2m + karras, a non-square
// size, a weighted prompt with a negative prompt, img2img and inpainting from a photo of ../shared/data,
// and a textual-inversion embedding (a random one from our generator, fitted to the model's text
// encoders, given to both tools by folder: embeddingDir / --embd-dir), with how much the
// embedding word changes each tool's image.
//   node bench/parity.mjs --model FILE --peer PATH/sd-cli [--cases a,b] [--steps 2] [--prediction v] [--size 512]
//        [--lora-source FILE: the safetensors the LoRA cases' files are written for, default --model]
import { mkdirSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import { inspectModel, loadModel, readImage, writeImage } from '../dist/index.js';
import { imageDiff, runPeer } from '../scripts/compare-peer.mjs';
import { generateEmbedding } from '../scripts/generator/embeddings.mjs';

const { values } = parseArgs({
  options: {
    model: { type: 'string' },
    peer: { type: 'string' },
    cases: { type: 'string' },
    steps: { type: 'string', default: '2' },
    threads: { type: 'string', default: '2' },
    prediction: { type: 'string' },
    size: { type: 'string', default: '512' },
    'lora-source': { type: 'string' },
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
  // EMBEDDING_NAME stands for the embedding's vectors (webui .pt for one text encoder, clip_l + clip_g for SDXL).
  embedding: { prompt: 'a lovely cat, parityembd', without: 'a lovely cat,' },
  // LoRAs from our generator (kohya names; attention, convolutions and text encoders), by tag
  // from a LoRA folder; 'without': the prompt with no LoRA, to compare how much each tool's image moves.
  lora: { prompt: 'a lovely cat <lora:parity_a:0.8>', without: 'a lovely cat' },
  'two-loras': { prompt: 'a lovely cat <lora:parity_a:0.8> <lora:parity_b:0.6>', without: 'a lovely cat' },
};
const EMBEDDING_NAME = 'parityembd';
const names = values.cases ? values.cases.split(',') : Object.keys(CASES);
const dir = mkdtempSync(join(tmpdir(), 'sdnode-parity-'));
const embeddingDir = join(dir, 'embeddings');
if (names.includes('embedding')) {
  // The text encoders' widths from their token embeddings (CLIP-L before OpenCLIP bigG: the narrower first).
  const { tensors } = await inspectModel(values.model);
  const widths = tensors.filter((t) => /token_embedding\.weight$/.test(t.name)).map((t) => t.shape[1]).sort((a, b) => a - b);
  mkdirSync(embeddingDir);
  const sdxl = widths.length === 2;
  await generateEmbedding({ out: join(embeddingDir, `${EMBEDDING_NAME}.${sdxl ? 'safetensors' : 'pt'}`), format: sdxl ? 'sdxl' : 'pt', vectors: 4, widths, seed: 42, name: EMBEDDING_NAME });
}
const loraDir = join(dir, 'loras');
if (names.some((n) => n.includes('lora'))) {
  // The LoRAs are written for the model's weights as a safetensors file names them (--lora-source,
  // default the model itself: a GGUF of the same weights takes its safetensors twin).
  const { generateLora } = await import('../scripts/generator/lora.mjs');
  const source = values['lora-source'] ?? values.model;
  mkdirSync(loraDir);
  await generateLora({ model: source, out: join(loraDir, 'parity_a.safetensors'), format: 'lora', targets: ['attn', 'conv', 'te'], rank: 16, alpha: 8, seed: 1 });
  await generateLora({ model: source, out: join(loraDir, 'parity_b.safetensors'), format: 'loha', targets: ['attn'], rank: 8, alpha: 4, seed: 2 });
}
const model = await loadModel(values.model, {
  device: 'cpu', threads, ...(names.includes('embedding') ? { embeddingDir } : {}), ...(names.some((n) => n.includes('lora')) ? { loraDir } : {}),
});
const prediction = values.prediction === 'v' ? 'v' : values.prediction === 'eps' ? 'epsilon' : undefined;
console.log(`parity with ${values.peer} on ${values.model} (${model.info.family}), ${steps} steps, seed 42\n`);
const changes = [];
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
  const { init, strength, mask: _mask, without, ...options } = c;
  const ours = await model.generate({
    ...options, ...(prediction ? { prediction } : {}), ...(initImage ? { initImage, strength } : {}), ...(maskImage ? { mask: maskImage } : {}),
  });
  const oursPath = join(dir, `${name}-sdnode.png`);
  await writeImage(oursPath, ours.images[0]);
  const peerPath = join(dir, `${name}-peer.png`);
  const peerArgs = ['--eager-load', ...(initPath ? ['-i', initPath, '--strength', String(strength)] : []), ...(maskPath ? ['--mask', maskPath] : []),
    ...(values.prediction ? ['--prediction', values.prediction] : []), ...(name === 'embedding' ? ['--embd-dir', embeddingDir] : []),
    ...(name.includes('lora') ? ['--lora-model-dir', loraDir] : [])];
  await runPeer(values.peer, { ...options, model: values.model, threads, peerArgs }, peerPath);
  const d = imageDiff(await readImage(oursPath), await readImage(peerPath));
  console.log(`| ${name} | ${c.width}×${c.height} | ${c.sampler}${c.scheduler !== 'discrete' ? ` + ${c.scheduler}` : ''} | ${d.psnr.toFixed(2)} | ${d.maxDiff} |`);
  if (without !== undefined) {
    // How much the embedding word changes each tool's image: the prompt without it, against the one with it.
    const plain = await model.generate({ ...options, prompt: without, ...(prediction ? { prediction } : {}) });
    const plainPeerPath = join(dir, `${name}-without-peer.png`);
    await runPeer(values.peer, { ...options, prompt: without, model: values.model, threads, peerArgs }, plainPeerPath);
    const oursChange = imageDiff(ours.images[0], plain.images[0]);
    const peerChange = imageDiff(await readImage(peerPath), await readImage(plainPeerPath));
    const samePlain = imageDiff(plain.images[0], await readImage(plainPeerPath));
    console.log(`| ${name}: '${without}' | ${c.width}×${c.height} | ${c.sampler} | ${samePlain.psnr.toFixed(2)} | ${samePlain.maxDiff} |`);
    changes.push(`${name}: '${c.prompt}' vs '${without}', PSNR ${oursChange.psnr.toFixed(2)} dB (sdnode), ${peerChange.psnr.toFixed(2)} dB (peer)`);
  }
}
await model.dispose();
if (changes.length) console.log(`\n${changes.join('\n')}`);
console.log(`\nimages: ${dir}`);
