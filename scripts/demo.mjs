#!/usr/bin/env node
// @ts-check
// `npm run demo`: the main job end to end — text-to-image, image-to-image from its result, and
// inpainting a disc in the middle — with a progress line per step and the time each took.
//
//   npm run demo                                     a tiny generated model (random weights: noise)
//   npm run demo -- --model v1-5-pruned-emaonly.safetensors --size 512 --steps 20
//
// Options: --model PATH, --size N (square side; multiples of 64 suit SD1.x; default 128 on the
// tiny model, 512 otherwise), --steps N (default 8 / 20), --seed N (default 42), --prompt TEXT,
// --image PATH (start image-to-image and inpainting from this picture instead of the
// text-to-image result), --out DIR (default ./demo-output). Exit status: 0 done, 1 failed,
// 2 bad arguments.
import { mkdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';

import { loadModel, readImage, writeImage } from 'sdnode';

import { exampleModel } from '../examples/inputs.mjs';

const USAGE = 'usage: npm run demo -- [--model PATH] [--size N] [--steps N] [--seed N] [--prompt TEXT] [--image PATH] [--out DIR]';
const REAL = 'npm run demo -- --model v1-5-pruned-emaonly.safetensors --size 512 --steps 20';

/** A command-line mistake: exit status 2 and the usage line. */
class UsageError extends Error {}

const seconds = (/** @type {number} */ ms) => `${(ms / 1000).toFixed(2)} s`;

/** @param {string} name @param {string | undefined} value @param {number} fallback */
function integer(name, value, fallback) {
  if (value === undefined) return fallback;
  if (!/^[0-9]+$/.test(value)) throw new UsageError(`--${name} must be a non-negative integer, got '${value}'`);
  return Number(value);
}

/** @param {string[]} argv */
function options(argv) {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        model: { type: 'string', short: 'm' },
        size: { type: 'string' },
        steps: { type: 'string' },
        seed: { type: 'string', short: 's' },
        prompt: { type: 'string', short: 'p' },
        image: { type: 'string', short: 'i' },
        out: { type: 'string', short: 'o' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
    }));
  } catch (err) {
    throw new UsageError(/** @type {Error} */ (err).message);
  }
  const tiny = values.model === undefined;
  return {
    help: values.help ?? false,
    model: values.model,
    image: values.image,
    size: integer('size', values.size, tiny ? 128 : 512),
    steps: integer('steps', values.steps, tiny ? 8 : 20),
    seed: integer('seed', values.seed, 42),
    prompt: values.prompt ?? 'a cozy cabin in a snowy forest at dusk, warm light in the windows',
    outDir: resolve(values.out ?? 'demo-output'),
  };
}

/** @param {ReturnType<typeof options>} o */
async function demo(o) {
  const t0 = performance.now();
  const { path, tiny } = await exampleModel(o.model);
  if (tiny) console.log(`no --model given: using a tiny random-weight SD1.x model (${path}); expect noise, not pictures`);
  await mkdir(o.outDir, { recursive: true });
  const model = await loadModel(path);
  console.log(`model: ${model.info.family}${model.info.inpaint ? ' (inpainting)' : ''} on ${model.info.device}, ready in ${seconds(performance.now() - t0)}`);

  /**
   * One generation with a progress line per step; writes its image and returns it.
   * @param {string} name
   * @param {Omit<import('sdnode').GenerateOptions, 'onProgress'>} options
   */
  const run = async (name, options) => {
    const file = join(o.outDir, `demo-${name}.png`);
    const started = performance.now();
    let last = 0;
    const { images, timings: t } = await model.generate({
      ...options,
      // elapsedMs counts from the job's start: the first step includes encoding the prompt.
      onProgress: ({ step, steps, elapsedMs }) => {
        console.log(`  ${name} step ${String(step).padStart(String(steps).length)}/${steps}  ${((elapsedMs - last) / 1000).toFixed(2)} s/it  ${seconds(elapsedMs)}`);
        last = elapsedMs;
      },
    });
    const image = images[0];
    await writeImage(file, image);
    console.log(
      `${name}: ${file} (${image.width}×${image.height}) in ${seconds(performance.now() - started)}` +
        ` — text ${seconds(t.textEncodeMs)}, image encode ${seconds(t.imageEncodeMs)}, sampling ${seconds(t.samplingMs)}, decode ${seconds(t.decodeMs)}`,
    );
    return image;
  };

  try {
    const base = { prompt: o.prompt, negativePrompt: 'blurry, lowres', width: o.size, height: o.size, steps: o.steps, seed: o.seed };
    const picture = await run('txt2img', base);
    const start = o.image ? await readImage(o.image) : picture;
    await run('img2img', { ...base, prompt: `${o.prompt}, oil painting`, initImage: start, strength: 0.6 });

    // The mask: white (repaint) inside a disc in the middle, black (keep) elsewhere.
    const { width, height } = start;
    const mask = { width, height, channels: /** @type {const} */ (1), data: new Uint8Array(width * height) };
    const r = Math.min(width, height) / 4;
    for (let y = 0; y < height; y++)
      for (let x = 0; x < width; x++) if ((x - width / 2) ** 2 + (y - height / 2) ** 2 < r * r) mask.data[y * width + x] = 255;
    await run('inpaint', { ...base, prompt: 'a snowman with a red scarf', initImage: start, mask, strength: 1 });
  } finally {
    await model.dispose();
  }
  console.log(`all done in ${seconds(performance.now() - t0)}; PNGs in ${o.outDir}`);
  if (tiny) console.log(`on a real checkpoint: ${REAL}`);
}

try {
  const o = options(process.argv.slice(2));
  if (o.help) console.log(`${USAGE}\non a real checkpoint: ${REAL}`);
  else await demo(o);
} catch (err) {
  // Options generate() refuses (TypeError/RangeError, e.g. a size that is not a multiple of 8)
  // are usage mistakes too.
  const usage = err instanceof UsageError || err instanceof TypeError || err instanceof RangeError;
  console.error(`demo: ${err instanceof Error ? err.message : String(err)}${usage ? `\n${USAGE}` : ''}`);
  process.exitCode = usage ? 2 : 1;
}
