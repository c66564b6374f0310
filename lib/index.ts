/**
 * sdnode: Stable Diffusion on your own machine, from Node.js.
 */
export { loadAutoencoder, Autoencoder } from './autoencoder.js';
export type { AutoencoderFiles, AutoencoderJobOptions, LoadAutoencoderOptions, Latent } from './autoencoder.js';
export { loadUpscaler, Upscaler, UPSCALE_TILE, MAX_UPSCALE_REPEATS } from './upscaler.js';
export type { LoadUpscalerOptions, UpscaleOptions } from './upscaler.js';
export type { HiresOption, HiresUpscalerName } from './hires.js';
export { convertModel } from './convert.js';
export type { ConvertOptions, ConvertResult, ConvertedTensor } from './convert.js';
export { WEIGHT_TYPES } from './weight-types.js';
export type { WeightType } from './weight-types.js';
export { loadModel } from './load-model.js';
export type { LoadModelOptions, ModelComponents, ModelSource } from './load-model.js';
export { Model } from './model.js';
export type { LoadLoraOptions, ModelInfo, SourceInfo, WeightRecord } from './model.js';
export { Lora, LORA_EXTENSIONS, LORA_WEIGHT_LIMIT } from './lora.js';
export { ControlNet, MAX_CONTROL_STRENGTH } from './controlnet.js';
export type { ControlNetOption } from './controlnet.js';
export { canny, CANNY_DEFAULTS } from './canny.js';
export type { CannyOptions } from './canny.js';
export type { LoraOption, LoraReport } from './lora.js';
export { PREVIEW_INTERVAL, SAMPLERS, SCHEDULERS } from './generate-options.js';
export type { GenerateOptions, MaskImage, Sampler, Scheduler } from './generate-options.js';
export type { GenerateResult } from './generate.js';
export type { DecodeLatentOptions, EncodeImageOptions, VaeTilingOption } from './vae-jobs.js';
export { inspectModel } from './model-file.js';
export { METADATA_LIMITS } from './metadata.js';
export type { InspectOptions, ModelInspection, TensorSummary } from './model-file.js';
export type { ModelDetection, ModelFamily } from './model-detect.js';
export { readImage, writeImage } from './image.js';
export type { Image, WriteImageOptions } from './image.js';
export { listDevices, systemInfo } from './system.js';
export type { Device, SystemInfo } from './system.js';
export type { JobOptions, Progress } from './job.js';
export {
  SdnodeError,
  FileAccessError,
  ModelFormatError,
  ModelCompatibilityError,
  AbortError,
  DisposedError,
  ResourceError,
  BackendError,
  ImageError,
  OutputPathError,
} from './errors.js';
export { createServer } from './server/create-server.js';
export type { CreateServerOptions, RouteModule } from './server/app.js';
export type { ServerLimits } from './server/limits.js';
export { JobError, QueueFullError, QueueClosedError, JobCancelledError, jobResult } from './server/job-queue.js';
export { connectRedisQueue, startRedisWorker } from './server/scale-out.js';
export type { RedisJobQueue, RedisJobQueueOptions } from './server/redis-job-queue.js';
export type { RedisWorker, RedisWorkerOptions } from './server/queue/redis-worker.js';
export type { JobQueue, JobRequest, JobEvent, JobResult, JobSettings, JobErrorInfo, JobLora, QueueSnapshot, RunningJob, Unwatch, ModelDirectory } from './server/job-queue.js';
