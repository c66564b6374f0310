/**
 * JSON schemas of the native API's bodies (Fastify validates every route's body, params and
 * query against its schema before the handler runs; a violation is a 400 naming the field).
 * Bounds are the library's (lib/generate-options.ts) or the server's limits, whichever is lower.
 */
import { LORA_WEIGHT_LIMIT } from '../lora.js';
import { SAMPLERS, SCHEDULERS } from '../samplers.js';
// The library's prompt limit, stated in the schemas so that a huge prompt is refused before anything else.
import { MAX_PROMPT_CHARS } from '../text/prompt-limits.js';
import { MAX_SIDE } from '../tiling.js';
import type { ServerLimits } from './limits.js';

/** The most LoRAs one request may name (the library's limit on generate()'s `loras`). */
export const MAX_LORAS = 64;

/** A seed in JSON: -1 (random) or 0 … 2^53−1, JSON's exact integers. */
export const SEED_SCHEMA = { type: 'integer', minimum: -1, maximum: Number.MAX_SAFE_INTEGER } as const;

/** A side in pixels: a multiple of 8 (the model's own multiple is checked when the job runs), width × height within limits.pixels (checked in code). */
export const SIDE_SCHEMA = { type: 'integer', minimum: 8, maximum: MAX_SIDE, multipleOf: 8 } as const;

const LORA_SCHEMA = {
  type: 'object',
  required: ['name'],
  additionalProperties: false,
  properties: {
    name: { type: 'string', minLength: 1, maxLength: 512 },
    weight: { type: 'number', minimum: -LORA_WEIGHT_LIMIT, maximum: LORA_WEIGHT_LIMIT, default: 1 },
  },
} as const;

/** The body of POST /sdnode/v1/jobs: a JobRequest (lib/server/job-queue.ts), `model` optional (the server's current one). */
export function jobRequestSchema(limits: ServerLimits) {
  return {
    type: 'object',
    required: ['prompt'],
    additionalProperties: false,
    properties: {
      model: { type: 'string', minLength: 1, maxLength: 512 },
      prompt: { type: 'string', maxLength: MAX_PROMPT_CHARS },
      negativePrompt: { type: 'string', maxLength: MAX_PROMPT_CHARS },
      width: SIDE_SCHEMA,
      height: SIDE_SCHEMA,
      steps: { type: 'integer', minimum: 1, maximum: limits.steps },
      cfgScale: { type: 'number', minimum: 0, maximum: 100 },
      sampler: { type: 'string', enum: [...SAMPLERS] },
      scheduler: { type: 'string', enum: [...SCHEDULERS] },
      seed: SEED_SCHEMA,
      rng: { type: 'string', enum: ['cuda', 'cpu'] },
      batchCount: { type: 'integer', minimum: 1, maximum: limits.batch },
      clipSkip: { type: 'integer', minimum: 1, maximum: 64 },
      initImage: { type: 'string', minLength: 1 },
      strength: { type: 'number', minimum: 0, maximum: 1 },
      mask: { type: 'string', minLength: 1 },
      maskBlur: { type: 'integer', minimum: 0, maximum: 64 },
      loras: { type: 'array', maxItems: MAX_LORAS, items: LORA_SCHEMA },
      preview: { type: 'string', enum: ['none', 'latent2rgb', 'tae'] },
      previewInterval: { type: 'integer', minimum: 1, maximum: 1000 },
    },
  } as const;
}

/** `:id` of the job routes: the ids queues give (UUIDs, or a distributed queue's own). */
export const JOB_ID_PARAMS = {
  type: 'object',
  required: ['id'],
  properties: { id: { type: 'string', minLength: 1, maxLength: 128, pattern: '^[A-Za-z0-9._:-]+$' } },
} as const;
