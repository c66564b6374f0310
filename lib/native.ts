/**
 * The addon's contract, typed once, and its loading: the binary set lib/binary-loader.ts picks
 * (a platform package, else prebuilds/, else the build in build/Release).
 */
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { chooseBinaries, type BinaryReport, type GpuBackend } from './binary-loader.js';

/** A progress report from the addon (lib/job.ts turns it into a Progress). */
export interface NativeProgress {
  step: number;
  steps: number;
  elapsedMs: number;
  /** A live preview made at this step (generate's `preview` option). */
  preview?: NativeImage;
}

/** A job the addon started on its own thread: its promise, and cancel() (sets its cancel flag). */
export interface NativeJob<T> {
  promise: Promise<T>;
  cancel(): void;
}

/** Interleaved 8-bit pixels as the addon takes and gives them. */
export interface NativeImage {
  width: number;
  height: number;
  channels: number;
  data: Uint8Array;
}

/** A planar latent as the addon takes and gives it (see Latent). */
export interface NativeLatent {
  channels: number;
  width: number;
  height: number;
  data: Float32Array;
}

/** What a loaded ESRGAN upscaler is (see Upscaler's fields). */
export interface NativeUpscalerInfo {
  scale: number;
  features: number;
  growth: number;
  blocks: number;
  unshuffle: number;
  reach: number;
  convention: string;
  format: string;
  device: string;
  weightBytes: number;
}

/** The addon's ESRGAN handle, wrapped by Upscaler. */
export interface NativeUpscaler {
  info(): NativeUpscalerInfo;
  upscale(image: NativeImage, params: { tile: number; overlap: number; repeats: number }, onProgress?: (p: NativeProgress) => void): NativeJob<NativeImage>;
  dispose(): void;
}

/** What a loaded tiny autoencoder is (see Autoencoder's fields). */
export interface NativeAutoencoderInfo {
  hasEncoder: boolean;
  hasDecoder: boolean;
  latentChannels: number;
  scale: number;
  device: string;
  weightBytes: number;
}

/** The addon's tiny-autoencoder handle, wrapped by Autoencoder. */
export interface NativeAutoencoder {
  info(): NativeAutoencoderInfo;
  encode(image: NativeImage, tiling: NativeVaeTiling | undefined, onProgress?: (p: NativeProgress) => void): NativeJob<NativeLatent>;
  decode(latent: NativeLatent, tiling: NativeVaeTiling | undefined, onProgress?: (p: NativeProgress) => void): NativeJob<NativeImage>;
  /** Planned compute-buffer bytes of one untiled pass over a width × height pixel image (0: that half is missing). */
  computeBytes(width: number, height: number): { encode: number; decode: number };
  dispose(): void;
}

/** How a model was loaded (see ModelInfo). */
export interface NativeModelInfo {
  device: string;
  weightType: string;
  sources: Array<{ component: string; path: string; format: string; convention: string; tensors: number; dropped: string[] }>;
  tokenizerDir: string;
  deviceBytes: number;
  mappedBytes: number;
  loadMs: number;
}

/** A prompt as token ids with a weight each, in windows of 77 (lib/text/prompt-weights.ts). */
export interface NativeTokens {
  ids: Int32Array;
  /** The same tokens as the second text encoder takes them (SDXL's bigG: 0 after each window's EOS). */
  ids2?: Int32Array;
  weights: Float32Array;
  windows: number;
}

/** One text encoder as a job runs it: what its weights cannot say. */
export interface NativeTextEncoderParams {
  /** Internal name prefix of the tower (default the first encoder's). */
  prefix?: string;
  /** 0: width / 64. */
  heads: number;
  quickGelu: boolean;
  /** 1: last layer, 2: penultimate, … */
  clipSkip: number;
  /** false: the hidden states without the final layer norm (SDXL). Default true. */
  finalNorm?: boolean;
  /** Also the pooled vector (SDXL's second encoder). */
  pooled?: boolean;
  /** Textual-inversion vectors [rows][width]: token id vocab + r takes row r (lib/embeddings.ts). */
  embeddings?: Float32Array;
}

/** SDXL's size conditioning, pixels; after the crop, SDXL's target size or the refiner's aesthetic scores (prompt's, negative prompt's). */
export interface NativeSizeConditioning {
  originalWidth: number;
  originalHeight: number;
  cropLeft: number;
  cropTop: number;
  targetWidth?: number;
  targetHeight?: number;
  aestheticScore?: number;
  negativeAestheticScore?: number;
}

