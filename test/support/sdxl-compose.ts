// The last stages of an SDXL-family generate() composed by hand, for tests that check the
// engine's job against its parts: the sinusoidal size embeddings of y (reference-nn's
// timestepEmbedding), and one Euler step with
// classifier-free guidance from the first sigma to 0 (the guided denoised latent) decoded by the
// VAE at SDXL's scale.
import type { Image } from '../../lib/index.js';
import { native, type NativeModel } from '../../lib/native.js';
import { timestepEmbedding } from './reference-nn.js';

/** SDXL's VAE latent scale (sgm's sd_xl_base.yaml / sd_xl_refiner.yaml scale_factor). */
export const SDXL_VAE_SCALE = 0.13025;
/** Each number's embedding width in y (sgm's ConcatTimestepEmbedderND outdim). */
export const EMBEDDING_WIDTH = 256;
const LATENT_CHANNELS = 4;

/** y: the pooled vector, then each number's EMBEDDING_WIDTH-wide embedding, in order. */
export function vectorY(pooled: Float32Array, numbers: number[]): Float32Array {
  const y = new Float32Array(pooled.length + numbers.length * EMBEDDING_WIDTH);
  y.set(pooled);
  numbers.forEach((n, i) => y.set(timestepEmbedding(n, EMBEDDING_WIDTH), pooled.length + i * EMBEDDING_WIDTH));
  return y;
}

export interface GuidedHalves {
  /** [tokens][width] per half. */
  uncondStates: Float32Array;
  condStates: Float32Array;
  uncondY: Float32Array;
  condY: Float32Array;
}

/** One Euler step with CFG over [uncond, cond] from x = randn(seed)·σ₀ to σ = 0, then the VAE. */
export async function eulerStepAndDecode(
  parts: NativeModel,
  c: GuidedHalves,
  o: { seed: bigint; width: number; height: number; cfg: number; tokens: number; headDim: number },
): Promise<Image> {
  const s = native().sampling;
  const [sigma] = s.sigmas('discrete', 1);
  const n = LATENT_CHANNELS * (o.height / 8) * (o.width / 8);
  const x = s.randn('cuda', o.seed, n).map((v) => v * sigma!);
  const cIn = 1 / Math.sqrt(sigma! * sigma! + 1);
  const xin = new Float32Array(2 * n);
  for (let i = 0; i < n; i++) xin[i] = xin[n + i] = x[i]! * cIn;
  const t = s.sigmaToTimestep(sigma!);
  const join = (a: Float32Array, b: Float32Array) => {
    const out = new Float32Array(a.length + b.length);
    out.set(a, 0);
    out.set(b, a.length);
    return out;
  };
  const eps = await parts.runUnet({
    x: xin, batch: 2, channels: LATENT_CHANNELS, height: o.height / 8, width: o.width / 8, timesteps: Float32Array.of(t, t),
    context: join(c.uncondStates, c.condStates), contextTokens: o.tokens, y: join(c.uncondY, c.condY), headDim: o.headDim,
  }).promise;
  const latent = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const du = x[i]! - sigma! * eps[i]!, dc = x[i]! - sigma! * eps[n + i]!;
    latent[i] = du + o.cfg * (dc - du);
  }
  const image = await parts.decodeLatent({ channels: LATENT_CHANNELS, width: o.width / 8, height: o.height / 8, data: latent }, SDXL_VAE_SCALE).promise;
  return { ...image, channels: 3 };
}
