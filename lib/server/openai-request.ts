/**
 * OpenAI's images API bodies (POST /v1/images/generations as JSON, /v1/images/edits as
 * multipart): their schemas and their mapping onto a JobRequest.
 *
 * OpenAI's own fields: prompt, model, n, size ('WxH' or 'auto'), response_format ('b64_json';
 * 'url' answers a data: URL, there being no file host), output_format ('png'). Quality, style,
 * user, moderation are accepted and have no effect. sdnode's settings ride along as extra fields
 * (the OpenAI SDKs pass unknown body fields through): negative_prompt, steps, cfg_scale,
 * sampler, scheduler, seed, clip_skip, loras, and for edits strength and mask_blur.
 */
import { MAX_PROMPT_CHARS } from '../text/prompt-limits.js';
import { LORA_WEIGHT_LIMIT } from '../lora.js';
import { JobError, type JobRequest } from './job-queue.js';
import type { ServerLimits } from './limits.js';
import { samplerAndScheduler } from './sampler-names.js';
import { MAX_LORAS, SEED_SCHEMA } from './schemas.js';

const nullable = <T extends string>(type: T) => [type, 'null'] as const;

/** The fields both bodies take. */
function commonProperties(limits: ServerLimits) {
  return {
    prompt: { type: 'string', minLength: 1, maxLength: MAX_PROMPT_CHARS },
    model: { type: nullable('string'), maxLength: 600 },
    n: { type: nullable('integer'), minimum: 1, maximum: limits.batch },
    size: { type: nullable('string'), pattern: '^(auto|[0-9]{1,5}x[0-9]{1,5})$' },
    response_format: { type: nullable('string'), enum: ['b64_json', 'url', null] },
    output_format: { type: nullable('string'), enum: ['png', null] },
    background: { type: nullable('string'), enum: ['auto', 'opaque', null] },
    stream: { type: nullable('boolean'), enum: [false, null] },
    quality: { type: nullable('string') },
    style: { type: nullable('string') },
    user: { type: nullable('string') },
    moderation: { type: nullable('string') },
    // sdnode's settings.
    negative_prompt: { type: 'string', maxLength: MAX_PROMPT_CHARS },
    steps: { type: 'integer', minimum: 1, maximum: limits.steps },
    cfg_scale: { type: 'number', minimum: 0, maximum: 100 },
    sampler: { type: 'string', maxLength: 100 },
    scheduler: { type: 'string', maxLength: 100 },
    seed: SEED_SCHEMA,
    clip_skip: { type: 'integer', minimum: 1, maximum: 64 },
    loras: {
      type: 'array',
      maxItems: MAX_LORAS,
      items: {
        type: 'object',
        required: ['name'],
        additionalProperties: false,
        properties: { name: { type: 'string', minLength: 1, maxLength: 512 }, weight: { type: 'number', minimum: -LORA_WEIGHT_LIMIT, maximum: LORA_WEIGHT_LIMIT } },
      },
    },
  } as const;
}

export function generationsSchema(limits: ServerLimits) {
  return { type: 'object', required: ['prompt'], properties: commonProperties(limits) } as const;
}

export function editsSchema(limits: ServerLimits) {
  return {
    type: 'object',
    required: ['prompt'],
    properties: {
      ...commonProperties(limits),
      strength: { type: 'number', minimum: 0, maximum: 1 },
      mask_blur: { type: 'integer', minimum: 0, maximum: 64 },
    },
  } as const;
}

export interface OpenAIBody {
  prompt: string;
  model?: string | null;
  n?: number | null;
  size?: string | null;
  response_format?: 'b64_json' | 'url' | null;
  negative_prompt?: string;
  steps?: number;
  cfg_scale?: number;
  sampler?: string;
  scheduler?: string;
  seed?: number;
  clip_skip?: number;
  loras?: Array<{ name: string; weight?: number }>;
  strength?: number;
  mask_blur?: number;
}

/** JobRequest fields by the body field a client wrote, for error messages. */
export const OPENAI_FIELD: Record<string, string> = {
  negativePrompt: 'negative_prompt',
  cfgScale: 'cfg_scale',
  batchCount: 'n',
  width: 'size',
  height: 'size',
  initImage: 'image',
  clipSkip: 'clip_skip',
  maskBlur: 'mask_blur',
};

/** OpenAI's model names, which clients send by habit: they mean the server's current model. */
const OPENAI_MODELS = /^(dall-e|gpt-image)/;

/** A body (and an edit's image and mask, base64) as a JobRequest; `current`: the server's model. */
export function jobRequestOf(body: OpenAIBody, current: string | undefined, edit?: { image: string; mask?: string }): JobRequest {
  const model = body.model && !OPENAI_MODELS.test(body.model) ? body.model : current;
  if (model === undefined) throw new JobError({ status: 400, code: 'unknown_model', field: 'model', message: 'model: this server has no model; name one' });
  let size: { width: number; height: number } | undefined;
  if (body.size && body.size !== 'auto') {
    const [width, height] = body.size.split('x').map(Number) as [number, number];
    size = { width, height };
  }
  // sdnode's own defaults when not named (the library's sampler, its schedule for it).
  const { sampler, scheduler } = samplerAndScheduler(body.sampler, body.scheduler, { sampler: 'sampler', scheduler: 'scheduler' }, 'euler_a', 'sdnode');
  return {
    model,
    prompt: body.prompt,
    ...(body.negative_prompt !== undefined ? { negativePrompt: body.negative_prompt } : {}),
    ...(size ?? {}),
    ...(body.steps !== undefined ? { steps: body.steps } : {}),
    ...(body.cfg_scale !== undefined ? { cfgScale: body.cfg_scale } : {}),
    sampler,
    scheduler,
    ...(body.seed !== undefined ? { seed: body.seed } : {}),
    batchCount: body.n ?? 1,
    ...(body.clip_skip !== undefined ? { clipSkip: body.clip_skip } : {}),
    ...(body.loras ? { loras: body.loras.map((l) => ({ name: l.name, weight: l.weight ?? 1 })) } : {}),
    ...(edit ? { initImage: edit.image, ...(body.strength !== undefined ? { strength: body.strength } : {}) } : {}),
    ...(edit?.mask ? { mask: edit.mask, ...(body.mask_blur !== undefined ? { maskBlur: body.mask_blur } : {}) } : {}),
  };
}
