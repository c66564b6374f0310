// @ts-check
// Text-to-image from an ES module: load a checkpoint, generate one image, write it as a PNG.
//
//   node examples/txt2img.mjs [model.safetensors] [out.png]
//
// Without a model, a tiny random-weight one is written first (examples/inputs.mjs): the
// picture is noise, but every stage of the real pipeline runs, in seconds.
import { loadModel, writeImage } from 'sdnode';

import { exampleModel } from './inputs.mjs';

const [given, out = 'txt2img.png'] = process.argv.slice(2);
const { path, tiny } = await exampleModel(given);

// Loading reads the weights off the JavaScript thread; `device: 'auto'` (the default) takes the
// first GPU the addon was built for, else the CPU.
const model = await loadModel(path);
console.log(`loaded ${path} (${model.info.family}) on ${model.info.device} in ${Math.round(model.info.loadMs)} ms`);

try {
  const { images, seed, timings } = await model.generate({
    prompt: 'a photo of a lovely cat, (sharp focus:1.2), golden hour',
    negativePrompt: 'blurry, lowres',
    // SD1.x was trained at 512 × 512; the tiny model is only here to run quickly.
    width: tiny ? 64 : 512,
    height: tiny ? 64 : 512,
    steps: tiny ? 8 : 20,
    cfgScale: 7,
    sampler: 'euler_a',
    seed: 42, // leave it out for a random one; the result says which was used
    // Called on the JS thread after every sampler step.
    onProgress: ({ step, steps, elapsedMs }) => console.log(`step ${step}/${steps} (${(elapsedMs / 1000).toFixed(1)} s)`),
  });
  await writeImage(out, images[0]);
  console.log(`${out}: ${images[0].width}×${images[0].height}, seed ${seed}, sampling ${Math.round(timings.samplingMs)} ms`);
} finally {
  // Frees the weights (after any job still queued on this model has finished).
  await model.dispose();
}
