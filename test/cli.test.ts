// The `sdnode` command, run as users run it: the built dist/cli.js under node, as a child
// process, on a tiny generated SD1.x model. Its images are the library's for the same settings
// (pixel for pixel), its PNGs carry the webui's `parameters` and read back, --json is one
// parseable object, Ctrl-C exits 130 leaving no file, and the exit codes are the documented ones.
// Flags out of range and refused destinations (devices, FIFOs, sockets, symlinks out of the
// folder, malformed -o templates) fail before the model loads.
// The infotext writer and reader are also checked on their own.
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import sharp from 'sharp';
import extractChunks from 'png-chunks-extract';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { AbortError, FileAccessError, inspectModel, loadModel, readImage, type GenerateOptions, type Model } from '../lib/index.js';
import { EXIT, classify, inFlagTerms } from '../lib/cli/exit.js';
import { GENERATE_FLAGS } from '../lib/cli/generate.js';
import { outputPaths } from '../lib/cli/output.js';
import { addPngText, formatParameters, parseParameters, pngTextChunks, readPngParameters } from '../lib/cli/png-parameters.js';
// @ts-expect-error: plain JavaScript module with JSDoc types
import { generateModel } from '../scripts/generate-model.mjs';
import { imagePath } from './support/data.js';
import { tinyTaeDecoder } from './support/tiny-tae.js';
import { writeTorchCheckpoint } from './support/torch-zip.js';

const root = resolve(import.meta.dirname, '..');
const cli = join(root, 'dist', 'cli.js');
const dir = mkdtempSync(join(tmpdir(), 'sdnode-cli-'));
const modelPath = join(dir, 'tiny.safetensors');
const taePath = join(dir, 'taesd_decoder.pth');
const initPath = join(dir, 'init.png');
const maskPath = join(dir, 'mask.png');
const cpu = ['--device', 'cpu', '-t', '2'];
const W = 64, H = 48;
let model: Model;

beforeAll(async () => {
  // The CLI under test is the built one: build dist/ from the current lib/.
  execFileSync('npm', ['run', 'build:ts'], { cwd: root, stdio: 'ignore' });
  await generateModel({ out: modelPath, preset: 'tiny', dtype: 'f32', seed: 3 });
  writeTorchCheckpoint(taePath, tinyTaeDecoder({ latentChannels: 4, width: 8, blocks: 1, stages: 3, pool: false }));
  await sharp(imagePath('chelsea.png')).resize(W, H, { fit: 'fill' }).png().toFile(initPath);
  // A white rectangle (repaint) on black (keep).
  const mask = Buffer.alloc(W * H);
  for (let y = 12; y < 36; y++) mask.fill(255, y * W + 16, y * W + 48);
  await sharp(mask, { raw: { width: W, height: H, channels: 1 } }).png().toFile(maskPath);
  model = await loadModel(modelPath, { device: 'cpu', threads: 2 });
}, 180_000);

afterAll(async () => {
  await model?.dispose();
});

interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs `node dist/cli.js …args` in the test folder; `onStderr` sees stderr as it comes (and may signal the child). */
function sdnode(args: string[], onStderr?: (text: string, child: ReturnType<typeof spawn>) => void): Promise<Run> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, [cli, ...args], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '', stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
      onStderr?.(stderr, child);
    });
    child.on('error', reject);
    child.on('close', (code, signal) => resolvePromise({ code, signal, stdout, stderr }));
  });
}

async function pixels(path: string): Promise<{ width: number; height: number; data: Uint8Array }> {
  const { data, info } = await sharp(path).raw().toBuffer({ resolveWithObject: true });
  expect(info.channels).toBe(3);
  return { width: info.width, height: info.height, data: new Uint8Array(data) };
}

/** The library's own image for the same settings. */
async function expected(options: GenerateOptions): Promise<Uint8Array> {
  const r = await model.generate(options);
  return r.images[0]!.data;
}

