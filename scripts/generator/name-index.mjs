#!/usr/bin/env node
// Writes tensor indexes ("<name>\t<dim>,<dim>\n" per tensor) of the generator's models in LDM
// and diffusers naming, as seed inputs for the name planner's fuzz target: each index once per
// plan the target can make, its first byte choosing (native/fuzz/fuzz_name_map.cpp: component
// (byte >> 1) % 5, EMA byte & 1).
//   node scripts/generator/name-index.mjs OUT_DIR
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { PRESETS, tensorSpecs } from '../generate-model.mjs';
import { diffusersTensors } from './diffusers-layout.mjs';

const out = process.argv[2];
if (!out) throw new Error('usage: name-index.mjs OUT_DIR');
mkdirSync(out, { recursive: true });
const PLANS = 10;
const text = (tensors) => tensors.map((t) => `${t.name}\t${t.shape.join(',')}\n`).join('');
/** The index as one seed per plan: `<name>-p<k>.txt`, its first byte k. */
function writeSeeds(name, tensors) {
  const body = Buffer.from(text(tensors));
  for (let k = 0; k < PLANS; k++) writeFileSync(join(out, `${name}-p${k}.txt`), Buffer.concat([Buffer.of(k), body]));
}
for (const preset of ['tiny', 'tiny-inpaint']) {
  writeSeeds(`${preset}-ldm`, tensorSpecs(PRESETS[preset]));
  for (const [component, tensors] of Object.entries(diffusersTensors(PRESETS[preset]))) writeSeeds(`${preset}-diffusers-${component}`, tensors);
}
// SD2.x (OpenCLIP names), SDXL (conditioner.embedders.*, label_emb) and the SDXL refiner (bigG
// alone at embedders.0 beside label_emb: the planner's refiner rule) in LDM naming.
for (const preset of ['tiny-sd2', 'tiny-sdxl', 'tiny-sdxl-refiner']) writeSeeds(`${preset}-ldm`, tensorSpecs(PRESETS[preset]));
