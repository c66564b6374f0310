#!/usr/bin/env node
// Runs a stable-diffusion.cpp binary (built by you, outside this repository) at given settings,
// and compares images. Used by bench/txt2img.mjs --peer; on its own:
//   node scripts/compare-peer.mjs a.png b.png     → PSNR and max abs pixel difference
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

import { readImage } from '../dist/index.js';

/** PSNR (dB) and largest absolute difference of two 8-bit images of one size. */
export function imageDiff(a, b) {
  if (a.width !== b.width || a.height !== b.height) throw new Error(`sizes differ: ${a.width}x${a.height} vs ${b.width}x${b.height}`);
  let se = 0, max = 0;
  for (let i = 0; i < a.data.length; i++) {
    const d = Math.abs(a.data[i] - b.data[i]);
    se += d * d;
    if (d > max) max = d;
  }
  return { psnr: se === 0 ? Infinity : 10 * Math.log10((255 * 255) / (se / a.data.length)), maxDiff: max };
}

/**
 * Generates one image with the peer binary `bin` into `out`. Options as model.generate's, plus
 * `model` and `threads`. Resolves { ms (wall), textEncodeMs, samplingMs, decodeMs, peakRss (bytes,
 * when /usr/bin/time is there), log }.
 */
export function runPeer(bin, o, out) {
  const args = [
    '-m', o.model, '-p', o.prompt, '-n', o.negativePrompt ?? '', '-W', String(o.width), '-H', String(o.height),
    '--steps', String(o.steps), '--cfg-scale', String(o.cfgScale), '--sampling-method', o.sampler,
    '--scheduler', o.scheduler ?? 'discrete', '-s', String(o.seed), '--rng', o.rng ?? 'cuda',
    '-t', String(o.threads), '-o', out,
    // Without clipSkip the peer picks its family default (1 for SD1.x, 2 for SD2.x and SDXL), as sdnode does.
    ...(o.clipSkip ? ['--clip-skip', String(o.clipSkip)] : []), ...(o.peerArgs ?? []),
  ];
  return timedRun(bin, args).then(({ ms, peakRss, log }) => {
    const secs = (re) => { const m = log.match(re); return m ? Number(m[1]) * 1000 : NaN; };
    return {
      ms,
      textEncodeMs: secs(/get_learned_condition completed, taking ([\d.]+)s/),
      samplingMs: secs(/sampling completed, taking ([\d.]+)s/),
      decodeMs: secs(/decode_first_stage completed, taking ([\d.]+)s/),
      peakRss,
      log,
    };
  });
}

/**
 * Runs `cmd args` (under /usr/bin/time -v where there is one): wall ms, peak RSS in bytes (NaN
 * without /usr/bin/time) and the output; rejects with the output's tail when it fails.
 */
export function timedRun(cmd, args) {
  const time = existsSync('/usr/bin/time');
  const [bin, argv] = time ? ['/usr/bin/time', ['-v', cmd, ...args]] : [cmd, args];
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    execFile(bin, argv, { maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      const log = stdout + stderr;
      if (err) return reject(new Error(`${cmd} failed (${err.code}): ${log.slice(-2000)}`));
      const rss = log.match(/Maximum resident set size \(kbytes\): (\d+)/);
      resolve({ ms: performance.now() - t0, peakRss: rss ? Number(rss[1]) * 1024 : NaN, log });
    });
  });
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const [a, b] = process.argv.slice(2);
  if (!a || !b) {
    console.error('usage: node scripts/compare-peer.mjs a.png b.png');
    process.exit(2);
  }
  const { psnr, maxDiff } = imageDiff(await readImage(a), await readImage(b));
  console.log(`PSNR ${psnr.toFixed(2)} dB, max abs diff ${maxDiff}`);
}
