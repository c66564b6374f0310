// @ts-check
// Text-to-image from CommonJS: the same as txt2img.mjs, with require().
//
//   node examples/txt2img.cjs [model.safetensors] [out.png]
//
// Without a model, a tiny random-weight one is written first (examples/inputs.mjs).
'use strict';
const { loadModel, writeImage } = require('sdnode');

async function main() {
  const [given, out = 'txt2img-cjs.png'] = process.argv.slice(2);
  // The inputs helper is an ES module: CommonJS loads it with import().
  const { exampleModel } = await import('./inputs.mjs');
  const { path, tiny } = await exampleModel(given);

  const model = await loadModel(path);
  try {
    const { images, seed } = await model.generate({
      prompt: 'a watercolor painting of a lighthouse at dawn',
      width: tiny ? 64 : 512,
      height: tiny ? 64 : 512,
      steps: tiny ? 8 : 20,
      seed: 7,
      onProgress: ({ step, steps }) => console.log(`step ${step}/${steps}`),
    });
    await writeImage(out, images[0]);
    console.log(`${out}: ${images[0].width}×${images[0].height}, seed ${seed}`);
  } finally {
    await model.dispose();
  }
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