const same = (a: Uint8Array, b: Uint8Array) => a.length === b.length && a.every((v, i) => v === b[i]);

describe('sdnode generate', () => {
  it('txt2img: writes the library\'s image as a PNG whose parameters read back', async () => {
    const r = await sdnode([
      'generate', '-m', modelPath, '-p', 'a lovely cat', '-n', 'blurry, low quality', '-W', `${W}`, '-H', `${H}`,
      '--steps', '3', '-s', '1234', '--cfg-scale', '6.5', '--sampling-method', 'euler', '--scheduler', 'karras', '-o', 'cat.png', ...cpu,
    ]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('cat.png');
    // Not a terminal: one plain progress line per sampler step.
    expect(r.stderr).toMatch(/sampling 1\/3 \([\d.]+ s\/it, ETA \d+:\d\d\)/);
    expect(r.stderr).toMatch(/sampling 3\/3/);

    const p = await readPngParameters(join(dir, 'cat.png'));
    expect(p).toEqual({
      prompt: 'a lovely cat',
      negativePrompt: 'blurry, low quality',
      fields: {
        Steps: '3',
        Sampler: 'Euler',
        'Schedule type': 'Karras',
        'CFG scale': '6.5',
        Seed: '1234',
        Size: `${W}x${H}`,
        Model: 'tiny',
        Version: expect.stringMatching(/^sdnode \d+\.\d+\.\d+/),
      },
    });
    const png = await pixels(join(dir, 'cat.png'));
    expect(png).toMatchObject({ width: W, height: H });
    const lib = await expected({ prompt: 'a lovely cat', negativePrompt: 'blurry, low quality', width: W, height: H, steps: 3, seed: 1234, cfgScale: 6.5, sampler: 'euler', scheduler: 'karras' });
    expect(same(png.data, lib)).toBe(true);
  });

  it('--json: one parseable summary naming the files, no progress; a batch is numbered, each PNG with its own seed', async () => {
    const r = await sdnode(['generate', '-m', modelPath, '-p', 'two cats', '-W', `${W}`, '-H', `${H}`, '--steps', '2', '-s', '7', '-b', '2', '-o', 'batch.png', '--json', ...cpu]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toBe('');
    const summary = JSON.parse(r.stdout) as {
      ok: boolean; mode: string; files: string[]; seeds: number[];
      settings: Record<string, unknown>; timings: { samplingMs: number; totalMs: number };
    };
    expect(summary.ok).toBe(true);
    expect(summary.mode).toBe('txt2img');
    expect(summary.files).toEqual(['batch_1.png', 'batch_2.png']);
    expect(summary.seeds).toEqual([7, 8]);
    expect(summary.settings).toMatchObject({ prompt: 'two cats', width: W, height: H, steps: 2, cfgScale: 7, sampler: 'euler_a', scheduler: 'discrete', rng: 'cuda', batchCount: 2, device: 'cpu' });
    expect(summary.timings.samplingMs).toBeGreaterThan(0);
    expect(summary.timings.totalMs).toBeGreaterThanOrEqual(summary.timings.samplingMs);
    for (const [i, file] of summary.files.entries()) {
      const p = await readPngParameters(join(dir, file));
      expect(p?.fields.Seed).toBe(String(7 + i));
      expect(p?.fields.Sampler).toBe('Euler a');
      expect(p?.fields['Schedule type']).toBe('Uniform');
    }
    // The second image is the library's seed-8 image.
    const second = await pixels(join(dir, 'batch_2.png'));
    expect(same(second.data, await expected({ prompt: 'two cats', width: W, height: H, steps: 2, seed: 8 }))).toBe(true);
  });

  it('img2img: -i and --strength give the library\'s image-to-image result, its size and Denoising strength', async () => {
    const r = await sdnode(['generate', '-m', modelPath, '-p', 'a hat', '-i', initPath, '--strength', '0.5', '--steps', '4', '-s', '3', '-o', 'i2i.png', '--json', ...cpu]);
    expect(r.code, r.stderr).toBe(0);
    const summary = JSON.parse(r.stdout) as { mode: string; settings: Record<string, unknown>; images: Array<{ width: number; height: number }> };
    expect(summary.mode).toBe('img2img');
    expect(summary.settings).toMatchObject({ strength: 0.5, initImage: initPath });
    // The size defaults to the init image's.
    expect(summary.images[0]).toMatchObject({ width: W, height: H });
    const p = await readPngParameters(join(dir, 'i2i.png'));
    expect(p?.fields['Denoising strength']).toBe('0.5');
    expect(p?.fields.Size).toBe(`${W}x${H}`);
    const png = await pixels(join(dir, 'i2i.png'));
    const initImage = await readImage(initPath);
    expect(same(png.data, await expected({ prompt: 'a hat', initImage, strength: 0.5, steps: 4, seed: 3 }))).toBe(true);
  });

  it('inpaint: --mask repaints the white area only; pixels farther than --mask-blur from it keep the init image\'s bytes', async () => {
    const r = await sdnode(['generate', '-m', modelPath, '-p', 'a hat', '-i', initPath, '--mask', maskPath, '--mask-blur', '2', '--steps', '4', '-o', 'inpaint.png', ...cpu]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain('inpaint: 1 image');
    const p = await readPngParameters(join(dir, 'inpaint.png'));
    expect(p?.fields['Mask blur']).toBe('2');
    expect(p?.fields['Denoising strength']).toBe('0.75');
    const out = await pixels(join(dir, 'inpaint.png'));
    const init = await readImage(initPath);
    let kept = 0, changedInside = 0;
    for (let y = 0; y < H; y++) {
      for (let x = 0; x < W; x++) {
        const far = x < 16 - 2 || x >= 48 + 2 || y < 12 - 2 || y >= 36 + 2;
        const inside = x >= 16 && x < 48 && y >= 12 && y < 36;
        const i = (y * W + x) * 3;
        const equal = out.data[i] === init.data[i] && out.data[i + 1] === init.data[i + 1] && out.data[i + 2] === init.data[i + 2];
        if (far) {
          expect(equal).toBe(true);
          kept++;
        }
        if (inside && !equal) changedInside++;
      }
    }
    expect(kept).toBeGreaterThan(0);
    expect(changedInside).toBeGreaterThan(24 * 32 * 0.5);
  });

  it('--taesd decodes with the TAESD decoder (VAE Decoder: TAESD) and --preview proj writes previews', async () => {
    const r = await sdnode([
      'generate', '-m', modelPath, '--taesd', taePath, '-p', 'a cat', '-W', `${W}`, '-H', `${H}`, '--steps', '3', '-s', '5',
      '--preview', 'proj', '--preview-path', 'preview.png', '-o', 'tae.png', '--json', ...cpu,
    ]);
    expect(r.code, r.stderr).toBe(0);
    const summary = JSON.parse(r.stdout) as { preview: { file: string; written: number }; settings: { vae: string } };
    expect(summary.settings.vae).toBe('tae');
    expect(summary.preview.written).toBeGreaterThanOrEqual(1);
    expect(await pixels(join(dir, 'preview.png'))).toMatchObject({ width: W, height: H });
    expect((await readPngParameters(join(dir, 'tae.png')))?.fields['VAE Decoder']).toBe('TAESD');
    await using withTae = await loadModel({ model: modelPath, tae: taePath }, { device: 'cpu', threads: 2 });
    const lib = await withTae.generate({ prompt: 'a cat', width: W, height: H, steps: 3, seed: 5, vae: 'tae' });
    expect(same((await pixels(join(dir, 'tae.png'))).data, lib.images[0]!.data)).toBe(true);
  });

  it('Ctrl-C (SIGINT) mid-run exits 130 and writes no file', async () => {
    let sent = false;
    const r = await sdnode(['generate', '-m', modelPath, '-p', 'a long job', '-W', '128', '-H', '128', '--steps', '1000', '-o', 'interrupted.png', ...cpu], (text, child) => {
      if (!sent && /sampling 1\/1000/.test(text)) {
        sent = true;
        child.kill('SIGINT');
      }
    });
    expect(sent).toBe(true);
    expect(r.code, r.stderr).toBe(130);
    expect(r.stderr).toContain('interrupted');
    // It stopped well before the end.
    expect(r.stderr).not.toMatch(/sampling 1000\/1000/);
    expect(readdirSync(dir).filter((f) => f.includes('interrupted'))).toEqual([]);
  });

  it('bad flags exit 2 with a message naming the flag, and write nothing', async () => {
    const cases: Array<[string[], RegExp]> = [
      [['--steps', 'abc'], /--steps <n>' argument 'abc' is invalid/],
      [['--sampling-method', 'bogus'], /Allowed choices are euler_a/],
      [['--frobnicate'], /unknown option '--frobnicate'/],
      [['-o', 'bad.gif'], /--output 'bad\.gif': use a \.png/],
      [['--mask', maskPath], /--mask needs -i\/--init-img/],
      // Ranges are checked before the model loads, with the library's messages in flag terms.
      [['--steps', '0'], /--steps must be an integer in \[1, 1000\], got 0/],
      [['-W', '60'], /--width must be a multiple of 8, got 60/],
    ];
    for (const [flags, message] of cases) {
      const r = await sdnode(['generate', '-m', modelPath, '-p', 'x', '-o', 'bad.png', ...cpu, ...flags]);
      expect(r.code, `${flags.join(' ')}: ${r.stderr}`).toBe(2);
      expect(r.stderr).toMatch(message);
      expect(r.stderr).toContain('--help');
    }
    const noModel = await sdnode(['generate', '-p', 'x']);
    expect(noModel.code).toBe(2);
    expect(noModel.stderr).toContain('-m/--model');
    expect(readdirSync(dir).filter((f) => f.startsWith('bad') || f.startsWith('.bad'))).toEqual([]);
  });

  it('a missing model file exits 1 with its error code, in --json mode too; so does a missing output folder', async () => {
    const r = await sdnode(['generate', '-m', join(dir, 'missing.safetensors'), '-p', 'x', '-o', 'none.png', ...cpu]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/missing\.safetensors.*\(ERR_FILE_ACCESS\)/);
    const j = await sdnode(['generate', '-m', join(dir, 'missing.safetensors'), '-p', 'x', '-o', 'none.png', '--json', ...cpu]);
    expect(j.code).toBe(1);
    expect(JSON.parse(j.stdout)).toMatchObject({ ok: false, exitCode: 1, error: { code: 'ERR_FILE_ACCESS' } });
    expect(existsSync(join(dir, 'none.png'))).toBe(false);
    // An output folder that does not exist is found before the model loads.
    const noFolder = await sdnode(['generate', '-m', modelPath, '-p', 'x', '-o', join(dir, 'no-such-folder', 'x.png'), ...cpu]);
    expect(noFolder.code).toBe(1);
    expect(noFolder.stderr).toMatch(/--output .*no-such-folder.*\(ERR_FILE_ACCESS\)/);
    expect(noFolder.stderr).not.toContain('loading');
  });

  it('numeric flags out of range exit 2 before the model loads (a missing model is not even looked at), with the library\'s messages', async () => {
    const missing = join(dir, 'missing.safetensors');
    const cases: Array<[string[], GenerateOptions | undefined, RegExp]> = [
      [['-W', '-64'], { prompt: 'x', width: -64 }, /--width must be an integer in \[8, 8192\], got -64/],
      [['-H', '1e9'], { prompt: 'x', height: 1e9 }, /--height must be an integer in \[8, 8192\]/],
      [['-W', '8192', '-H', '8192'], { prompt: 'x', width: 8192, height: 8192 }, /width × height must be at most 16777216 pixels/],
      [['--steps', '0'], { prompt: 'x', steps: 0 }, /--steps must be an integer in \[1, 1000\], got 0/],
      [['--steps', '1.5'], { prompt: 'x', steps: 1.5 }, /--steps must be an integer/],
      [['--cfg-scale', '1e9'], { prompt: 'x', cfgScale: 1e9 }, /--cfg-scale must be in \[0, 100\]/],
      [['-b', '0'], { prompt: 'x', batchCount: 0 }, /--batch-count must be an integer in \[1, 64\], got 0/],
      [['-b', '1000'], { prompt: 'x', batchCount: 1000 }, /--batch-count must be an integer in \[1, 64\], got 1000/],
      // Deeper than any family's text encoder; the model checks its own depth once loaded.
      [['--clip-skip', '33'], undefined, /--clip-skip must be an integer in \[1, 32\], got 33/],
      [['--clip-skip', '1.5'], undefined, /--clip-skip must be an integer/],
      [['-s', '18446744073709551616'], { prompt: 'x', seed: 2n ** 64n }, /seed must be 0 … 2\^64−1/],
      [['-s', '18446744073709551615', '-b', '2'], { prompt: 'x', seed: 2n ** 64n - 1n, batchCount: 2 }, /seed \+ batchCount − 1 must fit in 64 bits/],
      [['-i', join(dir, 'missing.png'), '--strength', '2'], undefined, /--strength must be in \[0, 1\], got 2/],
      [['-i', join(dir, 'missing.png'), '--mask', join(dir, 'missing.png'), '--mask-blur', '65'], undefined, /--mask-blur must be an integer in \[0, 64\], got 65/],
      [['--preview', 'proj', '--preview-interval', '0'], undefined, /--preview-interval must be an integer in \[1, 1000\], got 0/],
      [['-t', '0'], undefined, /--threads must be an integer in \[1, 1024\], got 0/],
    ];
    for (const [flags, options, message] of cases) {
      const started = performance.now();
      const r = await sdnode(['generate', '-m', missing, '-p', 'x', '-o', 'range.png', '--device', 'cpu', ...flags]);
      const what = `${flags.join(' ')}: ${r.stderr}`;
      expect(r.code, what).toBe(2);
      expect(r.stderr, what).toMatch(message);
      expect(r.stderr, what).not.toContain('missing.safetensors');
      expect(r.stderr, what).not.toContain('loading');
      expect(performance.now() - started, what).toBeLessThan(10_000);
      // The library says the same of the same value.
      if (options) {
        let thrown: unknown;
        try {
          void model.generate(options);
        } catch (err) {
          thrown = err;
        }
        expect(thrown, what).toBeInstanceOf(RangeError);
        expect(r.stderr, what).toContain(inFlagTerms((thrown as Error).message, GENERATE_FLAGS));
      }
    }
    expect(readdirSync(dir).filter((f) => f.includes('range'))).toEqual([]);
  });

  it('-o and --preview-path: a device, FIFO, directory, socket or symlink out of the folder is refused before the model loads, and left as it was', async () => {
    const out = mkdtempSync(join(dir, 'dst-'));
    const elsewhere = mkdtempSync(join(dir, 'elsewhere-'));
    // As root a private copy of /dev/null: a failing check must not replace the real one.
    const device = process.getuid?.() === 0 ? join(out, 'null.png') : '/dev/null';
    if (device !== '/dev/null') execFileSync('mknod', [device, 'c', '1', '3']);
    const fifo = join(out, 'fifo.png');
    execFileSync('mkfifo', [fifo]);
    const folder = join(out, 'folder.png');
    mkdirSync(folder);
    writeFileSync(join(elsewhere, 'precious.png'), 'keep me');
    const link = join(out, 'link.png');
    symlinkSync(join(elsewhere, 'precious.png'), link);
    const socket = join(out, 'sock.png');
    const server = createServer();
    await new Promise<void>((resolvePromise) => server.listen(socket, resolvePromise));
    const kind = (p: string) => {
      const s = lstatSync(p);
      return [s.isSymbolicLink(), s.isCharacterDevice(), s.isFIFO(), s.isSocket(), s.isDirectory(), s.isFile(), s.rdev, s.size].join();
    };
    try {
      const listing = readdirSync(out).sort();
      for (const [flag, dst, extra] of [
        ['-o', device, []],
        ['-o', fifo, []],
        ['-o', folder, []],
        ['-o', socket, []],
        ['-o', link, []],
        ['--preview-path', fifo, ['--preview', 'proj']],
      ] as Array<[string, string, string[]]>) {
        const before = kind(dst);
        const r = await sdnode(['generate', '-m', join(dir, 'missing.safetensors'), '-p', 'x', flag, dst, ...extra, ...cpu]);
        const what = `${flag} ${dst}: ${r.stderr}`;
        expect(r.code, what).toBe(1);
        expect(r.stderr, what).toMatch(/\(ERR_OUTPUT_PATH\)/);
        expect(r.stderr, what).toContain(flag === '-o' ? '--output' : '--preview-path');
        expect(r.stderr, what).not.toContain('missing.safetensors');
        expect(kind(dst), what).toBe(before);
      }
      expect(readdirSync(out).sort()).toEqual(listing);
      expect(readFileSync(join(elsewhere, 'precious.png'), 'utf8')).toBe('keep me');
    } finally {
      await new Promise((resolvePromise) => server.close(resolvePromise));
    }
  });

  it('-o templates: %999999999d, two counters and unknown % sequences exit 2 at once; %% is a literal %; a symlink inside the folder is written through', async () => {
    for (const [template, message] of [
      ['x%999999999d.png', /width in '%999999999d' is too large; at most 9 digits/],
      ['x%10d.png', /at most 9 digits/],
      ['x%d_%d.png', /more than one image number/],
      ['x%s.png', /'%s' is not a template sequence/],
      ['x%.png', /'%\.' is not a template sequence/],
    ] as Array<[string, RegExp]>) {
      const r = await sdnode(['generate', '-m', join(dir, 'missing.safetensors'), '-p', 'x', '-o', template, ...cpu]);
      expect(r.code, `${template}: ${r.stderr}`).toBe(2);
      expect(r.stderr).toMatch(message);
      expect(r.stderr).not.toContain('missing.safetensors');
    }
    const out = mkdtempSync(join(dir, 'template-'));
    writeFileSync(join(out, 'real_02.png'), 'old');
    symlinkSync('real_02.png', join(out, '100%_02.png'));
    const r = await sdnode(['generate', '-m', modelPath, '-p', 'x', '-W', String(W), '-H', String(H), '--steps', '1', '-b', '2', '-o', join(out, '100%%_%02d.png'), ...cpu]);
    expect(r.code, r.stderr).toBe(0);
    expect(readdirSync(out).sort()).toEqual(['100%_01.png', '100%_02.png', 'real_02.png']);
    expect(lstatSync(join(out, '100%_02.png')).isSymbolicLink()).toBe(true);
    expect((await pixels(join(out, 'real_02.png'))).width).toBe(W);
    expect((await pixels(join(out, '100%_01.png'))).width).toBe(W);
  });

  it('--help documents the flags and the exit codes', async () => {
    const r = await sdnode(['generate', '--help']);
    expect(r.code).toBe(0);
    for (const flag of ['--negative-prompt', '--cfg-scale', '--sampling-method', '--batch-count', '--init-img', '--clip-skip', '--taesd', '--json'])
      expect(r.stdout).toContain(flag);
    expect(r.stdout).toMatch(/130\s+interrupted/);
    expect(r.stdout).toMatch(/2\s+usage error/);
  });
});

describe('sdnode convert, inspect, devices', () => {
  it('convert writes a GGUF in the asked type; inspect --json describes it as inspectModel does', async () => {
    const out = join(dir, 'tiny-q8_0.gguf');
    const c = await sdnode(['convert', '-m', modelPath, '-o', out, '--type', 'Q8_0', '--json']);
    expect(c.code, c.stderr).toBe(0);
    const converted = JSON.parse(c.stdout) as { file: string; types: Record<string, number>; tensors: unknown[] };
    expect(converted.file).toBe(out);
    expect(converted.types.Q8_0).toBeGreaterThan(0);

    const i = await sdnode(['inspect', out, '--json']);
    expect(i.code, i.stderr).toBe(0);
    const inspection = JSON.parse(i.stdout) as { format: string; tensorCount: number; dtypes: Record<string, number>; detection: { family: string } };
    const direct = await inspectModel(out);
    expect(inspection.format).toBe('gguf');
    expect(inspection.tensorCount).toBe(direct.tensorCount);
    expect(inspection.tensorCount).toBe(converted.tensors.length);
    expect(inspection.dtypes).toEqual(direct.dtypes);
    expect(inspection.dtypes.Q8_0).toBe(converted.types.Q8_0);
    expect(inspection.detection.family).toBe('sd1');

    const human = await sdnode(['inspect', modelPath]);
    expect(human.code).toBe(0);
    expect(human.stdout).toMatch(/format\s+safetensors/);
    expect(human.stdout).toMatch(/family\s+sd1/);

    const bad = await sdnode(['convert', '-m', modelPath, '-o', join(dir, 'x.gguf'), '--type', 'q9_9']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--type must be one of f32, f16/);
    expect(existsSync(join(dir, 'x.gguf'))).toBe(false);
  });

  it('devices --json lists the CPU and the backends', async () => {
    const r = await sdnode(['devices', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const d = JSON.parse(r.stdout) as { devices: Array<{ id: string }>; system: { backends: string[]; ggmlVersion: string } };
    expect(d.devices.map((x) => x.id)).toContain('cpu');
    expect(d.system.backends).toContain('CPU');
    expect(d.system.ggmlVersion).toMatch(/^\d+\.\d+\.\d+$/);
  });
});

describe('webui parameters (infotext)', () => {
  it('parses what the webui writes', () => {
    const text =
      'masterpiece, (a cat:1.2)\nsitting on a mat\nNegative prompt: blurry\nlowres\n' +
      'Steps: 30, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7.5, Seed: 3937218934, Size: 512x768, ' +
      'Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Lora hashes: "add_detail: 7c6bad76eb54, more: 0123", Version: v1.10.1';
    expect(parseParameters(text)).toEqual({
      prompt: 'masterpiece, (a cat:1.2)\nsitting on a mat',
      negativePrompt: 'blurry\nlowres',
      fields: {
        Steps: '30', Sampler: 'DPM++ 2M', 'Schedule type': 'Karras', 'CFG scale': '7.5', Seed: '3937218934', Size: '512x768',
        'Model hash': '6ce0161689', Model: 'v1-5-pruned-emaonly', 'Lora hashes': 'add_detail: 7c6bad76eb54, more: 0123', Version: 'v1.10.1',
      },
    });
    // A prompt alone (no parameter line) stays the prompt.
    expect(parseParameters('just a prompt, with a comma')).toEqual({ prompt: 'just a prompt, with a comma', negativePrompt: '', fields: {} });
  });

  it('writes the webui\'s layout: values with , : or newlines quoted, no Negative prompt line when empty', () => {
    const text = formatParameters('a cat', '', [['Steps', 20], ['Sampler', 'Euler a'], ['Model', 'my: model, v2'], ['Skipped', undefined], ['Seed', '1']]);
    expect(text).toBe('a cat\nSteps: 20, Sampler: Euler a, Model: "my: model, v2", Seed: 1');
    expect(parseParameters(text).fields).toEqual({ Steps: '20', Sampler: 'Euler a', Model: 'my: model, v2', Seed: '1' });
  });

  it('a text outside Latin-1 goes into an iTXt chunk (UTF-8), a Latin-1 one into tEXt, before the image data', async () => {
    const png = await sharp({ create: { width: 8, height: 8, channels: 3, background: '#808080' } }).png().toBuffer();
    for (const [prompt, chunk] of [['ein Käfer, très joli', 'tEXt'], ['一只可爱的猫 🐱', 'iTXt']] as const) {
      const text = formatParameters(prompt, 'ugly', [['Steps', 20], ['Sampler', 'Euler'], ['Seed', 1]]);
      const out = addPngText(png, 'parameters', text);
      const names = extractChunks(out).map((c) => c.name);
      expect(names.indexOf(chunk)).toBeGreaterThan(0);
      expect(names.indexOf(chunk)).toBeLessThan(names.indexOf('IDAT'));
      expect(pngTextChunks(out).parameters).toBe(text);
      expect(parseParameters(pngTextChunks(out).parameters!).prompt).toBe(prompt);
      // Still a valid PNG: sharp (libspng) decodes it, CRCs included.
      expect((await sharp(out).raw().toBuffer({ resolveWithObject: true })).info.width).toBe(8);
    }
  });

  it('a PNG without parameters reads as undefined', async () => {
    const path = join(dir, 'plain.png');
    await sharp({ create: { width: 8, height: 8, channels: 3, background: '#000' } }).png().toFile(path);
    expect(await readPngParameters(path)).toBeUndefined();
    expect(readFileSync(path).subarray(1, 4).toString()).toBe('PNG');
  });
});

describe('exit codes and file names', () => {
  it('classifies errors: the library\'s option checks are usage errors in flag terms, JavaScript\'s own faults are not', () => {
    expect(classify(new RangeError('options.cfgScale must be in [0, 100], got 200'), GENERATE_FLAGS)).toEqual({
      exitCode: EXIT.usage,
      error: { name: 'RangeError', code: 'ERR_USAGE', message: '--cfg-scale must be in [0, 100], got 200' },
    });
    expect(classify(new TypeError('this.#native.vaeComputeBytes is not a function'))).toMatchObject({ exitCode: EXIT.error, error: { code: 'ERR_INTERNAL' } });
    expect(classify(new FileAccessError("cannot open 'x'"))).toMatchObject({ exitCode: 1, error: { code: 'ERR_FILE_ACCESS' } });
    expect(classify(new AbortError())).toMatchObject({ exitCode: 130 });
  });

  it('numbers a batch\'s files from 1, or in a %d / %03d of the name', () => {
    expect(outputPaths('out/cat.png', 1)).toEqual(['out/cat.png']);
    expect(outputPaths('out/cat.png', 3)).toEqual(['out/cat_1.png', 'out/cat_2.png', 'out/cat_3.png']);
    expect(outputPaths('frame-%03d.webp', 2)).toEqual(['frame-001.webp', 'frame-002.webp']);
    expect(outputPaths('img%d.png', 1)).toEqual(['img1.png']);
    expect(outputPaths('100%%-%d.png', 2)).toEqual(['100%-1.png', '100%-2.png']);
    expect(outputPaths('100%%.png', 2)).toEqual(['100%_1.png', '100%_2.png']);
    expect(outputPaths('f%09d.png', 1)).toEqual(['f000000001.png']);
    expect(() => outputPaths('f%999999999d.png', 1)).toThrow(/at most 9 digits/);
    expect(() => outputPaths('f%d%d.png', 1)).toThrow(/more than one/);
    expect(() => outputPaths('f%x.png', 1)).toThrow(/'%x' is not a template sequence/);
  });
});
