#!/usr/bin/env node
// Writes tensor indexes ("<name>\t<dim>,<dim>\n" per tensor) of the generator's models in LDM
// and diffusers naming, as seed inputs for the name planner's fuzz target.
//   node scripts/generator/name-index.mjs OUT_DIR
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { PRESETS, tensorSpecs } from '../generate-model.mjs';
import { diffusersTensors } from './diffusers-layout.mjs';

const out = process.argv[2];
if (!out) throw new Error('usage: name-index.mjs OUT_DIR');
mkdirSync(out, { recursive: true });
const index = (tensors) => tensors.map((t) => `${t.name}\t${t.shape.join(',')}\n`).join('');
for (const preset of ['tiny', 'tiny-inpaint']) {
  writeFileSync(join(out, `${preset}-ldm.txt`), index(tensorSpecs(PRESETS[preset])));
  for (const [component, tensors] of Object.entries(diffusersTensors(PRESETS[preset]))) {
    writeFileSync(join(out, `${preset}-diffusers-${component}.txt`), index(tensors));
  }
}
// SD2.x (OpenCLIP names) and SDXL (conditioner.embedders.*, label_emb) in LDM naming.
for (const preset of ['tiny-sd2', 'tiny-sdxl']) writeFileSync(join(out, `${preset}-ldm.txt`), index(tensorSpecs(PRESETS[preset])));
