// OpenAI's images API of `sdnode serve`, called by the official `openai` npm client as any
// OpenAI user calls it (baseURL and apiKey changed): images.generate and images.edit (an image
// and an alpha mask, uploaded as multipart) return PNGs whose pixels are bit-identical to
// model.generate() with the same settings and seed; errors reach the client as its own error
// classes with OpenAI's fields; a wrong key is refused.
import OpenAI, { toFile } from 'openai';
import sharp from 'sharp';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { loadModel, type Model } from '../lib/index.js';
import { pngPixels, tinyModelDir, listeningServer } from './support/server.js';

const API_KEY = 'sk-test-0123456789';
const SIZE = 64;
let remove: () => void;
let app: FastifyInstance;
let client: OpenAI;
let model: Model;

beforeAll(async () => {
  const tiny = await tinyModelDir('sdnode-server-openai-');
  remove = tiny.remove;
  let url: string;
  ({ app, url } = await listeningServer({ model: tiny.model, apiKey: API_KEY }));
  client = new OpenAI({ apiKey: API_KEY, baseURL: `${url}/v1`, maxRetries: 0 });
  model = await loadModel(tiny.model, { device: 'cpu', threads: 1 });
}, 120_000);

afterAll(async () => {
  await app?.close();
  await model?.dispose();
  remove?.();
});

const same = (a: Uint8Array, b: Uint8Array) => a.length === b.length && a.every((v, i) => v === b[i]);

/** sdnode's settings ride along as extra body fields, which the SDK sends as given. */
type WithSdnode<T> = T & Record<string, unknown>;

describe('OpenAI images API with the official client', () => {
  it('images.generate: n images, bit-identical to model.generate with the same settings and seed', async () => {
    const params: WithSdnode<OpenAI.ImageGenerateParamsNonStreaming> = {
      prompt: 'a lovely cat',
      size: `${SIZE}x${SIZE}` as OpenAI.ImageGenerateParams['size'],
      n: 2,
      response_format: 'b64_json',
      model: 'dall-e-2',
      negative_prompt: 'blurry',
      steps: 2,
      cfg_scale: 5,
      sampler: 'euler',
      seed: 11,
    };
    const response = await client.images.generate(params);
    expect(response.data).toHaveLength(2);
    const expected = await model.generate({ prompt: 'a lovely cat', negativePrompt: 'blurry', width: SIZE, height: SIZE, steps: 2, cfgScale: 5, sampler: 'euler', seed: 11, batchCount: 2 });
    for (const [i, item] of response.data!.entries()) {
      const got = await pngPixels(item.b64_json!);
      expect([got.width, got.height]).toEqual([SIZE, SIZE]);
      expect(same(got.data, expected.images[i]!.data)).toBe(true);
    }
  });

  it('images.edit: image and alpha mask as files → inpainting, bit-identical to model.generate', async () => {
    // A gradient to paint into; the mask is transparent (repaint) in a centred square, as OpenAI's masks are.
    const init = new Uint8Array(SIZE * SIZE * 3).map((_, i) => (i * 7) % 256);
    const alpha = new Uint8Array(SIZE * SIZE).map((_, i) => {
      const x = i % SIZE, y = Math.floor(i / SIZE);
      return x >= 16 && x < 48 && y >= 16 && y < 48 ? 0 : 255;
    });
    const rgba = new Uint8Array(SIZE * SIZE * 4).map((_, i) => (i % 4 === 3 ? alpha[i >> 2]! : 0));
    const initPng = await sharp(init, { raw: { width: SIZE, height: SIZE, channels: 3 } }).png().toBuffer();
    const maskPng = await sharp(rgba, { raw: { width: SIZE, height: SIZE, channels: 4 } }).png().toBuffer();
    const params: WithSdnode<OpenAI.ImageEditParamsNonStreaming> = {
      image: await toFile(initPng, 'init.png', { type: 'image/png' }),
      mask: await toFile(maskPng, 'mask.png', { type: 'image/png' }),
      prompt: 'a red hat',
      size: `${SIZE}x${SIZE}` as OpenAI.ImageEditParams['size'],
      n: 1,
      steps: 3,
      strength: 0.6,
      mask_blur: 0,
      seed: 4,
    };
    const response = await client.images.edit(params);
    const got = await pngPixels(response.data![0]!.b64_json!);
    const repaint = new Uint8Array(SIZE * SIZE).map((_, i) => (alpha[i] === 0 ? 255 : 0));
    const expected = await model.generate({
      prompt: 'a red hat',
      width: SIZE,
      height: SIZE,
      steps: 3,
      seed: 4,
      initImage: { width: SIZE, height: SIZE, channels: 3, data: init },
      strength: 0.6,
      mask: { width: SIZE, height: SIZE, channels: 1, data: repaint },
      maskBlur: 0,
    });
    expect(same(got.data, expected.images[0]!.data)).toBe(true);
    // Outside the mask the init image is kept exactly: the mask was read as OpenAI means it.
    expect(got.data[0]).toBe(init[0]);
  });

  it("errors reach the client as its own classes, with OpenAI's param and code", async () => {
    const bad: WithSdnode<OpenAI.ImageGenerateParamsNonStreaming> = { prompt: 'x', size: '64x64' as OpenAI.ImageGenerateParams['size'], sampler: 'no-such-sampler' };
    const err = await client.images.generate(bad).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.BadRequestError);
    expect(err).toMatchObject({ status: 400, param: 'sampler', code: 'unknown_sampler' });
    const stranger = new OpenAI({ apiKey: 'sk-wrong', baseURL: client.baseURL, maxRetries: 0 });
    await expect(stranger.images.generate({ prompt: 'x' })).rejects.toBeInstanceOf(OpenAI.AuthenticationError);
  });
});
