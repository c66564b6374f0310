#!/usr/bin/env node
// ESRGAN parity with stable-diffusion.cpp: a full-size random RealESRGAN_x4plus-shaped file from
// our generator, a 256² photo of ../shared/data, upscaled ×4 by sdnode and by the peer's
// `sd-cli -M upscale` at the same tile size; prints the PSNR between the two (and sdnode's f16
// weights, which the peer uses, beside its f32 default).
//
// At tile 128 on a 256² image the peer cuts 2 × 2 tiles without overlap (its tiling shrinks the
// overlap to fit whole tiles); sdnode's tiles are laid out the same with --overlap 0. Its own
// default overlap (tile / 4) blends the seams instead: that run is also printed, and differs
// from the peer's where the peer's seams are.
//   node bench/parity-upscale.mjs --peer PATH/sd-cli [--model FILE] [--size 256] [--tile 128] [--threads 2]
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

import { readImage } from '../dist/index.js';
import { imageDiff } from '../scripts/compare-peer.mjs';
import { mib, photo, runOurs, runPeerUpscale, x4plus } from './upscale-common.mjs';

const { values } = parseArgs({
  options: {
    peer: { type: 'string' },
    model: { type: 'string' },
    size: { type: 'string', default: '256' },
    tile: { type: 'string', default: '128' },
    threads: { type: 'string', default: '2' },
    image: { type: 'string', default: 'astronaut.png' },
    'f32-only': { type: 'boolean' },
  },
});
if (!values.peer) throw new Error('usage: node bench/parity-upscale.mjs --peer PATH/sd-cli [--model FILE] [--size 256] [--tile 128]');
const dir = mkdtempSync(join(tmpdir(), 'sdnode-parity-upscale-'));
const size = Number(values.size), tile = Number(values.tile), threads = Number(values.threads);
const model = values.model ?? (await x4plus(dir));
const input = await photo(values.image, size, join(dir, 'in.png'));
console.log(`model ${model}\ninput ${values.image} at ${size}², tile ${tile}, ${threads} threads`);

const peerOut = join(dir, 'peer.png');
const peer = await runPeerUpscale(values.peer, { model, input, output: peerOut, tile, threads });
console.log(`peer: ${(peer.ms / 1000).toFixed(1)} s, peak RSS ${mib(peer.peakRss)}`);
const reference = await readImage(peerOut);

const runs = [
  { label: 'sdnode f16, peer tile layout (overlap 0)', weightType: 'f16', overlap: 0 },
  { label: 'sdnode f32, peer tile layout (overlap 0)', weightType: 'f32', overlap: 0 },
  { label: `sdnode f32, default overlap ${Math.floor(tile / 4)} (blended seams)`, weightType: 'f32', overlap: Math.floor(tile / 4) },
].filter((r) => !values['f32-only'] || r.weightType === 'f32');
for (const r of runs) {
  const out = join(dir, `ours-${r.weightType}-${r.overlap}.png`);
  const ours = await runOurs({ model, input, output: out, tile, overlap: r.overlap, threads, weightType: r.weightType });
  const { psnr, maxDiff } = imageDiff(await readImage(out), reference);
  console.log(`${r.label}: PSNR ${psnr.toFixed(2)} dB vs the peer (max diff ${maxDiff}); ${(ours.ms / 1000).toFixed(1)} s, peak RSS ${mib(ours.peakRss)}`);
}
