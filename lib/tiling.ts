/**
 * Tiling of the autoencoders (the model's VAE and the tiny autoencoder) and the pixel budget
 * every image entry point shares: one policy, checked before anything is queued.
 */
import type { NativeVaeTiling } from './native.js';
import { checkInteger, checkKeys } from './validate.js';

/** A pixel budget, like sharp's limitInputPixels: 4096² (SD1.x was trained at 512²). */
export const MAX_PIXELS = 4096 * 4096;
/** The longest side generate() makes, given or taken from an init image. */
export const MAX_SIDE = 8192;

/**
 * The autoencoder in overlapping tiles, so the device's compute buffers stay those of one tile. true:
 * tiles of 64 latent cells (512 pixels) with 16 cells (128 pixels) of overlap; `{ tile, overlap }`:
 * other sizes in latent cells, tile 16–4096, overlap 0 … tile/2 (default tile/4; below 4 cells
 * seams show); false: never. 'auto' (the default) tiles as true does when one untiled pass
 * would need a compute buffer of more than half the memory free on the device
 * (os.freemem() on the CPU) at the time of the call. The model's VAE runs its tiles stage by stage between the
 * VAE's GroupNorms, which normalise with whole-image statistics, and the mid-block attention
 * runs over the whole image in slices: the result matches the untiled one (to float rounding)
 * rather than only looking seamless. Host memory holds the activations crossing one GroupNorm
 * for the whole image (a 2048² decode with SD's VAE peaked at 10.5 GiB of process memory on the CPU).
 */
export type VaeTilingOption = 'auto' | boolean | { tile?: number; overlap?: number };

/** diffusers' AutoencoderKL tiling defaults: 512-pixel tiles, a quarter shared with each neighbour. */
export const VAE_TILE = 64;
export const VAE_TILE_OVERLAP = 16;
/**
 * The smallest tile, in latent cells: each tile also computes the context its convolutions
 * reach into, so tiny tiles multiply the work (1-cell tiles made a decode 9× slower).
 */
export const MIN_TILE = 16;

/** A tiling option checked: 'auto', the tiles to use, or undefined (untiled). */
export function checkVaeTilingOption(value: unknown, what = 'options.vaeTiling'): 'auto' | NativeVaeTiling | undefined {
  if (value === undefined || value === 'auto') return 'auto';
  if (value === false) return undefined;
  if (value === true) return { enabled: true, tile: VAE_TILE, overlap: VAE_TILE_OVERLAP };
  const accepted = "'auto', true, false or { tile, overlap }";
  if (typeof value === 'string') throw new RangeError(`${what} must be ${accepted}, got '${value}'`);
  if (value === null || typeof value !== 'object' || Array.isArray(value))
    throw new TypeError(`${what} must be ${accepted}, got ${value === null ? 'null' : Array.isArray(value) ? 'an array' : typeof value}`);
  const o = value as Record<string, unknown>;
  checkKeys(what, o, ['tile', 'overlap']);
  const tile = o.tile === undefined ? VAE_TILE : checkInteger(`${what}.tile`, o.tile, MIN_TILE, 4096);
  const overlap = o.overlap === undefined ? Math.floor(tile / 4) : checkInteger(`${what}.overlap`, o.overlap, 0, Math.floor(tile / 2));
  return { enabled: true, tile, overlap };
}

/**
 * The tiling for a checked option: 'auto' tiles (with the defaults) when `needBytes`, one
 * untiled pass's compute buffer, exceeds half of `freeBytes`.
 */
export function resolveTiling(option: 'auto' | NativeVaeTiling | undefined, needBytes: () => number, freeBytes: () => number): NativeVaeTiling | undefined {
  if (option !== 'auto') return option;
  return needBytes() > freeBytes() / 2 ? { enabled: true, tile: VAE_TILE, overlap: VAE_TILE_OVERLAP } : undefined;
}

/** RangeError unless width × height is within the pixel budget; `what` names the image. */
export function checkPixelBudget(what: string, width: number, height: number): void {
  if (width * height > MAX_PIXELS) throw new RangeError(`${what} would be ${width}×${height}; at most ${MAX_PIXELS} pixels (4096²) are taken`);
}
