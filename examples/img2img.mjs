// @ts-check
// Image-to-image: start from a picture instead of pure noise. `strength` says how much of it is
// redrawn: 0 keeps it, 1 ignores it; 0.5–0.8 keeps the composition and changes the rest.
//
//   node examples/img2img.mjs [model.safetensors] [picture.png] [out.png]
//
// Without a picture, a sunset drawn in code is used (examples/inputs.mjs); without a model, a
// tiny random-weight one.
import { loadModel, writeImage } from 'sdnode';

import { exampleModel, examplePicture, sizeFor } from './inputs.mjs';

const [given, picturePath, out = 'img2img.png'] = process.argv.slice(2);
const { path, tiny } = await exampleModel(given);
const picture = await examplePicture(picturePath);

const model = await loadModel(path);
const { images, seed, timings } = await model.generate({
  prompt: 'a sunset over a calm sea, oil painting, impasto',
  initImage: picture,
  strength: 0.6,
  // The picture is stretched to width × height: keep its aspect ratio, longer side 512.
  ...(tiny ? sizeFor(picture, 64, 16) : sizeFor(picture, 512, 64)),
  steps: tiny ? 10 : 30,
  seed: 1234,
  // Only the last ⌈steps × strength⌉ steps run (18 of 30 here), as in stable-diffusion-webui.
  onProgress: ({ step, steps }) => console.log(`step ${step}/${steps}`),
});
await writeImage(out, images[0]);
console.log(`${out}: ${images[0].width}×${images[0].height}, seed ${seed}`);
console.log(`encoding the picture ${Math.round(timings.imageEncodeMs)} ms, sampling ${Math.round(timings.samplingMs)} ms`);
// Frees the weights. (In TypeScript, or Node ≥ 24, `await using model = …` does this at the end of the scope.)
await model.dispose();
