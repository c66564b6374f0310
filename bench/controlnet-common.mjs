// What the ControlNet benches share: the full-size random ControlNet they run (written once into
// the bench cache) and the hint they give it, a photo from ../shared/data stretched to the
// output size and reduced to its Canny edges.
import { existsSync, mkdirSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';

import { canny } from '../dist/index.js';
import { generateControlNet } from '../scripts/generator/controlnet.mjs';

export const benchCache = join(homedir(), '.cache', 'sdnode', 'bench');

/** `given`, else ~/.cache/sdnode/bench/controlnet-sd15-f16.safetensors (SD1.5-shaped, f16, seed 1), written if missing. */
export async function benchControlNet(given) {
  if (given) return given;
  const path = join(benchCache, 'controlnet-sd15-f16.safetensors');
  if (!existsSync(path)) {
    mkdirSync(benchCache, { recursive: true });
    console.log(`writing ${path} …`);
    await generateControlNet({ out: path, preset: 'sd15', dtype: 'f16', seed: 1 });
  }
  return path;
}

/** The Canny edges of ../shared/data/images/`name` stretched to side × side. */
export async function cannyHint(name, side) {
  const photo = fileURLToPath(new URL(`../../shared/data/images/${name}`, import.meta.url));
  const { data, info } = await sharp(photo).removeAlpha().resize(side, side, { fit: 'fill' }).raw().toBuffer({ resolveWithObject: true });
  return canny({ width: info.width, height: info.height, channels: 3, data: new Uint8Array(data) });
}
