// Every file the generator writes, and every file convertModel writes from it, generates: the
// attention heads (which tensor shapes cannot tell) travel with each format — the safetensors
// header, the GGUF's sdnode.* keys, the .ckpt's top-level strings, a diffusers folder's
// config.json files — so the same weights give the same image whatever holds them. Hostile
// heads metadata is a ModelCompatibilityError with a code, never a TypeError from inside.
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';

import { ModelCompatibilityError, convertModel, loadModel, type Image } from '../lib/index.js';
import { psnr } from './support/data.js';
// @ts-expect-error: plain JavaScript module with JSDoc types
import { generateModel } from '../scripts/generate-model.mjs';
// @ts-expect-error: plain JavaScript module with JSDoc types
import { writeTorchCheckpoint } from '../scripts/generator/torch-checkpoint.mjs';
// @ts-expect-error: plain JavaScript module with JSDoc types
import { writeDiffusersFolder } from '../scripts/generator/diffusers-layout.mjs';

const dir = mkdtempSync(join(tmpdir(), 'sdnode-formats-'));
const cpu = { device: 'cpu', threads: 1 } as const;
const job = { prompt: 'a red house', width: 64, height: 64, steps: 1, seed: 5 } as const;
const files = {
  safetensors: join(dir, 'tiny.safetensors'),
  ckpt: join(dir, 'tiny.ckpt'),
  diffusers: join(dir, 'tiny-diffusers'),
  gguf: join(dir, 'tiny.gguf'),
  q8: join(dir, 'tiny-q8_0.gguf'),
};

const generateWith = async (source: string) => {
  const model = await loadModel(source, cpu);
  try {
    return (await model.generate(job)).images[0]!;
  } finally {
    await model.dispose();
  }
};

let reference: Image;

beforeAll(async () => {
  const base = { preset: 'tiny', dtype: 'f16', seed: 4 };
  await generateModel({ ...base, out: files.safetensors });
  await writeTorchCheckpoint({ ...base, out: files.ckpt });
  await writeDiffusersFolder({ ...base, out: files.diffusers });
  await convertModel(files.safetensors, files.gguf);
  await convertModel(files.safetensors, files.q8, { weightType: 'q8_0' });
  reference = await generateWith(files.safetensors);
}, 120_000);

describe('the generator and convertModel: every output generates', () => {
  for (const format of ['ckpt', 'diffusers', 'gguf'] as const) {
    it(`${format}: the same image as the safetensors file`, async () => {
      expect(Buffer.from((await generateWith(files[format])).data).equals(Buffer.from(reference.data))).toBe(true);
    });
  }

  it('a q8_0 GGUF converted from it: an image close to it', async () => {
    const db = psnr(await generateWith(files.q8), reference);
    console.log(`q8_0 GGUF vs f16 safetensors: ${db.toFixed(1)} dB`);
    expect(db).toBeGreaterThan(25);
  });
});

/** The safetensors file with its sdnode.attention_heads metadata replaced (undefined: removed). */
function withHeads(value: string | undefined): string {
  const bytes = readFileSync(files.safetensors);
  const n = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + n).toString('utf8')) as { __metadata__: Record<string, string> };
  if (value === undefined) delete header.__metadata__['sdnode.attention_heads'];
  else header.__metadata__['sdnode.attention_heads'] = value;
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (Buffer.byteLength(json) % 8)) % 8);
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
  const out = join(dir, `heads-${Math.random().toString(36).slice(2)}.safetensors`);
  writeFileSync(out, Buffer.concat([prefix, Buffer.from(json), bytes.subarray(8 + n)]));
  return out;
}

describe('hostile sdnode.attention_heads metadata (38)', () => {
  const cases: Array<[string, string | undefined, RegExp]> = [
    ['not JSON', '{unet', /is not JSON/],
    ['null', 'null', /not a JSON object/],
    ['an array', '[1, 2]', /not a JSON object/],
    ['a null part', '{"unet": null}', /unet that is not an object/],
    ['zero heads', '{"unet": {"numHeads": 0}}', /unet.numHeads 0/],
    ['a string count', '{"clip": {"numHeads": "2"}}', /clip.numHeads "2"/],
    ['a fractional width', '{"unet": {"headDim": 1.5}}', /unet.headDim 1.5/],
    ['UNet heads that do not divide its widths', '{"unet": {"numHeads": 3}, "clip": {"numHeads": 2}}', /not divisible by heads 3/],
    // The tiny text encoder is 32 wide: SD1.x's 64-wide default heads do not fit it.
    ['missing', undefined, /does not say its head count/],
  ];
  for (const [what, value, message] of cases) {
    it(`${what}: ModelCompatibilityError with a code`, async () => {
      const model = await loadModel(withHeads(value), cpu);
      try {
        const error = await model.generate(job).then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(error).toBeInstanceOf(ModelCompatibilityError);
        expect(error).toMatchObject({ code: 'ERR_MODEL_COMPATIBILITY', message: expect.stringMatching(message) });
      } finally {
        await model.dispose();
      }
    });
  }
});
