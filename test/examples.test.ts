// Every example in examples/ and `npm run demo`, run as a user runs them — child processes on
// the tiny generated model they fall back to — must exit 0 and write PNGs of the expected
// sizes; the HTTP server example serves a PNG, refuses bad parameters with 400, cancels the job
// of a client that disconnects, and stops on SIGTERM.
import { execFile, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { imagePath } from './support/data.js';
import { tinyTaeDecoder } from './support/tiny-tae.js';
import { writeTorchCheckpoint } from './support/torch-zip.js';

const root = resolve(import.meta.dirname, '..');
const run = promisify(execFile);
// TMPDIR is where the examples cache their tiny model (os.tmpdir()): one for this run.
const cache = mkdtempSync(join(tmpdir(), 'sdnode-examples-cache-'));
const env = { ...process.env, TMPDIR: cache };
const dirs = [cache];
const tempDir = (prefix: string) => {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  dirs.push(dir);
  return dir;
};

/** Runs `node <script> ...args` in a fresh folder; its stdout and the folder. */
async function example(script: string, args: string[] = []): Promise<{ out: string; dir: string }> {
  const dir = tempDir('sdnode-example-');
  const { stdout } = await run(process.execPath, [join(root, script), ...args], { cwd: dir, env, encoding: 'utf8' });
  return { out: stdout, dir };
}

async function pngSize(path: string): Promise<string> {
  const meta = await sharp(path).metadata();
  expect(meta.format).toBe('png');
  return `${meta.width}×${meta.height}`;
}

/** Rebuilds dist/ (tsup), which 'sdnode' resolves to, when a lib/ source is newer than it. */
async function buildDist(): Promise<void> {
  const built = ['index.js', 'index.cjs'].map((f) => join(root, 'dist', f));
  const oldest = Math.min(...built.map((f) => (existsSync(f) ? statSync(f).mtimeMs : 0)));
  const sources = readdirSync(join(root, 'lib'), { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.ts'));
  if (sources.some((f) => statSync(join(root, 'lib', f)).mtimeMs > oldest)) await run('npx', ['tsup'], { cwd: root });
}

beforeAll(buildDist, 120_000);
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

describe('examples', () => {
  // First, alone: it writes the cached tiny model the others reuse.
  it('txt2img.mjs (ESM)', async () => {
    const { out, dir } = await example('examples/txt2img.mjs');
    expect(out).toMatch(/step 8\/8/);
    expect(await pngSize(join(dir, 'txt2img.png'))).toBe('64×64');
    expect(readdirSync(cache).filter((f) => f.endsWith('.safetensors'))).toHaveLength(1);
  });

  it('txt2img.cjs (CommonJS)', async () => {
    const { out, dir } = await example('examples/txt2img.cjs');
    expect(out).toContain('seed 7');
    expect(await pngSize(join(dir, 'txt2img-cjs.png'))).toBe('64×64');
  });

  it('img2img.mjs: a picture drawn in code, aspect ratio kept, only ⌈steps × strength⌉ steps run', async () => {
    const { out, dir } = await example('examples/img2img.mjs');
    expect(out).toMatch(/step 6\/6/); // ⌈10 × 0.6⌉
    expect(await pngSize(join(dir, 'img2img.png'))).toBe('64×48');
  });

  it('inpainting.mjs: a mask made in code', async () => {
    const { out, dir } = await example('examples/inpainting.mjs');
    expect(out).toContain('a standard model');
    expect(await pngSize(join(dir, 'inpainting.png'))).toBe('64×48');
  });

  it('outpainting.mjs: a photo padded and its border painted', async () => {
    const { dir } = await example('examples/outpainting.mjs', ['', imagePath('chelsea.png'), 'wide.png']);
    expect(await pngSize(join(dir, 'wide.png'))).toBe('160×96'); // 128×64 + 16 on each side
  });

  it('previews.mjs: a preview PNG every 2 steps and at the last, latent2rgb or from a TAESD decoder', async () => {
    const tae = join(tempDir('sdnode-example-tae-'), 'taesd_decoder.pth');
    writeTorchCheckpoint(tae, tinyTaeDecoder({ latentChannels: 4, width: 8, blocks: 1, stages: 3, pool: false }));
    for (const args of [[], ['', tae, 'tae-previews']]) {
      const { dir } = await example('examples/previews.mjs', args);
      const folder = join(dir, args[2] ?? 'previews');
      const files = readdirSync(folder).sort();
      expect(files).toEqual(['final.png', 'step-02.png', 'step-04.png', 'step-06.png', 'step-08.png']);
      for (const f of files) expect(await pngSize(join(folder, f))).toBe('64×64');
    }
  });

  it('upscale.mjs: a picture ×4 in tiles with progress, then generate() with upscale', async () => {
    const { out, dir } = await example('examples/upscale.mjs');
    expect(out).toMatch(/^×4 upscaler: 1 blocks of 8 features \(basicsr names\)$/m);
    expect(out).toMatch(/^tile 6\/6 /m); // 128×96 in 64² tiles overlapping by 16: 3 × 2
    expect(await pngSize(join(dir, 'upscaled.png'))).toBe('512×384');
    expect(await pngSize(join(dir, 'generated-upscaled.png'))).toBe('256×256');
  });

  it('hires-fix.mjs: 64² → 128² with progress over both passes, then with Lanczos', async () => {
    const { out, dir } = await example('examples/hires-fix.mjs');
    // 4 steps, then 3: the last 3 of a 4-step schedule at strength 0.5 (stable-diffusion.cpp's rule).
    expect(out).toMatch(/^step 7\/7$/m);
    expect(await pngSize(join(dir, 'hires.png'))).toBe('128×128');
    expect(await pngSize(join(dir, 'hires-lanczos.png'))).toBe('128×128');
  });

  it('controlnet.mjs: canny edges of the picture, generate with the ControlNet, then only in the first half of the steps', async () => {
    const { out, dir } = await example('examples/controlnet.mjs');
    expect(out).toMatch(/^ControlNet: 4 input blocks, ldm names, safetensors$/m);
    expect(await pngSize(join(dir, 'edges.png'))).toBe('512×384');
    expect(await pngSize(join(dir, 'controlnet.png'))).toBe('64×64');
    expect(await pngSize(join(dir, 'controlnet-early.png'))).toBe('64×64');
  });

  it('cancel-on-timeout.mjs: AbortSignal.timeout cancels, AbortError is caught, the model goes on', async () => {
    const started = performance.now();
    const { out, dir } = await example('examples/cancel-on-timeout.mjs', ['', '1000']);
    const m = /cancelled after (\d+) ms \(limit 1000 ms, \d+ steps done\): .* \[ABORT_ERR\]/.exec(out);
    expect(m, out).not.toBeNull();
    expect(Number(m![1])).toBeGreaterThanOrEqual(1000);
    expect(out).toContain('next job: 64×64');
    expect(existsSync(join(dir, 'in-time.png'))).toBe(false);
    // 1024², 1000 steps would take hours here (and seconds on a GPU): the job really stopped.
    expect(performance.now() - started).toBeLessThan(60_000);
  });

  it('lora.mjs: tags from a loraDir per request, a handle reused; each result\'s LoRAs and loraMs printed', async () => {
    const { out, dir } = await example('examples/lora.mjs');
    // The kept set serves the same LoRAs again at no cost; every file fits the model it was written for.
    expect(out).toMatch(/^tags 1 "a castle on a hill <lora:watercolor:0\.8>": loraMs [1-9][\d.]*,/m);
    expect(out).toMatch(/^tags 2 .*: loraMs 0\.0,/m);
    expect(out).toMatch(/^ {2}detail × 0\.6: (\d+)\/\1 tensors patch \d+ weights; unmatched 0, incompatible 0$/m);
    expect(out).toMatch(/^handle × 1: loraMs 0\.0,/m);
    const pixels = async (f: string) => (await sharp(join(dir, f)).raw().toBuffer()).toString('base64');
    for (const f of ['lora-tags-1.png', 'lora-tags-4.png', 'lora-handle-3.png']) expect(await pngSize(join(dir, f))).toBe('64×64');
    expect(await pixels('lora-tags-2.png')).toBe(await pixels('lora-tags-1.png'));
    expect(await pixels('lora-tags-4.png')).not.toBe(await pixels('lora-tags-1.png'));
  });

  it('lcm-lora.mjs: the LCM-LoRA recipe, 4 lcm steps with a tagged LoRA', async () => {
    const { out, dir } = await example('examples/lcm-lora.mjs');
    expect(out.match(/^step \d\/4$/gm)).toHaveLength(4);
    expect(out).toMatch(/^lcm-lora-sdv1-5: \d+ weights patched \(0 tensors unmatched\)/m);
    expect(await pngSize(join(dir, 'lcm-lora.png'))).toBe('64×64');
  });

  it('npm run demo: txt2img, img2img and inpainting with a progress line per step', async () => {
    const dir = tempDir('sdnode-demo-');
    const { stdout } = await run('npm', ['run', 'demo', '--', '--out', dir, '--size', '64', '--steps', '4'], { cwd: root, env, encoding: 'utf8' });
    for (const name of ['txt2img', 'img2img', 'inpaint']) {
      expect(await pngSize(join(dir, `demo-${name}.png`))).toBe('64×64');
      expect(stdout).toMatch(new RegExp(`demo-${name}\\.png \\(64×64\\) in [0-9.]+ s — text`));
    }
    expect(stdout.match(/^ {2}txt2img step \d\/4 /gm)).toHaveLength(4);
    expect(stdout.match(/^ {2}img2img step \d\/3 /gm)).toHaveLength(3); // ⌈4 × 0.6⌉
    expect(stdout.match(/^ {2}inpaint step \d\/4 /gm)).toHaveLength(4);
    expect(stdout).toContain('npm run demo -- --model v1-5-pruned-emaonly.safetensors --size 512 --steps 20');
  });
});

describe('http-server.mjs', () => {
  type Reply = { status: number; type: string | undefined; seed: string | undefined; body: Buffer };
  const post = (port: number, body: string, signal?: AbortSignal) =>
    new Promise<Reply>((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port, path: '/generate', method: 'POST', signal }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode!, type: res.headers['content-type'], seed: res.headers['x-seed'] as string | undefined, body: Buffer.concat(chunks) }));
      });
      req.on('error', reject);
      req.end(body);
    });

  it('serves PNGs from one model, 400 for bad parameters, cancels a gone client, stops on SIGTERM', async () => {
    const server = spawn(process.execPath, [join(root, 'examples/http-server.mjs'), '', '0'], { cwd: cache, env, stdio: ['ignore', 'pipe', 'inherit'] });
    let log = '';
    server.stdout.setEncoding('utf8').on('data', (s: string) => (log += s));
    const exited = new Promise<number | null>((resolve) => server.on('exit', resolve));
    const waitFor = async (pattern: RegExp) => {
      for (let i = 0; i < 600 && !pattern.test(log); i++) await new Promise((r) => setTimeout(r, 100));
      expect(log).toMatch(pattern);
      return pattern.exec(log)!;
    };
    try {
      const port = Number((await waitFor(/listening on http:\/\/127\.0\.0\.1:(\d+)\//))[1]);

      // Two at once: the model's queue serves them one after the other.
      const [a, b] = await Promise.all([
        post(port, JSON.stringify({ prompt: 'a red fox', width: 64, height: 32, steps: 2, seed: 5 })),
        post(port, JSON.stringify({ prompt: 'a blue bird', steps: 2 })),
      ]);
      expect([a.status, a.type, a.seed]).toEqual([200, 'image/png', '5']);
      expect(`${(await sharp(a.body).metadata()).width}×${(await sharp(a.body).metadata()).height}`).toBe('64×32');
      expect([b.status, b.type]).toEqual([200, 'image/png']);
      expect((await sharp(b.body).metadata()).width).toBe(64);

      for (const [body, message] of [
        [{ prompt: 'x', steps: 'many' }, /options\.steps must be a number/],
        [{ prompt: 'x', sampler: 'eulr' }, /options\.sampler must be one of/],
        [{ steps: 3 }, /options\.prompt must be a string/],
        [{ promt: 'x' }, /unknown parameter 'promt'/],
        [{ prompt: 'x', width: 4096, height: 4096 }, /at most/],
        ['{ not json', /must be JSON/],
      ] as const) {
        const r = await post(port, typeof body === 'string' ? body : JSON.stringify(body));
        expect(r.status, JSON.stringify(body)).toBe(400);
        expect((JSON.parse(r.body.toString()) as { error: string }).error).toMatch(message);
      }

      // A client that gives up: its job (1024², 50 steps: many minutes here, most of a second on a GPU) is cancelled.
      await expect(post(port, JSON.stringify({ prompt: 'slow', width: 1024, height: 1024, steps: 50 }), AbortSignal.timeout(250))).rejects.toThrow();
      await waitFor(/job \d+: cancelled, the client went away/);

      server.kill('SIGTERM');
      expect(await exited).toBe(0);
      expect(log).toContain('stopped');
    } finally {
      if (server.exitCode === null) server.kill('SIGKILL');
    }
  });
});
