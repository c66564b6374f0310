// The web page of `sdnode serve` in a real browser: Debian's chromium driven by puppeteer-core,
// against a server on the tiny model that wants an API key. The page and its files are public,
// the API is not; the user types the key, picks a LoRA into the prompt, fills the form and
// generates: the progress bar rises with live previews, the image lands in the gallery, and
// the PNG its link downloads is the one model.generate() makes with the same settings, with
// its `parameters` chunk. Cancel stops a running job. Then image to image with a mask painted
// over the init image. No
// console errors, no failed requests; a screenshot is left in a temp folder (its path printed).
//
// Without chromium the file is skipped, with a message — except in CI (process.env.CI), where
// .ci/run installs it and a missing browser fails.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import sharp from 'sharp';
import type { FastifyInstance } from 'fastify';
import puppeteer, { type Browser, type Page } from 'puppeteer-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { loadModel, readImage, type Model } from '../lib/index.js';
import { PARAMETERS_KEY, pngTextChunks } from '../lib/cli/png-parameters.js';
// @ts-expect-error: plain JavaScript module with JSDoc types
import { generateLora } from '../scripts/generator/lora.mjs';
import { listeningServer, pngPixels, tinyModelDir, waitFor } from './support/server.js';

/** The browser at CHROMIUM_PATH when set, else chromium as Debian installs it, looked up on PATH. */
function findChromium(): string | undefined {
  const given = process.env.CHROMIUM_PATH;
  if (given) return existsSync(given) ? given : undefined;
  for (const dir of (process.env.PATH ?? '').split(delimiter))
    for (const name of ['chromium', 'chromium-browser']) if (dir && existsSync(join(dir, name))) return join(dir, name);
  return undefined;
}

const chromium = findChromium();
const skip = !chromium && !process.env.CI;
if (skip) console.warn('test/browser.test.ts skipped: no chromium on PATH or at CHROMIUM_PATH (apt-get install chromium)');

// The functions given to page.evaluate run in the browser; the project compiles without the DOM's
// types (the library must not use them), so what those functions touch is declared here, loosely.
declare const document: { getElementById(id: string): any; querySelector(selector: string): any; querySelectorAll(selector: string): { length: number } };
declare const window: Record<string, any>;
declare const MutationObserver: new (callback: () => void) => { observe(target: unknown, options: object): void };

const API_KEY = 'page-test-key';
const SIZE = 64;

let remove: () => void;
let app: FastifyInstance;
let url: string;
let model: Model;
let browser: Browser;
let page: Page;
let work: string;
let downloads: string;
/** Everything that went wrong in the page: console errors and warnings, uncaught exceptions, failed or refused requests. */
const problems: string[] = [];
/** The JSON bodies the page POSTed to /sdnode/v1/jobs. */
const jobBodies: Array<Record<string, unknown>> = [];

beforeAll(async () => {
  if (!chromium) throw new Error('chromium is not installed (CI installs it in .ci/run: apt-get install chromium)');
  const tiny = await tinyModelDir('sdnode-browser-');
  remove = tiny.remove;
  work = tiny.dir;
  const loraDir = join(work, 'loras');
  mkdirSync(loraDir);
  await generateLora({ model: tiny.model, out: join(loraDir, 'style.safetensors'), format: 'lora', targets: ['attn', 'conv', 'te'], rank: 4, alpha: 2, seed: 5 });
  ({ app, url } = await listeningServer({ model: tiny.model, loraModelDir: loraDir, apiKey: API_KEY }));
  model = await loadModel(tiny.model, { device: 'cpu', threads: 1, loraDir });
  downloads = mkdtempSync(join(tmpdir(), 'sdnode-browser-downloads-'));
  browser = await puppeteer.launch({
    executablePath: chromium,
    headless: true,
    // Root (as CI runs) cannot use chromium's sandbox.
    args: process.getuid?.() === 0 ? ['--no-sandbox'] : [],
    defaultViewport: { width: 1200, height: 900 },
    downloadBehavior: { policy: 'allow', downloadPath: downloads },
  });
  page = await browser.newPage();
  page.on('console', (m) => {
    if (m.type() === 'error' || m.type() === 'warn') problems.push(`console ${m.type()}: ${m.text()}`);
  });
  page.on('pageerror', (e) => problems.push(`page error: ${String(e)}`));
  page.on('requestfailed', (r) => problems.push(`request failed: ${r.method()} ${r.url()} ${r.failure()?.errorText ?? ''}`));
  page.on('response', (r) => {
    if (r.status() >= 400) problems.push(`HTTP ${r.status()}: ${r.request().method()} ${r.url()}`);
  });
  page.on('request', (r) => {
    if (r.method() === 'POST' && r.url().endsWith('/sdnode/v1/jobs')) jobBodies.push(JSON.parse(r.postData() ?? '{}') as Record<string, unknown>);
  });
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await app?.close();
  await model?.dispose();
  remove?.();
});

