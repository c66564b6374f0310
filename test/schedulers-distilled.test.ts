// The schedules of few-step distilled models (SDXL-Turbo, SDXL-Lightning, LCM) as
// stable-diffusion.cpp computes them, each evaluated here from its formula in float64 on the
// training schedule (test/support/sd-schedule.ts), and the samplers they run with (lcm,
// ddim_trailing) on the exact denoiser of Gaussian data, where their output is known.
import { describe, expect, it } from 'vitest';

import { native } from '../lib/native.js';
import { TIMESTEPS, modelSigmas, rel, sigmaAt } from './support/sd-schedule.js';

const { sigmas, sampleGaussian, randn } = native().sampling;
const f32 = Math.fround;

/**
 * simple (ComfyUI's, trailing spacing): step i takes training timestep T-1 - floor(i · T/n).
 * stable-diffusion.cpp rounds T/n to float32 and takes the product in float32, which moves a
 * few timesteps by one (n 30, i 15: 500 where the exact product gives 499); we follow it.
 */
function simpleTimesteps(n: number): number[] {
  const factor = f32(TIMESTEPS / n);
  return Array.from({ length: n }, (_, i) => Math.max(TIMESTEPS - 1 - Math.trunc(f32(i * factor)), 0));
}

/** lcm: of the 50 timesteps the LCM was distilled on (every 20th from 999), n evenly spaced ones. */
function lcmTimesteps(n: number): number[] {
  const original = 50, stride = TIMESTEPS / original;
  return Array.from({ length: n }, (_, i) => (original - Math.floor((i * original) / n)) * stride - 1);
}

/** sgm_uniform as stable-diffusion.cpp evaluates it: n + 1 float32 points from T-1 to 0 by repeated addition, the last dropped. */
function sgmUniformTimesteps(n: number): number[] {
  const inc = f32(f32(0 - (TIMESTEPS - 1)) / f32(n));
  const t = [TIMESTEPS - 1];
  for (let i = 1; i < n; i++) t.push(f32(t[i - 1]! + inc));
  return t;
}

function expectSigmas(got: Float32Array, timesteps: number[], what: string, tol = 1e-6) {
  expect(got.length, what).toBe(timesteps.length + 1);
  expect(got[timesteps.length], what).toBe(0);
  timesteps.forEach((t, i) => expect(rel(got[i]!, sigmaAt(t)), `${what}, sigma ${i} (t ${t})`).toBeLessThan(tol));
}

describe('schedules of distilled models', () => {
  it('simple: the trailing timesteps of SDXL-Turbo / Lightning at 1 to 8 steps', () => {
    expect(simpleTimesteps(1)).toEqual([999]);
    expect(simpleTimesteps(2)).toEqual([999, 499]);
    expect(simpleTimesteps(4)).toEqual([999, 749, 499, 249]);
    expect(simpleTimesteps(8)).toEqual([999, 874, 749, 624, 499, 374, 249, 124]);
    for (const n of [1, 2, 3, 4, 5, 6, 8]) expectSigmas(sigmas('simple', n), simpleTimesteps(n), `simple ${n}`);
  });

  it('simple: every step count up to 1000 gives strictly decreasing training sigmas; float32 rounding as stable-diffusion.cpp', () => {
    for (let n = 1; n <= TIMESTEPS; n++) {
      const s = sigmas('simple', n);
      const t = simpleTimesteps(n);
      for (let i = 0; i < n; i++) {
        // whole timesteps: the model's own sigma, not an interpolated one
        if (rel(s[i]!, modelSigmas[t[i]!]!) >= 1e-6 || !(s[i]! > s[i + 1]!)) {
          expect.fail(`simple ${n}, sigma ${i}: ${s[i]} for t ${t[i]} (${modelSigmas[t[i]!]}), next ${s[i + 1]}`);
        }
      }
    }
    // where float32 and exact arithmetic part: the timestep stable-diffusion.cpp takes
    expect(simpleTimesteps(30)[15]).toBe(500);
    expect(rel(sigmas('simple', 30)[15]!, modelSigmas[500]!)).toBeLessThan(1e-6);
    // 1000 steps walk every training sigma
    expectSigmas(sigmas('simple', 1000), Array.from({ length: 1000 }, (_, i) => 999 - i), 'simple 1000');
  });

  it('lcm: the LCM training timesteps (999, 759, 499, 259 at 4 steps), at most 50 steps', () => {
    expect(lcmTimesteps(1)).toEqual([999]);
    expect(lcmTimesteps(2)).toEqual([999, 499]);
    expect(lcmTimesteps(4)).toEqual([999, 759, 499, 259]);
    expect(lcmTimesteps(8)).toEqual([999, 879, 759, 639, 499, 379, 259, 139]);
    for (const n of [1, 2, 3, 4, 6, 8, 13, 25, 49, 50]) expectSigmas(sigmas('lcm', n), lcmTimesteps(n), `lcm ${n}`);
    expect(lcmTimesteps(50).at(-1)).toBe(19);
    expect(() => sigmas('lcm', 51)).toThrow(RangeError);
    expect(() => sigmas('lcm', 51)).toThrow(/at most 50 steps/);
    expect(() => sigmas('simple', 1001)).toThrow(/at most 1000 steps/);
  });

  it('sgm_uniform: as stable-diffusion.cpp at the step counts of Turbo and Lightning (and others)', () => {
    expect(sgmUniformTimesteps(4)).toEqual([999, 749.25, 499.5, 249.75]);
    // 999/n is exact in float32 for these, so stable-diffusion.cpp's repeated float32 addition
    // is exact too: the sigmas agree to rounding
    for (const n of [1, 2, 3, 4, 6, 8]) expectSigmas(sigmas('sgm_uniform', n), sgmUniformTimesteps(n), `sgm_uniform ${n}`);
    // elsewhere its sum drifts by float32 roundings (~1e-5 in t) that the engine, multiplying
    // in float64, does not make: a few 1e-6 in sigma
    for (const n of [12, 20, 37]) expectSigmas(sigmas('sgm_uniform', n), sgmUniformTimesteps(n), `sgm_uniform ${n}`, 5e-6);
  });
});

