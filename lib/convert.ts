/**
 * Converting a model file to GGUF in one weight type, quantizing the tensors that can take it.
 */
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

import { JobQueue, type JobOptions } from './job.js';
import { native, packageRoot } from './native.js';
import { checkFollowSymlinks, resolveOutputPath } from './output-path.js';
import { WEIGHT_TYPES, type WeightType } from './weight-types.js';
import { checkEnum, checkFunction, checkKeys, checkObject, checkPath, checkSignal } from './validate.js';

/** Options of convertModel(); every one is optional. */
export interface ConvertOptions {
  /**
   * Default 'f16'. f32/f16 turn every floating-point tensor into that type. A quantized type
   * applies to the 2-D weights of linear layers and to the UNet's conv kernels (kept as the
   * [OC, IC·KH·KW] matrices they multiply as; `sdnode.unfolded.<name>` keys give their shapes)
   * with at least 4096 elements and a row length the block size divides (K-quants fall back to
   * q4_0/q5_0/q5_1/q8_0 for other rows); the VAE's kernels, embeddings and the timestep MLP stay
   * f16, biases and norms f32. `tensors` in the result says what each tensor became.
   */
  weightType?: WeightType;
  /** Cancels the conversion (no file is left behind); the promise rejects with AbortError. Default: none. */
  signal?: AbortSignal;
  /** One step per tensor written. Default: none. */
  onProgress?: JobOptions['onProgress'];
  /**
   * Write through a symlinked `dst` wherever it points. Default false: a link is followed only
   * to a file in its own folder; any other rejects with OutputPathError.
   */
  followSymlinks?: boolean;
}

/** One tensor of a conversion: its name and types before and after. */
export interface ConvertedTensor {
  /** The name written (the internal LDM naming for Stable Diffusion models). */
  name: string;
  /** Type in the source, as inspectModel reports it: F32, F16, BF16, Q8_0, I64, … */
  from: string;
  /** Type written: F32, F16, Q8_0, Q4_K, … */
  to: string;
}

/** What convertModel() wrote. */
export interface ConvertResult {
  /** The GGUF file written: `dst` as given (a followed symlink still names its target). */
  path: string;
  /** What each written tensor was and became, under the names written. */
  tensors: ConvertedTensor[];
  /** Source tensors left out: ones no Stable Diffusion component uses (EMA copies, training buffers). */
  dropped: string[];
}

let packageVersion: string | undefined;
function version(): string {
  packageVersion ??= String((JSON.parse(readFileSync(join(packageRoot(), 'package.json'), 'utf8')) as { version?: unknown }).version ?? '');
  return packageVersion;
}

/**
 * Writes `dst` as a GGUF file holding `src`'s tensors (any file inspectModel reads, or a
 * diffusers folder) in `weightType`. A Stable Diffusion model is written under the internal
 * naming (LDM single-file keys, which stable-diffusion.cpp reads), leaving out what no component
 * uses (`dropped`); any other file keeps its names and shapes. Metadata: general.architecture 'sdnode',
 * sdnode.family, sdnode.source, sdnode.version and the source's own metadata under
 * sdnode.meta.* (keys already under sdnode. keep their names). The file appears only when complete: a failed or aborted conversion leaves
 * neither `dst` nor a partial file. Tensors are converted one at a time (memory stays small).
 * A `dst` that exists and is not a regular file (a directory, FIFO, socket, device such as
 * /dev/null), or is a symlink out of its folder, rejects with OutputPathError before the source
 * is opened; nothing is replaced (the engine checks again right before its final rename).
 */
export function convertModel(src: string, dst: string, options?: ConvertOptions): Promise<ConvertResult> {
  checkPath('src', src);
  checkPath('dst', dst);
  if (resolve(src) === resolve(dst)) throw new RangeError('dst must not be the source file');
  const o = checkObject('options', options);
  checkKeys('options', o, ['weightType', 'signal', 'onProgress', 'followSymlinks']);
  const weightType = o.weightType === undefined ? 'f16' : checkEnum('options.weightType', o.weightType, WEIGHT_TYPES);
  const signal = checkSignal('options.signal', o.signal);
  const onProgress = checkFunction<NonNullable<ConvertOptions['onProgress']>>('options.onProgress', o.onProgress);
  const followSymlinks = checkFollowSymlinks('options.followSymlinks', o.followSymlinks);
  const v = version();
  // The engine writes the resolved target itself: its temporary file goes in the target's folder.
  return resolveOutputPath(dst, { followSymlinks }, 'dst')
    .then((target) => new JobQueue('convertModel').run((progress) => native().convertModel(src, target, weightType, v, progress), { signal, onProgress }))
    .then((raw) => ({ path: dst, tensors: raw.tensors, dropped: raw.dropped }));
}
