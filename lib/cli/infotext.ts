/**
 * A generation's settings as stable-diffusion-webui's infotext: its display names for samplers
 * and schedule types, its keys, in the order its create_infotext writes them.
 */
import { basename } from 'node:path';

import type { GenerateOptions } from '../generate-options.js';
import { HIRES_UPSCALER_LABELS } from '../hires.js';
import type { Sampler, Scheduler } from '../samplers.js';
import { formatParameters } from './png-parameters.js';

/** The webui's sampler labels (modules/sd_samplers_*.py). */
export const WEBUI_SAMPLER: Record<Sampler, string> = {
  euler_a: 'Euler a',
  euler: 'Euler',
  heun: 'Heun',
  dpm2: 'DPM2',
  'dpm++2m': 'DPM++ 2M',
  'dpm++2s_a': 'DPM++ 2S a',
  lcm: 'LCM',
  ddim: 'DDIM',
  // The webui has no trailing variant of DDIM: its label for the same update.
  ddim_trailing: 'DDIM',
};

/**
 * The webui's schedule-type labels (modules/sd_schedulers.py). 'discrete' is its "Uniform" (the
 * model's own sigmas at evenly spaced timesteps, k-diffusion's get_sigmas), written out rather
 * than "Automatic", which for some of its samplers (DPM++ 2M) means Karras.
 */
export const WEBUI_SCHEDULE: Record<Scheduler, string> = {
  discrete: 'Uniform',
  karras: 'Karras',
  exponential: 'Exponential',
  sgm_uniform: 'SGM Uniform',
  simple: 'Simple',
  // Not one of the webui's schedule types: named for what it is.
  lcm: 'LCM',
};

export interface ImageSettings {
  prompt: string;
  negativePrompt: string;
  steps: number;
  sampler: Sampler;
  scheduler: Scheduler;
  cfgScale: number;
  seed: number | bigint;
  width: number;
  height: number;
  /** The checkpoint's name without folder and extension, as the webui's "Model". */
  model: string;
  /** A separate VAE file's name (the webui's "VAE"). */
  vae?: string;
  /** Decoded with the TAESD decoder (the webui's "VAE Decoder: TAESD"). */
  taesd: boolean;
  /** Image-to-image, and the hires fix's second pass. */
  strength?: number;
  /**
   * The hires fix, as the webui writes it: "Hires upscale" (the scale) or "Hires resize" (the
   * target as WxH), "Hires steps" (when not 0), "Hires upscaler"; Size stays the first pass's.
   */
  hires?: { scale?: number; resize?: string; steps: number; upscaler: string };
  /** Only when given (the webui writes it when above 1). */
  clipSkip?: number;
  rng: 'cuda' | 'cpu';
  /** Inpainting only. */
  maskBlur?: number;
  /** The LoRAs as "name: hash, …" (lib/lora-hash.ts), the webui's "Lora hashes". */
  loraHashes?: string;
  version: string;
}

export function infotext(s: ImageSettings): string {
  return formatParameters(s.prompt, s.negativePrompt, [
    ['Steps', s.steps],
    ['Sampler', WEBUI_SAMPLER[s.sampler]],
    ['Schedule type', WEBUI_SCHEDULE[s.scheduler]],
    ['CFG scale', s.cfgScale],
    ['Seed', String(s.seed)],
    ['Size', `${s.width}x${s.height}`],
    ['Model', s.model],
    ['VAE', s.vae],
    ['Denoising strength', s.strength],
    ['Clip skip', s.clipSkip !== undefined && s.clipSkip > 1 ? s.clipSkip : undefined],
    // The webui's GPU generator is torch's CUDA randn, its default, which it leaves unwritten.
    ['RNG', s.rng === 'cpu' ? 'CPU' : undefined],
    ['Mask blur', s.maskBlur],
    ['Hires upscale', s.hires?.scale],
    ['Hires resize', s.hires?.resize],
    ['Hires steps', s.hires?.steps ? s.hires.steps : undefined],
    ['Hires upscaler', s.hires?.upscaler],
    // Where the webui's Lora extension adds it: after the processing's own extra fields, before the decode's.
    ['Lora hashes', s.loraHashes],
    ['VAE Decoder', s.taesd ? 'TAESD' : undefined],
    ['Version', `sdnode ${s.version}`],
  ]);
}

/** The infotext's hires fields and the second pass's "Denoising strength", for an image of the final size. */
export function hiresInfotext(
  hires: Omit<NonNullable<GenerateOptions['hires']>, 'upscaler'> & { upscaler?: NonNullable<GenerateOptions['hires']>['upscaler'] } | undefined,
  image: { width: number; height: number },
  upscalerFlag: string | undefined,
): { strength?: number; hires?: { scale?: number; resize?: string; steps: number; upscaler: string } } {
  if (!hires) return {};
  // An ESRGAN file by its name, as the webui names its upscalers.
  const upscaler = hires.upscaler === undefined ? 'Latent' : typeof hires.upscaler === 'string' ? HIRES_UPSCALER_LABELS[hires.upscaler] : basename(upscalerFlag ?? 'ESRGAN').replace(/\.[^.]*$/, '');
  return {
    strength: hires.strength ?? 0.7,
    hires: {
      ...(hires.scale !== undefined ? { scale: hires.scale } : { resize: `${image.width}x${image.height}` }),
      steps: hires.steps ?? 0,
      upscaler,
    },
  };
}
