/**
 * `sdnode generate`'s ControlNet flags, named as stable-diffusion.cpp's CLI names them:
 * --control-net FILE, --control-image FILE, --control-strength X (default 0.9, the peer's),
 * --canny (the control image's Canny edges are the hint: sdnode's OpenCV-style canny(), not the
 * peer's own edge filter, so a --canny run's hint differs from the peer's).
 */
import { MAX_CONTROL_STRENGTH, readImage, type GenerateOptions, type Model } from '../index.js';
import { UsageError } from './exit.js';

/** stable-diffusion.cpp's --control-strength default. */
export const CLI_CONTROL_STRENGTH = 0.9;

export interface ControlNetFlags {
  controlNet?: string;
  controlImage?: string;
  controlStrength?: number;
  canny?: boolean;
}

/** Refused before anything loads. */
export function checkControlNetFlags(f: ControlNetFlags): void {
  if (f.controlNet && !f.controlImage) throw new UsageError('--control-net needs the hint image: --control-image <file>');
  if (f.controlImage && !f.controlNet) throw new UsageError('--control-image needs the ControlNet: --control-net <file>');
  if (!f.controlNet && (f.controlStrength !== undefined || f.canny)) throw new UsageError('--control-strength and --canny apply with --control-net');
  if (f.controlStrength !== undefined && !(f.controlStrength >= 0 && f.controlStrength <= MAX_CONTROL_STRENGTH))
    throw new RangeError(`--control-strength must be in [0, ${MAX_CONTROL_STRENGTH}], got ${f.controlStrength}`);
}

/** The generate option for the flags (the ControlNet loaded for `model`), or {} without --control-net. */
export async function cliControlNets(model: Model, f: ControlNetFlags, signal: AbortSignal): Promise<Pick<GenerateOptions, 'controlNets'>> {
  if (!f.controlNet || !f.controlImage) return {};
  const image = await readImage(f.controlImage);
  const controlNet = await model.loadControlNet(f.controlNet, { signal });
  return {
    controlNets: [{ model: controlNet, image, strength: f.controlStrength ?? CLI_CONTROL_STRENGTH, ...(f.canny ? { preprocess: 'canny' as const } : {}) }],
  };
}

/** What the JSON summary states about the ControlNet. */
export function controlNetSettings(f: ControlNetFlags): Record<string, unknown> {
  if (!f.controlNet) return {};
  return { controlNet: f.controlNet, controlImage: f.controlImage, controlStrength: f.controlStrength ?? CLI_CONTROL_STRENGTH, canny: Boolean(f.canny) };
}
