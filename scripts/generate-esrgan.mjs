#!/usr/bin/env node
// Writes random RRDBNet (ESRGAN) upscaler weights (scripts/generator/esrgan.mjs):
//
//   node scripts/generate-esrgan.mjs --out x4plus.pth --preset x4plus --layout basicsr --seed 1
//
// .pth or .safetensors by the --out extension; layouts 'basicsr' (Real-ESRGAN) or 'esrgan'
// (the original ESRGAN's, as 4x-UltraSharp). Prints { path, config } as JSON.
import { parseArgs } from 'node:util';

import { ESRGAN_LAYOUTS, ESRGAN_PRESETS, generateEsrgan } from './generator/esrgan.mjs';

const USAGE = `usage: node scripts/generate-esrgan.mjs --out FILE.{pth,safetensors} [--preset ${Object.keys(ESRGAN_PRESETS).join('|')}]
         [--layout ${ESRGAN_LAYOUTS.join('|')}] [--seed N] [--gain G]`;

const { values } = parseArgs({
  options: {
    out: { type: 'string', short: 'o' },
    preset: { type: 'string', short: 'p' },
    layout: { type: 'string', short: 'l' },
    seed: { type: 'string', short: 's' },
    gain: { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  },
  strict: true,
});
if (values.help) {
  console.log(USAGE);
} else {
  if (!values.out) throw new TypeError(`--out is required\n${USAGE}`);
  const preset = /** @type {keyof typeof ESRGAN_PRESETS} */ (values.preset ?? 'x4plus');
  if (!(preset in ESRGAN_PRESETS)) throw new RangeError(`--preset must be one of ${Object.keys(ESRGAN_PRESETS).join(', ')}`);
  const result = await generateEsrgan({
    out: values.out,
    preset,
    layout: /** @type {'basicsr' | 'esrgan'} */ (values.layout ?? 'basicsr'),
    seed: values.seed === undefined ? 0 : Number(values.seed),
    ...(values.gain === undefined ? {} : { gain: Number(values.gain) }),
  });
  console.log(JSON.stringify({ path: result.path, config: result.config }));
}
