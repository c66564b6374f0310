// @ts-check
// ESRGAN upscaling: a picture ×4 with an RRDBNet file (RealESRGAN_x4plus.pth, 4x-UltraSharp.pth,
// .safetensors), in tiles with progress per tile; then generate() with `upscale`, which hands
// every decoded image to the upscaler.
//
//   node examples/upscale.mjs [RealESRGAN_x4plus.pth] [picture.png] [out.png] [model.safetensors]
//
// Without an ESRGAN file a tiny random one is used (its output is near-uniform grey), and the
// picture is kept small; without a model, the tiny random SD model.
import { loadModel, loadUpscaler, writeImage } from 'sdnode';

import { exampleModel, examplePicture, exampleUpscaler } from './inputs.mjs';

const [givenUpscaler, givenPicture, out = 'upscaled.png', givenModel] = process.argv.slice(2);
const { path, tiny } = await exampleUpscaler(givenUpscaler);
const upscaler = await loadUpscaler(path);
console.log(`×${upscaler.scale} upscaler: ${upscaler.blocks} blocks of ${upscaler.features} features (${upscaler.convention} names)`);

let picture = await examplePicture(givenPicture || undefined);
if (tiny) picture = crop(picture, 128, 96);
const upscaled = await upscaler.upscale(picture, {
  tile: tiny ? 64 : 128, // input pixels per tile: memory grows with its area
  onProgress: ({ step, steps, elapsedMs }) => console.log(`tile ${step}/${steps} ${(elapsedMs / 1000).toFixed(1)} s`),
});
await writeImage(out, upscaled);
console.log(`${picture.width}×${picture.height} → ${upscaled.width}×${upscaled.height}: ${out}`);

// The same upscaler after generation: images come back ×4 larger.
const model = await exampleModel(givenModel);
const sd = await loadModel(model.path);
const side = model.tiny ? 64 : 512;
const { images, timings } = await sd.generate({ prompt: 'a lighthouse at dusk', width: side, height: side, steps: model.tiny ? 4 : 20, seed: 3, upscale: { upscaler } });
await writeImage('generated-upscaled.png', images[0]);
console.log(`generated ${side}×${side}, upscaled to ${images[0].width}×${images[0].height} in ${timings.upscaleMs.toFixed(0)} ms: generated-upscaled.png`);
await sd.dispose();
await upscaler.dispose();

/**
 * The top-left width × height of a picture.
 * @param {import('sdnode').Image} p @param {number} width @param {number} height
 * @returns {import('sdnode').Image}
 */
function crop(p, width, height) {
  const data = new Uint8Array(width * height * p.channels);
  for (let y = 0; y < height; y++) data.set(p.data.subarray(y * p.width * p.channels, (y * p.width + width) * p.channels), y * width * p.channels);
  return { width, height, channels: p.channels, data };
}
