// Noise schedules and samplers, checked against exact mathematics rather than against
// recorded outputs:
//   - the SD1.x discrete schedule computed here in double precision;
//   - deterministic samplers integrate the probability-flow ODE, whose exact solution is
//     known for Gaussian data x0 ~ N(mu, s²): with the exact denoiser
//     D(x, σ) = (s² x + σ² mu) / (s² + σ²), x(σ) - mu = (x_T - mu) · sqrt(s² + σ²) / sqrt(s² + σ_T²);
//   - stochastic samplers are linear in x and in their noise, so the law of their output is
//     Gaussian with a mean and variance that a scalar recursion of the same update predicts.
import { describe, expect, it } from 'vitest';

import { native } from '../lib/native.js';
import { modelSigmas, rel } from './support/sd-schedule.js';

const { sigmas, sigmaToTimestep, sampleGaussian, randn } = native().sampling;
// The schedulers that span the model's whole sigma range at any step count (simple and lcm,
// which pick whole training timesteps: test/schedulers-distilled.test.ts).
const SCHEDULERS = ['discrete', 'karras', 'exponential', 'sgm_uniform'] as const;

const SIGMA_MIN = modelSigmas[0]!;
const SIGMA_MAX = modelSigmas[999]!;

describe('noise schedules (SD1.x discrete model)', () => {
  it('the model sigmas are the known SD1.5 ones', () => {
    expect(SIGMA_MAX).toBeCloseTo(14.6146, 4);
    expect(SIGMA_MIN).toBeCloseTo(0.0292, 4);
    const s = sigmas('discrete', 20);
    expect(s[0]).toBeCloseTo(14.614641, 4);
    expect(s[19]).toBeCloseTo(0.0291672, 6);
  });

  it.each(SCHEDULERS)('%s: steps + 1 sigmas, strictly decreasing, from sigma_max, ending in 0', (name) => {
    for (const steps of [1, 2, 3, 10, 30, 150]) {
      const s = sigmas(name, steps);
      expect(s.length).toBe(steps + 1);
      expect(s[steps]).toBe(0);
      expect(rel(s[0]!, SIGMA_MAX)).toBeLessThan(1e-6);
      for (let i = 0; i < steps; i++) {
        expect(Number.isFinite(s[i]!) && s[i]! > s[i + 1]!, `${name} ${steps}: sigma ${i}`).toBe(true);
      }
      if (name !== 'sgm_uniform' && steps > 1) expect(rel(s[steps - 1]!, SIGMA_MIN)).toBeLessThan(1e-6);
    }
  });

  it('discrete with 1000 steps walks every training sigma', () => {
    const s = sigmas('discrete', 1000);
    let worst = 0;
    for (let i = 0; i < 1000; i++) worst = Math.max(worst, rel(s[i]!, modelSigmas[999 - i]!));
    expect(worst).toBeLessThan(1e-6);
  });

  it('discrete interpolates log sigma between training timesteps', () => {
    // steps 3: t = 999, 499.5, 0
    const s = sigmas('discrete', 3);
    const mid = Math.exp((Math.log(modelSigmas[499]!) + Math.log(modelSigmas[500]!)) / 2);
    expect(rel(s[1]!, mid)).toBeLessThan(1e-6);
    // steps 7: t = 999 - 166.5 i
    const s7 = sigmas('discrete', 7);
    const t = 999 - 166.5 * 2;
    const w = t - Math.floor(t);
    const expected = Math.exp((1 - w) * Math.log(modelSigmas[Math.floor(t)]!) + w * Math.log(modelSigmas[Math.ceil(t)]!));
    expect(rel(s7[2]!, expected)).toBeLessThan(1e-6);
  });

  it('karras follows Karras et al. (2022) eq. 5 with rho = 7', () => {
    for (const n of [2, 10, 25]) {
      const s = sigmas('karras', n);
      const hi = SIGMA_MAX ** (1 / 7), lo = SIGMA_MIN ** (1 / 7);
      for (let i = 0; i < n; i++) expect(rel(s[i]!, (hi + (i / (n - 1)) * (lo - hi)) ** 7)).toBeLessThan(2e-6);
    }
  });

  it('exponential is uniform in log sigma', () => {
    const n = 12;
    const s = sigmas('exponential', n);
    for (let i = 0; i < n; i++) {
      const expected = Math.exp(Math.log(SIGMA_MAX) + (i / (n - 1)) * (Math.log(SIGMA_MIN) - Math.log(SIGMA_MAX)));
      expect(rel(s[i]!, expected)).toBeLessThan(2e-6);
    }
  });

  it('sgm_uniform(n) is discrete(n + 1) without its last point', () => {
    for (const n of [4, 9, 20]) {
      const sgm = sigmas('sgm_uniform', n);
      const disc = sigmas('discrete', n + 1);
      for (let i = 0; i < n; i++) expect(rel(sgm[i]!, disc[i]!)).toBeLessThan(1e-6);
    }
  });

  it('sigma -> timestep inverts the log-sigma interpolation and clamps to [0, 999]', () => {
    for (const k of [0, 1, 17, 500, 998, 999]) expect(sigmaToTimestep(modelSigmas[k]!)).toBeCloseTo(k, 2);
    const s = sigmas('discrete', 7); // t = 999 - 166.5 i
    for (let i = 0; i < 7; i++) expect(sigmaToTimestep(s[i]!)).toBeCloseTo(999 - 166.5 * i, 2);
    const between = Math.exp(0.25 * Math.log(modelSigmas[100]!) + 0.75 * Math.log(modelSigmas[101]!));
    expect(sigmaToTimestep(between)).toBeCloseTo(100.75, 2);
    expect(sigmaToTimestep(1000)).toBe(999);
    expect(sigmaToTimestep(1e-4)).toBe(0);
    expect(() => sigmaToTimestep(0)).toThrow(RangeError);
  });

  it('refuses unknown schedulers and bad step counts', () => {
    expect(() => sigmas('linear', 10)).toThrow(RangeError);
    expect(() => sigmas('linear', 10)).toThrow(/discrete, karras, exponential, sgm_uniform, simple, lcm/);
    expect(() => sigmas(3 as unknown as string, 10)).toThrow(TypeError);
    for (const steps of [0, -1, 1.5, 10001, NaN]) expect(() => sigmas('karras', steps)).toThrow(RangeError);
  });
});

