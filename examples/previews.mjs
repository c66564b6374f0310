// @ts-check
// Progress with live previews: every few sampler steps, the image the sampler is heading for
// arrives with the progress event; here each one is written as a PNG, as a UI would show it.
//
//   node examples/previews.mjs [model.safetensors] [taesd_decoder.pth] [out-folder]
//
// Previews come in two kinds: 'latent2rgb', a nearly free linear projection of the latent
// (blocky: one colour per 8 × 8 pixels), and 'tae', a TAESD decoder (madebyollin/taesd's
// taesd_decoder.pth), sharp and still far cheaper than the full VAE. Without a model, a tiny
// random-weight one is used.
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';

import { loadModel, writeImage } from 'sdnode';

import { exampleModel } from './inputs.mjs';

const [given, taesd, outDir = 'previews'] = process.argv.slice(2);
const { path, tiny } = await exampleModel(given);
await mkdir(outDir, { recursive: true });

// A TAESD decoder is loaded with the model, as its `tae` component.
const model = await loadModel(taesd ? { model: path, tae: taesd } : path);
const steps = tiny ? 8 : 20;
/** @type {Promise<void>[]} */
const writes = [];
const { images } = await model.generate({
  prompt: 'a castle on a hill under a starry sky',
  width: tiny ? 64 : 512,
  height: tiny ? 64 : 512,
  steps,
  seed: 5,
  preview: taesd ? 'tae' : 'latent2rgb',
  previewInterval: tiny ? 2 : 4, // a preview every 4 steps, and one at the last step
  onProgress: ({ step, steps, elapsedMs, preview }) => {
    console.log(`step ${step}/${steps} ${(elapsedMs / 1000).toFixed(1)} s${preview ? ' (preview)' : ''}`);
    // onProgress runs on the JS thread and must not block: start the write, await it later.
    if (preview) writes.push(writeImage(join(outDir, `step-${String(step).padStart(2, '0')}.png`), preview));
  },
});
writes.push(writeImage(join(outDir, 'final.png'), images[0]));
await Promise.all(writes);
console.log(`${writes.length - 1} previews and final.png in ${outDir}/`);
await model.dispose();
