// Shared by bench/parity-upscale.mjs and bench/upscale.mjs: the test photo at a given size, the
// full-size random RealESRGAN_x4plus file, and timed runs of sdnode and of the peer's
// `sd-cli -M upscale`, each in its own process under /usr/bin/time (wall time, peak RSS).
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { readImage, writeImage } from '../dist/index.js';
import { timedRun } from '../scripts/compare-peer.mjs';
import { generateEsrgan } from '../scripts/generator/esrgan.mjs';

const here = fileURLToPath(new URL('.', import.meta.url));

/** A photo of ../shared/data box-filtered down to side × side (from its top-left square). */
export async function photo(name, side, out) {
  const img = await readImage(fileURLToPath(new URL(`../../shared/data/images/${name}`, import.meta.url)));
  const square = Math.min(img.width, img.height);
  const f = Math.floor(square / side);
  if (f < 1) throw new RangeError(`${name} is smaller than ${side}²`);
  const data = new Uint8Array(side * side * 3);
  for (let y = 0; y < side; y++)
    for (let x = 0; x < side; x++)
      for (let c = 0; c < 3; c++) {
        let sum = 0;
        for (let dy = 0; dy < f; dy++) for (let dx = 0; dx < f; dx++) sum += img.data[((y * f + dy) * img.width + x * f + dx) * img.channels + c];
        data[(y * side + x) * 3 + c] = Math.round(sum / (f * f));
      }
  await writeImage(out, { width: side, height: side, channels: 3, data });
  return out;
}

/** The full-size random RealESRGAN_x4plus-shaped file (BasicSR names inside params_ema, as the real one). */
export async function x4plus(dir, seed = 1) {
  const path = join(dir, `x4plus-${seed}.pth`);
  if (!existsSync(path)) await generateEsrgan({ out: path, preset: 'x4plus', seed });
  return path;
}

/** The peer's `-M upscale` (it stores the weights as f16). */
export function runPeerUpscale(bin, { model, input, output, tile, threads }) {
  return timedRun(bin, ['-M', 'upscale', '--upscale-model', model, '-i', input, '-o', output, '--upscale-tile-size', String(tile), '-t', String(threads)]);
}

/** sdnode's CLI, `generate -M upscale`, in its own process. */
export function runOurs({ model, input, output, tile, overlap, threads, weightType = 'f32' }) {
  const args = [join(here, 'upscale-child.mjs'), model, input, output, String(tile), String(overlap), String(threads), weightType];
  return timedRun(process.execPath, args);
}

/**
 * The overlap stable-diffusion.cpp's tiling settles on along a side of `size` pixels for
 * `tile` (its sd_tiling_calc_tiles, aiming at a quarter of the tile: it adds a tile when the
 * leftover fits, then spreads the tiles evenly), so that sdnode's tiles can lie where its do.
 */
export function peerOverlap(size, tile, target = 0.25) {
  if (size <= tile) return 0;
  const overlap = Math.floor(tile * target), stride = tile - overlap;
  let n = Math.floor((size - overlap) / stride);
  const overshoot = ((n + 1) * stride + overlap) % size;
  if (overshoot !== stride && overshoot <= n * (tile / 2 - overlap)) n++;
  if (n <= 2) return 2 * tile - size;
  return Math.floor(tile * ((tile * n - size) / (tile * (n - 1))));
}

export const mib = (b) => `${(b / 2 ** 20).toFixed(0)} MiB`;
