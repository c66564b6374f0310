// The two seed conventions against reference values of torch.randn (and of the webui / s-d.cpp
// host implementation of CUDA's Philox randn): /shared/data/rng/randn-reference.json.
//   philox: { seed, call, n, values }: call 0 is the first randn of a fresh generator, call 1
//           the next one (after a call of either 12 or 256 values: the offset moves by one
//           call, not by the number of values).
//   cpu:    { seed, shape, values } or { seed, sequence: [shape, shape], values } (one
//           generator, consecutive calls, values concatenated); torch 1.13 CPU.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

import { native } from '../lib/native.js';
import { dataDir } from './support/data.js';

interface PhiloxCase {
  seed: number;
  call: number;
  n: number;
  values: number[];
}
interface CpuCase {
  seed: number;
  shape?: number[];
  sequence?: number[][];
  values: number[];
}
const reference = JSON.parse(readFileSync(join(dataDir, 'rng', 'randn-reference.json'), 'utf8')) as {
  philox: PhiloxCase[];
  cpu: CpuCase[];
  cpu_torch_version: string;
};
const { randn } = native().sampling;
const numel = (shape: number[]) => shape.reduce((a, b) => a * b, 1);

// Float32 agreement: the references come from float math whose log/sin/cos differ from this
// platform's libm by an ulp or two; anything algorithmic (a wrong bit, a double where torch
// rounds to float) is orders of magnitude larger.
const TOL = 5e-7;
let worst = 0;
function expectClose(actual: Float32Array, expected: number[], what: string) {
  expect(actual.length, what).toBe(expected.length);
  for (let i = 0; i < expected.length; i++) {
    const err = Math.abs(actual[i]! - expected[i]!) / Math.max(1, Math.abs(expected[i]!));
    worst = Math.max(worst, err);
    if (err > TOL) expect.fail(`${what}[${i}]: ${actual[i]} vs ${expected[i]} (relative error ${err})`);
  }
}

describe('cuda rng (Philox4x32-10)', () => {
  it.each(reference.philox.filter((c) => c.call === 0).map((c) => [c.seed, c.n, c]))(
    'seed %d: the first %d values',
    (_seed, _n, c) => {
      const { seed, n, values } = c as PhiloxCase;
      expectClose(randn('cuda', seed, n), values, `seed ${seed} n ${n}`);
    },
  );

  it.each(reference.philox.filter((c) => c.call === 1).map((c) => [c.seed, c]))(
    'seed %d: the second call continues the stream, whatever the size of the first',
    (_seed, c) => {
      const { seed, n, values } = c as PhiloxCase;
      for (const first of [12, 256, 1]) {
        expectClose(randn('cuda', seed, [first, n]).subarray(first), values, `seed ${seed} after ${first}`);
      }
      // ... and is not the first call again
      expect(Array.from(randn('cuda', seed, n))).not.toEqual(Array.from(randn('cuda', seed, [n, n]).subarray(n)));
    },
  );

  it('element i does not depend on how many values the call draws', () => {
    const long = randn('cuda', 99, 1000);
    expect(Array.from(randn('cuda', 99, 37))).toEqual(Array.from(long.subarray(0, 37)));
  });

  it('uses all 64 bits of the seed (bigint seeds above 2^53)', () => {
    const big = 2n ** 53n + 1n; // not representable as a number
    const a = randn('cuda', big, 64);
    expect(Array.from(a)).not.toEqual(Array.from(randn('cuda', 2n ** 53n, 64)));
    expect(Array.from(randn('cuda', 2n ** 53n - 1n, 64))).toEqual(Array.from(randn('cuda', 2 ** 53 - 1, 64)));
    expect(Array.from(randn('cuda', big, 64))).toEqual(Array.from(a));
    // the high word is the second key word: seed 2^32 + 7 is not seed 7 (the reference has it)
    expect(Array.from(randn('cuda', 4294967303n, 16))).toEqual(Array.from(randn('cuda', 4294967303, 16)));
    expect(Array.from(randn('cuda', 4294967303, 16))).not.toEqual(Array.from(randn('cuda', 7, 16)));
    const top = randn('cuda', 2n ** 64n - 1n, 4096);
    expect(top.every(Number.isFinite)).toBe(true);
  });

  it('looks standard normal over many values', () => {
    const x = randn('cuda', 12345, 200_000);
    let m = 0;
    for (const v of x) m += v;
    m /= x.length;
    let v2 = 0;
    for (const v of x) v2 += (v - m) ** 2;
    expect(Math.abs(m)).toBeLessThan(0.01);
    expect(Math.abs(Math.sqrt(v2 / x.length) - 1)).toBeLessThan(0.01);
  });
});

