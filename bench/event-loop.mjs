#!/usr/bin/env node
// How long loading hostile files holds the JS thread (issue 11): the longest gap between
// event-loop turns while inspectModel / loadModel run on a model whose metadata has 200,000
// keys, and while loadModel reads a diffusers folder's tokenizer/. Each case runs five times in
// one process (and the dispose of such a model); the first run also pays for compiling the code paths, so it is shown apart.
// Run after `npm install`: `npm run bench:event-loop`. Options: --runs N (default 5).
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import { inspectModel, loadModel } from '../dist/index.js';
import { generateModel } from '../scripts/generate-model.mjs';
import { longestHold } from '../scripts/event-loop-hold.mjs';
import { writeDiffusersFolder } from '../scripts/generator/diffusers-layout.mjs';

const { values } = parseArgs({ options: { runs: { type: 'string', default: '5' } } });
const runs = Number(values.runs);
const KEYS = 200_000;
const dataDir = fileURLToPath(new URL('../../shared/data', import.meta.url));

const dir = mkdtempSync(join(tmpdir(), 'sdnode-bench-event-loop-'));
const cpu = { device: 'cpu', threads: 1 };
try {
  const plain = join(dir, 'tiny.safetensors');
  await generateModel({ out: plain, preset: 'tiny', dtype: 'f32', seed: 3 });
  const bytes = readFileSync(plain);
  const headerLength = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + headerLength).toString('utf8'));
  for (let i = 0; i < KEYS; i++) header.__metadata__[`k.${i}`] = `v${i}`;
  const json = Buffer.from(JSON.stringify(header));
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(json.length));
  const manyKeys = join(dir, 'many-keys.safetensors');
  writeFileSync(manyKeys, Buffer.concat([length, json, bytes.subarray(8 + headerLength)]));
  const folder = join(dir, 'diffusers');
  await writeDiffusersFolder({ out: folder, preset: 'tiny', seed: 1, tokenizerFrom: join(dataDir, 'clip', 'bpe_simple_vocab_16e6.txt.gz') });

  const cases = [
    [`inspectModel, ${KEYS} metadata keys`, () => inspectModel(manyKeys)],
    [`loadModel, ${KEYS} metadata keys`, async () => (await loadModel(manyKeys, cpu)).dispose()],
    [`model.dispose(), ${KEYS} metadata keys`, async () => await loadModel(manyKeys, cpu), (model) => model.dispose()],
    ['loadModel, diffusers folder with tokenizer/', async () => (await loadModel(folder, cpu)).dispose()],
  ];
  console.log('| case | first run ms | later runs ms (worst) |');
  console.log('|---|---|---|');
  // A case of three is timed in its third part, on what the second gave.
  for (const [name, work, timed] of cases) {
    const ms = [];
    for (let i = 0; i < runs; i++) {
      if (!timed) ms.push((await longestHold(work)).ms);
      else {
        const input = await work();
        ms.push((await longestHold(() => timed(input))).ms);
      }
    }
    console.log(`| ${name} | ${ms[0].toFixed(1)} | ${ms.slice(1).map((t) => t.toFixed(1)).join(', ')} (${Math.max(...ms.slice(1)).toFixed(1)}) |`);
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
