/**
 * `sdnode generate`'s hires-fix flags, as stable-diffusion.cpp's CLI names them: --hires,
 * --hires-scale X (default 2), --hires-width / --hires-height PX (0: from the scale),
 * --hires-steps N (0: --steps), --hires-denoising-strength X (default 0.7), --hires-upscaler
 * (the peer's names: Latent, Latent (nearest), …, Lanczos, Nearest; or an ESRGAN file).
 */
import { existsSync } from 'node:fs';

import { HIRES_UPSCALER_LABELS, MAX_HIRES_SCALE, type HiresUpscalerName } from '../hires.js';
import type { GenerateOptions } from '../generate-options.js';
import { loadUpscaler, type Upscaler } from '../upscaler.js';
import { UsageError } from './exit.js';

export interface HiresFlags {
  hires?: boolean;
  hiresScale?: number;
  hiresWidth?: number;
  hiresHeight?: number;
  hiresSteps?: number;
  hiresDenoisingStrength?: number;
  hiresUpscaler?: string;
  device?: string;
  threads?: number;
}

/** The peer's upscaler names (case-insensitive) → the library's. */
function upscalerName(flag: string): HiresUpscalerName | undefined {
  const wanted = flag.trim().toLowerCase();
  return (Object.keys(HIRES_UPSCALER_LABELS) as HiresUpscalerName[]).find((k) => HIRES_UPSCALER_LABELS[k].toLowerCase() === wanted || k === wanted);
}

/** Refused before anything loads: the flags' ranges, and --hires-* without --hires. */
export function checkHiresFlags(f: HiresFlags): void {
  const given = [f.hiresScale, f.hiresWidth, f.hiresHeight, f.hiresSteps, f.hiresDenoisingStrength, f.hiresUpscaler].some((v) => v !== undefined);
  if (!f.hires) {
    if (given) throw new UsageError('the --hires-* flags apply with --hires');
    return;
  }
  if (f.hiresScale !== undefined && !(f.hiresScale > 1 && f.hiresScale <= MAX_HIRES_SCALE))
    throw new RangeError(`--hires-scale must be > 1 and ≤ ${MAX_HIRES_SCALE}, got ${f.hiresScale}`);
  for (const [flag, v] of [['--hires-width', f.hiresWidth], ['--hires-height', f.hiresHeight], ['--hires-steps', f.hiresSteps]] as const)
    if (v !== undefined && !(Number.isInteger(v) && v >= 0)) throw new RangeError(`${flag} must be an integer ≥ 0, got ${v}`);
  if (f.hiresDenoisingStrength !== undefined && !(f.hiresDenoisingStrength > 0 && f.hiresDenoisingStrength <= 1))
    throw new RangeError(`--hires-denoising-strength must be in (0, 1], got ${f.hiresDenoisingStrength}`);
  if (f.hiresUpscaler !== undefined && !upscalerName(f.hiresUpscaler) && !existsSync(f.hiresUpscaler))
    throw new UsageError(`--hires-upscaler must be one of ${Object.values(HIRES_UPSCALER_LABELS).join(', ')} or an ESRGAN file; '${f.hiresUpscaler}' is neither`);
}

/** The generate option for the flags ({} without --hires), with the ESRGAN loaded when --hires-upscaler names a file. */
export async function cliHires(f: HiresFlags, signal: AbortSignal): Promise<{ option: Pick<GenerateOptions, 'hires'>; upscaler?: Upscaler }> {
  if (!f.hires) return { option: {} };
  const name = f.hiresUpscaler === undefined ? 'latent' : upscalerName(f.hiresUpscaler);
  const upscaler = name
    ? undefined
    : await loadUpscaler(f.hiresUpscaler!, { device: f.device ?? 'auto', ...(f.threads !== undefined ? { threads: f.threads } : {}), signal });
  // 0 means "not set" for the sizes, as the peer reads them.
  const width = f.hiresWidth || undefined, height = f.hiresHeight || undefined;
  const size = width !== undefined || height !== undefined ? { ...(width ? { width } : {}), ...(height ? { height } : {}) } : { scale: f.hiresScale ?? 2 };
  return {
    option: {
      hires: {
        ...size,
        steps: f.hiresSteps ?? 0,
        strength: f.hiresDenoisingStrength ?? 0.7,
        upscaler: upscaler ?? name!,
      },
    },
    ...(upscaler ? { upscaler } : {}),
  };
}
