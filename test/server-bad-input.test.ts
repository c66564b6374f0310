// Hostile and broken requests against `sdnode serve` over real HTTP (issue 14's list): each gets
// a 4xx JSON error with a code and the field at fault, the server keeps serving after each, no
// name reaches a file outside its folder (`..`, absolute paths, symlinks out), and nothing is
// written anywhere.
import { mkdirSync, readdirSync, statSync, symlinkSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { join } from 'node:path';
import sharp from 'sharp';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

// @ts-expect-error: plain JavaScript module with JSDoc types
import { generateLora } from '../scripts/generator/lora.mjs';
import { tinyModelDir, listeningServer } from './support/server.js';

const KEY = 'sk-bad-input';
const BASIC = `Basic ${Buffer.from('ann:pa:ss').toString('base64')}`;
const MAX_PIXELS = 128 * 128;
let dir: string;
let remove: () => void;
let app: FastifyInstance;
let url: string;
let filesBefore: string[];

/** Every file under `root` with its size and mtime: what "nothing written" compares. */
function files(root: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else out.push(`${p} ${e.isFile() ? `${statSync(p).size} ${statSync(p).mtimeMs}` : 'link'}`);
    }
  };
  walk(root);
  return out.sort();
}

beforeAll(async () => {
  const tiny = await tinyModelDir('sdnode-server-bad-');
  ({ dir, remove } = tiny);
  const models = join(dir, 'models'), loras = join(dir, 'loras');
  mkdirSync(models);
  mkdirSync(loras);
  symlinkSync(tiny.model, join(models, 'tiny.safetensors'));
  await generateLora({ model: tiny.model, out: join(loras, 'style.safetensors'), format: 'lora', targets: ['attn'], rank: 4, alpha: 2, seed: 5 });
  await generateLora({ model: tiny.model, out: join(dir, 'outside.safetensors'), format: 'lora', targets: ['attn'], rank: 4, alpha: 2, seed: 6 });
  // Links planted in the folders that point out of them: as if no file.
  symlinkSync(join(dir, 'outside.safetensors'), join(loras, 'escape.safetensors'));
  symlinkSync(tiny.model, join(models, 'escape.safetensors'));
  ({ app, url } = await listeningServer({
    model: join(models, 'tiny.safetensors'),
    modelsDir: models,
    loraModelDir: loras,
    apiKey: KEY,
    apiAuth: 'ann:pa:ss',
    limits: { pixels: MAX_PIXELS },
  }));
  filesBefore = files(dir);
}, 120_000);

afterAll(async () => {
  await app?.close();
  remove?.();
});

const auth = { authorization: `Bearer ${KEY}` };

async function send(method: string, path: string, body?: unknown, headers: Record<string, string> = auth) {
  const res = await fetch(`${url}${path}`, {
    method,
    headers: { ...(body !== undefined ? { 'content-type': 'application/json' } : {}), ...headers },
    ...(body !== undefined ? { body: typeof body === 'string' ? body : JSON.stringify(body) } : {}),
  });
  return { status: res.status, headers: res.headers, json: (await res.json()) as { error: { code: string; message: string; field?: string; param?: string } } };
}

const png = (width: number, height: number) =>
  sharp({ create: { width, height, channels: 3, background: { r: 90, g: 120, b: 200 } } })
    .png()
    .toBuffer()
    .then((b) => b.toString('base64'));

/** After every refusal: the server still answers. */
async function stillServing() {
  expect((await send('GET', '/sdapi/v1/progress')).status).toBe(200);
}

/** Sends `total` bytes of body in 1 MiB pieces (with a content-length, or chunked), stopping once the server answers. */
function hugeBody(total: number, chunked: boolean): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(`${url}/sdapi/v1/txt2img`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...auth, ...(chunked ? {} : { 'content-length': String(total) }) },
    });
    let sent = 0, answered = false;
    const piece = Buffer.alloc(1 << 20, 0x20);
    req.on('response', (res) => {
      answered = true;
      let body = '';
      res.setEncoding('utf8').on('data', (c: string) => (body += c)).on('end', () => resolve({ status: res.statusCode!, body }));
    });
    req.on('error', (err) => (answered ? undefined : reject(err)));
    const pump = () => {
      while (!answered && sent < total) {
        sent += piece.length;
        if (!req.write(piece)) return void req.once('drain', pump);
      }
      if (!answered) req.end();
    };
    req.write('{"prompt": "');
    pump();
  });
}

