#!/usr/bin/env node
// Model loading benchmark: load time and peak RSS for the full-size SD1.5-shaped model as f16
// safetensors, as q8_0 and q4_0 GGUF (convertModel), and quantized on load from the f16 file.
// Each load runs in a fresh process, so its peak RSS (getrusage maxrss) is its own; then every
// weight is read back (checksums), which faults in any page still on disk.
// Run after `npm install`: `npm run bench:load`. Options: --dir (model cache, default
// ~/.cache/sdnode/bench), --device ID. The first run writes ~4 GB of models (about a minute).
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, statSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    dir: { type: 'string', default: join(homedir(), '.cache', 'sdnode', 'bench') },
    device: { type: 'string', default: 'cpu' },
    child: { type: 'string' },
    weightType: { type: 'string' },
  },
});
const GiB = 1024 ** 3;
const gib = (n) => `${(n / GiB).toFixed(2)} GiB`;

if (values.child) {
  // One measured load, in its own process.
  const { loadModel } = await import('../dist/index.js');
  const t0 = performance.now();
  const model = await loadModel(values.child, { device: values.device, ...(values.weightType ? { weightType: values.weightType } : {}) });
  const loadMs = performance.now() - t0;
  const loadRss = process.resourceUsage().maxRSS * 1024;
  const t1 = performance.now();
  await model.checksums();
  const readMs = performance.now() - t1;
  const { deviceBytes, mappedBytes } = model.info;
  await model.dispose();
  console.log(JSON.stringify({ loadMs, loadRss, readMs, peakRss: process.resourceUsage().maxRSS * 1024, deviceBytes, mappedBytes }));
  process.exit(0);
}

const { convertModel, systemInfo } = await import('../dist/index.js');
const { generateModel } = await import('../scripts/generate-model.mjs');
mkdirSync(values.dir, { recursive: true });
const f16 = join(values.dir, 'sd15-f16.safetensors');
if (!existsSync(f16)) {
  console.log(`writing ${f16} (SD1.5 shape, random weights)…`);
  await generateModel({ out: f16, preset: 'sd15', dtype: 'f16', seed: 1 });
}
const ggufs = {};
for (const weightType of ['q8_0', 'q4_0']) {
  ggufs[weightType] = join(values.dir, `sd15-${weightType}.gguf`);
  if (!existsSync(ggufs[weightType])) {
    console.log(`converting to ${weightType}…`);
    await convertModel(f16, ggufs[weightType], { weightType });
  }
}

const info = systemInfo();
console.log(`sdnode load bench: ggml ${info.ggmlVersion}, device ${values.device}\n`);
const cases = [
  ['f16 safetensors, as stored', f16, undefined],
  ['q8_0 GGUF, as stored', ggufs.q8_0, undefined],
  ['q4_0 GGUF, as stored', ggufs.q4_0, undefined],
  ['f16 safetensors → q8_0 on load', f16, 'q8_0'],
  ['f16 safetensors → q4_0 on load', f16, 'q4_0'],
];
const self = fileURLToPath(import.meta.url);
console.log('case                              file       weights    load     peak RSS at load  checksums  peak RSS');
for (const [label, path, weightType] of cases) {
  // Warm page cache: the files were just written or read (dropping the cache needs root).
  const args = [self, '--child', path, '--device', values.device, ...(weightType ? ['--weightType', weightType] : [])];
  const r = JSON.parse(execFileSync(process.execPath, args, { encoding: 'utf8' }).trim().split('\n').at(-1));
  const weights = r.deviceBytes + r.mappedBytes;
  console.log(
    `${label.padEnd(34)}${gib(statSync(path).size).padStart(9)}  ${gib(weights).padStart(9)}  ${(r.loadMs / 1000).toFixed(2).padStart(5)} s  ${gib(r.loadRss).padStart(12)}     ${(r.readMs / 1000).toFixed(2).padStart(5)} s  ${gib(r.peakRss).padStart(9)}`,
  );
}