/** The VAE in overlapping tiles; sizes in latent cells (the encoder's tiles: as many pixels as those cells cover). */
export interface NativeVaeTiling {
  enabled: boolean;
  tile: number;
  /** 0 … tile / 2. */
  overlap: number;
}

/** A generate() job as the engine takes it: checked options, tokens and what the weights could not tell. */
export interface NativeGenerateParams {
  prompt: NativeTokens;
  negative: NativeTokens;
  empty: NativeTokens;
  /** One, or two whose hidden states are joined per token (SDXL). */
  textEncoders: readonly NativeTextEncoderParams[];
  /** The negative conditioning is zeros (SDXL without a negative prompt). */
  zeroNegative?: boolean;
  /** For UNets that take a vector y (SDXL). */
  size?: NativeSizeConditioning;
  unetHeads: number;
  unetHeadDim: number;
  prediction: 'epsilon' | 'v';
  width: number;
  height: number;
  steps: number;
  sampler: string;
  scheduler: string;
  cfgScale: number;
  vaeScale: number;
  seed: bigint;
  rng: string;
  batchCount: number;
  /** false: return the latents instead of images. */
  decode: boolean;
  /** The init image's encode and the final decode; undefined: untiled. */
  vaeTiling?: NativeVaeTiling;
  /** Image-to-image / inpainting: width × height. */
  initImage?: NativeImage;
  strength?: number;
  /** 1, 3 or 4 channels, width × height, white = repaint. */
  mask?: NativeImage;
  maskBlur?: number;
  /** Live previews of the denoised estimate: 'none' (or absent), 'latent2rgb', 'tae' (needs `tae`). */
  preview?: 'none' | 'latent2rgb' | 'tae';
  /** Sampler steps between previews (each image's last step has one too), ≥ 1. */
  previewInterval?: number;
  /** Whose latent space 'latent2rgb' projects: 'sd' (SD1.x/SD2.x, default) or 'sdxl'. */
  latentFormat?: 'sd' | 'sdxl';
  /** The TAESD decoder for 'tae' previews. */
  tae?: NativeAutoencoder;
  /** Decode with this TAESD decoder instead of the model's VAE. */
  taeDecoder?: NativeAutoencoder;
  /** The TAE decode's tiles (with taeDecoder); undefined: untiled. */
  taeTiling?: NativeVaeTiling;
  /** LoRAs applied for this job (native/engine/lora/adapter_set.h), each loaded for this model. */
  loras?: ReadonlyArray<{ lora: NativeLora; weight: number }>;
  /** ControlNets (native/engine/pipeline/controlnet.h): hints at width × height, strengths, [start, end] windows. */
  /** hiresImage: the hint at the hires pass's size (given with hires). */
  controlNets?: ReadonlyArray<{ controlNet: NativeControlNet; image: NativeImage; hiresImage?: NativeImage; strength: number; start: number; end: number }>;
  /** Image-to-image from these latents (one per image, scaled, width/8 × height/8): the schedule's last initLatentSteps steps run. */
  initLatents?: NativeLatent[];
  initLatentSteps?: number;
  /** The hires fix (native/engine/pipeline/hires.h): a second pass at width × height. */
  hires?: NativeHiresParams;
}

/** The hires fix's second pass, resolved by lib/hires.ts. */
export interface NativeHiresParams {
  width: number;
  height: number;
  /** Its schedule's steps, of which the last runSteps run. */
  scheduleSteps: number;
  runSteps: number;
  /** Enlarge decoded pixels (then encode) instead of the latent. */
  pixelSpace: boolean;
  filter: 'nearest' | 'nearest-exact' | 'bilinear' | 'bicubic' | 'lanczos' | string;
  antialias: boolean;
  /** ESRGAN in pixel space, then Lanczos to the target; with its tile and overlap. */
  upscaler?: NativeUpscaler;
  tile?: number;
  overlap?: number;
}

/** What the engine's generate job gives back (decoded images, or latents for a TAE decode in JS). */
export interface NativeGenerateResult {
  images: NativeImage[];
  latents: NativeLatent[];
  stepsRun: number;
  textEncodeMs: number;
  imageEncodeMs: number;
  samplingMs: number;
  decodeMs: number;
  /** Applying the LoRAs (0 when the model's kept set served as it was). */
  loraMs: number;
  loraReused: boolean;
  /** Device bytes the LoRA set holds (patched copies and run-time factors). */
  loraBytes: number;
  /** The hires pass: steps per image, enlarging (with decode and encode in pixel space), sampling; 0 without. */
  hiresStepsRun: number;
  hiresUpscaleMs: number;
  hiresSamplingMs: number;
  /** Of samplingMs: evaluating the ControlNets; 0 without. */
  controlNetMs: number;
}

