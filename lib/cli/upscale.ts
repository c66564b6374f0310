/**
 * `sdnode generate -M upscale`: ESRGAN upscaling of one image (-i) with --upscale-model, and the
 * --upscale-* flags that generate also takes (its images upscaled after decoding), named as
 * stable-diffusion.cpp's CLI names them.
 */
import { InvalidArgumentError } from 'commander';

import { MAX_UPSCALE_REPEATS, loadUpscaler, readImage, type Upscaler } from '../index.js';
import { EXIT, UsageError, classify, reportFailure } from './exit.js';
import { Interrupt } from './interrupt.js';
import { encodeImage, imageFormat, prepareOutputs, writeAll } from './output.js';
import { ProgressReporter, progressMode } from './progress.js';

/** The run modes: stable-diffusion.cpp's names of the two sdnode has. */
export const MODES = ['img_gen', 'upscale'] as const;

/** The flags of this file's concern. */
export interface UpscaleFlags {
  mode: (typeof MODES)[number];
  upscaleModel?: string;
  upscaleRepeats: number;
  upscaleTileSize: number;
  initImg?: string;
  output: string;
  threads?: number;
  device?: string;
  json?: boolean;
}

/** Library option names → flags, for error messages. */
export const UPSCALE_FLAGS: Record<string, string> = {
  repeats: '--upscale-repeats',
  tile: '--upscale-tile-size',
  path: '--upscale-model',
};

export function parseMode(value: string): (typeof MODES)[number] {
  const v = value.trim().toLowerCase();
  if ((MODES as readonly string[]).includes(v)) return v as (typeof MODES)[number];
  throw new InvalidArgumentError(`Allowed choices are ${MODES.join(', ')} (sdnode has no ${v} mode).`);
}

/** The upscaler settings the flags give, for upscale() and generate()'s `upscale`. */
export function upscaleSettings(f: UpscaleFlags): { repeats: number; tile: number } {
  return { repeats: f.upscaleRepeats, tile: f.upscaleTileSize };
}

/** --upscale-repeats and --upscale-tile-size in range (UsageError naming the flag), before anything loads. */
export function checkUpscaleFlags(f: UpscaleFlags): void {
  const r = f.upscaleRepeats, t = f.upscaleTileSize;
  if (!Number.isInteger(r) || r < 1 || r > MAX_UPSCALE_REPEATS) throw new UsageError(`--upscale-repeats must be an integer 1 … ${MAX_UPSCALE_REPEATS}, got ${r}`);
  if (!Number.isInteger(t) || (t !== 0 && (t < 16 || t > 4096))) throw new UsageError(`--upscale-tile-size must be 0 (untiled) or an integer 16 … 4096, got ${t}`);
}

/** Loads --upscale-model (reporting load errors in flag terms through the caller). */
export function loadCliUpscaler(f: UpscaleFlags, signal: AbortSignal): Promise<Upscaler> {
  return loadUpscaler(f.upscaleModel!, { device: f.device ?? 'auto', ...(f.threads !== undefined ? { threads: f.threads } : {}), signal });
}

/** -M upscale: -i upscaled with --upscale-model into -o. */
export async function runUpscale(f: UpscaleFlags): Promise<number> {
  const json = Boolean(f.json);
  const interrupt = new Interrupt();
  const progress = new ProgressReporter(progressMode(json), 'upscaling', { unit: 'tile' });
  interrupt.onInterrupt(() => progress.done());
  const started = performance.now();
  let upscaler: Upscaler | undefined;
  try {
    if (!f.upscaleModel) throw new UsageError('-M upscale needs the ESRGAN model: --upscale-model <file>');
    if (!f.initImg) throw new UsageError('-M upscale needs the image to upscale: -i/--init-img <file>');
    checkUpscaleFlags(f);
    const format = imageFormat(f.output);
    const [target] = await prepareOutputs([f.output]);
    const image = await readImage(f.initImg);
    upscaler = await loadCliUpscaler(f, interrupt.signal);
    const loadMs = performance.now() - started;
    const upscaleStart = performance.now();
    const out = await upscaler.upscale(image, { ...upscaleSettings(f), signal: interrupt.signal, onProgress: progress.report });
    progress.done();
    const upscaleMs = performance.now() - upscaleStart;
    await writeAll([{ path: f.output, target: target!, data: await encodeImage(out, format) }], interrupt);
    const totalMs = performance.now() - started;
    if (json) {
      const summary = {
        ok: true,
        command: 'generate',
        mode: 'upscale',
        files: [f.output],
        images: [{ file: f.output, width: out.width, height: out.height }],
        settings: { input: f.initImg, upscaleModel: f.upscaleModel, scale: upscaler.scale, ...upscaleSettings(f), device: upscaler.device },
        timings: { loadMs: Math.round(loadMs), upscaleMs: Math.round(upscaleMs), totalMs: Math.round(totalMs) },
      };
      process.stdout.write(`${JSON.stringify(summary, null, 2)}\n`);
    } else {
      process.stdout.write(`${f.output}  (${out.width}x${out.height})\n`);
      progress.note(`upscale: ×${upscaler.scale ** f.upscaleRepeats} in ${(totalMs / 1000).toFixed(1)} s on ${upscaler.device}`);
    }
    return EXIT.ok;
  } catch (err) {
    progress.done();
    return reportFailure('generate', classify(err, UPSCALE_FLAGS), json);
  } finally {
    await upscaler?.dispose().catch(() => undefined);
    interrupt.removeTemporary();
    interrupt.dispose();
  }
}

