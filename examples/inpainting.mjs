// @ts-check
// Inpainting: repaint only part of a picture. The mask is an image of the same size, white
// where the model paints and black where the picture stays; here a disc drawn in code.
// Pixels farther than `maskBlur` from the white area keep their exact values.
//
//   node examples/inpainting.mjs [model.safetensors] [picture.png] [out.png]
//
// Any SD1.x checkpoint inpaints; a dedicated inpainting model (9-channel UNet, e.g.
// sd-v1-5-inpainting.ckpt) is detected and blends the new part in better.
import { loadModel, writeImage } from 'sdnode';

import { exampleModel, examplePicture, sizeFor } from './inputs.mjs';

const [given, picturePath, out = 'inpainting.png'] = process.argv.slice(2);
const { path, tiny } = await exampleModel(given);
const picture = await examplePicture(picturePath);

// The mask: one byte per pixel (channels: 1), a white disc in the middle of the picture.
const { width, height } = picture;
const radius = Math.min(width, height) / 4;
const mask = { width, height, channels: /** @type {const} */ (1), data: new Uint8Array(width * height) };
for (let y = 0; y < height; y++) {
  for (let x = 0; x < width; x++) {
    if ((x - width / 2) ** 2 + (y - height / 2) ** 2 < radius ** 2) mask.data[y * width + x] = 255;
  }
}

const model = await loadModel(path);
console.log(model.info.inpaint ? 'an inpainting model (9-channel UNet)' : 'a standard model: the latent outside the mask is kept at every step');
const { images, seed } = await model.generate({
  prompt: 'a sailing boat on the sea, oil painting',
  initImage: picture,
  mask,
  maskBlur: 8, // pixels: softens the mask's edge so the new part blends in
  strength: 1, // redraw the masked area completely
  // The picture and its mask are stretched together to width × height: keep the aspect ratio.
  ...(tiny ? sizeFor(picture, 64, 16) : sizeFor(picture, 512, 64)),
  steps: tiny ? 8 : 25,
  seed: 99,
  onProgress: ({ step, steps }) => console.log(`step ${step}/${steps}`),
});
await writeImage(out, images[0]);
console.log(`${out}: ${images[0].width}×${images[0].height}, seed ${seed}`);
await model.dispose();
