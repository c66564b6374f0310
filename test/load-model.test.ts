// loadModel: one tiny generated SD1.x model written in every convention — LDM safetensors, a
// training .ckpt (state_dict nesting, EMA copy), a diffusers folder, GGUF — and as separate
// component files, loads into the same weights: same internal names, shapes and values
// (checksums of what is on the device). Quantize-on-load, memory mapping, and refused inputs.
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';

import {
  AbortError,
  FileAccessError,
  ModelCompatibilityError,
  ModelFormatError,
  convertModel,
  inspectModel,
  loadModel,
  type Model,
  type ModelInspection,
} from '../lib/index.js';
// @ts-expect-error: plain JavaScript module with JSDoc types
import { PRESETS, f32BitsToF16, generateModel, tensorBytes, tensorSpecs } from '../scripts/generate-model.mjs';
import { halfToFloat } from './support/generated-weights.js';
import { taeDecoder } from './support/data.js';
import { GGML_TYPE, writeGguf } from './support/gguf.js';
import { writeSafetensors } from './support/safetensors.js';

interface Spec {
  name: string;
  shape: number[];
  init: string;
}

const dir = mkdtempSync(join(tmpdir(), 'sdnode-load-'));
const seed = 11;
const specs = tensorSpecs(PRESETS.tiny) as Spec[];
const floatSpecs = specs.filter((s) => s.init !== 'position_ids');
const ldm = join(dir, 'tiny.safetensors');
let reference: ModelInspection; // checksums of the LDM file's tensors

const cpu = { device: 'cpu', threads: 2 } as const;

/** The component's tensors of the LDM spec under `prefix`, renamed without it, as f16 safetensors. */
function writeComponentFile(path: string, prefix: string, rename = (n: string) => n.slice(prefix.length)): void {
  writeSafetensors(
    path,
    specs
      .filter((s) => s.name.startsWith(prefix))
      .map((s) => ({
        name: rename(s.name),
        dtype: s.init === 'position_ids' ? ('I64' as const) : ('F16' as const),
        shape: s.shape,
        data: tensorBytes(s, seed, 'f16'),
      })),
  );
}

/** name → checksum of every float weight of a loaded model. */
async function floatChecksums(model: Model): Promise<Map<string, string>> {
  const names = model.weights().filter((w) => !w.name.endsWith('position_ids')).map((w) => w.name);
  return new Map(Object.entries(await model.checksums(names)));
}

const expectedChecksums = () =>
  new Map(reference.tensors.filter((t) => !t.name.endsWith('position_ids')).map((t) => [t.name, t.checksum!]));

beforeAll(async () => {
  await generateModel({ out: ldm, preset: 'tiny', dtype: 'f16', seed });
  reference = await inspectModel(ldm, { checksums: true });
}, 60_000);