/** A GET of `path` exactly as written (no URL normalisation). */
function rawGet(path: string, headers: Record<string, string>): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(`${url}${path}`, { headers }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject).end();
  });
}

const same = (a: Uint8Array, b: Uint8Array) => a.length === b.length && a.every((v, i) => v === b[i]);

/** Sets a form control's value as a user would, with the events the page listens to. */
async function fill(selector: string, value: string) {
  await page.$eval(
    selector,
    (el, v) => {
      (el as { value: string }).value = v;
      el.dispatchEvent(new Event('input', { bubbles: true }));
      el.dispatchEvent(new Event('change', { bubbles: true }));
    },
    value,
  );
}

/** Starts recording the progress bar's values and the live preview's images, as they change. */
async function watchProgress() {
  await page.evaluate(() => {
    const seen = { values: [] as number[], previews: [] as string[] };
    window.seen = seen;
    const bar = document.getElementById('progress') as { value: number; max: number };
    const preview = document.getElementById('preview') as { src: string };
    new MutationObserver(() => seen.values.push(bar.value / bar.max)).observe(bar, { attributes: true, attributeFilter: ['value'] });
    new MutationObserver(() => seen.previews.push(preview.src)).observe(preview, { attributes: true, attributeFilter: ['src'] });
  });
}

/** Clicks the newest gallery image's download link; the downloaded file's bytes. */
async function downloadNewest(name: string): Promise<Uint8Array> {
  await page.click('#gallery figure:first-child a.download');
  const path = join(downloads, name);
  // Chromium writes <name>.crdownload, then renames it when complete.
  await waitFor(() => (existsSync(path) && !readdirSync(downloads).some((f) => f.endsWith('.crdownload')) ? true : undefined), 10_000);
  return new Uint8Array(readFileSync(path));
}

