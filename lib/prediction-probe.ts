/**
 * Whether an SD2.x UNet predicts v or noise, for files that do not say (SD2.x 768-v and 512-base
 * share every shape): stable-diffusion.cpp's probe, so that both tools decide alike. One UNet
 * evaluation of a constant 0.5 latent (1 × 4 × 8 × 8; an inpainting UNet's extra channels zero)
 * with a constant 0.5 context of 2 tokens at t = 999, no input scaling: v-prediction when the
 * mean of output − input over the latent is below −1.
 */
import type { NativeModel } from './native.js';

const SIDE = 8;
const LATENT_CHANNELS = 4;
const TOKENS = 2;
const TIMESTEP = 999;
const FILL = 0.5;
const V_THRESHOLD = -1;

export interface ProbeShape {
  /** The UNet's input channels (4, or 9 for inpainting). */
  inChannels: number;
  /** Width of the context it attends to. */
  contextDim: number;
  /** Exactly one of the two, as generate() passes them. */
  heads: { heads: number } | { headDim: number };
}

export async function probePrediction(handle: NativeModel, shape: ProbeShape): Promise<'v' | 'epsilon'> {
  const cells = SIDE * SIDE;
  const x = new Float32Array(shape.inChannels * cells);
  x.fill(FILL, 0, LATENT_CHANNELS * cells);
  const out = await handle.runUnet({
    x,
    batch: 1,
    channels: shape.inChannels,
    height: SIDE,
    width: SIDE,
    timesteps: Float32Array.of(TIMESTEP),
    context: new Float32Array(TOKENS * shape.contextDim).fill(FILL),
    contextTokens: TOKENS,
    ...shape.heads,
  }).promise;
  let sum = 0;
  for (let i = 0; i < LATENT_CHANNELS * cells; i++) sum += out[i]! - FILL;
  return sum / (LATENT_CHANNELS * cells) < V_THRESHOLD ? 'v' : 'epsilon';
}
