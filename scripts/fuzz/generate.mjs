#!/usr/bin/env node
// Fuzzes load *and* generate: mutants of a tiny model in each file format (safetensors, GGUF,
// .ckpt) — types, shapes, offsets, names, metadata, data, raw header bytes (scripts/fuzz/mutate.mjs)
// — each loaded (one in four with a weightType: quantized or halved on load) and run for one
// sampler step on the CPU in a worker process. A mutant may load
// and generate, or be refused with an sdnode error (a `code`); anything else is a finding:
//   crash    the worker died (a signal, or an exit code) with the mutant in flight
//   stall    no answer within --timeout seconds (the worker is killed)
//   uncoded  an error without a `code` reached the caller
// Findings are kept as files (with what was changed) under --out; the worker is replaced after
// a crash or stall. Exits 1 when there were crashes or stalls.
//
//   node scripts/fuzz/generate.mjs --mutants 10000              # per format, all three
//   node scripts/fuzz/generate.mjs --formats gguf --mutants 200 --seed 7 --jobs 2
// Needs the built package (npm install; dist/ and the addon). Mutant i of a format under a seed is
// always the same file, so a finding is reproduced with --formats F --from i --mutants 1.
import { fork } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

import { PRESETS, generateModel } from '../generate-model.mjs';
import { EXTENSION, readGguf, readSafetensors, toCkpt, writeModel } from './formats.mjs';
import { mutant } from './mutate.mjs';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const { values } = parseArgs({
  options: {
    formats: { type: 'string', default: 'safetensors,gguf,ckpt' },
    mutants: { type: 'string', default: '10000' },
    from: { type: 'string', default: '0' },
    seed: { type: 'string', default: '1' },
    jobs: { type: 'string', default: '1' },
    size: { type: 'string', default: '32' },
    timeout: { type: 'string', default: '120' },
    out: { type: 'string', default: join(root, 'build-fuzz', 'generate') },
    json: { type: 'boolean', default: false },
  },
});
const formats = values.formats.split(',');
for (const f of formats) if (!EXTENSION[f]) throw new RangeError(`unknown format '${f}' (safetensors, gguf, ckpt)`);
const count = Number(values.mutants);
const from = Number(values.from);
const seed = Number(values.seed);
const jobs = Math.max(1, Number(values.jobs));
const timeoutMs = Number(values.timeout) * 1000;
const entry = join(root, 'dist', 'index.js');
if (!existsSync(entry)) throw new Error('fuzz: build the package first (npm install, or npx tsup)');

const shm = existsSync('/dev/shm') ? '/dev/shm' : tmpdir();
const work = mkdtempSync(join(shm, 'sdnode-fuzz-generate-'));
const findingsDir = resolve(values.out);
const LOAD_TYPES = ['q8_0', 'q4_k', 'f16', 'q2_k'];
const log = (s) => process.stderr.write(`${s}\n`);
// SIGINT / SIGTERM: finish the mutants in flight, then report what was run.
let stopping = false;
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => (stopping = true));

/** The unmutated model of each format: the generator's tiny f16 model as the format holds it. */
async function baseModels() {
  const st = join(work, 'base.safetensors');
  await generateModel({ out: st, preset: 'tiny', dtype: 'f16', seed: 1 });
  const safetensors = readSafetensors(readFileSync(st));
  const bases = { safetensors };
  if (formats.includes('gguf')) {
    // Through sdnode's own converter at q8_0, so the GGUF mutants start with quantized matrices.
    const { convertModel } = await import(pathToFileURL(entry).href);
    const g = join(work, 'base.gguf');
    await convertModel(st, g, { weightType: 'q8_0' });
    // convertModel keeps the sdnode.* keys (the attention heads) as they are.
    bases.gguf = readGguf(readFileSync(g));
  }
  if (formats.includes('ckpt')) {
    // This fuzzer's .ckpt writer (formats.mjs) carries no metadata, so the text encoder's head
    // count comes from width / 64: the tiny model with a 64-wide text encoder (and UNet context).
    const tiny = PRESETS.tiny;
    const config = { ...tiny, clip: { ...tiny.clip, width: 64, heads: 1 }, unet: { ...tiny.unet, contextDim: 64 } };
    const ck = join(work, 'base-64.safetensors');
    await generateModel({ out: ck, config, dtype: 'f16', seed: 1 });
    bases.ckpt = toCkpt(readSafetensors(readFileSync(ck)));
  }
  return bases;
}