describe.skipIf(skip)('web page', () => {
  it('is public, with its files and a strict policy; the API behind it wants the key', async () => {
    const res = await fetch(`${url}/`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('text/html; charset=utf-8');
    expect(res.headers.get('content-security-policy')).toContain("script-src 'self'");
    expect(await res.text()).toContain('<script type="module" src="/ui/app.js">');
    const js = await fetch(`${url}/ui/app.js`);
    expect(js.headers.get('content-type')).toBe('text/javascript; charset=utf-8');
    expect(js.headers.get('cache-control')).toBe('no-cache');
    const etag = js.headers.get('etag')!;
    expect((await fetch(`${url}/ui/app.js`, { headers: { 'if-none-match': etag } })).status).toBe(304);
    expect((await fetch(`${url}/ui/style.css`)).headers.get('content-type')).toBe('text/css; charset=utf-8');
    const config = (await (await fetch(`${url}/ui/config.json`)).json()) as { credentials: unknown; samplers: Array<{ name: string }> };
    expect(config.credentials).toEqual({ apiKey: true, apiAuth: false });
    expect(config.samplers.map((s) => s.name)).toContain('dpm++2m');
    // Only the folder's own files, by name: no way out of it, encoded or not (sent as written,
    // which fetch() would not do with '..'); with the key, so that only the route can refuse.
    for (const path of ['/ui/..%2Fpackage.json', '/ui/%2e%2e%2f%2e%2e%2fpackage.json', '/ui/../../package.json', '/ui/nothing.js', '/ui/index.html']) {
      const miss = await rawGet(path, { authorization: `Bearer ${API_KEY}` });
      expect(miss.status, path).toBe(404);
      expect((JSON.parse(miss.body) as { error: { code: string } }).error.code).toBe('not_found');
    }
    expect((await fetch(`${url}/sdnode/v1/models`)).status).toBe(401);
    expect((await fetch(`${url}/sdnode/v1/models`, { headers: { authorization: `Bearer ${API_KEY}` } })).status).toBe(200);
  });

  it('txt2img from the form: progress with previews, the image in the gallery, its PNG bit-identical with its parameters', async () => {
    const started = Date.now();
    await page.goto(`${url}/`);
    await page.waitForSelector('body[data-ready]');
    expect(await page.$eval('#status', (e) => e.textContent)).toContain('needs credentials');
    await page.type('#api-key', API_KEY);
    await page.click('#credentials button[type=submit]');
    await page.waitForFunction(() => document.getElementById('status')!.textContent === 'Ready.');

    await page.type('#prompt', 'a lovely cat');
    await page.type('#negative-prompt', 'blurry');
    await page.select('#lora-name', 'style');
    await fill('#lora-weight', '0.8');
    await page.click('#lora-add');
    const prompt = await page.$eval('#prompt', (e) => (e as { value: string }).value);
    expect(prompt).toBe('a lovely cat <lora:style:0.8>');
    await fill('#width', String(SIZE));
    await fill('#height', String(SIZE));
    await fill('#steps', '6');
    await fill('#cfg-scale', '6.5');
    await page.select('#sampler', 'dpm++2m');
    await page.select('#scheduler', 'karras');
    await fill('#seed', '1234');
    await watchProgress();
    await page.click('#generate');
    await page.waitForSelector('#gallery figure');
    const seen = await page.evaluate(() => window.seen as { values: number[]; previews: string[] });
    // Every step moved the bar (the last to full), and the previews came as PNGs.
    expect(seen.values.filter((v) => v > 0 && v < 1).length).toBeGreaterThanOrEqual(4);
    expect(seen.values.at(-1)).toBe(1);
    expect(seen.values.every((v, i) => i === 0 || v >= seen.values[i - 1]! || v === 0)).toBe(true);
    expect(seen.previews.filter((p) => p.startsWith('data:image/png;base64,')).length).toBeGreaterThanOrEqual(1);
    expect(await page.$eval('#status', (e) => e.textContent)).toBe('Done: 1 image, seed 1234.');

    const png = await downloadNewest('sdnode-1234.png');
    const expected = await model.generate({ prompt, negativePrompt: 'blurry', width: SIZE, height: SIZE, steps: 6, cfgScale: 6.5, sampler: 'dpm++2m', scheduler: 'karras', seed: 1234 });
    const got = await pngPixels(png);
    expect(got).toMatchObject({ width: SIZE, height: SIZE });
    expect(same(got.data, expected.images[0]!.data)).toBe(true);
    const parameters = pngTextChunks(png)[PARAMETERS_KEY]!;
    expect(parameters.startsWith(`${prompt}\nNegative prompt: blurry\n`)).toBe(true);
    expect(parameters).toContain('Seed: 1234');
    expect(parameters).toContain('Sampler: DPM++ 2M, Schedule type: Karras');
    expect(problems).toEqual([]);
    console.log(`browser txt2img: ${Date.now() - started} ms from page load to the comparison`);
  });

  it('Cancel stops the running job through DELETE; the page says so and adds nothing', async () => {
    await fill('#steps', '150');
    await page.click('#generate');
    await page.waitForFunction(() => (document.getElementById('progress') as { value: number }).value >= 2);
    await page.click('#cancel');
    await page.waitForFunction(() => document.getElementById('status').textContent.startsWith('Cancelled'));
    expect(await page.$eval('#status', (e) => e.textContent)).toBe('Cancelled (cancelled by DELETE).');
    expect(await page.$$eval('#gallery figure', (figures) => figures.length)).toBe(1);
    expect(await page.$eval('#progress', (e) => (e as { value: number }).value)).toBeLessThan(150);
    expect(await page.$eval('#generate', (e) => (e as { disabled: boolean }).disabled)).toBe(false);
    expect(problems).toEqual([]);
  });

  it('with --api-auth, asks for a user and password and sends them as Basic credentials', async () => {
    const basic = await listeningServer({ model: model, apiAuth: 'ann:s3cret' });
    const tab = await browser.newPage();
    try {
      const failures: string[] = [];
      tab.on('response', (r) => {
        if (r.status() >= 400) failures.push(`HTTP ${r.status()}: ${r.url()}`);
      });
      await tab.goto(`${basic.url}/`);
      await tab.waitForSelector('body[data-ready]');
      expect(await tab.$eval('#api-key', (e) => e.closest('label').hidden)).toBe(true);
      await tab.type('#api-user', 'ann');
      await tab.type('#api-pass', 's3cret');
      await tab.click('#credentials button[type=submit]');
      await tab.waitForFunction(() => document.getElementById('status')!.textContent === 'Ready.');
      expect(failures).toEqual([]);
    } finally {
      await tab.close();
      await basic.app.close();
    }
  });

  it('img2img with a mask painted over the init image: the library\'s inpainting; a screenshot', async () => {
    const started = Date.now();
    // A gradient with a dark square: something to keep and something to repaint.
    const init = new Uint8Array(SIZE * SIZE * 3).map((_, i) => {
      const p = Math.floor(i / 3), x = p % SIZE, y = Math.floor(p / SIZE);
      return x > 40 && y > 40 ? 20 : (i % 3 === 0 ? x * 4 : i % 3 === 1 ? y * 4 : 128) & 0xff;
    });
    const initPath = join(work, 'init.png');
    await sharp(init, { raw: { width: SIZE, height: SIZE, channels: 3 } }).png().toFile(initPath);

    await page.$eval('#prompt', (e) => ((e as { value: string }).value = ''));
    await page.type('#prompt', 'a red door');
    const input = await page.$('#init-image');
    await (input as unknown as { uploadFile: (p: string) => Promise<void> }).uploadFile(initPath);
    await page.waitForFunction((size) => document.getElementById('mask-canvas').width === size && !!document.querySelector('#init-preview')?.src, {}, SIZE);
    await fill('#strength', '0.6');
    await fill('#steps', '5');
    await fill('#seed', '77');
    await fill('#brush', '12');
    // A stroke down the left third of the image, on the canvas as shown (scaled).
    const box = (await (await page.$('#mask-canvas'))!.boundingBox())!;
    const at = (x: number, y: number) => [box.x + (x / SIZE) * box.width, box.y + (y / SIZE) * box.height] as const;
    await page.mouse.move(...at(16, 8));
    await page.mouse.down();
    for (let y = 12; y <= 56; y += 4) await page.mouse.move(...at(16, y));
    await page.mouse.up();
    await page.click('#generate');
    await page.waitForFunction(() => document.querySelectorAll('#gallery figure').length === 2);
    expect(await page.$eval('#status', (e) => e.textContent)).toBe('Done: 1 image, seed 77.');

    const body = jobBodies.at(-1)!;
    expect(body).toMatchObject({ prompt: 'a red door', strength: 0.6, steps: 5, seed: 77, maskBlur: 4 });
    // The init image as the file's own bytes; the mask white on black, the init image's size.
    expect(Buffer.from((body.initImage as string).split(',')[1]!, 'base64').equals(readFileSync(initPath))).toBe(true);
    const maskPng = Buffer.from((body.mask as string).split(',')[1]!, 'base64');
    const { data: rgb, info } = await sharp(maskPng).removeAlpha().raw().toBuffer({ resolveWithObject: true });
    expect([info.width, info.height]).toEqual([SIZE, SIZE]);
    const gray = new Uint8Array(SIZE * SIZE).map((_, p) => rgb[p * 3]!);
    expect(gray.every((v, p) => rgb[p * 3 + 1] === v && rgb[p * 3 + 2] === v)).toBe(true);
    expect(gray[32 * SIZE + 16]).toBe(255); // on the stroke
    expect(gray[32 * SIZE + 48]).toBe(0); // far from it

    const png = await downloadNewest('sdnode-77.png');
    const expected = await model.generate({
      prompt: 'a red door',
      negativePrompt: 'blurry',
      width: SIZE,
      height: SIZE,
      steps: 5,
      cfgScale: 6.5,
      sampler: 'dpm++2m',
      scheduler: 'karras',
      seed: 77,
      initImage: await readImage(initPath),
      strength: 0.6,
      mask: { width: SIZE, height: SIZE, channels: 1, data: gray },
      maskBlur: 4,
    });
    expect(same((await pngPixels(png)).data, expected.images[0]!.data)).toBe(true);
    expect(problems).toEqual([]);

    const shot = join(mkdtempSync(join(tmpdir(), 'sdnode-page-')), 'page.png');
    await page.screenshot({ path: shot as `${string}.png`, fullPage: true });
    console.log(`browser img2img: ${Date.now() - started} ms; screenshot: ${shot}`);
  });
});