// ---- deterministic samplers: the probability-flow ODE ----

const MU = 0.5;

/**
 * Relative RMS error of a sampler run (count values) against
 *   exact:  the ODE solution from sigma_max to 0;
 *   target: the exact solution down to the schedule's last non-zero sigma followed by the
 *           exact last step every sampler takes to 0 (x <- D(x, sigma)). Its difference
 *           from `exact` is a floor of about sigma_min² / 2s² = 4e-4 (s = 1) that no number of
 *           steps removes; errors against `target` show the integrator's own order.
 */
function odeError(sampler: string, scheduler: string, steps: number, s = 1, count = 2000) {
  const seed = 3;
  const x = sampleGaussian({ sampler, scheduler, steps, seed, rng: 'cuda', mu: MU, s, count });
  const sig = sigmas(scheduler, steps);
  const smax = sig[0]!, slast = sig[steps - 1]!;
  const noise = randn('cuda', seed, count);
  let eExact = 0, eTarget = 0, norm = 0;
  for (let i = 0; i < count; i++) {
    const xT = Math.fround(noise[i]! * smax);
    const exact = MU + ((xT - MU) * s) / Math.sqrt(s * s + smax * smax);
    const target = MU + ((xT - MU) * s * s) / (Math.sqrt(s * s + slast * slast) * Math.sqrt(s * s + smax * smax));
    eExact += (x[i]! - exact) ** 2;
    eTarget += (x[i]! - target) ** 2;
    norm += (exact - MU) ** 2;
  }
  return { exact: Math.sqrt(eExact / norm), target: Math.sqrt(eTarget / norm) };
}

