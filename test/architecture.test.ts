// What the engine reads of a loaded model's networks (NativeModel.architecture(), made at load
// from the weights): the UNet's channels, context and y widths and size multiple, the VAE's
// latent channels and scales, and each text encoder's place, width, depth and projection —
// against the generator's configs for SD1.x, SD2.x, SDXL, the SDXL refiner and an inpainting
// variant, and what is absent for a component file alone.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

import { native } from '../lib/native.js';
// @ts-expect-error: plain JavaScript module with JSDoc types
import { PRESETS, generateModel } from '../scripts/generate-model.mjs';

interface Text { width: number; layers: number; vocab: number; positions: number; naming?: string; projectionDim?: number }
interface Config {
  unet: { modelChannels: number; channelMult: number[]; contextDim: number; admInChannels?: number; inChannels: number; outChannels: number };
  vae: { chMult: number[]; zChannels: number };
  clip: Text;
  clip2?: Text;
}

const dir = mkdtempSync(join(tmpdir(), 'sdnode-architecture-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const TEXT1 = 'cond_stage_model.transformer.text_model.';
const TEXT2 = 'cond_stage_model.1.transformer.text_model.';

async function load(preset: string, component?: 'vae') {
  const path = join(dir, `${preset}.safetensors`);
  await generateModel({ out: path, preset, dtype: 'f16', seed: 5 });
  const sources = component ? { [component]: path } : { model: path };
  return native().NativeModel.load({ ...sources, ema: false, device: 'cpu', threads: 1, weightType: '' }).promise;
}

describe('the engine reports the architecture it loaded', () => {
  // [preset, the internal place of each text encoder]
  const cases = [
    ['tiny', [TEXT1]],
    ['tiny-inpaint', [TEXT1]],
    ['tiny-sd2', [TEXT1]],
    ['tiny-sdxl', [TEXT1, TEXT2]],
    ['tiny-sdxl-refiner', [TEXT2]],
  ] as const;
  for (const [preset, places] of cases) {
    it(`${preset}: UNet, VAE and text encoders as the generator's config made them`, async () => {
      const c = PRESETS[preset] as Config;
      const model = await load(preset);
      try {
        const a = model.architecture();
        expect(a.unet).toEqual({
          inChannels: c.unet.inChannels, outChannels: c.unet.outChannels, modelChannels: c.unet.modelChannels,
          contextDim: c.unet.contextDim, admChannels: c.unet.admInChannels ?? 0, latentMultiple: 2 ** (c.unet.channelMult.length - 1),
        });
        const scale = 2 ** (c.vae.chMult.length - 1);
        expect(a.vae).toEqual({ decoder: true, encoder: true, latentChannels: c.vae.zChannels, decoderScale: scale, encoderScale: scale });
        const texts = places.length === 2 ? [c.clip, c.clip2!] : [c.clip];
        expect(a.textEncoders).toEqual(texts.map((t, k) => ({
          prefix: places[k], width: t.width, layers: t.layers, vocab: t.vocab, positions: t.positions,
          // Only the encoder that pools (SDXL's bigG, the refiner's) keeps its text_projection.
          projection: places[k] === TEXT2 ? t.projectionDim : 0,
        })));
      } finally {
        model.dispose();
      }
    });
  }

  it('a VAE file alone: no UNet, no text encoder', async () => {
    const model = await load('tiny', 'vae');
    try {
      const a = model.architecture();
      expect(a.unet).toBeUndefined();
      expect(a.unetError).toBeUndefined();
      expect(a.textEncoders).toEqual([]);
      expect(a.vae).toMatchObject({ decoder: true, encoder: true, latentChannels: 4, decoderScale: 8 });
    } finally {
      model.dispose();
    }
  });
});
