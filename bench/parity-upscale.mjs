#!/usr/bin/env node
// ESRGAN parity with stable-diffusion.cpp: a full-size random RealESRGAN_x4plus-shaped file from
// our generator, a 256² photo of ../shared/data, upscaled ×4 by sdnode and by the peer's
// `sd-cli -M upscale` at the same tile size; prints the PSNR between the two (and sdnode's f16
// weights, which the peer uses, beside its f32 default).
//
// The peer spreads its tiles evenly, the overlap it aims at (a quarter of the tile) adjusted so
// that they fit the side (at 256² and tile 128: three tiles a side overlapping by 64), and
// blends them with smootherstep ramps across the overlap, as sdnode does: sdnode runs with
// that overlap so that its tiles lie where the peer's do (--overlap to choose another).
//   node bench/parity-upscale.mjs --peer PATH/sd-cli [--model FILE] [--size 256] [--tile 128] [--overlap N] [--threads 2]
//        [--peer-image PNG: the peer's output of an earlier run on the same model and size, not rerun]
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

import { readImage } from '../dist/index.js';
import { imageDiff } from '../scripts/compare-peer.mjs';
import { mib, peerOverlap, photo, runOurs, runPeerUpscale, x4plus } from './upscale-common.mjs';

const { values } = parseArgs({
  options: {
    peer: { type: 'string' },
    model: { type: 'string' },
    size: { type: 'string', default: '256' },
    tile: { type: 'string', default: '128' },
    threads: { type: 'string', default: '2' },
    image: { type: 'string', default: 'astronaut.png' },
    overlap: { type: 'string' },
    'peer-image': { type: 'string' },
    'f32-only': { type: 'boolean' },
  },
});
if (!values.peer && !values['peer-image']) throw new Error('usage: node bench/parity-upscale.mjs --peer PATH/sd-cli [--model FILE] [--size 256] [--tile 128]');
const dir = mkdtempSync(join(tmpdir(), 'sdnode-parity-upscale-'));
const size = Number(values.size), tile = Number(values.tile), threads = Number(values.threads);
const model = values.model ?? (await x4plus(dir));
const input = await photo(values.image, size, join(dir, 'in.png'));
console.log(`model ${model}\ninput ${values.image} at ${size}², tile ${tile}, ${threads} threads`);

const overlap = values.overlap === undefined ? peerOverlap(size, tile) : Number(values.overlap);
let peerOut = values['peer-image'];
if (!peerOut) {
  peerOut = join(dir, 'peer.png');
  const peer = await runPeerUpscale(values.peer, { model, input, output: peerOut, tile, threads });
  console.log(`peer: ${(peer.ms / 1000).toFixed(1)} s, peak RSS ${mib(peer.peakRss)}`);
}
const reference = await readImage(peerOut);

for (const weightType of values['f32-only'] ? ['f32'] : ['f32', 'f16']) {
  const out = join(dir, `ours-${weightType}.png`);
  const ours = await runOurs({ model, input, output: out, tile, overlap, threads, weightType });
  const { psnr, maxDiff } = imageDiff(await readImage(out), reference);
  console.log(`sdnode ${weightType}, tile ${tile} overlap ${overlap}: PSNR ${psnr.toFixed(2)} dB vs the peer (max diff ${maxDiff}); ${(ours.ms / 1000).toFixed(1)} s, peak RSS ${mib(ours.peakRss)}`);
}
