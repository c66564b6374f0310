// `sdnode generate --lora-model-dir` as stable-diffusion.cpp names it, run as users run it (the
// built dist/cli.js in a child process) on a tiny generated model with generated LoRAs: the
// image equals the library's with the same LoRAs and weights; the PNG's parameters keep the
// prompt's <lora:…> tags and carry the webui's "Lora hashes" (checked against SHA-256 computed
// here); tags without the flag and misspelt names fail before the model loads.
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { loadModel, type GenerateOptions, type Model } from '../lib/index.js';
import { readPngParameters } from '../lib/cli/png-parameters.js';
import { writeSafetensors } from './support/safetensors.js';
// @ts-expect-error: plain JavaScript module with JSDoc types
import { generateModel } from '../scripts/generate-model.mjs';
// @ts-expect-error: plain JavaScript module with JSDoc types
import { generateLora } from '../scripts/generator/lora.mjs';

const root = resolve(import.meta.dirname, '..');
const cli = join(root, 'dist', 'cli.js');
const dir = mkdtempSync(join(tmpdir(), 'sdnode-cli-lora-'));
const modelPath = join(dir, 'tiny.safetensors');
const loraDir = join(dir, 'loras');
const stylePath = join(loraDir, 'my_style.safetensors');
// A second format: the webui hashes a .pt file whole, a .safetensors one after its header.
const detailPath = join(loraDir, 'detail.pt');
// A LoRA whose module names no weight of the model (as one for another family): reported, not applied.
const strayPath = join(loraDir, 'stray.safetensors');
const size = { width: 64, height: 48 };
const settings = ['-W', '64', '-H', '48', '--steps', '2', '--sampling-method', 'euler', '--cfg-scale', '5', '-s', '11', '--device', 'cpu', '-t', '2'];
const libSettings: GenerateOptions = { prompt: '', ...size, steps: 2, sampler: 'euler', cfgScale: 5, seed: 11 };
let model: Model;

beforeAll(async () => {
  execFileSync('npm', ['run', 'build:ts'], { cwd: root, stdio: 'ignore' });
  mkdirSync(loraDir);
  await generateModel({ out: modelPath, preset: 'tiny', dtype: 'f32', seed: 3 });
  await generateLora({ model: modelPath, out: stylePath, format: 'lora', targets: ['attn', 'conv', 'te'], rank: 4, alpha: 2, seed: 5 });
  await generateLora({ model: modelPath, out: detailPath, format: 'loha', targets: ['attn'], rank: 4, alpha: 2, seed: 6 });
  const factor = (shape: number[]) => ({ dtype: 'F32' as const, shape, data: new Uint8Array(new Float32Array(shape[0]! * shape[1]!).fill(0.1).buffer) });
  writeSafetensors(strayPath, [
    { name: 'lora_unet_no_such_block.lora_down.weight', ...factor([4, 8]) },
    { name: 'lora_unet_no_such_block.lora_up.weight', ...factor([8, 4]) },
  ]);
  // No loraDir: the library gets the same LoRAs as handles, not through tags.
  model = await loadModel(modelPath, { device: 'cpu', threads: 2 });
}, 180_000);

afterAll(async () => {
  await model?.dispose();
  rmSync(dir, { recursive: true, force: true });
});

function sdnode(args: string[]) {
  return spawnSync(process.execPath, [cli, 'generate', ...args], { cwd: dir, encoding: 'utf8' });
}

async function pixels(path: string): Promise<Uint8Array> {
  const { data } = await sharp(path).raw().toBuffer({ resolveWithObject: true });
  return new Uint8Array(data);
}

const same = (a: Uint8Array, b: Uint8Array) => a.length === b.length && a.every((v, i) => v === b[i]);

/** SHA-256 of the bytes from `start` on, its first 12 hex digits (the webui's short hash). */
function shortSha256(path: string, start = 0): string {
  return createHash('sha256').update(readFileSync(path).subarray(start)).digest('hex').slice(0, 12);
}

/** Where a safetensors file's tensor data begins: after the u64 length and the JSON header. */
function safetensorsDataStart(path: string): number {
  return 8 + Number(readFileSync(path).readBigUInt64LE(0));
}

