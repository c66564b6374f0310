#!/usr/bin/env node
// LoRA switching benchmark (`npm run bench:lora`): the time to switch from one LoRA set to another
// between two requests, and the peak RSS it adds, for an attention-only and an attention + conv
// LoRA on f16 and q8_0 base weights of the full-size SD1.5-shaped model, against one 512² sampler
// step of the same model. Switches are timed by the engine (result.timings.loraMs) on 64² jobs.
// Options: --model (default ~/.cache/sdnode/bench/sd15-f16.safetensors, written if missing),
// --rank (16), --threads (2), --switches (4), --weight-types (f16,q8_0: the stored f16, and q8_0 on load).
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';

import { loadModel } from '../dist/index.js';

const { values } = parseArgs({
  options: {
    model: { type: 'string', default: join(homedir(), '.cache', 'sdnode', 'bench', 'sd15-f16.safetensors') },
    rank: { type: 'string', default: '16' },
    threads: { type: 'string', default: '2' },
    switches: { type: 'string', default: '4' },
    'weight-types': { type: 'string', default: 'f16,q8_0' },
  },
});
const threads = Number(values.threads), rank = Number(values.rank), switches = Number(values.switches);
if (!existsSync(values.model)) {
  console.log(`writing ${values.model} (SD1.5 shape, random weights)…`);
  mkdirSync(dirname(values.model), { recursive: true });
  const { generateModel } = await import('../scripts/generate-model.mjs');
  await generateModel({ out: values.model, preset: 'sd15', dtype: 'f16', seed: 1 });
}
const { generateLora } = await import('../scripts/generator/lora.mjs');
const dir = mkdtempSync(join(tmpdir(), 'sdnode-bench-lora-'));
const kinds = { attention: ['attn'], 'attention + conv': ['attn', 'conv'] };
const files = {};
for (const [kind, targets] of Object.entries(kinds)) {
  files[kind] = [];
  for (const seed of [1, 2]) {
    const out = join(dir, `${targets.join('-')}-${seed}.safetensors`);
    await generateLora({ model: values.model, out, format: 'lora', targets, rank, alpha: rank / 2, seed });
    files[kind].push(out);
  }
}
// Linux: the peak RSS (VmHWM) since the last reset; writing 5 to clear_refs resets it to the current RSS.
const status = (key) => Number(new RegExp(`${key}:\\s+(\\d+) kB`).exec(readFileSync('/proc/self/status', 'utf8'))?.[1]) / 1024;
const resetPeak = () => writeFileSync('/proc/self/clear_refs', '5');
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

console.log(`LoRA switching on ${values.model}, rank ${rank}, ${threads} threads\n`);
// The same requests without LoRAs also raise the peak a little (the JS heap, the allocator's
// arenas): that growth is measured first and taken off, so the column is what the LoRAs add.
console.log('| base | LoRA | touched weights | switch ms (median of ' + switches + ') | one 512² step ms | switch / step | peak RSS growth MiB (without LoRA) | extra peak RSS MiB | touched MiB |');
console.log('|---|---|---|---|---|---|---|---|---|');
for (const weightType of values['weight-types'].split(',').map((t) => (t === 'f16' ? undefined : t))) {
  const model = await loadModel(values.model, { device: 'cpu', threads, ...(weightType ? { weightType } : {}) });
  const bytes = new Map(model.weights().map((w) => [w.name, w.bytes]));
  const small = { prompt: 'a lovely cat', width: 64, height: 64, steps: 1, seed: 1 };
  await model.generate(small);  // every weight read once: the step below pays no page faults of the file
  // One 512² sampler step: the time between the step events after the first (which also maps the compute buffers).
  const marks = [];
  await model.generate({ prompt: 'a lovely cat', width: 512, height: 512, steps: 3, seed: 1, onProgress: () => marks.push(performance.now()) });
  const stepMs = median(marks.slice(1).map((t, i) => t - marks[i]));
  // Peak RSS growth over switches + 1 small requests, each given its LoRA list by `lorasFor`.
  const peakGrowth = async (lorasFor, ms = []) => {
    resetPeak();
    const before = status('VmRSS');
    for (let i = 0; i < switches + 1; i++) {
      const r = await model.generate({ ...small, loras: lorasFor(i) });
      if (i > 0) ms.push(r.timings.loraMs);  // the first builds from no set at all
    }
    return status('VmHWM') - before;
  };
  const plainGrowth = await peakGrowth(() => []);
  for (const [kind, [a, b]] of Object.entries(files)) {
    const loras = [await model.loadLora(a), await model.loadLora(b)];
    const ms = [];
    const growth = await peakGrowth((i) => [{ lora: loras[i % 2], weight: 0.8 }], ms);
    const touched = loras[0].weights.reduce((n, w) => n + (bytes.get(w) ?? 0), 0) / 2 ** 20;
    const switchMs = median(ms);
    console.log(`| ${weightType ?? 'f16'} | ${kind} | ${loras[0].weights.length} | ${switchMs.toFixed(0)} | ${stepMs.toFixed(0)} | ${(switchMs / stepMs).toFixed(3)} | ${plainGrowth.toFixed(0)} | ${(growth - plainGrowth).toFixed(0)} | ${touched.toFixed(0)} |`);
    for (const l of loras) await l.dispose();
    await model.generate(small);  // back to the base weights; the kept set goes with the next one
  }
  await model.dispose();
}
