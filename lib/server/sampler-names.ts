/**
 * Sampler and schedule names as stable-diffusion-webui's API takes them (its labels and
 * aliases, modules/sd_samplers_kdiffusion.py and sd_schedulers.py), mapped to sdnode's. sdnode's
 * own names are accepted too, so a client may use either.
 */
import { SAMPLERS, SCHEDULERS, defaultScheduler, type Sampler, type Scheduler } from '../samplers.js';
import { WEBUI_SAMPLER, WEBUI_SCHEDULE } from '../cli/infotext.js';
import { JobError } from './job-queue.js';

/** The webui's aliases of each sampler label (its k-diffusion names). */
export const WEBUI_SAMPLER_ALIASES: Record<Sampler, string[]> = {
  euler_a: ['k_euler_a', 'k_euler_ancestral'],
  euler: ['k_euler'],
  heun: ['k_heun'],
  dpm2: ['k_dpm_2'],
  'dpm++2m': ['k_dpmpp_2m'],
  'dpm++2s_a': ['k_dpmpp_2s_a'],
  lcm: ['k_lcm'],
  ddim: ['ddim'],
  ddim_trailing: [],
};

/**
 * The schedule the webui's "Automatic" picks for a sampler: its samplers' `scheduler` option
 * (Karras for DPM2, DPM++ 2M and DPM++ 2S a), else the sampler's own (sdnode's default).
 */
const WEBUI_AUTOMATIC: Partial<Record<Sampler, Scheduler>> = { dpm2: 'karras', 'dpm++2m': 'karras', 'dpm++2s_a': 'karras' };

/** The webui's schedule types sdnode has, by the webui's name; 'normal' taken as the model's own, as `sdnode generate --scheduler normal`. */
export const WEBUI_SCHEDULERS: Array<{ name: string; label: string; scheduler: Scheduler | 'automatic'; aliases: string[] | null; defaultRho: number }> = [
  { name: 'automatic', label: 'Automatic', scheduler: 'automatic', aliases: null, defaultRho: -1 },
  { name: 'uniform', label: 'Uniform', scheduler: 'discrete', aliases: null, defaultRho: -1 },
  { name: 'karras', label: 'Karras', scheduler: 'karras', aliases: null, defaultRho: 7 },
  { name: 'exponential', label: 'Exponential', scheduler: 'exponential', aliases: null, defaultRho: -1 },
  { name: 'sgm_uniform', label: 'SGM Uniform', scheduler: 'sgm_uniform', aliases: ['SGMUniform'], defaultRho: -1 },
  { name: 'simple', label: 'Simple', scheduler: 'simple', aliases: null, defaultRho: -1 },
  { name: 'normal', label: 'Normal', scheduler: 'discrete', aliases: null, defaultRho: -1 },
];

const SAMPLER_BY_NAME = new Map<string, Sampler>();
for (const s of SAMPLERS) {
  SAMPLER_BY_NAME.set(s, s);
  // ddim_trailing shares the webui label 'DDIM' with ddim, which keeps it.
  if (s !== 'ddim_trailing') SAMPLER_BY_NAME.set(WEBUI_SAMPLER[s].toLowerCase(), s);
  for (const alias of WEBUI_SAMPLER_ALIASES[s]) SAMPLER_BY_NAME.set(alias, s);
}

const SCHEDULER_BY_NAME = new Map<string, Scheduler | 'automatic'>();
for (const s of SCHEDULERS) SCHEDULER_BY_NAME.set(s, s);
for (const s of WEBUI_SCHEDULERS) for (const n of [s.name, s.label, ...(s.aliases ?? [])]) SCHEDULER_BY_NAME.set(n.toLowerCase(), s.scheduler);

/** Legacy webui sampler labels carry their schedule: 'DPM++ 2M Karras'. */
const LEGACY_SUFFIXES: Array<[string, Scheduler]> = [
  [' karras', 'karras'],
  [' exponential', 'exponential'],
];

/** The sampler names a client may use, for messages. */
function knownSamplers(): string {
  return SAMPLERS.map((s) => (s === 'ddim_trailing' ? s : `${WEBUI_SAMPLER[s]} (${s})`)).join(', ');
}

/**
 * A sampler name (sdnode's, the webui's label or alias, any case; a legacy label with a
 * schedule suffix; none: `fallbackSampler`) and a schedule name (sdnode's or the webui's; null,
 * '' or 'Automatic': the sampler's own — as the webui picks it with `automatic` 'webui', as
 * sdnode does with 'sdnode') as sdnode's pair. JobError 400 ('unknown_sampler',
 * 'unknown_scheduler') naming the field otherwise.
 */
export function samplerAndScheduler(
  sampler: string | null | undefined,
  scheduler: string | null | undefined,
  fields: { sampler: string; scheduler: string },
  fallbackSampler: Sampler,
  automatic: 'webui' | 'sdnode' = 'webui',
): { sampler: Sampler; scheduler: Scheduler } {
  let name = (sampler ?? '').trim().toLowerCase();
  let implied: Scheduler | undefined;
  let found = name === '' ? fallbackSampler : SAMPLER_BY_NAME.get(name);
  for (const [suffix, schedule] of LEGACY_SUFFIXES) {
    if (found || !name.endsWith(suffix)) continue;
    name = name.slice(0, name.length - suffix.length);
    found = SAMPLER_BY_NAME.get(name);
    implied = schedule;
  }
  if (!found) throw new JobError({ status: 400, code: 'unknown_sampler', field: fields.sampler, message: `${fields.sampler}: no sampler '${sampler}'; sdnode has ${knownSamplers()}` });
  const named = (scheduler ?? '').trim().toLowerCase();
  const schedule = named === '' ? 'automatic' : SCHEDULER_BY_NAME.get(named);
  if (!schedule)
    throw new JobError({
      status: 400,
      code: 'unknown_scheduler',
      field: fields.scheduler,
      message: `${fields.scheduler}: no schedule '${scheduler}'; sdnode has ${WEBUI_SCHEDULERS.map((s) => s.label).join(', ')} (or ${SCHEDULERS.join(', ')})`,
    });
  if (schedule !== 'automatic') return { sampler: found, scheduler: schedule };
  return { sampler: found, scheduler: implied ?? (automatic === 'webui' ? WEBUI_AUTOMATIC[found] : undefined) ?? defaultScheduler(found) };
}

/** The webui's label of a sdnode sampler and schedule, for `info` and listings. */
export function webuiLabels(sampler: Sampler, scheduler: Scheduler): { sampler: string; scheduler: string } {
  return { sampler: WEBUI_SAMPLER[sampler], scheduler: WEBUI_SCHEDULE[scheduler] };
}
