// The AUTOMATIC1111 webui API of `sdnode serve` on the tiny model, with bodies as webui clients
// send them: txt2img (the webui's field names, a sampler label and schedule type, a batch) and
// img2img with an init image and a mask give the images model.generate() gives with the same
// settings, and an `info` whose seeds and settings say so; /progress during a job rises and
// carries a live preview; /interrupt stops the job; /options switches checkpoints inside
// --models-dir; the listings have the webui's shapes.
import { createHash } from 'node:crypto';
import { copyFileSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { loadModel, type Model } from '../lib/index.js';
// @ts-expect-error: plain JavaScript module with JSDoc types
import { generateLora } from '../scripts/generator/lora.mjs';
import { PARAMETERS_KEY, pngTextChunks } from '../lib/cli/png-parameters.js';
import { pngPixels, tinyModelDir, listeningServer, waitFor } from './support/server.js';

let remove: () => void;
let app: FastifyInstance;
let url: string;
let model: Model;
let loraDir: string;

beforeAll(async () => {
  const tiny = await tinyModelDir('sdnode-server-a1111-');
  remove = tiny.remove;
  const models = join(tiny.dir, 'models');
  mkdirSync(join(models, 'more'), { recursive: true });
  copyFileSync(tiny.model, join(models, 'tiny.safetensors'));
  copyFileSync(tiny.model, join(models, 'more', 'other.safetensors'));
  loraDir = join(tiny.dir, 'loras');
  mkdirSync(loraDir);
  await generateLora({ model: tiny.model, out: join(loraDir, 'style.safetensors'), format: 'lora', targets: ['attn', 'te'], rank: 4, alpha: 2, seed: 5 });
  ({ app, url } = await listeningServer({ model: join(models, 'tiny.safetensors'), modelsDir: models, loraModelDir: loraDir }));
  model = await loadModel(tiny.model, { device: 'cpu', threads: 1, loraDir });
}, 120_000);

afterAll(async () => {
  await app?.close();
  await model?.dispose();
  remove?.();
});

const same = (a: Uint8Array, b: Uint8Array) => a.length === b.length && a.every((v, i) => v === b[i]);

async function post(path: string, body: unknown): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await fetch(`${url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
}

async function get(path: string): Promise<unknown> {
  return (await fetch(`${url}${path}`)).json();
}

interface Info {
  seed: number;
  all_seeds: number[];
  sampler_name: string;
  steps: number;
  cfg_scale: number;
  width: number;
  height: number;
  batch_size: number;
  denoising_strength: number | null;
  sd_model_name: string;
  infotexts: string[];
  extra_generation_params: Record<string, unknown>;
}

describe('AUTOMATIC1111 API', () => {
  it('txt2img, a webui client\'s body: the library\'s images, info with the seeds and settings, PNGs with parameters', async () => {
    // As a webui client sends it: every field the API documents, at the values such clients use.
    const body = {
      prompt: 'a lovely cat',
      negative_prompt: 'blurry',
      styles: [],
      seed: 1234,
      subseed: -1,
      subseed_strength: 0,
      seed_resize_from_h: -1,
      seed_resize_from_w: -1,
      sampler_name: 'DPM++ 2M',
      scheduler: 'Karras',
      batch_size: 2,
      n_iter: 1,
      steps: 3,
      cfg_scale: 6.5,
      width: 64,
      height: 48,
      restore_faces: false,
      tiling: false,
      do_not_save_samples: false,
      do_not_save_grid: false,
      eta: 0,
      denoising_strength: 0,
      s_min_uncond: 0,
      s_churn: 0,
      s_tmax: 0,
      s_tmin: 0,
      s_noise: 1,
      override_settings: {},
      override_settings_restore_afterwards: true,
      disable_extra_networks: false,
      comments: {},
      enable_hr: false,
      firstphase_width: 0,
      firstphase_height: 0,
      hr_scale: 2,
      hr_second_pass_steps: 0,
      hr_resize_x: 0,
      hr_resize_y: 0,
      hr_prompt: '',
      hr_negative_prompt: '',
      sampler_index: 'Euler',
      script_args: [],
      send_images: true,
      save_images: false,
      alwayson_scripts: {},
    };
    const { status, json } = await post('/sdapi/v1/txt2img', body);
    expect(status).toBe(200);
    const info = JSON.parse(json.info as string) as Info;
    expect(info).toMatchObject({ seed: 1234, all_seeds: [1234, 1235], sampler_name: 'DPM++ 2M', steps: 3, cfg_scale: 6.5, width: 64, height: 48, batch_size: 2, sd_model_name: 'tiny' });
    expect(info.extra_generation_params['Schedule type']).toBe('Karras');
    expect(json.parameters).toMatchObject({ prompt: 'a lovely cat', sampler_name: 'DPM++ 2M', steps: 3 });
    const expected = await model.generate({ prompt: 'a lovely cat', negativePrompt: 'blurry', width: 64, height: 48, steps: 3, cfgScale: 6.5, sampler: 'dpm++2m', scheduler: 'karras', seed: 1234, batchCount: 2 });
    const images = json.images as string[];
    expect(images).toHaveLength(2);
    for (const [i, png] of images.entries()) {
      expect(same((await pngPixels(png)).data, expected.images[i]!.data)).toBe(true);
      const text = pngTextChunks(Buffer.from(png, 'base64'))[PARAMETERS_KEY];
      expect(text).toBe(info.infotexts[i]);
      expect(text).toContain(`Seed: ${1234 + i}, Size: 64x48`);
    }
  });

  it('img2img with a mask (white repaints) and inpainting fields: the library\'s inpainting, and the webui\'s alpha masks mean the same', async () => {
    const init = new Uint8Array(64 * 64 * 3).map((_, i) => (i * 5) % 251);
    const square = (x: number, y: number) => x >= 16 && x < 48 && y >= 8 && y < 40;
    const gray = new Uint8Array(64 * 64).map((_, i) => (square(i % 64, Math.floor(i / 64)) ? 255 : 0));
    const png = (data: Uint8Array, channels: 1 | 3 | 4) => sharp(data, { raw: { width: 64, height: 64, channels } }).png().toBuffer().then((b) => b.toString('base64'));
    const body = {
      init_images: [await png(init, 3)],
      mask: await png(new Uint8Array(64 * 64 * 3).map((_, i) => gray[Math.floor(i / 3)]!), 3),
      prompt: 'a red hat',
      negative_prompt: '',
      seed: 77,
      sampler_name: 'Euler a',
      steps: 4,
      cfg_scale: 7,
      width: 64,
      height: 64,
      denoising_strength: 0.6,
      mask_blur: 0,
      inpainting_fill: 1,
      inpaint_full_res: false,
      inpainting_mask_invert: 0,
      resize_mode: 0,
      include_init_images: false,
    };
    const { status, json } = await post('/sdapi/v1/img2img', body);
    expect(status).toBe(200);
    const info = JSON.parse(json.info as string) as Info;
    expect(info).toMatchObject({ seed: 77, denoising_strength: 0.6, sampler_name: 'Euler a', steps: 4 });
    expect(info.extra_generation_params['Mask blur']).toBe(0);
    expect(json.parameters).toMatchObject({ init_images: null, mask: null });
    const expected = await model.generate({
      prompt: 'a red hat',
      width: 64,
      height: 64,
      steps: 4,
      cfgScale: 7,
      sampler: 'euler_a',
      seed: 77,
      initImage: { width: 64, height: 64, channels: 3, data: init },
      strength: 0.6,
      mask: { width: 64, height: 64, channels: 1, data: gray },
      maskBlur: 0,
    });
    const got = await pngPixels((json.images as string[])[0]!);
    expect(same(got.data, expected.images[0]!.data)).toBe(true);
    // The webui canvas's mask: painted strokes in alpha over transparency, here the square
    // left unpainted and inpainting_mask_invert set: the same region is repainted.
    const strokes = new Uint8Array(64 * 64 * 4).map((_, i) => (i % 4 === 3 ? 255 - gray[i >> 2]! : 0));
    const inverted = await post('/sdapi/v1/img2img', { ...body, mask: await png(strokes, 4), inpainting_mask_invert: 1 });
    expect(inverted.status).toBe(200);
    expect(same((await pngPixels((inverted.json.images as string[])[0]!)).data, got.data)).toBe(true);
  });

  it('/progress during a job rises and carries a preview; idle afterwards', async () => {
    const job = post('/sdapi/v1/txt2img', { prompt: 'watched', steps: 100, width: 64, height: 64, seed: 3 });
    let done = false;
    void job.finally(() => (done = true));
    const seen: Array<{ progress: number; image: string | null }> = [];
    while (!done) {
      const p = (await get('/sdapi/v1/progress')) as { progress: number; current_image: string | null; state: { job_count: number } };
      if (p.state.job_count > 0) seen.push({ progress: p.progress, image: p.current_image });
      await new Promise((r) => setTimeout(r, 15));
    }
    expect((await job).status).toBe(200);
    const values = seen.map((s) => s.progress);
    expect(values.length).toBeGreaterThan(1);
    expect(values.every((v, i) => i === 0 || v >= values[i - 1]!)).toBe(true);
    expect(values.at(-1)!).toBeGreaterThan(values[0]!);
    const preview = seen.find((s) => s.image)?.image;
    expect(preview).toBeTruthy();
    expect(await pngPixels(preview!)).toMatchObject({ width: 64, height: 64 });
    expect(await get('/sdapi/v1/progress')).toMatchObject({ progress: 0, state: { job_count: 0 } });
  });

  it('/interrupt stops the running job; its request answers 409 cancelled', async () => {
    const steps = 150;
    const job = post('/sdapi/v1/txt2img', { prompt: 'stopped', steps, width: 64, height: 64, seed: 5 });
    const at = await waitFor(async () => {
      const p = (await get('/sdapi/v1/progress')) as { state: { sampling_step: number } };
      return p.state.sampling_step > 0 ? p.state.sampling_step : undefined;
    });
    expect(at).toBeLessThan(steps);
    expect(await post('/sdapi/v1/interrupt', {})).toEqual({ status: 200, json: {} });
    const { status, json } = await job;
    expect(status).toBe(409);
    expect(json).toMatchObject({ error: { code: 'cancelled' } });
    expect(await get('/sdapi/v1/progress')).toMatchObject({ state: { job_count: 0 } });
  });

  it('/options switches sd_model_checkpoint among --models-dir\'s files; listings in the webui\'s shapes', async () => {
    const models = (await get('/sdapi/v1/sd-models')) as Array<{ title: string; model_name: string }>;
    expect(models.map((m) => m.title)).toEqual(['tiny.safetensors', 'more/other.safetensors']);
    expect(await get('/sdapi/v1/options')).toMatchObject({ sd_model_checkpoint: 'tiny.safetensors' });
    expect((await post('/sdapi/v1/options', { sd_model_checkpoint: 'more/other' })).status).toBe(200);
    expect(await get('/sdapi/v1/options')).toMatchObject({ sd_model_checkpoint: 'more/other.safetensors' });
    const { json } = await post('/sdapi/v1/txt2img', { prompt: 'x', steps: 1, width: 64, height: 64, seed: 1 });
    expect(JSON.parse(json.info as string)).toMatchObject({ sd_model_name: 'other' });
    expect((await post('/sdapi/v1/options', { sd_model_checkpoint: 'tiny.safetensors [0123456789]' })).status).toBe(200);
    const samplers = (await get('/sdapi/v1/samplers')) as Array<{ name: string; aliases: string[] }>;
    expect(samplers.find((s) => s.name === 'Euler a')?.aliases).toContain('k_euler_a');
    const schedulers = (await get('/sdapi/v1/schedulers')) as Array<{ name: string; label: string }>;
    expect(schedulers.map((s) => s.label)).toContain('Karras');
    expect(await get('/sdapi/v1/loras')).toMatchObject([{ name: 'style' }]);
  });

  it('a <lora:name:weight> tag: the library\'s image with that LoRA, and the webui\'s Lora hashes in info and PNG', async () => {
    const prompt = 'a lovely cat <lora:style:0.8>';
    const { status, json } = await post('/sdapi/v1/txt2img', { prompt, steps: 2, width: 64, height: 64, seed: 7, sampler_name: 'Euler a' });
    expect(status).toBe(200);
    const expected = await model.generate({ prompt, steps: 2, width: 64, height: 64, seed: 7, sampler: 'euler_a' });
    const png = Buffer.from((json.images as string[])[0]!, 'base64');
    expect(same((await pngPixels(png)).data, expected.images[0]!.data)).toBe(true);
    // kohya's "addnet" hash: SHA-256 of the tensor data after the safetensors header, 12 hex digits.
    const file = readFileSync(join(loraDir, 'style.safetensors'));
    const hash = createHash('sha256').update(file.subarray(8 + Number(file.readBigUInt64LE(0)))).digest('hex').slice(0, 12);
    const infotext = (JSON.parse(json.info as string) as Info).infotexts[0]!;
    expect(infotext).toContain(`Lora hashes: "style: ${hash}"`);
    expect(pngTextChunks(png)[PARAMETERS_KEY]).toBe(infotext);
  });

  it('enable_hr: the library\'s hires fix from the hr_* fields, the webui\'s Hires fields in info and PNG; other upscalers refused', async () => {
    const body = { prompt: 'a lovely cat', steps: 2, width: 32, height: 32, seed: 3, sampler_name: 'Euler', enable_hr: true, hr_scale: 2, hr_second_pass_steps: 2, denoising_strength: 0.6, hr_upscaler: 'Latent (nearest-exact)', hr_prompt: '' };
    const { status, json } = await post('/sdapi/v1/txt2img', body);
    expect(status, JSON.stringify(json)).toBe(200);
    const expected = await model.generate({ prompt: 'a lovely cat', steps: 2, width: 32, height: 32, seed: 3, sampler: 'euler', hires: { scale: 2, steps: 2, strength: 0.6, upscaler: 'latent-nearest-exact' } });
    const png = Buffer.from((json.images as string[])[0]!, 'base64');
    const pixels = await pngPixels(png);
    expect([pixels.width, pixels.height]).toEqual([64, 64]);
    expect(same(pixels.data, expected.images[0]!.data)).toBe(true);
    const info = JSON.parse(json.info as string) as Info;
    expect(info).toMatchObject({ width: 32, height: 32, denoising_strength: 0.6 });
    expect(info.extra_generation_params).toMatchObject({ 'Hires upscale': 2, 'Hires steps': 2, 'Hires upscaler': 'Latent (nearest-exact)' });
    expect(info.infotexts[0]).toContain('Size: 32x32');
    expect(info.infotexts[0]).toContain('Denoising strength: 0.6, Hires upscale: 2, Hires steps: 2, Hires upscaler: Latent (nearest-exact)');
    expect(pngTextChunks(png)[PARAMETERS_KEY]).toBe(info.infotexts[0]);

    const esrgan = await post('/sdapi/v1/txt2img', { ...body, hr_upscaler: 'R-ESRGAN 4x+' });
    expect(esrgan.status).toBe(400);
    expect(esrgan.json.error).toMatchObject({ code: 'unsupported', field: 'hr_upscaler' });
    expect((await post('/sdapi/v1/txt2img', { ...body, hr_sampler_name: 'DPM++ 2M' })).status).toBe(400);
    expect((await post('/sdapi/v1/txt2img', { ...body, hr_scale: 1 })).status).toBe(400);
  });
});
