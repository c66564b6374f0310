#!/usr/bin/env node
// VAE tiling benchmark on the full-size SD1.5-shaped VAE (random weights): decode time and peak
// memory of a 2048×2048 image's latent (256×256 cells) in tiles, and 512×512 untiled against
// tiled. Each case runs in a fresh process, so its peak RSS (VmHWM) is its own; the compute
// buffers that `vaeTiling: 'auto'` weighs against free memory are printed beside them.
// Run after `npm install`: `npm run bench:vae`. Options: --model (default
// ~/.cache/sdnode/bench/sd15-f16.safetensors, written if missing), --device, --threads,
// --cases (comma-separated names from the table below; default all).
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    model: { type: 'string', default: join(homedir(), '.cache', 'sdnode', 'bench', 'sd15-f16.safetensors') },
    device: { type: 'string', default: 'cpu' },
    threads: { type: 'string', default: '2' },
    cases: { type: 'string' },
    child: { type: 'string' },
  },
});
const threads = Number(values.threads);
const CASES = {
  '512-whole': { size: 512, vaeTiling: false },
  '512-tiles32': { size: 512, vaeTiling: { tile: 32, overlap: 8 } },
  '2048-tiled': { size: 2048, vaeTiling: true },
};
const GiB = 1024 ** 3;
const gib = (n) => (Number.isFinite(n) ? `${(n / GiB).toFixed(2)} GiB` : '-');

/** VmRSS / VmHWM of this process, in bytes (Linux); maxRSS elsewhere. */
function memory() {
  try {
    const status = readFileSync('/proc/self/status', 'utf8');
    const kib = (key) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1]) * 1024;
    return { rss: kib('VmRSS'), peak: kib('VmHWM') };
  } catch {
    return { rss: NaN, peak: process.resourceUsage().maxRSS * 1024 };
  }
}

/** A latent as a sampler leaves it: deterministic ~N(0, 1) values, planar 4 × cells × cells. */
function makeLatent(cells) {
  let state = 12345;
  const uniform = () => {
    state = (state + 0x6d2b79f5) | 0;
    let t = Math.imul(state ^ (state >>> 15), 1 | state);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const data = new Float32Array(4 * cells * cells);
  for (let i = 0; i < data.length; i++) data[i] = Math.sqrt(-2 * Math.log(1 - uniform())) * Math.cos(2 * Math.PI * uniform());
  return { channels: 4, width: cells, height: cells, data };
}

if (values.child) {
  // One measured decode, in its own process.
  const { loadModel } = await import('../dist/index.js');
  const c = CASES[values.child];
  const model = await loadModel(values.model, { device: values.device, threads });
  const loaded = memory();
  const latent = makeLatent(c.size / 8);
  let tiles = 0;
  const t0 = performance.now();
  const image = await model.decodeLatent(latent, { vaeTiling: c.vaeTiling, onProgress: (p) => { tiles = p.steps; } });
  const decodeMs = performance.now() - t0;
  const after = memory();
  await model.dispose();
  if (image.width !== c.size) throw new Error(`decoded ${image.width}×${image.height}`);
  console.log(JSON.stringify({ decodeMs, loadRss: loaded.rss, peakRss: after.peak, steps: tiles }));
  process.exit(0);
}

if (!existsSync(values.model)) {
  console.log(`writing ${values.model} (SD1.5 shape, random weights)…`);
  mkdirSync(dirname(values.model), { recursive: true });
  const { generateModel } = await import('../scripts/generate-model.mjs');
  await generateModel({ out: values.model, preset: 'sd15', dtype: 'f16', seed: 1 });
}

// The estimates 'auto' uses, from the addon directly (the public API keeps them inside).
const { systemInfo } = await import('../dist/index.js');
const require = createRequire(import.meta.url);
const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const addon = require(process.env.SDNODE_ADDON_PATH || require('node-gyp-build').resolve(root));
addon.loadBackends(dirname(process.env.SDNODE_ADDON_PATH || require('node-gyp-build').resolve(root)));
const parts = await addon.NativeModel.load({ model: values.model, ema: false, device: values.device, threads, weightType: '' }).promise;
const estimate = (size) => parts.vaeComputeBytes(size, size).decode;
const estimates = { 512: estimate(512), 2048: estimate(2048), tile256: estimate(256) };
parts.dispose();

const info = systemInfo();
console.log(`sdnode VAE tiling bench: ggml ${info.ggmlVersion}, device ${values.device}, ${threads} threads`);
console.log(`${values.model}: decoder compute buffer, untiled (estimate): 512² ${gib(estimates[512])}, ` +
  `2048² ${gib(estimates[2048])}; one 512-pixel tile ${gib(estimates[512])}, one 256-pixel tile ${gib(estimates.tile256)}\n`);

const names = values.cases ? values.cases.split(',') : Object.keys(CASES);
const self = fileURLToPath(import.meta.url);
console.log('case           image      tiling              steps   decode    RSS after load   peak RSS');
for (const name of names) {
  const c = CASES[name];
  if (!c) throw new Error(`unknown case '${name}' (${Object.keys(CASES).join(', ')})`);
  const args = [self, '--child', name, '--model', values.model, '--device', values.device, '--threads', String(threads)];
  const r = JSON.parse(execFileSync(process.execPath, args, { encoding: 'utf8', env: process.env }).trim().split('\n').at(-1));
  const tiling = c.vaeTiling === true ? 'tiles 64, overlap 16' : c.vaeTiling ? `tiles ${c.vaeTiling.tile}, overlap ${c.vaeTiling.overlap}` : 'whole';
  console.log(
    `${name.padEnd(15)}${`${c.size}²`.padEnd(11)}${tiling.padEnd(20)}${String(r.steps).padStart(5)}  ${(r.decodeMs / 1000).toFixed(1).padStart(6)} s  ${gib(r.loadRss).padStart(12)}   ${gib(r.peakRss).padStart(9)}`,
  );
}
