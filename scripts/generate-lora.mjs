#!/usr/bin/env node
// Writes a random LoRA / LyCORIS file for a model of scripts/generate-model.mjs and prints, as
// JSON, the modules it wrote ({loraKey, internalName, rows?, format} each). The options are
// generateLora's (scripts/generator/lora.mjs), as flags:
//
//   node scripts/generate-lora.mjs --model tiny.safetensors --out lora.safetensors \
//        --format lora --targets attn,conv,te --rank 4 --alpha 2 --seed 1 --dtype f16
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

import { LORA_FORMATS, LORA_TARGETS, generateLora } from './generator/lora.mjs';

const USAGE = `usage: node scripts/generate-lora.mjs --model MODEL.safetensors --out FILE.{safetensors,pt,ckpt}
         [--format ${LORA_FORMATS.join('|')}] [--targets ${LORA_TARGETS.join(',')}] [--rank N] [--alpha A]
         [--seed N] [--dtype f16|f32] [--strength S] [--naming diffusers|ldm] [--tucker]
         [--peft-default] [--dora-variant kohya|peft] [--dora-axis out|in]
         [--lokr-decompose none|w2|both] [--match REGEX]`;

/** @param {string | undefined} v @param {string} flag */
function number(v, flag) {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (v.trim() === '' || !Number.isFinite(n)) throw new RangeError(`${flag} must be a number, not '${v}'`);
  return n;
}

/** @param {string[]} argv */
async function main(argv) {
  const { values } = parseArgs({
    args: argv,
    options: {
      model: { type: 'string', short: 'm' },
      out: { type: 'string', short: 'o' },
      format: { type: 'string', short: 'f' },
      targets: { type: 'string' },
      rank: { type: 'string', short: 'r' },
      alpha: { type: 'string', short: 'a' },
      seed: { type: 'string', short: 's' },
      dtype: { type: 'string', short: 't' },
      strength: { type: 'string' },
      naming: { type: 'string' },
      tucker: { type: 'boolean' },
      'peft-default': { type: 'boolean' },
      'dora-variant': { type: 'string' },
      'dora-axis': { type: 'string' },
      'lokr-decompose': { type: 'string' },
      match: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) {
    console.log(USAGE);
    return;
  }
  if (!values.model || !values.out) throw new TypeError(`--model and --out are required\n${USAGE}`);
  const result = await generateLora({
    model: values.model,
    out: values.out,
    format: /** @type {any} */ (values.format),
    targets: /** @type {any} */ (values.targets?.split(',').map((t) => t.trim())),
    rank: number(values.rank, '--rank'),
    alpha: number(values.alpha, '--alpha'),
    seed: number(values.seed, '--seed'),
    dtype: /** @type {any} */ (values.dtype),
    strength: number(values.strength, '--strength'),
    naming: /** @type {any} */ (values.naming),
    tucker: values.tucker,
    peftDefault: values['peft-default'],
    doraVariant: /** @type {any} */ (values['dora-variant']),
    doraAxis: /** @type {any} */ (values['dora-axis']),
    lokrDecompose: /** @type {any} */ (values['lokr-decompose']),
    match: values.match,
  });
  console.log(JSON.stringify(result, null, 1));
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  main(process.argv.slice(2)).catch((err) => {
    console.error(`generate-lora: ${err instanceof Error ? err.message : err}`);
    process.exitCode = 1;
  });
}
