/**
 * The SD1.x / SD2.x / SDXL training schedule in float64, written from its definition (scaled
 * linear betas 0.00085 to 0.012 over 1000 steps, sigma = sqrt((1 - ᾱ) / ᾱ)), for tests that
 * check the engine's schedules against formulas evaluated here.
 */
export const TIMESTEPS = 1000;

/** The sigma of each training timestep 0 … 999 (ascending). */
export const modelSigmas: readonly number[] = (() => {
  const out: number[] = [];
  const a = Math.sqrt(0.00085), b = Math.sqrt(0.012);
  let prod = 1;
  for (let i = 0; i < TIMESTEPS; i++) {
    const beta = (a + ((b - a) * i) / (TIMESTEPS - 1)) ** 2;
    prod *= 1 - beta;
    out.push(Math.sqrt((1 - prod) / prod));
  }
  return out;
})();

/** sigma(t) for a fractional timestep: log sigma interpolated linearly between neighbours (k-diffusion). */
export function sigmaAt(t: number): number {
  const lo = Math.floor(t), hi = Math.ceil(t), w = t - lo;
  return Math.exp((1 - w) * Math.log(modelSigmas[lo]!) + w * Math.log(modelSigmas[hi]!));
}

export const rel = (a: number, b: number) => Math.abs(a - b) / Math.abs(b);
