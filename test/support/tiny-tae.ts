/**
 * Random-weight TAESD-shaped checkpoints with the real key layout (nn.Sequential indices),
 * small enough for tests: the engine must derive every size from the shapes.
 */
import type { TorchTensor } from './torch-zip.js';

function random(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32 - 0.5;
  };
}

export interface TinyTaeShape {
  latentChannels: number;
  width: number;
  /** Blocks per stage (TAESD: 3), stages (TAESD: 3 upsamplings). */
  blocks: number;
  stages: number;
  /** GroupNorm "pool" branch in the first stage's blocks (TAEF2 has it). */
  pool: boolean;
}

/** A decoder: Clamp, conv(latent→w), ReLU, [blocks, Upsample, conv]×stages, block, conv(w→3). */
export function tinyTaeDecoder(shape: TinyTaeShape, seed = 1): TorchTensor[] {
  const rnd = random(seed);
  const tensors: TorchTensor[] = [];
  const add = (name: string, dims: number[], scale: number) => {
    const n = dims.reduce((a, b) => a * b, 1);
    tensors.push({ name, shape: dims, data: Float32Array.from({ length: n }, () => rnd() * scale) });
  };
  const conv = (prefix: string, cin: number, cout: number, k: number, bias: boolean) => {
    add(`${prefix}.weight`, [cout, cin, k, k], 2 / Math.sqrt(cin * k * k));
    if (bias) add(`${prefix}.bias`, [cout], 0.1);
  };
  const block = (i: number, w: number, pool: boolean) => {
    for (const j of [0, 2, 4]) conv(`${i}.conv.${j}`, w, w, 3, true);
    if (pool) {
      conv(`${i}.pool.0`, w, 4 * w, 1, false);
      add(`${i}.pool.1.weight`, [4 * w], 1);
      add(`${i}.pool.1.bias`, [4 * w], 0.1);
      conv(`${i}.pool.3`, 4 * w, w, 1, false);
    }
  };
  const w = shape.width;
  let i = 1;
  conv(`${i}`, shape.latentChannels, w, 3, true);
  i += 2; // ReLU
  for (let s = 0; s < shape.stages; s++) {
    for (let b = 0; b < shape.blocks; b++) block(i++, w, shape.pool && s === 0);
    i++; // Upsample
    conv(`${i++}`, w, w, 3, false);
  }
  block(i++, w, false);
  conv(`${i}`, w, 3, 3, true);
  return tensors;
}
