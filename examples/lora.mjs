// @ts-check
// LoRAs per request, on one loaded model: `<lora:name:weight>` tags in the prompt name files of
// loadModel's `loraDir` (as in the webui and stable-diffusion.cpp), or a LoRA loaded once with
// model.loadLora() is passed to every request that wants it. The base weights are never
// changed: a request without LoRAs gets the base model's image.
//
//   node examples/lora.mjs [model.safetensors] [lora-folder] [name-a] [name-b]
//
// name-a and name-b are LoRA file names in the folder, without extension. Without a model, a
// tiny random-weight one is used with random LoRAs written for it (the images are noise).
import { join } from 'node:path';
import { existsSync } from 'node:fs';

import { LORA_EXTENSIONS, loadModel, writeImage } from 'sdnode';

import { exampleLoraDir, exampleModel } from './inputs.mjs';

const [givenModel, givenDir, a = 'watercolor', b = 'detail'] = process.argv.slice(2);
const { path, tiny } = await exampleModel(givenModel);
const loraDir = await exampleLoraDir(givenDir, path, [a, b]);

const model = await loadModel(path, { loraDir });
const base = {
  width: tiny ? 64 : 512,
  height: tiny ? 64 : 512,
  steps: tiny ? 4 : 20,
  seed: 42,
};

/**
 * What a result says about its LoRAs: each file's weight and what of it fits this model
 * (a LoRA for another family shows its tensors as unmatched), and the time spent applying them.
 * @param {string} label
 * @param {import('sdnode').GenerateResult} result
 */
function describe(label, result) {
  console.log(`${label}: loraMs ${result.timings.loraMs.toFixed(1)}, sampling ${Math.round(result.timings.samplingMs)} ms`);
  for (const l of result.loras) {
    const r = l.report;
    console.log(`  ${l.name} × ${l.weight}: ${r.appliedTensors}/${r.tensors} tensors patch ${r.targets} weights; unmatched ${r.unmatched.length}, incompatible ${r.incompatible.length}`);
  }
}

try {
  // 1. Tags: each request says which LoRAs it wants. The set applied is kept between requests,
  //    so the same tags again cost nothing; another set is applied in place of it.
  const prompts = [
    `a castle on a hill <lora:${a}:0.8>`,
    `a castle on a hill <lora:${a}:0.8>`,
    `a castle on a hill <lora:${a}:0.4> <lora:${b}:0.6>`,
    'a castle on a hill',
  ];
  for (const [i, prompt] of prompts.entries()) {
    const result = await model.generate({ ...base, prompt });
    describe(`tags ${i + 1} "${prompt}"`, result);
    await writeImage(`lora-tags-${i + 1}.png`, result.images[0]);
  }

  // 2. A handle: read and matched to the model once, reused by any number of requests (here
  //    with different weights), then disposed.
  const file = LORA_EXTENSIONS.map((ext) => join(loraDir, a + ext)).find((f) => existsSync(f));
  if (!file) throw new Error(`no LoRA named ${a} in ${loraDir}`);
  // strict: an error, rather than a report, when part of the file fits no weight of this model.
  const lora = await model.loadLora(file, { strict: false });
  console.log(`loaded ${lora.name}: ${JSON.stringify(lora.report)}`);
  try {
    for (const [i, weight] of [1, 1, 0.5].entries()) {
      const result = await model.generate({ ...base, prompt: 'a castle on a hill', loras: [{ lora, weight }] });
      describe(`handle × ${weight}`, result);
      await writeImage(`lora-handle-${i + 1}.png`, result.images[0]);
    }
  } finally {
    await lora.dispose();
  }
} finally {
  await model.dispose();
}
