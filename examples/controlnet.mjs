// @ts-check
// ControlNet: the Canny edges of a photo guide the picture's composition. The edges are made
// with canny() (shown and written as edges.png), then generate() runs with the ControlNet at
// full strength, and again with it active only in the first half of the steps (the composition
// is set early; the later steps are left free).
//
//   node examples/controlnet.mjs [model.safetensors] [control_v11p_sd15_canny.pth] [photo.png] [out.png]
//
// Without a model and ControlNet, the tiny random ones (the images are noise the edges move);
// without a photo, a sunset drawn in code.
import { canny, loadModel, writeImage } from 'sdnode';

import { exampleControlNet, exampleModel, examplePicture, sizeFor } from './inputs.mjs';

const [givenModel, givenControlNet, givenPhoto, out = 'controlnet.png'] = process.argv.slice(2);
const model = await exampleModel(givenModel || undefined);
const sd = await loadModel(model.path);
const controlNet = await sd.loadControlNet(await exampleControlNet(givenControlNet || undefined));
console.log(`ControlNet: ${controlNet.blocks} input blocks, ${controlNet.convention} names, ${controlNet.format}`);

const photo = await examplePicture(givenPhoto || undefined);
const edges = canny(photo, { low: 100, high: 200 }); // the webui's defaults
await writeImage('edges.png', edges);
console.log(`edges of the ${photo.width}×${photo.height} photo: edges.png`);

// The photo's aspect ratio at the model's scale; the hint is stretched to this size.
const { width, height } = sizeFor(photo, model.tiny ? 64 : 512, 64);
const job = { prompt: 'a watercolor landscape at sunset', negativePrompt: 'blurry', width, height, steps: model.tiny ? 4 : 20, seed: 7 };
const guided = await sd.generate({ ...job, controlNets: [{ model: controlNet, image: edges, strength: 1 }] });
await writeImage(out, guided.images[0]);
console.log(`guided by the edges: ${out} (${(guided.timings.samplingMs / 1000).toFixed(1)} s sampling)`);

// preprocess: 'canny' does the same from the photo itself; end: 0.5 frees the second half of the steps.
const early = await sd.generate({ ...job, controlNets: [{ model: controlNet, image: photo, preprocess: 'canny', end: 0.5 }] });
await writeImage('controlnet-early.png', early.images[0]);
console.log(`guided in the first half of the steps only: controlnet-early.png`);

await controlNet.dispose();
await sd.dispose();
