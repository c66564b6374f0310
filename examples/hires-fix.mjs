// @ts-check
// The hires fix: an image made at the model's own size, enlarged ×2, then refined by an
// image-to-image pass at the larger size — one job, whose progress counts both passes. First
// with the default latent upscaler (bilinear in latent space), then in pixel space with Lanczos.
//
//   node examples/hires-fix.mjs [model.safetensors] [out.png]
//
// Without a model, the tiny random SD model (64² → 128², noise).
import { loadModel, writeImage } from 'sdnode';

import { exampleModel } from './inputs.mjs';

const [givenModel, out = 'hires.png'] = process.argv.slice(2);
const model = await exampleModel(givenModel);
const sd = await loadModel(model.path);
const side = model.tiny ? 64 : 512;
const settings = { prompt: 'a lighthouse on a cliff at dusk, detailed', width: side, height: side, steps: model.tiny ? 4 : 20, seed: 7 };

const { images, timings } = await sd.generate({
  ...settings,
  // Twice the size; the second pass runs about 10 steps at strength 0.5.
  hires: { scale: 2, steps: model.tiny ? 2 : 10, strength: 0.5 },
  onProgress: ({ step, steps }) => console.log(`step ${step}/${steps}`),
});
await writeImage(out, images[0]);
console.log(`${side}×${side} → ${images[0].width}×${images[0].height} (first pass ${timings.samplingMs.toFixed(0)} ms, hires pass ${timings.hiresSamplingMs.toFixed(0)} ms): ${out}`);

// In pixel space: decoded, enlarged with Lanczos, encoded again.
const lanczos = await sd.generate({ ...settings, hires: { width: side * 2, height: side * 2, steps: model.tiny ? 2 : 10, strength: 0.5, upscaler: 'lanczos' } });
await writeImage('hires-lanczos.png', lanczos.images[0]);
console.log(`Lanczos: enlarging ${lanczos.timings.hiresUpscaleMs.toFixed(0)} ms: hires-lanczos.png`);
await sd.dispose();
