#!/usr/bin/env node
// ESRGAN speed: a photo of ../shared/data at 512² upscaled ×4 to 2048² with a full-size random
// RealESRGAN_x4plus-shaped file, sdnode and the peer's `sd-cli -M upscale` in the same run at
// the same tile size, each in its own process: wall time and peak RSS.
//   npm run bench:upscale -- --peer PATH/sd-cli [--size 512] [--tile 128] [--threads N]
import { mkdtempSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

import { readImage } from '../dist/index.js';
import { imageDiff } from '../scripts/compare-peer.mjs';
import { mib, peerOverlap, photo, runOurs, runPeerUpscale, x4plus } from './upscale-common.mjs';

const { values } = parseArgs({
  options: {
    peer: { type: 'string' },
    model: { type: 'string' },
    size: { type: 'string', default: '512' },
    tile: { type: 'string', default: '128' },
    threads: { type: 'string', default: String(availableParallelism()) },
  },
});
const dir = mkdtempSync(join(tmpdir(), 'sdnode-bench-upscale-'));
const size = Number(values.size), tile = Number(values.tile), threads = Number(values.threads);
const model = values.model ?? (await x4plus(dir));
const input = await photo('astronaut.png', size, join(dir, 'in.png'));
console.log(`${size}² → ${size * 4}², tile ${tile}, ${threads} threads, RealESRGAN_x4plus shapes (random weights)`);
// Tiles where the peer's lie (at 512² and tile 128: a quarter-tile overlap, sdnode's default too).
const ours = await runOurs({ model, input, output: join(dir, 'ours.png'), tile, overlap: peerOverlap(size, tile), threads });
const upscaleMs = JSON.parse(ours.log.match(/\{"upscaleMs":[^}]*\}/)[0]).upscaleMs;
console.log(`sdnode: ${(ours.ms / 1000).toFixed(1)} s wall (upscale ${(upscaleMs / 1000).toFixed(1)} s), peak RSS ${mib(ours.peakRss)}`);
if (values.peer) {
  const peer = await runPeerUpscale(values.peer, { model, input, output: join(dir, 'peer.png'), tile, threads });
  const secs = peer.log.match(/upscaled, taking ([\d.]+)s/);
  console.log(`peer:   ${(peer.ms / 1000).toFixed(1)} s wall (upscale ${secs ? secs[1] : '?'} s), peak RSS ${mib(peer.peakRss)}`);
  const { psnr } = imageDiff(await readImage(join(dir, 'ours.png')), await readImage(join(dir, 'peer.png')));
  console.log(`PSNR sdnode vs peer: ${psnr.toFixed(2)} dB`);
}
