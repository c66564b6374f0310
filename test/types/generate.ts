// model.generate() and friends as a TypeScript user writes them, from the published
// dist/index.d.ts (the 'sdnode' self-reference). Every `@ts-expect-error` line is a misuse that
// must not compile: if a type change lets it through, `tsc -p tsconfig.examples.json` fails on
// the unused directive. Type-checked only, never run.
import {
  AbortError,
  SAMPLERS,
  loadModel,
  readImage,
  writeImage,
  type GenerateOptions,
  type GenerateResult,
  type Image,
  type Model,
  type Progress,
  type Sampler,
} from 'sdnode';

import { check, type Equal } from './assert.js';

export async function correctUses(): Promise<void> {
  // `await using` disposes of the model at the end of the scope.
  await using model = await loadModel('sd15.safetensors', { device: 'cpu', threads: 4, weightType: 'q8_0' });
  const picture = await readImage('photo.png');
  const mask = { width: picture.width, height: picture.height, channels: 1 as const, data: new Uint8Array(picture.width * picture.height) };
  const controller = new AbortController();

  const options: GenerateOptions = {
    prompt: 'a (lovely:1.2) cat',
    negativePrompt: 'blurry',
    width: 512,
    height: 768,
    steps: 20,
    cfgScale: 7.5,
    sampler: 'dpm++2m',
    scheduler: 'karras',
    seed: 2n ** 63n,
    rng: 'cpu',
    batchCount: 2,
    clipSkip: 2,
    prediction: 'v',
    vae: 'tae',
    vaeTiling: { tile: 32, overlap: 8 },
    preview: 'latent2rgb',
    previewInterval: 2,
    initImage: picture,
    strength: 0.5,
    mask,
    maskBlur: 8,
    signal: AbortSignal.any([controller.signal, AbortSignal.timeout(60_000)]),
    onProgress: (p: Progress) => {
      const preview: (Image & { channels: 3 }) | undefined = p.preview;
      console.log(p.step, p.steps, p.elapsedMs, preview?.width);
    },
  };
  const result = await model.generate(options);
  check<Equal<typeof result, GenerateResult>>(true);
  check<Equal<typeof result.seed, number | bigint>>(true);
  check<Equal<typeof result.images[number]['channels'], 3>>(true);
  const { textEncodeMs, imageEncodeMs, samplingMs, decodeMs }: Record<string, number> = result.timings;
  console.log(textEncodeMs, imageEncodeMs, samplingMs, decodeMs);
  for (const image of result.images) await writeImage('out.png', image);

  // Other accepted forms: seed as a number, tiling as a flag, an RGBA init image, an RGB mask.
  const rgba: Image = { width: 8, height: 8, channels: 4, data: new Uint8Array(8 * 8 * 4) };
  await model.generate({ prompt: 'x', seed: 42, vaeTiling: true, initImage: rgba, mask: { ...rgba, channels: 3, data: new Uint8Array(8 * 8 * 3) } });
  await model.generate({ prompt: 'x', vaeTiling: 'auto', sampler: SAMPLERS[0] });
  const sampler: Sampler = 'lcm';
  await model.generate({ prompt: 'x', sampler });

  // The VAE on its own.
  const latent = await model.encodeImage(picture, { seed: 1, rng: 'cuda', vaeTiling: false });
  check<Equal<typeof latent.data, Float32Array>>(true);
  const decoded = await model.decodeLatent(latent, { vaeTiling: { tile: 64 } });
  check<Equal<typeof decoded.channels, 3>>(true);

  try {
    await model.generate({ prompt: 'x', signal: AbortSignal.timeout(10) });
  } catch (err) {
    if (err instanceof AbortError) check<Equal<typeof err.code, string>>(true);
  }
}

export async function misuses(model: Model, picture: Image): Promise<void> {
  // @ts-expect-error: prompt is required
  await model.generate({ steps: 20 });
  // @ts-expect-error: the options object is required
  await model.generate();
  await model.generate({
    prompt: 'x',
    // @ts-expect-error: no such sampler
    sampler: 'euler_x',
  });
  await model.generate({
    prompt: 'x',
    // @ts-expect-error: no such scheduler
    scheduler: 'linear',
  });
  await model.generate({
    prompt: 'x',
    // @ts-expect-error: steps is a number
    steps: '20',
  });
  await model.generate({
    prompt: 'x',
    // @ts-expect-error: seed is a number or a bigint
    seed: '42',
  });
  await model.generate({
    prompt: 'x',
    // @ts-expect-error: rng is 'cuda' or 'cpu'
    rng: 'gpu',
  });
  await model.generate({
    prompt: 'x',
    // @ts-expect-error: vae is 'full' or 'tae'
    vae: 'taesd',
  });
  await model.generate({
    prompt: 'x',
    // @ts-expect-error: preview is 'none', 'latent2rgb' or 'tae'
    preview: 'full',
  });
  await model.generate({
    prompt: 'x',
    // @ts-expect-error: vaeTiling is 'auto', a boolean or { tile, overlap }
    vaeTiling: 'yes',
  });
  await model.generate({
    prompt: 'x',
    // @ts-expect-error: a misspelled option name
    negative_prompt: 'blurry',
  });
  await model.generate({
    prompt: 'x',
    // @ts-expect-error: prompt weights go in the prompt text, not as an array
    negativePrompt: ['blurry'],
  });
  await model.generate({
    prompt: 'x',
    // @ts-expect-error: an image has 3 or 4 channels (1 is for masks)
    initImage: { ...picture, channels: 1 },
  });
  await model.generate({
    prompt: 'x',
    // @ts-expect-error: pixels are a Uint8Array, not an array of numbers
    initImage: { width: 8, height: 8, channels: 3, data: [0, 0, 0] },
  });
  await model.generate({
    prompt: 'x',
    initImage: picture,
    // @ts-expect-error: a mask has 1, 3 or 4 channels
    mask: { width: 8, height: 8, channels: 2, data: new Uint8Array(128) },
  });
  await model.generate({
    prompt: 'x',
    // @ts-expect-error: the signal is an AbortSignal, not its controller
    signal: new AbortController(),
  });
  await model.generate({
    prompt: 'x',
    // @ts-expect-error: progress steps are numbers
    onProgress: (p: { step: string }) => console.log(p.step),
  });
  const { images } = await model.generate({ prompt: 'x' });
  // @ts-expect-error: generated images are RGB
  const alpha: 4 = images[0]!.channels;
  // @ts-expect-error: the result has images, not image
  console.log(alpha, (await model.generate({ prompt: 'x' })).image);
  // @ts-expect-error: a latent's data is a Float32Array
  await model.decodeLatent({ channels: 4, width: 8, height: 8, data: new Uint8Array(256) });
  // @ts-expect-error: encodeImage takes an image, not a path
  await model.encodeImage('photo.png');
  // @ts-expect-error: the encode seed is a number or bigint
  await model.encodeImage(picture, { seed: 'random' });
  // @ts-expect-error: the family is one of sd1, sd2, sdxl, unknown
  if (model.info.family === 'sd3') return;
}