const DETERMINISTIC = [
  // sampler, order, max error against the exact solution at 80 karras steps
  ['euler', 1, 0.025],
  ['ddim', 1, 0.025],
  ['heun', 2, 1e-3],
  ['dpm2', 2, 1e-3],
  ['dpm++2m', 2, 1e-3],
] as const;

describe('deterministic samplers on the probability-flow ODE of Gaussian data', () => {
  const table: string[] = [];

  it.each(DETERMINISTIC)('%s converges at order %d (karras and exponential schedules)', (sampler, order, tol80) => {
    for (const scheduler of ['karras', 'exponential']) {
      const e = [20, 40, 80].map((n) => odeError(sampler, scheduler, n));
      table.push(`${sampler.padEnd(8)} ${scheduler.padEnd(12)} ${e.map((v) => v.exact.toExponential(2)).join('  ')}`);
      const r1 = e[1]!.target / e[0]!.target, r2 = e[2]!.target / e[1]!.target;
      if (order === 1) {
        // halving the step halves the error
        for (const r of [r1, r2]) {
          expect(r, `${scheduler} ratio`).toBeGreaterThan(0.4);
          expect(r, `${scheduler} ratio`).toBeLessThan(0.6);
        }
      } else {
        // ... or quarters it
        for (const r of [r1, r2]) expect(r, `${scheduler} ratio`).toBeLessThan(0.3);
      }
      expect(e[2]!.exact, `${scheduler} at 80 steps`).toBeLessThan(tol80);
    }
  });

  it('second-order samplers beat euler clearly at the same steps', () => {
    for (const scheduler of ['karras', 'exponential']) {
      const euler = odeError('euler', scheduler, 20).exact;
      for (const sampler of ['heun', 'dpm2', 'dpm++2m']) {
        expect(odeError(sampler, scheduler, 20).exact, `${sampler} ${scheduler}`).toBeLessThan(euler / 4);
      }
    }
    // on the discrete schedule too (dpm++2m excepted: its last log-sigma step is large, see below)
    const euler = odeError('euler', 'discrete', 20).exact;
    for (const sampler of ['heun', 'dpm2']) expect(odeError(sampler, 'discrete', 20).exact).toBeLessThan(euler / 4);
  });

  it('every sampler reaches the exact solution, within the sigma_min floor, on the SD default schedule', () => {
    // discrete: its last interval in log sigma (about t = 999/(n-1) -> 0) shrinks only
    // logarithmically with n, which slows dpm++2m and dpm2 (they step in log sigma) to order
    // ~1.6 there; still well under euler.
    const e = Object.fromEntries(['euler', 'heun', 'dpm2', 'dpm++2m'].map((s) => [s, odeError(s, 'discrete', 80).exact]));
    table.push(`discrete, 80 steps: ${Object.entries(e).map(([k, v]) => `${k} ${v.toExponential(2)}`).join(', ')}`);
    expect(e.euler).toBeLessThan(0.025);
    expect(e.heun).toBeLessThan(1e-3);
    expect(e.dpm2).toBeLessThan(3e-3);
    expect(e['dpm++2m']).toBeLessThan(e.euler! / 2);
  });

  it('ddim (eta 0) is the euler step in sigma coordinates', () => {
    for (const scheduler of ['discrete', 'karras']) {
      const opts = { scheduler, steps: 12, seed: 9, rng: 'cpu' as const, mu: -0.3, s: 0.7, count: 500 };
      const a = sampleGaussian({ ...opts, sampler: 'ddim' });
      const b = sampleGaussian({ ...opts, sampler: 'euler' });
      for (let i = 0; i < a.length; i++) expect(Math.abs(a[i]! - b[i]!)).toBeLessThan(1e-5);
    }
  });

  it('prints the error table', () => {
    console.log(`[samplers] relative error vs exact ODE solution at 20 / 40 / 80 steps:\n${table.join('\n')}`);
  });
});