/** What a loaded ControlNet is (native/engine/pipeline/controlnet.h ControlNetInfo). */
export interface NativeControlNetInfo {
  convention: 'ldm' | 'diffusers';
  format: 'safetensors' | 'gguf' | 'torch';
  device: string;
  blocks: number;
  modelChannels: number;
  contextDim: number;
  admChannels: number;
  weightBytes: number;
  dropped: number;
}

/** The addon's ControlNet handle, wrapped by ControlNet (lib/controlnet.ts). */
export interface NativeControlNet {
  info(): NativeControlNetInfo;
  /** Test-facing: one evaluation of the network alone, its residuals unscaled (input blocks', then the middle block's). */
  residuals(
    params: { x: Float32Array; timesteps: Float32Array; context: Float32Array; y?: Float32Array; hint: NativeImage; batch: number; width: number; height: number; tokens: number; heads: number; headDim: number },
    onProgress?: (p: NativeProgress) => void,
  ): NativeJob<Float32Array[]>;
  dispose(): void;
}

/** What a LoRA file holds for the model it was loaded for (native/engine/lora/lora.h). */
export interface NativeLoraReport {
  path: string;
  fileBytes: number;
  /** Tensors in the file, and how many of them a target uses. */
  tensors: number;
  appliedTensors: number;
  targets: Array<{ weight: string; kind: 'lora' | 'loha' | 'lokr' | 'diff'; rank: number; scale: number; dora: boolean }>;
  /** File tensors whose module is no weight of the model. */
  unmatched: string[];
  /** "<module>: <why>": modules that name a weight but do not fit it. */
  incompatible: string[];
}

/** The addon's LoRA handle, wrapped by Lora. */
export interface NativeLora {
  report(): NativeLoraReport;
  dispose(): void;
}

/** A loaded model's networks as the engine reads them from the weights. */
export interface NativeArchitecture {
  /** Absent without a UNet (unetError says why when one is there but does not load). */
  unet?: { inChannels: number; outChannels: number; modelChannels: number; contextDim: number; admChannels: number; latentMultiple: number };
  unetError?: string;
  vae: { decoder: boolean; encoder: boolean; latentChannels: number; decoderScale: number; encoderScale: number };
  /** In place order: the first encoder's place, then the second's (internal prefixes). projection: 0 when it cannot pool. */
  textEncoders: Array<{ prefix: string; width: number; layers: number; vocab: number; positions: number; projection: number }>;
}

/** The addon's model handle, wrapped by Model. */
export interface NativeModel {
  info(): NativeModelInfo;
  /** The file metadata as JSON texts ["key", "value", …], made by the load job (lib/metadata.ts), and the entries left out (native/addon/metadata_json.h). */
  metadata(): { chunks: string[]; omitted: number };
  /** What the engine read of the networks at load (native/engine/pipeline/architecture.h). */
  architecture(): NativeArchitecture;
  weights(): Array<{ name: string; shape: number[]; from: string; to: string; bytes: number; mapped: boolean }>;
  checksums(names: string[], onProgress?: (p: NativeProgress) => void): NativeJob<string[]>;
  /** Hidden states [windows][positions][width] (and with `pooled`, each window's pooled vector [windows][proj]). */
  encodeTokens(
    ids: Int32Array,
    windows: number,
    params: Partial<NativeTextEncoderParams>,
    onProgress?: (p: NativeProgress) => void,
  ): NativeJob<{ hidden: Float32Array; pooled?: Float32Array }>;
  runUnet(
    params: {
      x: Float32Array;
      batch: number;
      channels: number;
      height: number;
      width: number;
      timesteps: Float32Array;
      context: Float32Array;
      contextTokens: number;
      /** [batch][adm]: SDXL's vector (UNets with label_emb). */
      y?: Float32Array;
      heads?: number;
      headDim?: number;
    },
    onProgress?: (p: NativeProgress) => void,
  ): NativeJob<Float32Array>;
  generate(params: NativeGenerateParams, onProgress?: (p: NativeProgress) => void): NativeJob<NativeGenerateResult>;
  decodeLatent(
    latent: NativeLatent,
    scaleFactor: number,
    tiling?: NativeVaeTiling,
    onProgress?: (p: NativeProgress) => void,
  ): NativeJob<NativeImage>;
  /** The posterior's moments: channels [mean..., logvar...], unscaled. */
  encodeImageMoments(image: NativeImage, tiling?: NativeVaeTiling, onProgress?: (p: NativeProgress) => void): NativeJob<NativeLatent>;
  /** mean + exp(logvar / 2) · randn(seed) (the mean without a seed), times scale. */
  encodeImage(
    image: NativeImage,
    options: { scale: number; seed?: bigint; rng: 'cuda' | 'cpu'; tiling?: NativeVaeTiling },
    onProgress?: (p: NativeProgress) => void,
  ): NativeJob<NativeLatent>;
  /** Compute-buffer bytes of one untiled pass over a width × height pixel image; null where that half of the VAE is missing. */
  vaeComputeBytes(width: number, height: number): { decode: number | null; encode: number | null };
  /** Every VAE convolution's input times `scale`, its output divided again (f16 overflow); set right after load. */
  setVaeConvInputScale(scale: number): void;
  /** A LoRA file read, checked and matched to this model's weights. */
  loadLora(path: string, onProgress?: (p: NativeProgress) => void): NativeJob<NativeLora>;
  loadControlNet(path: string, options: { device: string }, onProgress?: (p: NativeProgress) => void): NativeJob<NativeControlNet>;
  /** The named weights (f32, PyTorch layout) as the networks take them with these LoRAs applied — for tests. */
  patchedWeights(
    loras: ReadonlyArray<{ lora: NativeLora; weight: number }>,
    names: string[],
    onProgress?: (p: NativeProgress) => void,
  ): NativeJob<Float32Array[]>;
  dispose(): void;
}

