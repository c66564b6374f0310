// @ts-check
// What the examples (and `npm run demo`) use when the command line gives no model or picture:
//
// - a tiny random-weight SD1.x checkpoint written by this repository's generator
//   (scripts/generate-model.mjs), about 7 MB, cached in the OS temp folder. Its images are
//   noise, not cats, but it runs every stage of the real pipeline in seconds, so each example
//   can be tried without downloading a 2 GB checkpoint;
// - random LoRAs for that tiny model (scripts/generator/lora.mjs), with the names and shapes
//   kohya's and LyCORIS's trainers write, cached beside it: they change its noise, nothing more;
// - a tiny random RRDBNet for the upscaling example (scripts/generator/esrgan.mjs), with
//   Real-ESRGAN x4plus's key names and ×4 scale but 8 features and one block: it runs every
//   stage of the real network, and its output is near-uniform grey;
// - a tiny random ControlNet for that tiny model (scripts/generator/controlnet.mjs): the
//   ControlNet-v1-1 layout at the tiny model's widths, random zero convs, so its hint moves the noise;
// - a picture drawn in code (a sunset over the sea), the kind of rough sketch image-to-image
//   turns into a painting with a real model.
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { readImage } from 'sdnode';

import { GENERATOR_VERSION, generateModel } from '../scripts/generate-model.mjs';
import { generateControlNet } from '../scripts/generator/controlnet.mjs';
import { generateEsrgan } from '../scripts/generator/esrgan.mjs';
import { LORA_GENERATOR_VERSION, generateLora } from '../scripts/generator/lora.mjs';

/**
 * The checkpoint to use: `given` when it is a non-empty path, else the cached tiny model
 * (written on first use). `tiny` tells the caller to pick small sizes and few steps.
 * @param {string | undefined} given
 * @returns {Promise<{ path: string, tiny: boolean }>}
 */
export async function exampleModel(given) {
  if (given) return { path: given, tiny: false };
  // The generator's version is in the name, so a cache from an older generator is not reused.
  const path = join(tmpdir(), `sdnode-example-tiny-v${GENERATOR_VERSION}.safetensors`);
  // generateModel writes to a temporary file and renames it into place, so two examples
  // started at once never see half a file.
  if (!existsSync(path)) await generateModel({ out: path, preset: 'tiny', seed: 1 });
  return { path, tiny: true };
}

/**
 * The LoRA folder to use: `given` when it is a non-empty path, else a cached folder of random
 * LoRAs for the tiny model at `modelPath`, one `<name>.safetensors` per name (written on first
 * use; a kohya LoRA/LoCon of the attention, convolution and text-encoder weights).
 * @param {string | undefined} given
 * @param {string} modelPath
 * @param {string[]} names
 * @returns {Promise<string>}
 */
export async function exampleLoraDir(given, modelPath, names) {
  if (given) return given;
  const dir = join(tmpdir(), `sdnode-example-loras-v${GENERATOR_VERSION}.${LORA_GENERATOR_VERSION}`);
  await mkdir(dir, { recursive: true });
  for (const [i, name] of names.entries()) {
    const out = join(dir, `${name}.safetensors`);
    // Written to a temporary file and renamed into place, as the model is.
    if (!existsSync(out)) await generateLora({ model: modelPath, out, format: 'lora', targets: ['attn', 'conv', 'te'], rank: 4, alpha: 2, seed: i + 1 });
  }
  return dir;
}

/**
 * The ESRGAN file to use: `given` when it is a non-empty path, else a cached tiny random one
 * (written on first use). `tiny` tells the caller to keep pictures small.
 * @param {string | undefined} given
 * @returns {Promise<{ path: string, tiny: boolean }>}
 */
export async function exampleUpscaler(given) {
  if (given) return { path: given, tiny: false };
  const path = join(tmpdir(), 'sdnode-example-esrgan-tiny-x4-v1.pth');
  if (!existsSync(path)) await generateEsrgan({ out: path, preset: 'tiny-x4', seed: 1, gain: 0.5 });
  return { path, tiny: true };
}

/**
 * The ControlNet to use: `given` when it is a non-empty path, else a cached tiny random one
 * that fits the tiny model (written on first use).
 * @param {string | undefined} given
 * @returns {Promise<string>}
 */
export async function exampleControlNet(given) {
  if (given) return given;
  const path = join(tmpdir(), 'sdnode-example-controlnet-tiny-v1.safetensors');
  if (!existsSync(path)) await generateControlNet({ out: path, preset: 'tiny', seed: 1 });
  return path;
}

/**
 * The picture at `given` (any PNG, JPEG or WebP), else a drawn 512 × 384 sunset: sky gradient,
 * sun, sea. 8-bit RGB.
 * @param {string | undefined} given
 * @returns {Promise<import('sdnode').Image>}
 */
export async function examplePicture(given) {
  if (given) return readImage(given);
  const width = 512, height = 384, horizon = 240;
  const data = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const t = y / horizon;
      const inSun = (x - 256) ** 2 + (y - 200) ** 2 < 48 ** 2;
      const rgb = y >= horizon
        ? [20, 40 + (y - horizon) / 6, 90 + (y - horizon) / 3] // sea, darker near the horizon
        : inSun
          ? [255, 220, 120]
          : [60 + 190 * t, 60 + 80 * t, 140 - 60 * t]; // sky, from blue to orange
      data.set(rgb.map(Math.round), (y * width + x) * 3);
    }
  }
  return { width, height, channels: 3, data };
}

/**
 * width × height with the longer side about `long`, keeping the picture's aspect ratio
 * (generate() stretches the init image to the size it is given). Sides are rounded to
 * multiples of `multiple`: the UNet halves the latent (1/8 of the pixels) at each level, and
 * the engine needs latent sides it can halve evenly — 64 pixels for SD1.x's four levels, 16 for
 * the tiny model's two.
 * @param {{ width: number, height: number }} picture
 * @param {number} long
 * @param {number} multiple
 */
export function sizeFor({ width, height }, long, multiple) {
  const scale = long / Math.max(width, height);
  const side = (/** @type {number} */ n) => Math.max(multiple, Math.round((n * scale) / multiple) * multiple);
  return { width: side(width), height: side(height) };
}
