#!/usr/bin/env node
// The speed and memory table: sdnode against stable-diffusion.cpp on the same file at the same
// settings, row by row — sampling seconds per step, VAE decode, VAE encode, peak RSS — each run
// several times in fresh processes, the median shown with the spread (lowest–highest) and the
// sdnode / peer ratio of the medians.
//
// A row is the full-size random SD1.5 of our generator (~/.cache/sdnode/bench, written if
// missing) at f16, or quantized on load (sdnode's weightType, the peer's --type), txt2img with
// euler_a and guidance. Sampling per step is each tool's sampling time over the steps (graph
// setup included, as the peer's log counts it). Encode: sdnode's encodeImage of the image it
// made, in the same process after the job; the peer's "encode_first_stage" of an img2img run
// of that image (its own process). Peak RSS: the txt2img process's (VmHWM; the peer's under
// /usr/bin/time -v), before sdnode's encode.
//   node bench/speed-table.mjs --peer PATH/sd-cli [--runs 3] [--rows f16-256,q8_0-512,...] [--threads 2]
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    peer: { type: 'string' },
    runs: { type: 'string', default: '3' },
    rows: { type: 'string', default: 'f16-256,q8_0-256,q4_0-256,f16-512,q8_0-512,q4_0-512' },
    threads: { type: 'string', default: '2' },
    model: { type: 'string', default: join(homedir(), '.cache', 'sdnode', 'bench', 'sd15-f16.safetensors') },
    child: { type: 'string' },
  },
});
const threads = Number(values.threads);
const STEPS = { 256: 3, 512: 2 };
const settings = (size) => ({
  prompt: 'a lovely cat', negativePrompt: '', width: size, height: size, steps: STEPS[size], cfgScale: 7,
  sampler: 'euler_a', scheduler: 'discrete', seed: 42, rng: 'cuda',
});

/** Peak RSS of this process in bytes (VmHWM). */
function peakRss() {
  const m = /^VmHWM:\s+(\d+) kB/m.exec(readFileSync('/proc/self/status', 'utf8'));
  return m ? Number(m[1]) * 1024 : process.resourceUsage().maxRSS * 1024;
}

if (values.child) {
  // One sdnode run of a row, in its own process: JSON on the last line.
  const { type, size } = JSON.parse(values.child);
  const { loadModel } = await import('../dist/index.js');
  const model = await loadModel(values.model, { device: 'cpu', threads, ...(type === 'f16' ? {} : { weightType: type }) });
  const { images, timings } = await model.generate(settings(size));
  const rss = peakRss();
  const t0 = performance.now();
  await model.encodeImage(images[0]);
  const encodeMs = performance.now() - t0;
  await model.dispose();
  console.log(JSON.stringify({ samplingMs: timings.samplingMs, decodeMs: timings.decodeMs, encodeMs, peakRss: rss }));
  process.exit(0);
}

const { runPeer } = await import('../scripts/compare-peer.mjs');
if (!existsSync(values.model)) {
  console.log(`writing ${values.model} (SD1.5 shape, random weights)…`);
  mkdirSync(dirname(values.model), { recursive: true });
  const { generateModel } = await import('../scripts/generate-model.mjs');
  await generateModel({ out: values.model, preset: 'sd15', dtype: 'f16', seed: 1 });
}
const rows = values.rows.split(',').map((name) => {
  const m = /^(f16|q8_0|q4_0|q5_0|q5_1|q4_1)-(256|512)$/.exec(name);
  if (!m) throw new Error(`row '${name}': TYPE-SIZE, TYPE f16/q8_0/q4_0/…, SIZE 256 or 512`);
  return { name, type: m[1], size: Number(m[2]) };
});
const runs = Number(values.runs);
const dir = mkdtempSync(join(tmpdir(), 'sdnode-bench-table-'));
const self = fileURLToPath(import.meta.url);

async function oursOnce(row) {
  const args = [self, '--child', JSON.stringify(row), '--model', values.model, '--threads', String(threads)];
  const r = JSON.parse(execFileSync(process.execPath, args, { encoding: 'utf8' }).trim().split('\n').at(-1));
  return { step: r.samplingMs / STEPS[row.size], decode: r.decodeMs, encode: r.encodeMs, rss: r.peakRss };
}

async function peerOnce(row) {
  const typeArgs = row.type === 'f16' ? [] : ['--type', row.type];
  const out = join(dir, `peer-${row.name}.png`);
  const o = { ...settings(row.size), model: values.model, threads };
  const gen = await runPeer(values.peer, { ...o, peerArgs: ['--eager-load', ...typeArgs] }, out);
  // img2img of that image at strength 0.5 over 2 steps: one step runs; only the encode is read.
  const img = await runPeer(values.peer, { ...o, steps: 2, peerArgs: [...typeArgs, '--init-img', out, '--strength', '0.5'] }, join(dir, 'peer-img2img.png'));
  const enc = /encode_first_stage completed, taking ([\d.]+)s/.exec(img.log);
  return { step: gen.samplingMs / STEPS[row.size], decode: gen.decodeMs, encode: enc ? Number(enc[1]) * 1000 : NaN, rss: gen.peakRss };
}

const median = (xs) => { const s = [...xs].sort((a, b) => a - b); return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2; };
const KEYS = ['step', 'decode', 'encode', 'rss'];
const fmt = (key, v) => (key === 'rss' ? `${(v / 2 ** 20).toFixed(0)}` : (v / 1000).toFixed(2));
const cell = (key, xs) => `${fmt(key, median(xs))} (${fmt(key, Math.min(...xs))}–${fmt(key, Math.max(...xs))})`;

console.log(`speed table: ${values.model}, ${threads} threads, ${runs} run(s) per tool and row, median (lowest–highest)`);
console.log('| row | tool | sampling s/step | VAE decode s | VAE encode s | peak RSS MiB |');
console.log('|---|---|---|---|---|---|');
const summary = [];
for (const row of rows) {
  const ours = [], peer = [];
  // Alternated, so that a burst of load meets both tools alike.
  for (let r = 0; r < runs; r++) {
    ours.push(await oursOnce(row));
    if (values.peer) peer.push(await peerOnce(row));
  }
  const line = (tool, xs) => console.log(`| ${row.name} | ${tool} | ${KEYS.map((k) => cell(k, xs.map((x) => x[k]))).join(' | ')} |`);
  line('sdnode', ours);
  if (values.peer) {
    line('peer', peer);
    summary.push(`| ${row.name} | ${KEYS.map((k) => `${(median(ours.map((x) => x[k])) / median(peer.map((x) => x[k]))).toFixed(2)}×`).join(' | ')} |`);
  }
}
if (summary.length) {
  console.log('\nsdnode / peer, ratio of the medians:\n| row | sampling | decode | encode | peak RSS |\n|---|---|---|---|---|');
  for (const s of summary) console.log(s);
}
rmSync(dir, { recursive: true, force: true });