/** A compute device as ggml lists it (public as Device). */
export interface NativeDevice {
  /** What `device` options take: "cpu", "cuda:0", "vulkan:0", "metal:0". */
  id: string;
  /** The ggml backend: "CPU", "CUDA", "Vulkan", "Metal". */
  backend: string;
  /** The backend's device name, e.g. "CUDA0". */
  name: string;
  /** What the driver calls it, e.g. the GPU's model. */
  description: string;
  /** 'igpu': integrated GPU sharing system memory; 'accel': an accelerator ggml runs beside the CPU. */
  type: 'cpu' | 'gpu' | 'igpu' | 'accel';
  /** Bytes free now, as the driver reports it (0 where unknown). */
  memoryFree: number;
  /** Bytes in all (0 where unknown). */
  memoryTotal: number;
}

/** ggml's build as the addon reports it (see SystemInfo). */
export interface NativeSystemInfo {
  ggmlVersion: string;
  ggmlCommit: string;
  backends: string[];
  cpuFeatures: Record<string, string>;
}

/** A model file's index as the addon reads it (see ModelInspection). */
export interface NativeModelFile {
  format: 'safetensors' | 'gguf' | 'torch';
  fileSize: number;
  /** The metadata as JSON texts ["key", "value", …], made off the JS thread (lib/metadata.ts). */
  metadataChunks: string[];
  /** Metadata entries past the addon's limits (native/addon/metadata_json.h), not in metadataChunks. */
  metadataOmitted: number;
  tensors: Array<{ name: string; dtype: string; shape: number[]; bytes: number; checksum?: string }>;
}

/** What the addon's conversion wrote (see ConvertResult). */
export interface NativeConvertResult {
  tensors: Array<{ name: string; from: string; to: string }>;
  dropped: string[];
}