describe(`cpu rng (mt19937, torch ${reference.cpu_torch_version} CPU randn)`, () => {
  it.each(reference.cpu.map((c) => [c.seed, JSON.stringify(c.shape ?? c.sequence), c]))(
    'seed %d, %s',
    (_seed, _shape, c) => {
      const { seed, shape, sequence, values } = c as CpuCase;
      const counts = shape ? [numel(shape)] : sequence!.map(numel);
      expectClose(randn('cpu', seed, counts), values, `seed ${seed} ${JSON.stringify(shape ?? sequence)}`);
    },
  );

  it('takes the double Box-Muller path below 16 values and the float one from 16', () => {
    // seed 0: randn(7) starts 1.5410 (double path), randn(16) starts -1.1258 (float path)
    expect(randn('cpu', 0, 7)[0]).toBeCloseTo(1.540996, 5);
    expect(randn('cpu', 0, 15)[0]).toBeCloseTo(1.540996, 5);
    expect(randn('cpu', 0, 16)[0]).toBeCloseTo(-1.1258398, 6);
  });

  it('keeps the cached second Box-Muller value across small calls, as torch does', () => {
    // 7 values use 4 pairs; the 8th (the sin half of the 4th pair) waits for the next call.
    const eight = randn('cpu', 42, 8);
    const split = randn('cpu', 42, [7, 1]);
    expect(split[7]).toBe(eight[7]);
    expect(Array.from(randn('cpu', 42, [3, 5]))).toEqual(Array.from(eight));
  });

  it('redraws the last 16 values of a size that is not a multiple of 16', () => {
    // n = 20: block [0, 16) from uniforms 0..15, then positions [4, 20) from 16 fresh uniforms
    const twenty = randn('cpu', 5, 20);
    const sixteen = randn('cpu', 5, 16);
    expect(Array.from(twenty.subarray(0, 4))).toEqual(Array.from(sixteen.subarray(0, 4)));
    expect(Array.from(twenty.subarray(4, 16))).not.toEqual(Array.from(sixteen.subarray(4, 16)));
  });

  it('seeds mt19937 with the low 32 bits, as torch.manual_seed does', () => {
    expect(Array.from(randn('cpu', 2n ** 32n + 42n, 32))).toEqual(Array.from(randn('cpu', 42, 32)));
    expect(Array.from(randn('cpu', 2n ** 60n + 3n, 5))).toEqual(Array.from(randn('cpu', 3, 5)));
  });

  it('looks standard normal over many values', () => {
    const x = randn('cpu', 777, 200_000);
    let m = 0;
    for (const v of x) m += v;
    m /= x.length;
    let v2 = 0;
    for (const v of x) v2 += (v - m) ** 2;
    expect(Math.abs(m)).toBeLessThan(0.01);
    expect(Math.abs(Math.sqrt(v2 / x.length) - 1)).toBeLessThan(0.01);
  });
});

describe('both rngs', () => {
  it.each(['cuda', 'cpu'] as const)('%s: the same seed gives the same values, another seed others', (kind) => {
    const a = randn(kind, 1234, [100, 3, 50]);
    expect(Array.from(randn(kind, 1234, [100, 3, 50]))).toEqual(Array.from(a));
    expect(Array.from(randn(kind, 1235, [100, 3, 50]))).not.toEqual(Array.from(a));
    expect(Array.from(randn(kind, 1234n, [100, 3, 50]))).toEqual(Array.from(a));
  });

  it('refuses bad arguments with TypeError / RangeError', () => {
    expect(() => randn('gpu' as 'cuda', 1, 4)).toThrow(RangeError);
    expect(() => randn(1 as unknown as 'cuda', 1, 4)).toThrow(TypeError);
    expect(() => randn('cpu', -1, 4)).toThrow(RangeError);
    expect(() => randn('cpu', 1.5, 4)).toThrow(RangeError);
    expect(() => randn('cpu', 2 ** 53, 4)).toThrow(RangeError);
    expect(() => randn('cpu', -1n, 4)).toThrow(RangeError);
    expect(() => randn('cpu', 2n ** 64n, 4)).toThrow(RangeError);
    expect(() => randn('cpu', '1' as unknown as number, 4)).toThrow(TypeError);
    expect(() => randn('cpu', 1, -1)).toThrow(RangeError);
    expect(() => randn('cpu', 1, 2 ** 30)).toThrow(RangeError);
    expect(() => randn('cpu', 1, [])).toThrow(RangeError);
    expect(() => randn('cpu', 1, ['x' as unknown as number])).toThrow(TypeError);
    expect(randn('cuda', 1, 0).length).toBe(0);
  });

  it('reports the worst reference error', () => {
    console.log(`[rng] worst relative error vs reference: ${worst.toExponential(2)}`);
    expect(worst).toBeLessThanOrEqual(TOL);
  });
});
