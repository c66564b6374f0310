#!/usr/bin/env node
// Writes small PyTorch zip checkpoints (a few KB: several tensors of each stored type the
// generator writes, with and without metadata) as seed inputs for the torch reader's fuzz
// target. Real checkpoints are megabytes: cut to the fuzzer's input limit they lose the zip's
// central directory, and every mutant then fails before the pickle is read.
//   node scripts/generator/torch-seeds.mjs OUT_DIR
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

import { writeTorchZip } from './torch-checkpoint.mjs';

const out = process.argv[2];
if (!out) throw new Error('usage: torch-seeds.mjs OUT_DIR');
mkdirSync(out, { recursive: true });

const BYTES = { F16: 2, F32: 4, I64: 8 };
/** A tensor of `dtype` whose bytes count up from `start`. */
const tensor = (name, shape, dtype, start = 0) => ({
  name,
  shape,
  dtype,
  bytes: () => Uint8Array.from({ length: shape.reduce((a, b) => a * b, 1) * BYTES[dtype] }, (_, i) => (start + i) & 0xff),
});

await writeTorchZip(join(out, 'seed-one-tensor.pth'), [tensor('w', [4], 'F32')]);
await writeTorchZip(
  join(out, 'seed-mixed.pth'),
  [
    tensor('model.diffusion_model.out.2.weight', [4, 8, 3, 3], 'F16'),
    tensor('model.diffusion_model.out.2.bias', [4], 'F32', 7),
    tensor('cond_stage_model.transformer.text_model.embeddings.position_ids', [1, 8], 'I64'),
    tensor('scalar', [], 'F32', 3),
  ],
  { 'sdnode.attention_heads': '{"unet":8}', note: 'a seed' },
);
await writeTorchZip(join(out, 'seed-empty.pth'), []);
