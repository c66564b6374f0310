// @ts-check
// Outpainting: widen a photo by 64 pixels on each side and let the model paint the new border.
// It is inpainting on a padded image: the mask is white where the padding is, black over the
// photo, so the photo's pixels come back unchanged.
//
//   node examples/outpainting.mjs [model] [image] [out.png]
//
// Without a model, a tiny random-weight one is written first (expect noise in the border), and
// the photo is made 64 px high with a 16 px border so that it runs in seconds.
import sharp from 'sharp';

import { loadModel, readImage, writeImage } from 'sdnode';

import { exampleModel } from './inputs.mjs';

const [given, imagePath = '../shared/data/images/chelsea.png', out = 'outpainted.png'] = process.argv.slice(2);
const { path: modelPath, tiny } = await exampleModel(given);
const [high, pad, steps] = tiny ? [64, 16, 8] : [256, 64, 20];

// The photo 256 px high (64 on the tiny model), width a multiple of 64 (the UNet must halve the
// latent evenly: see sizeFor in inputs.mjs), then padded by repeating its edge pixels (a better
// start for the border than black).
const photo = await readImage(imagePath);
const { data, info } = await sharp(photo.data, { raw: { width: photo.width, height: photo.height, channels: 3 } })
  .resize({ height: high, width: Math.round((high * photo.width) / photo.height / 64) * 64, fit: 'fill' })
  .extend({ top: pad, bottom: pad, left: pad, right: pad, extendWith: 'copy' })
  .raw()
  .toBuffer({ resolveWithObject: true });
const initImage = { width: info.width, height: info.height, channels: /** @type {const} */ (3), data: new Uint8Array(data) };

const mask = { width: info.width, height: info.height, channels: /** @type {const} */ (1), data: new Uint8Array(info.width * info.height).fill(255) };
for (let y = pad; y < info.height - pad; y++) mask.data.fill(0, y * info.width + pad, (y + 1) * info.width - pad);

const model = await loadModel(modelPath);
const { images, seed } = await model.generate({
  prompt: 'a cat on a sofa, wide shot',
  initImage,
  mask,
  maskBlur: 8,
  strength: 1,
  steps,
  onProgress: ({ step, steps }) => process.stdout.write(`\rstep ${step}/${steps}`),
});
await writeImage(out, images[0]);
console.log(`\n${out}: ${images[0].width}×${images[0].height}, seed ${seed}`);
await model.dispose();