describe('sdnode generate --lora-model-dir', () => {
  it('<lora:name:weight> tags give the library\'s image with those LoRAs; the PNG keeps the tags and adds Lora hashes', async () => {
    const prompt = 'a lovely cat <lora:my_style:0.8>, <lora:detail:-0.5><lora:stray:1>';
    const out = join(dir, 'tagged.png');
    const r = sdnode(['-m', modelPath, '-p', prompt, '--lora-model-dir', loraDir, '-o', out, ...settings]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toContain('LoRA stray: 2 of 2 tensors name no weight of this model');
    expect(r.stderr).not.toContain('LoRA my_style:');

    const [style, detail] = await Promise.all([model.loadLora(stylePath), model.loadLora(detailPath)]);
    const lib = await model.generate({ ...libSettings, prompt: 'a lovely cat , ', loras: [{ lora: style, weight: 0.8 }, { lora: detail, weight: -0.5 }] });
    const plain = await model.generate({ ...libSettings, prompt: 'a lovely cat , ' });
    const png = await pixels(out);
    expect(same(png, lib.images[0]!.data)).toBe(true);
    expect(same(png, plain.images[0]!.data)).toBe(false);  // the LoRAs did change it

    const p = await readPngParameters(out);
    expect(p?.prompt).toBe(prompt);
    const hashes = `my_style: ${shortSha256(stylePath, safetensorsDataStart(stylePath))}, detail: ${shortSha256(detailPath)}, stray: ${shortSha256(strayPath, safetensorsDataStart(strayPath))}`;
    expect(p?.fields['Lora hashes']).toBe(hashes);
    // After the generation's own fields, before Version, as the webui orders them.
    expect(Object.keys(p!.fields).slice(-2)).toEqual(['Lora hashes', 'Version']);
    await Promise.all([style.dispose(), detail.dispose()]);
  }, 120_000);

  it('--json lists each LoRA with its report; a prompt without tags writes no Lora hashes', async () => {
    const r = sdnode(['-m', modelPath, '-p', 'a cat <lora:my_style>', '--lora-model-dir', loraDir, '-o', 'j.png', '--json', ...settings]);
    expect(r.status, r.stderr).toBe(0);
    const summary = JSON.parse(r.stdout) as { loras: Array<{ name: string; path: string; weight: number; report: { unmatched: string[]; targets: number } }>; timings: { loraMs: number } };
    expect(summary.loras).toHaveLength(1);
    expect(summary.loras[0]).toMatchObject({ name: 'my_style', path: stylePath, weight: 1, report: { unmatched: [] } });
    expect(summary.loras[0]!.report.targets).toBeGreaterThan(0);
    expect(summary.timings.loraMs).toBeGreaterThan(0);

    const none = sdnode(['-m', modelPath, '-p', 'a cat', '--lora-model-dir', loraDir, '-o', 'none.png', ...settings]);
    expect(none.status, none.stderr).toBe(0);
    expect((await readPngParameters(join(dir, 'none.png')))?.fields).not.toHaveProperty('Lora hashes');
  }, 120_000);

  it('tags without --lora-model-dir exit 2, a misspelt name exits 1 listing the nearest; both before the model loads', () => {
    // A model that does not exist: were it loaded first, the error would be about it.
    const missingModel = join(dir, 'nowhere.safetensors');
    const noDir = sdnode(['-m', missingModel, '-p', 'a cat <lora:my_style:1>', '-o', 'x.png', ...settings]);
    expect(noDir.status).toBe(2);
    expect(noDir.stderr).toMatch(/<lora:my_style> tags: give the folder they are in with --lora-model-dir/);
    const typo = sdnode(['-m', missingModel, '-p', 'a cat <lora:my_stlye:1>', '--lora-model-dir', loraDir, '-o', 'x.png', ...settings]);
    expect(typo.status).toBe(1);
    expect(typo.stderr).toMatch(/<lora:my_stlye>: no .* file of that name .*; nearest: my_style.*\(ERR_FILE_ACCESS\)/);
  });
});