// ---- the samplers of distilled models on Gaussian data x0 ~ N(mu, s²) ----
// The exact denoiser D(x, σ) = mu + a(σ)(x - mu), a(σ) = s² / (s² + σ²), makes every update
// linear in x - mu, so each sampler's output follows from a scalar recursion over the sigmas.

const mu = 0.4, s = 0.9;
const a = (sg: number) => (s * s) / (s * s + sg * sg);

describe('samplers of distilled models on Gaussian data', () => {
  it.each([
    ['simple', 1],
    ['simple', 4],
    ['sgm_uniform', 4],
    ['simple', 30],
  ] as const)('ddim_trailing (%s, %d steps) takes the DDIM eta-0 step x0 + σ_next · eps, element by element', (scheduler, steps) => {
    const count = 4000, seed = 17;
    const x = sampleGaussian({ sampler: 'ddim_trailing', scheduler, steps, seed, rng: 'cuda', mu, s, count });
    const sig = sigmas(scheduler, steps);
    const noise = randn('cuda', seed, count);
    let worst = 0;
    for (let j = 0; j < count; j++) {
      let e = f32(noise[j]! * sig[0]!) - mu; // x - mu
      for (let i = 0; i < steps; i++) {
        const sg = sig[i]!, next = sig[i + 1]!;
        // x0 = D(x, σ); eps = (x - x0) / σ; x <- x0 + σ_next · eps
        e = a(sg) * e + (next / sg) * (1 - a(sg)) * e;
      }
      worst = Math.max(worst, Math.abs(x[j]! - (mu + e)));
    }
    expect(worst).toBeLessThan(1e-5);
  });

  it('ddim_trailing is ddim under another default schedule: the same update on the same sigmas', () => {
    const opts = { scheduler: 'simple', steps: 4, seed: 3, rng: 'cpu' as const, mu, s, count: 1000 };
    expect(Array.from(sampleGaussian({ ...opts, sampler: 'ddim_trailing' }))).toEqual(Array.from(sampleGaussian({ ...opts, sampler: 'ddim' })));
  });

  it.each([
    ['lcm', 4],
    ['lcm', 8],
    ['simple', 4],
  ] as const)('lcm (%s, %d steps): x <- D(x, σ), then fresh noise σ_next (the output law)', (scheduler, steps) => {
    const count = 100_000;
    const x = sampleGaussian({ sampler: 'lcm', scheduler, steps, seed: 23, rng: 'cuda', mu, s, count });
    const sig = sigmas(scheduler, steps);
    // mean and variance of x - mu through the recursion: start σ_max · noise - mu
    let m = -mu, v = sig[0]! ** 2;
    for (let i = 0; i < steps; i++) {
      const g = a(sig[i]!);
      m *= g;
      v = g * g * v + sig[i + 1]! ** 2;
    }
    let mean = 0;
    for (const value of x) mean += value;
    mean /= count;
    let variance = 0;
    for (const value of x) variance += (value - mean) ** 2;
    variance /= count;
    expect(Math.abs(mean - (mu + m))).toBeLessThan((4 * Math.sqrt(v)) / Math.sqrt(count));
    expect(rel(Math.sqrt(variance), Math.sqrt(v))).toBeLessThan(0.015);
  });
});
