// The denoiser a sampler integrates (native/engine/sample/denoiser.h), against float64 truth:
// for data x0 ~ N(mu, s²) per element, noised as x = x0 + σ·n, the exact E[x0 | x] is
// (s²·x + σ²·mu) / (s² + σ²). A model trained on the variance-preserving input
// x_vp = x / √(σ² + 1) = α·x0 + σ_vp·n (α = 1/√(1+σ²), σ_vp = σ/√(1+σ²)) that predicts exactly
// gives ε̂ = E[n | x] = (x − E[x0 | x]) / σ, or v̂ = E[α·n − σ_vp·x0 | x] = α·ε̂ − σ_vp·E[x0 | x]
// (Salimans & Ho 2022). Fed those predictions, the engine's eps and v denoisers must return
// E[x0 | x], and classifier-free guidance D_u + cfg·(D_c − D_u) of two such models.
import { describe, expect, it } from 'vitest';

import { native } from '../lib/native.js';

const s = native().sampling;

/** Deterministic values in [−3, 3). */
function values(n: number, seed: number): Float64Array {
  const out = new Float64Array(n);
  let h = seed >>> 0;
  for (let i = 0; i < n; i++) {
    h = (Math.imul(h, 1664525) + 1013904223) >>> 0;
    out[i] = (h / 2 ** 32) * 6 - 3;
  }
  return out;
}

interface Data { mu: number; s: number }

/** E[x0 | x], and the exact eps and v predictions, in float64. */
function exact(x: Float64Array, sigma: number, d: Data) {
  const s2 = d.s * d.s, g2 = sigma * sigma;
  const alpha = 1 / Math.sqrt(1 + g2), sigmaVp = sigma / Math.sqrt(1 + g2);
  const x0 = x.map((v) => (s2 * v + g2 * d.mu) / (s2 + g2));
  const eps = x.map((v, i) => (v - x0[i]!) / sigma);
  const vel = eps.map((e, i) => alpha * e - sigmaVp * x0[i]!);
  return { x0, eps, v: vel };
}

function maxRelError(got: Float32Array, want: Float64Array): number {
  let worst = 0;
  for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(got[i]! - want[i]!) / Math.max(1, Math.abs(want[i]!)));
  return worst;
}

const measured: Record<string, number> = {};
describe('the eps and v denoisers against float64 truth', () => {
  const n = 4096;
  const data: Data = { mu: 0.3, s: 0.8 };
  // σ across the SD schedule: near sigma_min, mid, near sigma_max (0.0292 … 14.6).
  for (const sigma of [0.05, 0.6, 3, 14]) {
    it(`σ = ${sigma}: D(x) = E[x0 | x] from exact ε and v predictions, the model given x·c_in at t(σ)`, () => {
      const x = values(n, 7).map((v) => v * Math.sqrt(data.s ** 2 + sigma ** 2) / 3 + data.mu);
      const truth = exact(x, sigma, data);
      const xf = Float32Array.from(x);
      for (const prediction of ['epsilon', 'v'] as const) {
        const r = s.denoise({ prediction, sigma, x: xf, predictions: Float32Array.from(prediction === 'v' ? truth.v : truth.eps), cfgScale: 1 });
        const err = maxRelError(r.denoised, truth.x0);
        measured[`${prediction} σ=${sigma}`] = err;
        expect(err).toBeLessThan(1e-5);
        // what the model saw: the variance-preserving input and the schedule's timestep of σ
        expect(maxRelError(r.modelInput, x.map((v) => v / Math.sqrt(sigma * sigma + 1)))).toBeLessThan(1e-6);
        expect(r.timestep).toBe(s.sigmaToTimestep(sigma));
      }
      // The scalings matter: v predictions read as eps miss by over 100× the tolerance at every σ here.
      const wrong = s.denoise({ prediction: 'epsilon', sigma, x: xf, predictions: Float32Array.from(truth.v), cfgScale: 1 });
      expect(maxRelError(wrong.denoised, truth.x0)).toBeGreaterThan(1e-3);
    });
  }

  it('guidance over [uncond, cond]: D_u + cfg·(D_c − D_u), for both predictions', () => {
    const sigma = 1.7, cfg = 7.5;
    const uncond: Data = { mu: -0.4, s: 1.1 }, cond: Data = { mu: 0.9, s: 0.5 };
    const x = values(n, 11);
    const u = exact(x, sigma, uncond), c = exact(x, sigma, cond);
    const want = u.x0.map((du, i) => du + cfg * (c.x0[i]! - du));
    for (const prediction of ['epsilon', 'v'] as const) {
      const pred = new Float32Array(2 * n);
      pred.set(prediction === 'v' ? u.v : u.eps, 0);
      pred.set(prediction === 'v' ? c.v : c.eps, n);
      const r = s.denoise({ prediction, sigma, x: Float32Array.from(x), predictions: pred, cfgScale: cfg });
      const err = maxRelError(r.denoised, want);
      measured[`${prediction} cfg ${cfg}`] = err;
      expect(err).toBeLessThan(1e-5);
    }
    console.log('[denoiser] max relative error vs float64:', JSON.stringify(measured));
  });

  it('refuses what it cannot use', () => {
    const x = new Float32Array(4);
    expect(() => s.denoise({ prediction: 'x0' as 'v', sigma: 1, x, predictions: x, cfgScale: 1 })).toThrow(RangeError);
    expect(() => s.denoise({ prediction: 'v', sigma: 0, x, predictions: x, cfgScale: 1 })).toThrow(RangeError);
    expect(() => s.denoise({ prediction: 'v', sigma: 1, x, predictions: new Float32Array(3), cfgScale: 1 })).toThrow(/one or two latents/);
    expect(() => s.denoise({ prediction: 'v', sigma: 1, x, predictions: [1, 2, 3, 4] as unknown as Float32Array, cfgScale: 1 })).toThrow(TypeError);
  });
});
