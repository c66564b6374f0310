// @ts-check
// An image in 4 steps with the LCM-LoRA: a LoRA distilled from latent consistency training that
// turns an SD1.5 checkpoint into a few-step model. The recipe: the LCM sampler (its own
// schedule of training timesteps), guidance 1–2 (1 skips the unconditional pass: half the
// work per step), 4 steps (2–8 work; more do not help), the LoRA at weight 1.
//
//   node examples/lcm-lora.mjs [model.safetensors] [lora-folder] [out.png]
//
// For SD1.5, get the latent-consistency/lcm-lora-sdv1-5 weights (pytorch_lora_weights.safetensors)
// and save them in the folder as lcm-lora-sdv1-5.safetensors; for SDXL the same with
// lcm-lora-sdxl (and name it in the prompt instead). Without a model, a tiny random-weight one
// is used with a random stand-in LoRA under that name: the steps and timings are real, the
// picture is noise.
import { loadModel, writeImage } from 'sdnode';

import { exampleLoraDir, exampleModel } from './inputs.mjs';

const LCM_LORA = 'lcm-lora-sdv1-5';
const [givenModel, givenDir, out = 'lcm-lora.png'] = process.argv.slice(2);
const { path, tiny } = await exampleModel(givenModel);
const loraDir = await exampleLoraDir(givenDir, path, [LCM_LORA]);

const model = await loadModel(path, { loraDir });
try {
  const result = await model.generate({
    prompt: `a photo of a red fox in the snow, sharp focus <lora:${LCM_LORA}:1>`,
    width: tiny ? 64 : 512,
    height: tiny ? 64 : 512,
    sampler: 'lcm',  // its default schedule is 'lcm'
    steps: 4,
    cfgScale: 1.5,
    seed: 42,
    onProgress: ({ step, steps }) => console.log(`step ${step}/${steps}`),
  });
  const [lora] = result.loras;
  console.log(`${lora.name}: ${lora.report.targets} weights patched (${lora.report.unmatched.length} tensors unmatched) in ${result.timings.loraMs.toFixed(1)} ms`);
  await writeImage(out, result.images[0]);
  console.log(`${out}: ${result.images[0].width}×${result.images[0].height}, sampling ${Math.round(result.timings.samplingMs)} ms`);
} finally {
  await model.dispose();
}
