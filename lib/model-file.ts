/**
 * Looking into model files without loading them: format, tensors, types, sizes, metadata, and
 * what the file is (family, components, key naming, prediction type) told from names and shapes.
 */
import { JobQueue, type JobOptions } from './job.js';
import { detectModel, type ModelDetection } from './model-detect.js';
import { metadataFromChunks } from './metadata.js';
import { native } from './native.js';
import { checkBoolean, checkFunction, checkKeys, checkObject, checkPath, checkSignal } from './validate.js';

/** One tensor of a model file, as stored. */
export interface TensorSummary {
  /** The name in the file, unchanged. */
  name: string;
  /** As stored: F32, F16, BF16, F8_E4M3, …, or a ggml block type such as Q8_0, Q4_K. */
  dtype: string;
  /** Outermost first, as PyTorch reports it. */
  shape: number[];
  /** Bytes of its data in the file. */
  bytes: number;
  /**
   * Present when the stored type is one the tensor's role cannot take (an integer linear weight
   * or conv kernel, a quantized conv kernel, a ggml block type without kernels): why, naming the
   * tensor, its type and the types its role takes. loadModel() and convertModel() refuse such a
   * file with ModelFormatError carrying this text; inspectModel() reports it and resolves.
   */
  refused?: string;
  /**
   * With `checksums: true`: FNV-1a 64 (hex) of the values as f32, quantized types dequantized.
   * Equal checksums in two files mean bit-identical weights, whatever the file format.
   */
  checksum?: string;
}

/** What inspectModel() found in a file. */
export interface ModelInspection {
  /** The path as given. */
  path: string;
  /** The container format, told from the bytes (not the extension). */
  format: 'safetensors' | 'gguf' | 'torch';
  /** Bytes. */
  fileSize: number;
  /** tensors.length. */
  tensorCount: number;
  /** Elements of all tensors together. */
  parameterCount: number;
  /** Tensor count per stored type. */
  dtypes: Record<string, number>;
  /** safetensors `__metadata__` or GGUF key-values, as text, in key order up to METADATA_LIMITS. */
  metadata: Record<string, string>;
  /** Entries past METADATA_LIMITS, left out of `metadata` (0 for every real checkpoint). */
  metadataOmitted: number;
  /** Every tensor, in file order. */
  tensors: TensorSummary[];
  /** What the file holds, from tensor names, shapes and metadata only; `notes` says why. */
  detection: ModelDetection;
}

/** Options of inspectModel(); every one is optional. */
export interface InspectOptions {
  /** Cancels the inspection; the promise rejects with AbortError. Default: none. */
  signal?: AbortSignal;
  /** Read every tensor to give it a checksum (reads the whole file). Default false. */
  checksums?: boolean;
  /** One step per tensor checksummed (with `checksums: true`). Default: none. */
  onProgress?: JobOptions['onProgress'];
}

/**
 * Reads a model file's index (safetensors, GGUF, or a PyTorch zip checkpoint) off the JS
 * thread, validating it as a load would, without reading tensor data (all of it with
 * `checksums: true`). The result also says what
 * the file is: Stable Diffusion family (SD1.x / SD2.x / SDXL, inpainting variant), which
 * components it holds (UNet, VAE, text encoders), LDM or diffusers key naming, and the
 * prediction type where metadata or a marker tensor states it — with `detection.notes` saying
 * which keys and shapes decided each answer. A file that is not Stable Diffusion (an LLM GGUF, a
 * tiny autoencoder) is inspected all the same, with `detection.family` 'unknown'. Bad options
 * throw TypeError/RangeError synchronously; a missing, unreadable or malformed file rejects with
 * FileAccessError / ModelFormatError naming the problem.
 */
export function inspectModel(path: string, options?: InspectOptions): Promise<ModelInspection> {
  checkPath('path', path);
  const o = checkObject('options', options);
  checkKeys('options', o, ['signal', 'checksums', 'onProgress']);
  const signal = checkSignal('options.signal', o.signal);
  const checksums = o.checksums === undefined ? false : checkBoolean('options.checksums', o.checksums);
  const onProgress = checkFunction<NonNullable<InspectOptions['onProgress']>>('options.onProgress', o.onProgress);
  return new JobQueue('inspectModel')
    .run((progress) => native().inspectFile(path, checksums, progress), { signal, onProgress })
    .then(async ({ metadataChunks, metadataOmitted, ...raw }) => {
      const metadata = await metadataFromChunks(metadataChunks);
      const dtypes: Record<string, number> = {};
      let parameterCount = 0;
      for (const t of raw.tensors) {
        dtypes[t.dtype] = (dtypes[t.dtype] ?? 0) + 1;
        parameterCount += t.shape.reduce((a, b) => a * b, 1);
      }
      const detection = detectModel(raw.tensors, metadata);
      return { path, format: raw.format, fileSize: raw.fileSize, metadata, metadataOmitted, tensors: raw.tensors, tensorCount: raw.tensors.length, parameterCount, dtypes, detection };
    });
}