describe('bad input over HTTP', () => {
  it('malformed JSON, a prototype key, wrong types, negative steps: 400 naming the field', async () => {
    for (const [body, field] of [
      ['{"prompt": "a cat", ', undefined],
      [{ prompt: 'x', steps: 'many' }, 'steps'],
      [{ prompt: 'x', steps: -5 }, 'steps'],
      [{ prompt: 'x', cfg_scale: true }, 'cfg_scale'],
      [{ prompt: ['x'] }, 'prompt'],
      [{ prompt: 'x', steps: 10_000 }, 'steps'],
      [{ prompt: 'x', batch_size: 100 }, 'batch_size'],
      [{ prompt: 'x'.repeat(200_000) }, 'prompt'],
    ] as const) {
      const res = await send('POST', '/sdapi/v1/txt2img', body);
      expect(res.status).toBe(400);
      expect(res.json.error.code).toMatch(/invalid_json|invalid_request/);
      expect(res.json.error.field).toBe(field);
      await stillServing();
    }
    const proto = await send('POST', '/sdnode/v1/jobs', '{"prompt": "x", "__proto__": {"admin": true}}');
    expect(proto.status).toBe(400);
    await stillServing();
  });

  it('an unknown sampler, a size not a multiple, a size over the limit, an unsupported field: 400 naming it', async () => {
    for (const [body, field, code] of [
      [{ prompt: 'x', sampler_name: 'Euler Z', steps: 1 }, 'sampler_name', 'unknown_sampler'],
      [{ prompt: 'x', scheduler: 'Beta', steps: 1 }, 'scheduler', 'unknown_scheduler'],
      [{ prompt: 'x', width: 70, steps: 1 }, 'width', 'invalid_request'],
      // 72 is a multiple of 8 but not of the tiny UNet's 16: the model says no when the job runs.
      [{ prompt: 'x', width: 72, height: 64, steps: 1 }, 'width', 'invalid_request'],
      [{ prompt: 'x', width: 256, height: 256, steps: 1 }, 'width', 'over_limit'],
      [{ prompt: 'x', restore_faces: true }, 'restore_faces', 'unsupported'],
    ] as const) {
      const res = await send('POST', '/sdapi/v1/txt2img', body);
      expect([res.status, res.json.error.field, res.json.error.code]).toEqual([400, field, code]);
      await stillServing();
    }
  });

  it('a 100 MB body is refused with 413, with a length or chunked', async () => {
    for (const chunked of [false, true]) {
      const { status, body } = await hugeBody(100 * (1 << 20), chunked);
      expect(status).toBe(413);
      expect(JSON.parse(body)).toMatchObject({ error: { code: 'body_too_large' } });
      await stillServing();
    }
  });

  it('base64 that is not an image, a mask of another size: 400 naming the field', async () => {
    const image = await png(64, 64);
    for (const [body, field] of [
      [{ init_images: ['bm90IGFuIGltYWdl'], prompt: 'x', width: 64, height: 64, steps: 1 }, 'init_images[0]'],
      [{ init_images: ['%%% not base64 %%%'], prompt: 'x', width: 64, height: 64, steps: 1 }, 'init_images[0]'],
      [{ init_images: [image], mask: await png(32, 32), prompt: 'x', width: 64, height: 64, steps: 1 }, 'mask'],
      [{ init_images: [image], mask: 'data:image/png;base64,AAAA', prompt: 'x', width: 64, height: 64, steps: 1 }, 'mask'],
    ] as const) {
      const res = await send('POST', '/sdapi/v1/img2img', body);
      expect([res.status, res.json.error.code, res.json.error.field]).toEqual([400, 'invalid_image', field]);
      await stillServing();
    }
    const native = await send('POST', '/sdnode/v1/jobs', { prompt: 'x', initImage: 'bm90IGFuIGltYWdl' });
    expect([native.status, native.json.error.field]).toEqual([400, 'initImage']);
    // OpenAI's edits: a text file as the image, in OpenAI's error shape.
    const form = new FormData();
    form.append('image', new Blob(['not an image'], { type: 'image/png' }), 'x.png');
    form.append('prompt', 'x');
    const edit = await fetch(`${url}/v1/images/edits`, { method: 'POST', headers: auth, body: form });
    expect(edit.status).toBe(400);
    expect(await edit.json()).toMatchObject({ error: { type: 'invalid_request_error', param: 'image', code: 'invalid_image' } });
    await stillServing();
  });

  it('model names outside --models-dir (.., absolute, a symlink out) are refused; the folder lists none of them', async () => {
    for (const name of ['../../etc/passwd', '/etc/passwd', '..', 'escape', 'escape.safetensors', 'sub/../../tiny']) {
      const res = await send('POST', '/sdapi/v1/options', { sd_model_checkpoint: name });
      expect(res.status).toBe(400);
      expect(res.json.error.field).toBe('sd_model_checkpoint');
      expect(res.json.error.code).toMatch(/^(invalid_name|unknown_model)$/);
      const inline = await send('POST', '/sdapi/v1/txt2img', { prompt: 'x', steps: 1, width: 64, height: 64, override_settings: { sd_model_checkpoint: name } });
      expect([inline.status, inline.json.error.field]).toEqual([400, 'override_settings.sd_model_checkpoint']);
      const openai = await send('POST', '/v1/images/generations', { prompt: 'x', model: name });
      expect(openai.status).toBe(400);
      expect(openai.json.error.param).toBe('model');
      await stillServing();
    }
    const listed = (await (await fetch(`${url}/sdapi/v1/sd-models`, { headers: auth })).json()) as Array<{ title: string }>;
    expect(listed.map((m) => m.title)).toEqual(['tiny.safetensors']);
    expect((await (await fetch(`${url}/sdapi/v1/options`, { headers: auth })).json()) as object).toMatchObject({ sd_model_checkpoint: 'tiny.safetensors' });
  });

  it('unknown LoRAs and LoRA names outside --lora-model-dir are refused; one inside works', async () => {
    for (const [prompt, code] of [
      ['a cat <lora:nope:1>', 'unknown_lora'],
      ['a cat <lora:escape:1>', 'unknown_lora'],
      ['a cat <lora:../outside:1>', 'invalid_name'],
      ['a cat <lora:/etc/passwd:1>', 'invalid_name'],
    ] as const) {
      const res = await send('POST', '/sdapi/v1/txt2img', { prompt, steps: 1, width: 64, height: 64 });
      expect([res.status, res.json.error.code, res.json.error.field]).toEqual([400, code, 'prompt']);
      await stillServing();
    }
    const listed = await send('POST', '/sdnode/v1/jobs', { prompt: 'x', loras: [{ name: 'escape' }] });
    expect([listed.status, listed.json.error.field]).toEqual([400, 'loras[0].name']);
    const ok = await send('POST', '/sdapi/v1/txt2img', { prompt: 'a cat <lora:style:0.5>', steps: 1, width: 64, height: 64, seed: 1 });
    expect(ok.status).toBe(200);
  });

  it('missing or wrong credentials: 401 with a challenge; Bearer and Basic ones pass', async () => {
    const none = await send('POST', '/sdapi/v1/txt2img', { prompt: 'x' }, {});
    expect([none.status, none.json.error.code]).toEqual([401, 'missing_credentials']);
    expect(none.headers.get('www-authenticate')).toMatch(/^Basic/);
    for (const authorization of [`Bearer ${KEY}x`, 'Bearer ', `Basic ${Buffer.from('ann:wrong').toString('base64')}`, 'Basic !!!', KEY]) {
      const res = await send('GET', '/sdapi/v1/sd-models', undefined, { authorization });
      expect([res.status, res.json.error.code]).toEqual([401, 'invalid_credentials']);
    }
    const openai = await send('POST', '/v1/images/generations', { prompt: 'x' }, { authorization: 'Bearer nope' });
    expect(openai.json.error).toMatchObject({ type: 'invalid_request_error', code: 'invalid_credentials' });
    expect((await send('GET', '/sdapi/v1/sd-models', undefined, { authorization: BASIC })).status).toBe(200);
    await stillServing();
  });

  it('unknown routes and job ids: 404 JSON; nothing was written anywhere', async () => {
    expect((await send('GET', '/etc/passwd')).json.error.code).toBe('not_found');
    expect((await send('GET', '/sdnode/v1/jobs/..%2F..%2Fetc%2Fpasswd')).status).toBe(400);
    expect((await send('DELETE', '/sdnode/v1/jobs/no-such-job')).json.error.code).toBe('unknown_job');
    expect(files(dir)).toEqual(filesBefore);
    const { status } = await send('POST', '/sdapi/v1/txt2img', { prompt: 'still fine', steps: 1, width: 64, height: 64 });
    expect(status).toBe(200);
  });
});