describe('loadModel: one model in every convention', () => {
  it('LDM single-file safetensors: every tensor under its own name, values as stored, used in place', async () => {
    await using model = await loadModel(ldm, cpu);
    const weights = model.weights();
    expect(weights.map((w) => w.name).sort()).toEqual(specs.map((s) => s.name).sort());
    expect(await floatChecksums(model)).toEqual(expectedChecksums());
    expect(model.info).toMatchObject({ family: 'sd1', inpaint: false, device: 'cpu' });
    expect(model.info.components).toEqual({ unet: true, vae: true, textEncoder: true, textEncoder2: false });
    expect(model.info.sources).toEqual([expect.objectContaining({ component: 'checkpoint', format: 'safetensors', convention: 'ldm', tensors: specs.length })]);
    // Stored f16 is the compute type: the weights stay in the file's memory map; biases and
    // norm scales (1-D, a few KB) become f32.
    for (const w of weights) expect([w.name, w.mapped, w.to]).toEqual([w.name, w.shape.length > 1, w.shape.length > 1 ? w.from : 'F32']);
    const bytes = (m: boolean) => weights.filter((w) => w.mapped === m).reduce((n, w) => n + w.bytes, 0);
    expect(model.info.mappedBytes).toBe(bytes(true));
    expect(model.info.deviceBytes).toBe(bytes(false));
    expect(model.info.deviceBytes).toBeLessThan(model.info.mappedBytes / 20);
    expect(model.info.metadata['sdnode.preset']).toBe('tiny');
  });

  it('a training .ckpt (state_dict nesting, with an EMA copy): the same weights; ema: true takes the EMA ones', async () => {
    const path = join(dir, 'tiny.ckpt');
    // The generator's .ckpt: {global_step, state_dict}, the UNet's EMA copy under model_ema.*.
    // @ts-expect-error: plain JavaScript module with JSDoc types
    const { writeTorchCheckpoint } = await import('../scripts/generator/torch-checkpoint.mjs');
    await writeTorchCheckpoint({ out: path, preset: 'tiny', seed, dtype: 'f16', ema: true });
    const unet = floatSpecs.filter((s) => s.name.startsWith('model.diffusion_model.'));
    await using model = await loadModel(path, cpu);
    expect(model.info.sources[0]).toMatchObject({ format: 'torch', tensors: specs.length });
    expect(model.info.sources[0]!.dropped.length).toBe(unet.length);
    expect(model.weights().filter((w) => !w.name.endsWith('position_ids')).every((w) => w.from === 'F16' && w.to === (w.shape.length > 1 ? 'F16' : 'F32'))).toBe(true);
    expect(await floatChecksums(model)).toEqual(expectedChecksums());

    await using ema = await loadModel(path, { ...cpu, ema: true });
    const sums = await floatChecksums(ema);
    const raw = await inspectModel(path, { checksums: true });
    const rawSums = new Map(raw.tensors.map((t) => [t.name, t.checksum!]));
    for (const s of unet) {
      expect(sums.get(s.name)).toBe(rawSums.get(`model_ema.${s.name.slice('model.'.length).replaceAll('.', '')}`));
    }
    const vaeName = floatSpecs.find((s) => s.name.startsWith('first_stage_model.'))!.name;
    expect(sums.get(vaeName)).toBe(expectedChecksums().get(vaeName));
  });

  it('a diffusers folder: the same internal names, shapes and values', async () => {
    const folder = join(dir, 'tiny-diffusers');
    // @ts-expect-error: plain JavaScript module with JSDoc types
    const { writeDiffusersFolder } = await import('../scripts/generator/diffusers-layout.mjs');
    await writeDiffusersFolder({ preset: 'tiny', seed, dtype: 'f16', out: folder });
    await using model = await loadModel(folder, cpu);
    expect(model.info.sources.map((s) => s.component).sort()).toEqual(['textEncoder', 'unet', 'vae']);
    expect(model.info.sources.every((s) => s.convention === 'diffusers')).toBe(true);
    const shapes = new Map(model.weights().map((w) => [w.name, w.shape]));
    for (const s of floatSpecs) expect(shapes.get(s.name), s.name).toEqual(s.shape);
    expect(await floatChecksums(model)).toEqual(expectedChecksums());
    expect(model.info).toMatchObject({ family: 'sd1', convention: 'ldm' });

    // convertModel takes the folder too, and writes one GGUF under the internal names.
    const gguf = join(dir, 'tiny-from-diffusers.gguf');
    await convertModel(folder, gguf, { weightType: 'f16' });
    const converted = await inspectModel(gguf, { checksums: true });
    expect(converted.detection).toMatchObject({ family: 'sd1', convention: 'ldm' });
    expect(new Map(converted.tensors.filter((t) => !t.name.endsWith('position_ids')).map((t) => [t.name, t.checksum!]))).toEqual(expectedChecksums());
  });

  it('a GGUF written by convertModel loads identically', async () => {
    const gguf = join(dir, 'tiny-f16.gguf');
    await convertModel(ldm, gguf, { weightType: 'f16' });
    await using model = await loadModel(gguf, cpu);
    expect(model.info.sources[0]).toMatchObject({ format: 'gguf' });
    expect(await floatChecksums(model)).toEqual(expectedChecksums());
  });

  it('separate component files: a UNet with the diffusion_model. prefix, a bare VAE, a text encoder', async () => {
    const unet = join(dir, 'unet.safetensors');
    const vae = join(dir, 'vae.safetensors');
    const clip = join(dir, 'clip.safetensors');
    writeComponentFile(unet, 'model.diffusion_model.', (n) => n.slice('model.'.length));
    writeComponentFile(vae, 'first_stage_model.');
    writeComponentFile(clip, 'cond_stage_model.transformer.');
    await using model = await loadModel({ unet, vae, textEncoder: clip }, cpu);
    expect(model.info.sources.map((s) => s.component)).toEqual(['unet', 'vae', 'textEncoder']);
    expect(await floatChecksums(model)).toEqual(expectedChecksums());
  });

  it('a separate VAE replaces the checkpoint\'s VAE, and only that', async () => {
    const other = join(dir, 'tiny-seed2.safetensors');
    await generateModel({ out: other, preset: 'tiny', dtype: 'f16', seed: seed + 2 });
    const otherSums = new Map((await inspectModel(other, { checksums: true })).tensors.map((t) => [t.name, t.checksum!]));
    const vae = join(dir, 'vae-seed2.safetensors');
    writeSafetensors(
      vae,
      floatSpecs
        .filter((s) => s.name.startsWith('first_stage_model.'))
        .map((s) => ({ name: s.name.slice('first_stage_model.'.length), dtype: 'F16' as const, shape: s.shape, data: tensorBytes(s, seed + 2, 'f16') })),
    );
    await using model = await loadModel({ model: ldm, vae }, cpu);
    const sums = await floatChecksums(model);
    const expected = expectedChecksums();
    for (const [name, sum] of sums) {
      expect(sum, name).toBe(name.startsWith('first_stage_model.') ? otherSums.get(name) : expected.get(name));
    }
    expect(sums.size).toBe(expected.size);
  });
});

