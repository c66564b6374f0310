#!/usr/bin/env node
// What each of ggml's x86-64 CPU modules is worth: the same 64² two-step generation (one thread)
// with only that module beside the addon, so ggml must use it, as a processor that it is the
// best match for would. Shows what a processor loses when its module is dropped from
// @sdnode/linux-x64 (packaging/platforms.json) and it falls back to the next kept one: only
// the modules this machine's CPU can run are measured.
// Run after `npm install`: `node bench/cpu-variants.mjs [--variants a,b] [model file …]`
// (default: every module in build/Release; the bench's SD1.5 f16 safetensors and its q8_0
// GGUF, see bench/load.mjs). One thread each, but a busy machine still moves the times: repeat.
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(fileURLToPath(import.meta.url), '..', '..');

if (process.argv[2] === '--child') {
  const { loadModel } = await import('../dist/index.js');
  const model = await loadModel(process.argv[3], { threads: 1 });
  const r = await model.generate({ prompt: 'a cat', width: 64, height: 64, steps: 2, seed: 1 });
  process.stdout.write(`${Math.round(r.timings.samplingMs)}\n`);
  model.dispose();
  process.exit(0);
}

const release = join(root, 'build', 'Release');
const bench = join(homedir(), '.cache', 'sdnode', 'bench');
const args = process.argv.slice(2);
const pick = args.indexOf('--variants');
const only = pick >= 0 ? args.splice(pick, 2)[1].split(',') : undefined;
const models = args.length ? args : [join(bench, 'sd15-f16.safetensors'), join(bench, 'sd15-f16-q8_0.gguf')];
const variants = readdirSync(release)
  .map((f) => /^libggml-cpu-(.+)\.so$/.exec(f)?.[1])
  .filter((v) => v && (!only || only.includes(v)));
const work = mkdtempSync(join(tmpdir(), 'sdnode-cpu-variants-'));
for (const model of models) {
  if (!existsSync(model)) throw new Error(`${model} is missing (npm run bench:load writes it)`);
  for (const v of variants) {
    const dir = join(work, v);
    mkdirSync(dir, { recursive: true });
    for (const f of ['sdnode.node', 'libggml.so', 'libggml-base.so', `libggml-cpu-${v}.so`]) copyFileSync(join(release, f), join(dir, f));
    try {
      const ms = execFileSync(process.execPath, [fileURLToPath(import.meta.url), '--child', model], {
        env: { ...process.env, SDNODE_ADDON_PATH: join(dir, 'sdnode.node') },
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'ignore'],
      }).trim();
      console.log(`${basename(model).padEnd(28)} ${v.padEnd(16)} ${ms.padStart(7)} ms sampling`);
    } catch {
      // ggml refuses a module whose instructions this CPU lacks: no CPU backend, the load fails.
      console.log(`${basename(model).padEnd(28)} ${v.padEnd(16)}    (this CPU cannot run it)`);
    }
  }
}
