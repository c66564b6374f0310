/**
 * What one request may ask of the server. The defaults keep a server on a laptop or a small GPU
 * answering: the webui's own UI limits for steps (150) and batch size (8), images up to 2048²,
 * bodies big enough for a 2048² PNG init image and its mask in base64.
 */
import { JobError, type JobRequest } from './job-queue.js';

export interface ServerLimits {
  /** Request body bytes (JSON or multipart upload). Default 32 MiB. */
  bodyBytes: number;
  /** Width × height of an image a request makes. Default 2048 × 2048. */
  pixels: number;
  /** Sampler steps. Default 150. */
  steps: number;
  /** Images per request. Default 8. */
  batch: number;
  /** Jobs waiting besides the running one; more get 429 with Retry-After. Default 32. */
  queue: number;
}

export const DEFAULT_LIMITS: ServerLimits = {
  bodyBytes: 32 * 1024 * 1024,
  pixels: 2048 * 2048,
  steps: 150,
  batch: 8,
  queue: 32,
};

/** The limits given, each a positive integer, over the defaults: TypeError / RangeError naming the limit otherwise. */
export function resolveLimits(given: Partial<ServerLimits> = {}): ServerLimits {
  const limits = { ...DEFAULT_LIMITS };
  for (const [key, value] of Object.entries(given)) {
    if (!(key in DEFAULT_LIMITS)) throw new TypeError(`limits.${key} is not a limit; the limits are ${Object.keys(DEFAULT_LIMITS).join(', ')}`);
    if (value === undefined) continue;
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1) throw new RangeError(`limits.${key} must be a positive integer, got ${String(value)}`);
    limits[key as keyof ServerLimits] = value;
  }
  return limits;
}

/** A request within the limits: JobError 400 'over_limit' naming the JobRequest field otherwise. */
export function checkLimits(request: JobRequest, limits: ServerLimits): void {
  const over = (field: string, message: string) => new JobError({ status: 400, code: 'over_limit', field, message: `${field}: ${message}` });
  if (request.steps !== undefined && request.steps > limits.steps) throw over('steps', `${request.steps} steps; this server runs at most ${limits.steps}`);
  if (request.batchCount !== undefined && request.batchCount > limits.batch) throw over('batchCount', `${request.batchCount} images; this server makes at most ${limits.batch} per request`);
  const { width, height } = request;
  if (width !== undefined && height !== undefined && width * height > limits.pixels)
    throw over('width', `${width}×${height} is ${width * height} pixels; this server makes at most ${limits.pixels}`);
}