describe('loadModel: weight types', () => {
  for (const weightType of ['q8_0', 'q4_0'] as const) {
    it(`${weightType} on load equals the ${weightType} GGUF of convertModel, bit for bit`, async () => {
      const gguf = join(dir, `tiny-${weightType}.gguf`);
      const converted = await convertModel(ldm, gguf, { weightType });
      const inspected = await inspectModel(gguf, { checksums: true });
      await using model = await loadModel(ldm, { ...cpu, weightType });
      const weights = model.weights();
      const to = new Map(converted.tensors.map((t) => [t.name, t.to]));
      for (const w of weights) expect(w.to, w.name).toBe(to.get(w.name));
      expect(weights.some((w) => w.to === weightType.toUpperCase())).toBe(true);
      expect(model.info.weightType).toBe(weightType);
      // Quantized tensors were converted, not mapped; the rest (f16 conv kernels) stay in place.
      for (const w of weights) expect(w.mapped, w.name).toBe(w.from === w.to);
      const sums = await model.checksums();
      for (const t of inspected.tensors) expect(sums[t.name], t.name).toBe(t.checksum);
      // The GGUF itself reloads bit-exactly, its blocks used in place.
      await using reloaded = await loadModel(gguf, cpu);
      expect(await reloaded.checksums()).toEqual(sums);
      expect(reloaded.weights().every((w) => w.mapped)).toBe(true);
      expect(model.info.deviceBytes).toBeLessThan(reference.fileSize);
    });
  }

  it('a GGUF with quantized norm weights (as stable-diffusion.cpp converts them) loads them as f32', async () => {
    // Every tensor f16 as generated, except the UNet's output GroupNorm scale: Q8_0 blocks, the
    // way stable-diffusion.cpp's converter stores 1-D weights whose length 32 divides.
    const normName = 'model.diffusion_model.out.0.weight';
    const tensors = specs.map((sp) => {
      const bytes = tensorBytes(sp, seed, 'f16');
      if (sp.name !== normName) {
        const type = sp.init === 'position_ids' ? GGML_TYPE.I64 : GGML_TYPE.F16;
        return { name: sp.name, type, ne: [...sp.shape].reverse(), data: bytes };
      }
      const values = Array.from(new Uint16Array(bytes.slice().buffer), halfToFloat);
      const blocks: number[] = [];
      for (let b = 0; b < values.length; b += 32) {
        const chunk = values.slice(b, b + 32);
        const d = Math.max(...chunk.map(Math.abs)) / 127;
        const scale = new Uint8Array(new Uint16Array([f32BitsToF16(d)]).buffer);
        blocks.push(...scale, ...chunk.map((v) => (Math.round(v / d) << 24) >> 24 & 0xff));
      }
      return { name: sp.name, type: GGML_TYPE.Q8_0, ne: [...sp.shape].reverse(), data: Uint8Array.from(blocks) };
    });
    const path = join(dir, 'quantized-norms.gguf');
    writeGguf(path, { kv: [{ key: 'general.architecture', type: 'str', value: 'sdnode' }], tensors });
    await using model = await loadModel(path, cpu);
    const norm = model.weights().find((w) => w.name === normName)!;
    expect(norm).toMatchObject({ from: 'Q8_0', to: 'F32', mapped: false });
    const inspected = await inspectModel(path, { checksums: true });
    expect((await model.checksums([normName]))[normName]).toBe(inspected.tensors.find((t) => t.name === normName)!.checksum);
  });

  it('f32 on load converts (device memory, not mapped)', async () => {
    await using model = await loadModel(ldm, { ...cpu, weightType: 'f32' });
    expect(model.weights().filter((w) => !w.name.endsWith('position_ids')).every((w) => w.to === 'F32' && !w.mapped)).toBe(true);
    expect(await floatChecksums(model)).toEqual(expectedChecksums());
    expect(model.info.deviceBytes).toBeGreaterThan(reference.fileSize);
  });

  it('reports progress per tensor and can be aborted', async () => {
    const steps: number[] = [];
    await using model = await loadModel(ldm, { ...cpu, weightType: 'q8_0', onProgress: (p) => steps.push(p.step) });
    expect(steps.at(-1)).toBe(model.weights().length);
    const controller = new AbortController();
    controller.abort();
    await expect(loadModel(ldm, { ...cpu, signal: controller.signal })).rejects.toBeInstanceOf(AbortError);
  });
});