// ---- stochastic samplers ----

/** Mean and std of a stochastic sampler's output, from the scalar recursion of its update. */
function predictLaw(sampler: string, sig: Float32Array, mu: number, s: number): [number, number] {
  const a = (sg: number) => (s * s) / (s * s + sg * sg); // D - mu = a(σ) (x - mu)
  let m = -mu; // x - mu at the start: x = σ_max · noise
  let v = sig[0]! ** 2;
  for (let i = 0; i + 1 < sig.length; i++) {
    const sg = sig[i]!, nx = sig[i + 1]!;
    const up = Math.min(nx, Math.sqrt((nx * nx * (sg * sg - nx * nx)) / (sg * sg)));
    const down = Math.sqrt(nx * nx - up * up);
    let g: number, noise: number;
    if (sampler === 'euler_a') {
      g = a(sg) + (down / sg) * (1 - a(sg));
      noise = up;
    } else if (sampler === 'dpm++2s_a') {
      if (down === 0) g = a(sg);
      else {
        const h = Math.log(sg / down), mid = Math.sqrt(sg * down);
        g = down / sg - Math.expm1(-h) * a(mid) * (mid / sg - Math.expm1(-h / 2) * a(sg));
      }
      noise = up;
    } else {
      g = a(sg); // lcm: x <- D, then fresh noise at the next sigma
      noise = nx;
    }
    m *= g;
    v = g * g * v + noise * noise;
  }
  return [mu + m, Math.sqrt(v)];
}

function law(x: Float32Array): [number, number] {
  let m = 0;
  for (const v of x) m += v;
  m /= x.length;
  let v2 = 0;
  for (const v of x) v2 += (v - m) ** 2;
  return [m, Math.sqrt(v2 / x.length)];
}

describe('stochastic samplers on Gaussian data', () => {
  const mu = 0.5, s = 0.8, count = 100_000;
  const table: string[] = [];

  it.each([
    ['euler_a', 'karras', 8, 'cuda'],
    ['euler_a', 'discrete', 30, 'cpu'],
    ['dpm++2s_a', 'karras', 8, 'cuda'],
    ['dpm++2s_a', 'discrete', 30, 'cpu'],
    ['lcm', 'karras', 4, 'cuda'],
    ['lcm', 'discrete', 8, 'cpu'],
  ] as const)('%s (%s, %d steps, %s rng): the output law is the predicted one', (sampler, scheduler, steps, rng) => {
    const x = sampleGaussian({ sampler, scheduler, steps, seed: 11, rng, mu, s, count });
    const [m, sd] = law(x);
    const [pm, psd] = predictLaw(sampler, sigmas(scheduler, steps), mu, s);
    table.push(`${sampler} ${scheduler} ${steps}: mean ${m.toFixed(4)} (${pm.toFixed(4)}), std ${sd.toFixed(4)} (${psd.toFixed(4)})`);
    expect(Math.abs(m - pm)).toBeLessThan((4 * psd) / Math.sqrt(count));
    expect(rel(sd, psd)).toBeLessThan(0.015);
  });

  it.each([
    ['euler_a', 200, s, 0.03],
    ['dpm++2s_a', 50, s, 0.02],
    // lcm with the posterior-mean denoiser (not a consistency model) converges to s/sqrt(2):
    // var(D_k) = a²(var(D_{k-1}) + σ²) with a = s²/(s²+σ²) has the fixed point s⁴/(2s²+σ²).
    ['lcm', 200, s / Math.SQRT2, 0.02],
  ] as const)('%s with %d karras steps samples the data: mean mu, std %f', (sampler, steps, std, tol) => {
    const x = sampleGaussian({ sampler, scheduler: 'karras', steps, seed: 5, rng: 'cuda', mu, s, count: 50_000 });
    const [m, sd] = law(x);
    table.push(`${sampler} karras ${steps}: mean ${m.toFixed(4)}, std ${sd.toFixed(4)} (data: ${mu}, ${std.toFixed(4)})`);
    expect(Math.abs(m - mu)).toBeLessThan(0.02 * mu);
    expect(rel(sd, std)).toBeLessThan(tol);
  });

  it.each(['euler_a', 'dpm++2s_a', 'lcm'])('%s: the same seed gives the same output, another seed another', (sampler) => {
    for (const rng of ['cuda', 'cpu'] as const) {
      const opts = { sampler, scheduler: 'karras', steps: 6, rng, mu, s, count: 1000 };
      const a = sampleGaussian({ ...opts, seed: 21 });
      expect(Array.from(sampleGaussian({ ...opts, seed: 21 }))).toEqual(Array.from(a));
      expect(Array.from(sampleGaussian({ ...opts, seed: 22 }))).not.toEqual(Array.from(a));
      // the noise really is drawn per step: the deterministic part alone (euler) differs
      expect(Array.from(sampleGaussian({ ...opts, sampler: 'euler', seed: 21 }))).not.toEqual(Array.from(a));
    }
  });

  it('prints the laws', () => {
    console.log(`[samplers] stochastic output (predicted):\n${table.join('\n')}`);
  });
});

