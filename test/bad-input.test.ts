// Bad input is a JS error with a code or a TypeError/RangeError, never a crash.
import { mkdtempSync, writeFileSync, readFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import {
  FileAccessError,
  ImageError,
  ModelCompatibilityError,
  ModelFormatError,
  loadAutoencoder,
  readImage,
  writeImage,
  type Autoencoder,
} from '../lib/index.js';
import { taeDecoder, taeEncoder } from './support/data.js';

const dir = mkdtempSync(join(tmpdir(), 'sdnode-bad-'));

describe('model paths', () => {
  it.each([
    ['a missing file', join(dir, 'nope.pth')],
    ['a directory', dir],
    ['/dev/zero', '/dev/zero'],
  ])('%s is a FileAccessError', async (_, path) => {
    const err = await loadAutoencoder({ decoder: path }, { device: 'cpu' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(FileAccessError);
    expect(err).toMatchObject({ code: 'ERR_FILE_ACCESS' });
  });

  it('a FIFO is refused without blocking', async () => {
    const fifo = join(dir, 'fifo.pth');
    execFileSync('mkfifo', [fifo]);
    await expect(loadAutoencoder({ decoder: fifo }, { device: 'cpu' })).rejects.toBeInstanceOf(FileAccessError);
  });

  it('a path with NUL, an empty path and a non-string are refused synchronously', () => {
    expect(() => loadAutoencoder({ decoder: 'a\0b' })).toThrow(RangeError);
    expect(() => loadAutoencoder({ decoder: '' })).toThrow(RangeError);
    expect(() => loadAutoencoder({ decoder: 42 as unknown as string })).toThrow(TypeError);
    expect(() => loadAutoencoder({})).toThrow(TypeError);
  });

  it('a truncated checkpoint is a ModelFormatError', async () => {
    const bytes = readFileSync(taeDecoder);
    for (const keep of [0, 10, 100, 4096, bytes.length - 1000, bytes.length - 10]) {
      const path = join(dir, `truncated-${keep}.pth`);
      writeFileSync(path, bytes.subarray(0, keep));
      const err = await loadAutoencoder({ decoder: path }, { device: 'cpu' }).catch((e: unknown) => e);
      expect(err, `kept ${keep} bytes`).toBeInstanceOf(ModelFormatError);
    }
  });

  it('a file that is not a checkpoint is a ModelFormatError', async () => {
    const path = join(dir, 'text.pth');
    writeFileSync(path, 'hello, this is not a zip file at all'.repeat(100));
    await expect(loadAutoencoder({ decoder: path }, { device: 'cpu' })).rejects.toBeInstanceOf(ModelFormatError);
  });

  it('the wrong network (an encoder given as decoder) is a ModelCompatibilityError naming the mismatch', async () => {
    const err = await loadAutoencoder({ decoder: taeEncoder }, { device: 'cpu' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ModelCompatibilityError);
    expect((err as Error).message).toMatch(/taef2_encoder\.pth/);
  });

  it('misspelled and unknown options are named', () => {
    expect(() => loadAutoencoder({ decoder: taeDecoder }, { devise: 'cpu' } as never)).toThrow(/did you mean 'device'/);
    expect(() => loadAutoencoder({ decoder: taeDecoder }, { threads: 0 })).toThrow(RangeError);
    expect(() => loadAutoencoder({ decoder: taeDecoder }, { device: 'gpu!' })).toThrow(RangeError);
    expect(() => loadAutoencoder({ decoder: taeDecoder }, { device: 'cuda:7' })).toThrow(/not available/);
    expect(() => loadAutoencoder({ decoder: taeDecoder }, { weightType: 'q4' as never })).toThrow(RangeError);
  });
});

describe('images and latents', () => {
  let tae: Autoencoder;
  beforeAll(async () => {
    tae = await loadAutoencoder({ encoder: taeEncoder, decoder: taeDecoder }, { device: 'cpu' });
  });
  afterAll(() => tae?.dispose());

  const rgb = (width: number, height: number) => ({ width, height, channels: 3 as const, data: new Uint8Array(width * height * 3) });

  it('sides that are not multiples of 8 are a RangeError (crop first; see README)', () => {
    expect(() => tae.encode(rgb(17, 16))).toThrow(RangeError);
    expect(() => tae.encode(rgb(16, 20))).toThrow(/multiples of 8/);
  });

  it('zero-size, short, wrongly typed and wrong-channel images are refused synchronously', () => {
    expect(() => tae.encode(rgb(0, 8))).toThrow(RangeError);
    expect(() => tae.encode({ ...rgb(8, 8), data: new Uint8Array(10) })).toThrow(RangeError);
    expect(() => tae.encode({ ...rgb(8, 8), data: [1, 2, 3] as unknown as Uint8Array })).toThrow(TypeError);
    expect(() => tae.encode({ ...rgb(8, 8), channels: 1 as 3 })).toThrow(RangeError);
    expect(() => tae.encode(null as never)).toThrow(TypeError);
    expect(() => tae.encode(rgb(8, 8), { signal: 'x' } as never)).toThrow(TypeError);
    expect(() => tae.encode(rgb(8, 8), { onProgres: () => {} } as never)).toThrow(/did you mean 'onProgress'/);
  });

  it('an RGBA image encodes like its RGB part', async () => {
    const a = rgb(16, 16);
    a.data.forEach((_, i) => (a.data[i] = (i * 37) % 251));
    const rgba = { width: 16, height: 16, channels: 4 as const, data: new Uint8Array(16 * 16 * 4) };
    for (let p = 0; p < 256; p++) {
      rgba.data.set(a.data.subarray(p * 3, p * 3 + 3), p * 4);
      rgba.data[p * 4 + 3] = 7;
    }
    const [la, lb] = [await tae.encode(a), await tae.encode(rgba)];
    expect(lb.data).toEqual(la.data);
  });

  it('latents of the wrong shape are refused', () => {
    const good = { channels: 32, width: 4, height: 4, data: new Float32Array(32 * 16) };
    expect(() => tae.decode({ ...good, channels: 4 })).toThrow(RangeError);
    expect(() => tae.decode({ ...good, data: new Float32Array(5) })).toThrow(RangeError);
    expect(() => tae.decode({ ...good, width: 0 })).toThrow(RangeError);
    expect(() => tae.decode({ ...good, data: new Float64Array(32 * 16) as never })).toThrow(TypeError);
  });

  it('a request past the 4096² pixel budget is a RangeError before anything is queued (a compute buffer that cannot be had: test/tae-limits)', () => {
    const latent = { channels: 32, width: 1024, height: 1024, data: new Float32Array(32 * 1024 * 1024) };
    expect(() => tae.decode(latent)).toThrow(/the decoded image would be 8192×8192; at most 16777216 pixels/);
  });

  it('non-finite latents decode to an image, not a crash', async () => {
    const data = new Float32Array(32 * 16).fill(NaN);
    data.fill(Infinity, 0, 100);
    const out = await tae.decode({ channels: 32, width: 4, height: 4, data });
    expect(out.width).toBe(32);
    expect(out.data.length).toBe(32 * 32 * 3);
  });
});

describe('image files', () => {
  it('reads, writes and reads back a PNG losslessly', async () => {
    const image = { width: 3, height: 2, channels: 3 as const, data: Uint8Array.from({ length: 18 }, (_, i) => i * 14) };
    const path = join(dir, 'tiny.png');
    await writeImage(path, image);
    const back = await readImage(path);
    expect(back).toMatchObject({ width: 3, height: 2, channels: 3 });
    expect(Array.from(back.data)).toEqual(Array.from(image.data));
  });

  it('missing and corrupt image files have codes', async () => {
    await expect(readImage(join(dir, 'none.png'))).rejects.toBeInstanceOf(FileAccessError);
    const bad = join(dir, 'bad.png');
    writeFileSync(bad, 'not a png');
    await expect(readImage(bad)).rejects.toBeInstanceOf(ImageError);
    await expect(writeImage(join(dir, 'x.bmp'), { width: 1, height: 1, channels: 3, data: new Uint8Array(3) })).rejects.toBeInstanceOf(RangeError);
  });
});
