// Loading, inspecting, converting, images and devices from the published .d.ts; the
// `@ts-expect-error` lines are misuses that must keep failing to compile. Type-checked only.
import {
  BackendError,
  DisposedError,
  FileAccessError,
  ModelCompatibilityError,
  ModelFormatError,
  SdnodeError,
  WEIGHT_TYPES,
  convertModel,
  inspectModel,
  listDevices,
  loadAutoencoder,
  loadModel,
  readImage,
  systemInfo,
  writeImage,
  type Device,
  type Latent,
  type ModelInfo,
  type ModelInspection,
  type WeightType,
} from 'sdnode';

import { check, type Equal } from './assert.js';

export async function correctUses(): Promise<void> {
  const model = await loadModel(
    { model: 'v1-5.ckpt', vae: 'vae-ft-mse.safetensors', tae: 'taesd_decoder.pth' },
    { device: 'auto', ema: true, signal: AbortSignal.timeout(60_000), onProgress: ({ step, steps }) => console.log(step, steps) },
  );
  const info: ModelInfo = model.info;
  check<Equal<typeof info.family, 'sd1' | 'sd2' | 'sdxl' | 'sdxl-refiner' | 'unknown'>>(true);
  console.log(info.device, info.inpaint, info.sources[0]?.format, model.tokenize('a cat').length, model.weights()[0]?.shape);
  const sums: Record<string, string> = await model.checksums(['first_stage_model.decoder.conv_in.weight']);
  console.log(sums);
  await model.dispose();
  await model[Symbol.asyncDispose]();

  const inspection: ModelInspection = await inspectModel('model.gguf', { checksums: true });
  check<Equal<typeof inspection.format, 'safetensors' | 'gguf' | 'torch'>>(true);
  const weightType: WeightType = WEIGHT_TYPES[2];
  const { path, tensors } = await convertModel('model.safetensors', 'model.gguf', { weightType });
  console.log(path, tensors.map((t) => `${t.name}: ${t.from} → ${t.to}`));

  await using tae = await loadAutoencoder({ encoder: 'taesd_encoder.pth', decoder: 'taesd_decoder.pth' }, { weightType: 'f16' });
  const image = await readImage('photo.jpg');
  check<Equal<typeof image.channels, 3>>(true);
  const latent: Latent = await tae.encode(image, { onProgress: (p) => console.log(p.step) });
  await writeImage('roundtrip.webp', await tae.decode(latent));

  const devices: Device[] = listDevices();
  const gpu = devices.find((d) => d.type === 'gpu');
  console.log(gpu?.memoryFree, systemInfo().backends.includes('CPU'));

  try {
    await loadModel('missing.safetensors');
  } catch (err) {
    if (err instanceof FileAccessError || err instanceof ModelFormatError || err instanceof ModelCompatibilityError) console.log(err.code);
    if (err instanceof SdnodeError && !(err instanceof DisposedError) && !(err instanceof BackendError)) console.log(err.message);
  }
}

export async function misuses(): Promise<void> {
  // @ts-expect-error: the source is a path or { model, vae, … }, not a number
  await loadModel(42);
  // @ts-expect-error: a misspelled component name
  await loadModel({ modle: 'sd15.safetensors' });
  // @ts-expect-error: no such weight type
  await loadModel('sd15.safetensors', { weightType: 'q3_0' });
  // @ts-expect-error: device is a string such as 'cpu' or 'cuda:0'
  await loadModel('sd15.safetensors', { device: 0 });
  // @ts-expect-error: threads is a number
  await loadModel('sd15.safetensors', { threads: 'all' });
  // @ts-expect-error: misspelled option
  await loadModel('sd15.safetensors', { weight_type: 'f16' });
  // @ts-expect-error: the autoencoder keeps its conv weights in f32 or f16 only
  await loadAutoencoder({ decoder: 'taesd_decoder.pth' }, { weightType: 'q8_0' });
  // @ts-expect-error: the files are named encoder and decoder
  await loadAutoencoder({ dec: 'taesd_decoder.pth' });
  // @ts-expect-error: writeImage needs 3 or 4 channels
  await writeImage('out.png', { width: 1, height: 1, channels: 2, data: new Uint8Array(2) });
  // @ts-expect-error: the arguments are (path, image)
  await writeImage(await readImage('in.png'), 'out.png');
  // @ts-expect-error: convertModel writes to a destination path
  await convertModel('model.safetensors', { weightType: 'q8_0' });
  // @ts-expect-error: inspection's checksums option is a boolean
  await inspectModel('model.gguf', { checksums: 'fnv' });
  // @ts-expect-error: devices are listed synchronously
  (await listDevices()).then(() => {});
}