class Worker {
  constructor() {
    this.stderr = '';
    this.child = fork(join(root, 'scripts', 'fuzz', 'generate-worker.mjs'), [], {
      env: { ...process.env, SDNODE_FUZZ_ENTRY: entry, SDNODE_FUZZ_SIZE: values.size },
      stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
    });
    this.child.stderr.on('data', (d) => (this.stderr = (this.stderr + d).slice(-4000)));
    this.ready = new Promise((res, rej) => {
      this.child.once('message', res);
      this.child.once('exit', (code, signal) => rej(new Error(`fuzz worker did not start (${signal ?? code}): ${this.stderr}`)));
    });
  }
  /** Resolves { outcome, ... } or { outcome: 'crash' | 'stall', ... }; the worker is dead after those. */
  run(path, weightType) {
    return new Promise((res) => {
      const done = (r) => {
        clearTimeout(timer);
        this.child.removeListener('message', onMessage);
        this.child.removeListener('exit', onExit);
        res(r);
      };
      const onMessage = (m) => done(m);
      const onExit = (code, signal) => done({ outcome: 'crash', signal, exitCode: code, stderr: this.stderr.slice(-1500) });
      const timer = setTimeout(() => {
        this.child.removeListener('exit', onExit);
        this.child.kill('SIGKILL');
        done({ outcome: 'stall', stderr: this.stderr.slice(-1500) });
      }, timeoutMs);
      this.child.on('message', onMessage);
      this.child.once('exit', onExit);
      this.stderr = '';
      this.child.send({ path, weightType });
    });
  }
  stop() {
    this.child.kill('SIGKILL');
  }
}

async function fuzzFormat(format, base, stats) {
  const queue = Array.from({ length: count }, (_, k) => from + k);
  const started = Date.now();
  let done = 0;
  const slot = async (s) => {
    let worker = new Worker();
    await worker.ready;
    const path = join(work, `mutant-${s}${EXTENSION[format]}`);
    for (let index = queue.shift(); index !== undefined && !stopping; index = queue.shift()) {
      const { bytes, notes } = mutant(base, seed, index);
      // One mutant in four is quantized (or halved) on load: the conversion path too.
      const weightType = index % 4 === 3 ? LOAD_TYPES[(index >> 2) % LOAD_TYPES.length] : undefined;
      if (weightType) notes.push(`weightType ${weightType}`);
      writeFileSync(path, bytes);
      const r = await worker.run(path, weightType);
      stats.mutants++;
      if (r.outcome === 'generated') stats.generated++;
      else if (r.outcome === 'error' && r.code) stats.refused[r.code] = (stats.refused[r.code] ?? 0) + 1;
      else {
        const kind = r.outcome === 'error' ? 'uncoded' : r.outcome;
        stats[kind]++;
        // Every crash and stall is kept; uncoded errors (no crash, often one cause) the first 20.
        if (kind !== 'uncoded' || stats.uncoded <= 20) {
          mkdirSync(findingsDir, { recursive: true });
          const name = `${kind}-${format}-seed${seed}-${index}`;
          writeFileSync(join(findingsDir, name + EXTENSION[format]), bytes);
          writeFileSync(join(findingsDir, `${name}.txt`), `${JSON.stringify({ format, seed, index, notes, ...r }, null, 2)}\n`);
        }
        stats.findings.push({ kind, format, index, notes, signal: r.signal, exitCode: r.exitCode, message: r.message, stderr: r.stderr?.split('\n').filter(Boolean).slice(-2).join(' | ') });
        log(`[fuzz-generate] ${kind}: ${format} #${index} (${notes.join('; ')}) ${r.signal ?? r.exitCode ?? r.message ?? ''}`);
        if (kind !== 'uncoded') {
          worker.stop();
          worker = new Worker();
          await worker.ready;
        }
      }
      if (++done % 250 === 0) log(`[fuzz-generate] ${format}: ${done}/${count} in ${((Date.now() - started) / 1000).toFixed(0)} s`);
    }
    worker.stop();
  };
  await Promise.all(Array.from({ length: jobs }, (_, s) => slot(s)));
  stats.seconds = (Date.now() - started) / 1000;
}

const summary = {};
try {
  const bases = await baseModels();
  for (const format of formats) {
    if (stopping) break;
    // The unmutated file must generate, or the mutants would only test the first refusal.
    const check = new Worker();
    await check.ready;
    const path = join(work, `base${EXTENSION[format]}`);
    writeFileSync(path, writeModel(bases[format]));
    const r = await check.run(path);
    check.stop();
    if (r.outcome !== 'generated') throw new Error(`the unmutated ${format} model does not generate: ${JSON.stringify(r)}`);
    const stats = { mutants: 0, generated: 0, refused: {}, uncoded: 0, crash: 0, stall: 0, seconds: 0, findings: [] };
    summary[format] = stats;
    await fuzzFormat(format, bases[format], stats);
    log(`[fuzz-generate] ${format}: ${stats.mutants} mutants, ${stats.generated} generated, refused ${JSON.stringify(stats.refused)}, ` +
        `${stats.uncoded} uncoded, ${stats.crash} crashes, ${stats.stall} stalls, ${stats.seconds.toFixed(0)} s`);
  }
} finally {
  rmSync(work, { recursive: true, force: true });
}
if (values.json) process.stdout.write(`${JSON.stringify(summary)}\n`);
const bad = Object.values(summary).reduce((n, s) => n + s.crash + s.stall, 0);
process.exitCode = bad ? 1 : 0;