// ---- the job contract: progress per step, cancellation between steps, argument checks ----

describe('sampler runs', () => {
  const base = { scheduler: 'karras', steps: 7, seed: 1, rng: 'cuda' as const, mu: 0, s: 1, count: 64 };

  it.each([...native().sampling.samplers])(
    '%s reports one progress step per sampler step',
    (sampler) => {
      const seen: Array<[number, number]> = [];
      const x = sampleGaussian({ ...base, sampler, onProgress: (step, steps) => seen.push([step, steps]) });
      expect(seen).toEqual(Array.from({ length: 7 }, (_, i) => [i + 1, 7]));
      expect(x.every(Number.isFinite)).toBe(true);
    },
  );

  it('a cancel between steps stops the run with an AbortError code', () => {
    let reports = 0;
    let err: unknown;
    try {
      sampleGaussian({ ...base, sampler: 'heun', cancelAfter: 3, onProgress: () => reports++ });
    } catch (e) {
      err = e;
    }
    expect(err).toMatchObject({ code: 'ABORT_ERR' });
    expect(reports).toBe(3);
    expect(() => sampleGaussian({ ...base, sampler: 'euler', cancelAfter: 0 })).toThrow(/abort/);
  });

  it('refuses unknown samplers and bad options', () => {
    expect(() => sampleGaussian({ ...base, sampler: 'plms' })).toThrow(RangeError);
    expect(() => sampleGaussian({ ...base, sampler: 'plms' })).toThrow(/euler_a.*dpm\+\+2m.*ddim/);
    expect(() => sampleGaussian({ ...base, sampler: 'euler', scheduler: 'cosine' })).toThrow(RangeError);
    expect(() => sampleGaussian({ ...base, sampler: 'euler', s: 0 })).toThrow(RangeError);
    expect(() => sampleGaussian({ ...base, sampler: 'euler', mu: Infinity })).toThrow(RangeError);
    expect(() => sampleGaussian({ ...base, sampler: 'euler', count: 0 })).toThrow(RangeError);
    expect(() => sampleGaussian({ ...base, sampler: 'euler', steps: 0 })).toThrow(RangeError);
    expect(() => sampleGaussian({ ...base, sampler: 'euler', rng: 'gpu' as 'cuda' })).toThrow(RangeError);
    expect(() => sampleGaussian({ ...base, sampler: undefined as unknown as string })).toThrow(TypeError);
    expect(() => sampleGaussian(null as unknown as Parameters<typeof sampleGaussian>[0])).toThrow(TypeError);
  });
});
