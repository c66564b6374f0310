/**
 * Sampler and scheduler names. The engine owns the lists (native/engine/sample/catalog.h) and
 * exports them; the static lists here exist for the TypeScript types and the docs, and a test
 * (test/samplers.test.ts) holds them equal to the engine's. Options are checked against the
 * engine's lists at run time, so a name the engine lacks is a RangeError, never a job failure.
 */
import { native } from './native.js';
import { checkEnum } from './validate.js';

/** The samplers generate() offers (k-diffusion's, as the webui and stable-diffusion.cpp name them; euler_a: Euler ancestral). */
export const SAMPLERS = ['euler_a', 'euler', 'heun', 'dpm2', 'dpm++2m', 'dpm++2s_a', 'lcm', 'ddim', 'ddim_trailing'] as const;
/** One of SAMPLERS. */
export type Sampler = (typeof SAMPLERS)[number];

/**
 * The noise schedules generate() offers: the model's own ('discrete'), Karras et al.,
 * exponential, SGM uniform, and for few-step distilled models 'simple' (trailing timesteps) and
 * 'lcm' (the LCM training timesteps, at most 50 steps).
 */
export const SCHEDULERS = ['discrete', 'karras', 'exponential', 'sgm_uniform', 'simple', 'lcm'] as const;
/** One of SCHEDULERS. */
export type Scheduler = (typeof SCHEDULERS)[number];

/** `value` as a sampler the engine knows: TypeError unless a string, RangeError unless one of its names. */
export function checkSampler(what: string, value: unknown): Sampler {
  return checkEnum(what, value, native().sampling.samplers) as Sampler;
}

/** `value` as a scheduler the engine knows: TypeError unless a string, RangeError unless one of its names. */
export function checkScheduler(what: string, value: unknown): Scheduler {
  return checkEnum(what, value, native().sampling.schedulers) as Scheduler;
}

/**
 * The scheduler a sampler runs with when none is named, as stable-diffusion.cpp picks it:
 * 'lcm' for lcm, 'simple' for ddim_trailing, 'discrete' otherwise.
 */
export function defaultScheduler(sampler: Sampler): Scheduler {
  return native().sampling.defaultSchedulers[sampler] as Scheduler;
}

/**
 * RangeError (naming `what`) when the scheduler cannot make `steps` distinct sigmas: 'simple'
 * picks whole training timesteps (at most 1000), 'lcm' the 50 LCM ones. The engine says which,
 * so that the limit is stated once.
 */
export function checkScheduleSteps(what: string, scheduler: Scheduler, steps: number): void {
  try {
    native().sampling.sigmas(scheduler, steps);
  } catch (e) {
    if (e instanceof RangeError) throw new RangeError(`${what}: ${e.message}`);
    throw e;
  }
}