/** Everything the addon exports. */
export interface NativeBinding {
  convertModel(
    src: string,
    dst: string,
    weightType: string,
    version: string,
    onProgress?: (p: NativeProgress) => void,
  ): NativeJob<NativeConvertResult>;
  inspectFile(path: string, checksums: boolean, onProgress?: (p: NativeProgress) => void): NativeJob<NativeModelFile>;
  /** An embedding file's floating-point tensors as f32 (synchronous; lib/embeddings.ts caps the file's size). */
  readEmbeddingFile(path: string): { format: string; tensors: Array<{ name: string; shape: number[]; data: Float32Array }> };
  planNames(
    component: 'checkpoint' | 'unet' | 'vae' | 'textEncoder' | 'textEncoder2',
    tensors: ReadonlyArray<{ name: string; shape: readonly number[] }>,
    options?: { ema?: boolean },
  ): {
    convention: string;
    tensors: Array<{
      name: string;
      source: string;
      op: 'view' | 'reshape' | 'rowSlice' | 'transpose2d';
      shape: number[];
      rowBegin?: number;
    }>;
    dropped: string[];
  };
  loadBackends(moduleDir: string): void;
  listDevices(): NativeDevice[];
  systemInfo(): NativeSystemInfo;
  stopJobs(): void;
  /** The device self-test the loader's probe runs (native/engine/pipeline/device_probe.h): one tiny graph there, checked on the host. */
  probeDevice(id: string): { ok: boolean; error: string; maxError: number; ms: number };
  /** Test-facing: planar [channels][height][width] floats resized as the hires fix resizes (native/engine/pipeline/latent_resize.h). */
  resizePlanes(
    data: Float32Array,
    channels: number,
    width: number,
    height: number,
    outWidth: number,
    outHeight: number,
    filter: 'nearest' | 'nearest-exact' | 'bilinear' | 'bicubic' | 'lanczos',
    antialias: boolean,
  ): Float32Array;
  /**
   * The engine's sampler and scheduler lists (lib/samplers.ts validates options against them)
   * and, test-facing and synchronous, its RNGs, noise schedules and samplers on host arrays.
   */
  sampling: {
    /** The engine's sampler names (native/engine/sample/catalog.h), in its order; frozen. */
    readonly samplers: readonly string[];
    /** The engine's scheduler names, in its order; frozen. */
    readonly schedulers: readonly string[];
    /** The scheduler each sampler runs with when none is named (stable-diffusion.cpp's choice); frozen. */
    readonly defaultSchedulers: Readonly<Record<string, string>>;
    /** count as an array: consecutive calls on one generator, concatenated. */
    randn(rng: 'cuda' | 'cpu', seed: bigint | number, count: number | number[]): Float32Array;
    sigmas(scheduler: string, steps: number): Float32Array;
    sigmaToTimestep(sigma: number): number;
    /** A sampler run with the exact denoiser of x0 ~ N(mu, s²), from x = randn(count) · sigmas[0]. */
    sampleGaussian(options: {
      sampler: string;
      scheduler: string;
      steps: number;
      seed: bigint | number;
      rng: 'cuda' | 'cpu';
      mu: number;
      s: number;
      count: number;
      onProgress?: (step: number, steps: number) => void;
      /** Cancels after this many progress reports (0: before the first step). */
      cancelAfter?: number;
    }): Float32Array;
    /** One call of the engine's denoiser whose model returns `predictions` (one latent, or [uncond, cond]). */
    denoise(options: { prediction: 'epsilon' | 'v'; sigma: number; x: Float32Array; predictions: Float32Array; cfgScale: number }): {
      denoised: Float32Array;
      modelInput: Float32Array;
      timestep: number;
    };
  };
  NativeAutoencoder: {
    load(
      options: { encoder?: string; decoder?: string; device: string; threads: number; f16Weights: boolean },
      onProgress?: (p: NativeProgress) => void,
    ): NativeJob<NativeAutoencoder>;
  };
  NativeUpscaler: {
    load(options: { path: string; device: string; threads: number; f16Weights: boolean }, onProgress?: (p: NativeProgress) => void): NativeJob<NativeUpscaler>;
  };
  NativeModel: {
    load(
      options: {
        model?: string;
        unet?: string;
        vae?: string;
        textEncoder?: string;
        textEncoder2?: string;
        ema: boolean;
        device: string;
        threads: number;
        weightType: string;
      },
      onProgress?: (p: NativeProgress) => void,
    ): NativeJob<NativeModel>;
  };
}

/** The package root: the folder above dist/ (or above lib/ when run from source). */
export function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) {
    const up = dirname(dir);
    if (up === dir) throw new Error('sdnode: cannot find the package root');
    dir = up;
  }
  return dir;
}

let binding: NativeBinding | undefined;
let bindingReport: BinaryReport | undefined;
let preferredGpu: GpuBackend | undefined;

/**
 * A GPU backend a `device` option named: tried first if the addon is not loaded yet (later it
 * changes nothing: a process loads one set of binaries).
 */
export function preferGpuBackend(backend: GpuBackend): void {
  if (!binding) preferredGpu = backend;
}

/**
 * Loads the addon once, with the binary set lib/binary-loader.ts picks (a GPU set only after it
 * passed its probe). SDNODE_ADDON_PATH names another build of the addon to use as it is.
 */
export function native(): NativeBinding {
  if (binding) return binding;
  const choice = chooseBinaries(packageRoot(), preferredGpu);
  const loaded = choice.load<NativeBinding>();
  // exit() runs static destructors under any job still computing: stop them first.
  process.once('exit', () => loaded.stopJobs());
  bindingReport = choice.report;
  binding = loaded;
  return loaded;
}

/** What the loader chose: the addon file, where it came from, the GPU set and any fallbacks. */
export function nativeReport(): BinaryReport {
  native();
  return bindingReport!;
}

/** Where the loaded addon came from (a platform package, a prebuild or a local build). */
export function nativePath(): string {
  return nativeReport().addonPath;
}