describe('loadModel: refused inputs', () => {
  it('bad options throw before anything runs', () => {
    expect(() => loadModel(ldm, { weightType: 'q7' as never })).toThrow(RangeError);
    expect(() => loadModel({}, cpu)).toThrow(TypeError);
    expect(() => loadModel({ model: ldm, vea: ldm } as never, cpu)).toThrow(/vae/);
    expect(() => loadModel(42 as never)).toThrow(TypeError);
    expect(() => loadModel(ldm, { ...cpu, ema: 'yes' as never })).toThrow(TypeError);
  });

  it('files that are missing, not models, or not Stable Diffusion get coded errors', async () => {
    await expect(loadModel(join(dir, 'missing.safetensors'), cpu)).rejects.toBeInstanceOf(FileAccessError);
    const folder = join(dir, 'not-diffusers');
    mkdirSync(folder);
    await expect(loadModel(folder, cpu)).rejects.toBeInstanceOf(ModelFormatError);
    const text = join(dir, 'notes.safetensors');
    writeFileSync(text, 'hello, not a model');
    await expect(loadModel(text, cpu)).rejects.toBeInstanceOf(ModelFormatError);
    // A tiny autoencoder is a valid file of the wrong kind.
    await expect(loadModel(taeDecoder, cpu)).rejects.toBeInstanceOf(ModelCompatibilityError);
    await expect(loadModel({ vae: ldm.replace('.safetensors', '.nope') }, cpu)).rejects.toBeInstanceOf(FileAccessError);
    expect(readFileSync(ldm).length).toBe(reference.fileSize);
  });

  it('a disposed model refuses further use', async () => {
    const model = await loadModel(ldm, cpu);
    await model.dispose();
    expect(() => model.weights()).toThrow(/disposed/);
  });
});
