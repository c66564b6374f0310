// The sampler and scheduler names: the engine's table (native/engine/sample/catalog.h) is the
// one list; lib/samplers.ts keeps static copies for the TypeScript types, held equal here, and
// validates options against the engine's.
import { describe, expect, it } from 'vitest';

import { native } from '../lib/native.js';
import {
  SAMPLERS,
  SCHEDULERS,
  checkSampler,
  checkScheduleSteps,
  checkScheduler,
  defaultScheduler,
} from '../lib/samplers.js';

const engine = native().sampling;

describe('sampler and scheduler names', () => {
  it('the static lists are the engine’s, in its order', () => {
    expect([...SAMPLERS]).toEqual([...engine.samplers]);
    expect([...SCHEDULERS]).toEqual([...engine.schedulers]);
  });

  it('the engine’s lists are frozen and every one of their names runs', () => {
    expect(Object.isFrozen(engine.samplers) && Object.isFrozen(engine.schedulers)).toBe(true);
    expect(() => (engine.samplers as string[]).push('plms')).toThrow(TypeError);
    for (const scheduler of engine.schedulers) expect(engine.sigmas(scheduler, 4)).toHaveLength(5);
    for (const sampler of engine.samplers) {
      const x = engine.sampleGaussian({ sampler, scheduler: 'karras', steps: 2, seed: 1, rng: 'cpu', mu: 0, s: 1, count: 8 });
      expect(x.every(Number.isFinite), sampler).toBe(true);
    }
  });

  it('default schedulers are stable-diffusion.cpp’s: lcm for lcm, simple for ddim_trailing, discrete otherwise', () => {
    expect(Object.keys(engine.defaultSchedulers)).toEqual([...SAMPLERS]);
    for (const sampler of SAMPLERS) {
      const expected = sampler === 'lcm' ? 'lcm' : sampler === 'ddim_trailing' ? 'simple' : 'discrete';
      expect(defaultScheduler(sampler), sampler).toBe(expected);
    }
  });

  it('options are checked against the engine’s names', () => {
    expect(checkSampler('options.sampler', 'ddim_trailing')).toBe('ddim_trailing');
    expect(checkScheduler('options.scheduler', 'simple')).toBe('simple');
    expect(() => checkSampler('options.sampler', 'plms')).toThrow(RangeError);
    expect(() => checkSampler('options.sampler', 'plms')).toThrow(/options.sampler must be one of euler_a, .*ddim_trailing/);
    expect(() => checkSampler('options.sampler', 3)).toThrow(TypeError);
    expect(() => checkScheduler('options.scheduler', 'normal')).toThrow(RangeError);
    expect(() => checkScheduler('options.scheduler', null)).toThrow(TypeError);
  });

  it('step counts a scheduler cannot make are RangeErrors naming the option', () => {
    expect(() => checkScheduleSteps('options.steps', 'lcm', 50)).not.toThrow();
    expect(() => checkScheduleSteps('options.steps', 'lcm', 51)).toThrow(RangeError);
    expect(() => checkScheduleSteps('options.steps', 'lcm', 51)).toThrow(/^options.steps: the lcm scheduler takes at most 50 steps/);
    expect(() => checkScheduleSteps('options.steps', 'simple', 1001)).toThrow(/at most 1000 steps/);
    expect(() => checkScheduleSteps('options.steps', 'karras', 10000)).not.toThrow();
  });
});
