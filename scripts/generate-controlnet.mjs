#!/usr/bin/env node
// Writes random ControlNet weights that fit a model preset (scripts/generator/controlnet.mjs):
//
//   node scripts/generate-controlnet.mjs --out cn.safetensors --preset sd15 --seed 1
//
// .safetensors or .pth by the --out extension (ControlNet-v1-1 names under control_model.,
// --bare without it); --layout diffusers writes a ControlNetModel folder at --out. Prints
// { path, tensors } as JSON.
import { parseArgs } from 'node:util';

import { CONTROLNET_LAYOUTS, generateControlNet } from './generator/controlnet.mjs';

const USAGE = `usage: node scripts/generate-controlnet.mjs --out FILE|DIR [--preset tiny|sd15|...] [--layout ${CONTROLNET_LAYOUTS.join('|')}]
         [--bare] [--dtype f16|f32] [--hint full|tiny] [--seed N]`;

const { values } = parseArgs({
  options: {
    out: { type: 'string', short: 'o' },
    preset: { type: 'string', short: 'p' },
    layout: { type: 'string', short: 'l' },
    bare: { type: 'boolean' },
    dtype: { type: 'string' },
    hint: { type: 'string' },
    seed: { type: 'string', short: 's' },
    help: { type: 'boolean', short: 'h' },
  },
  strict: true,
});
if (values.help) {
  console.log(USAGE);
} else {
  if (!values.out) throw new TypeError(`--out is required\n${USAGE}`);
  const result = await generateControlNet({
    out: values.out,
    preset: values.preset ?? 'tiny',
    layout: /** @type {'ldm' | 'diffusers'} */ (values.layout ?? 'ldm'),
    prefix: !values.bare,
    dtype: /** @type {'f16' | 'f32'} */ (values.dtype ?? 'f16'),
    ...(values.hint ? { hint: /** @type {'full' | 'tiny'} */ (values.hint) } : {}),
    seed: values.seed === undefined ? 0 : Number(values.seed),
  });
  console.log(JSON.stringify({ path: result.path, tensors: result.specs.length }));
}
