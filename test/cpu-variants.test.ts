// A CPU without AVX2, F16C or BF16 still runs: ggml's CPU backend comes as variants, one per
// instruction-set level, and the loader picks the best the machine has. Here a child process
// gets a copy of the addon whose folder holds only the generic x86-64 variant (what a CPU of
// the last decade without AVX would get), reports the features that variant was built for, and
// makes the same image as the best variant to within SIMD rounding.
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';

import { psnr } from './support/data.js';
// @ts-expect-error: plain JavaScript module with JSDoc types
import { generateModel } from '../scripts/generate-model.mjs';

const root = resolve(import.meta.dirname, '..');
const generic = 'libggml-cpu-x64.so';
// Where a build of the addon with its CPU variants is: a source build, or the prebuild that
// `npm run prebuild` (test/package.test.ts) moves it to.
const release = [join(root, 'build', 'Release'), join(root, 'prebuilds', `${process.platform}-${process.arch}`)].find(
  (d) => existsSync(join(d, 'sdnode.node')) && existsSync(join(d, generic)),
);
const dir = mkdtempSync(join(tmpdir(), 'sdnode-cpu-variant-'));
const modelPath = join(dir, 'tiny.safetensors');
const hasVariants = process.platform === 'linux' && process.arch === 'x64' && release !== undefined;

/** systemInfo().cpuFeatures and the tiny image's bytes from a child using the addon at `addon`. */
function runChild(addon: string): { features: Record<string, string>; width: number; height: number; data: Buffer } {
  const source = `
    const { loadModel, systemInfo } = await import(${JSON.stringify(join(root, 'dist', 'index.js'))});
    const model = await loadModel(${JSON.stringify(modelPath)}, { device: 'cpu', threads: 1 });
    const image = (await model.generate({ prompt: 'a red house', width: 64, height: 64, steps: 2, seed: 4 })).images[0];
    await model.dispose();
    process.stdout.write(JSON.stringify({ features: systemInfo().cpuFeatures, width: image.width, height: image.height,
      data: Buffer.from(image.data).toString('base64') }));`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', source], {
    env: { ...process.env, SDNODE_ADDON_PATH: addon },
    encoding: 'utf8',
    timeout: 120_000,
  });
  expect(r.status, r.stderr).toBe(0);
  const out = JSON.parse(r.stdout) as { features: Record<string, string>; width: number; height: number; data: string };
  return { ...out, data: Buffer.from(out.data, 'base64') };
}

beforeAll(async () => {
  await generateModel({ out: modelPath, preset: 'tiny', dtype: 'f16', seed: 8 });
}, 60_000);

describe.runIf(hasVariants)('CPU variants', () => {
  it('the generic x86-64 variant alone: no AVX2/F16C/BF16 claimed, and the image of the best variant', () => {
    const onlyGeneric = join(dir, 'generic');
    spawnSync('mkdir', ['-p', onlyGeneric]);
    const all = join(dir, 'all');
    spawnSync('mkdir', ['-p', all]);
    // Copies, so that a build or prebuild running meanwhile cannot take the files away.
    for (const f of readdirSync(release!)) {
      if (!f.endsWith('.node') && !f.endsWith('.so')) continue;
      copyFileSync(join(release!, f), join(all, f));
      if (f === 'sdnode.node' || f === 'libggml.so' || f === 'libggml-base.so' || f === generic) copyFileSync(join(release!, f), join(onlyGeneric, f));
    }
    const best = runChild(join(all, 'sdnode.node'));
    const plain = runChild(join(onlyGeneric, 'sdnode.node'));
    for (const feature of ['AVX', 'AVX2', 'F16C', 'FMA', 'AVX512', 'AVX512_BF16']) expect(plain.features[feature], feature).toBeUndefined();
    expect(Object.keys(best.features).length).toBeGreaterThan(Object.keys(plain.features).length);
    const db = psnr({ ...plain, channels: 3 }, { ...best, channels: 3 });
    console.log(`generic variant vs ${Object.keys(best.features).join(' ')}: ${db.toFixed(1)} dB`);
    expect(db).toBeGreaterThan(30);
  });
});
