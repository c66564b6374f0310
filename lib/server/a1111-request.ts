/**
 * The AUTOMATIC1111 webui API's txt2img / img2img bodies: their JSON schemas (the fields and
 * defaults of its StableDiffusionProcessing classes, modules/processing.py, and the API's
 * additions, modules/api/models.py), their mapping onto a JobRequest, and the `info` string its
 * answers carry (Processed.js()).
 *
 * Fields the webui has and sdnode does not act on are accepted at their do-nothing values and
 * refused with a 400 naming them otherwise (restore_faces: true, a script, a hires upscaler it has not …),
 * so a client never gets an image made other than it asked. Unknown fields are ignored, as the
 * webui's own API ignores them.
 */
import { HIRES_UPSCALER_LABELS, MAX_HIRES_SCALE, type HiresUpscalerName } from '../hires.js';
import { MAX_SIDE } from '../tiling.js';
import { MAX_PROMPT_CHARS } from '../text/prompt-limits.js';
import { extractLoraTags } from '../lora.js';
import { packageVersion } from '../cli/version.js';
import { decodeMask, base64Bytes, encodePng, toBase64 } from './images.js';
import { JobError, type JobRequest, type JobResult } from './job-queue.js';
import type { ServerLimits } from './limits.js';
import { checkpointName } from './models.js';
import { samplerAndScheduler, webuiLabels } from './sampler-names.js';
import { SEED_SCHEMA } from './schemas.js';

const nullable = <T extends string>(type: T) => [type, 'null'] as const;

/** The fields of both bodies (StableDiffusionProcessing and the API's additions), with the webui's defaults. */
function commonProperties(limits: ServerLimits) {
  const side = { type: 'integer', minimum: 8, maximum: MAX_SIDE, multipleOf: 8, default: 512 } as const;
  return {
    prompt: { type: 'string', maxLength: MAX_PROMPT_CHARS, default: '' },
    negative_prompt: { type: nullable('string'), maxLength: MAX_PROMPT_CHARS, default: '' },
    styles: { type: nullable('array'), items: { type: 'string' } },
    seed: { ...SEED_SCHEMA, default: -1 },
    subseed: { type: 'integer', default: -1 },
    subseed_strength: { type: 'number', default: 0 },
    seed_resize_from_h: { type: 'integer', default: -1 },
    seed_resize_from_w: { type: 'integer', default: -1 },
    sampler_name: { type: nullable('string'), maxLength: 100, default: null },
    // The API's default sampler: its models.py gives sampler_index "Euler".
    sampler_index: { type: nullable('string'), maxLength: 100, default: 'Euler' },
    scheduler: { type: nullable('string'), maxLength: 100, default: null },
    batch_size: { type: 'integer', minimum: 1, maximum: limits.batch, default: 1 },
    n_iter: { type: 'integer', minimum: 1, maximum: limits.batch, default: 1 },
    steps: { type: 'integer', minimum: 1, maximum: limits.steps, default: 50 },
    cfg_scale: { type: 'number', minimum: 0, maximum: 100, default: 7 },
    width: side,
    height: side,
    restore_faces: { type: nullable('boolean'), default: null },
    tiling: { type: nullable('boolean'), default: null },
    do_not_save_samples: { type: 'boolean', default: false },
    do_not_save_grid: { type: 'boolean', default: false },
    eta: { type: nullable('number') },
    override_settings: {
      type: nullable('object'),
      default: {},
      properties: {
        sd_model_checkpoint: { type: 'string', maxLength: 600 },
        CLIP_stop_at_last_layers: { type: 'integer', minimum: 1, maximum: 64 },
        randn_source: { type: 'string', enum: ['GPU', 'CPU', 'NV'] },
      },
    },
    override_settings_restore_afterwards: { type: 'boolean', default: true },
    refiner_checkpoint: { type: nullable('string') },
    refiner_switch_at: { type: nullable('number') },
    disable_extra_networks: { type: 'boolean', default: false },
    comments: { type: nullable('object') },
    script_name: { type: nullable('string') },
    script_args: { type: 'array', default: [] },
    send_images: { type: 'boolean', default: true },
    save_images: { type: 'boolean', default: false },
    alwayson_scripts: { type: 'object', default: {} },
    force_task_id: { type: nullable('string') },
    infotext: { type: nullable('string') },
  } as const;
}

export function txt2imgSchema(limits: ServerLimits) {
  return {
    type: 'object',
    properties: {
      ...commonProperties(limits),
      denoising_strength: { type: nullable('number'), minimum: 0, maximum: 1 },
      enable_hr: { type: 'boolean', default: false },
      // The hires fix (StableDiffusionProcessingTxt2Img's hr_* fields); 0 sizes: from hr_scale.
      hr_scale: { type: 'number', minimum: 1, maximum: MAX_HIRES_SCALE, default: 2 },
      hr_upscaler: { type: nullable('string'), maxLength: 200 },
      hr_second_pass_steps: { type: 'integer', minimum: 0, maximum: limits.steps, default: 0 },
      hr_resize_x: { type: 'integer', minimum: 0, maximum: MAX_SIDE, default: 0 },
      hr_resize_y: { type: 'integer', minimum: 0, maximum: MAX_SIDE, default: 0 },
      hr_checkpoint_name: { type: nullable('string') },
      hr_sampler_name: { type: nullable('string') },
      hr_scheduler: { type: nullable('string') },
      hr_prompt: { type: 'string', default: '' },
      hr_negative_prompt: { type: 'string', default: '' },
    },
  } as const;
}

export function img2imgSchema(limits: ServerLimits) {
  return {
    type: 'object',
    required: ['init_images'],
    properties: {
      ...commonProperties(limits),
      init_images: { type: 'array', minItems: 1, items: { type: 'string', minLength: 1 } },
      resize_mode: { type: 'integer', default: 0 },
      denoising_strength: { type: 'number', minimum: 0, maximum: 1, default: 0.75 },
      image_cfg_scale: { type: nullable('number') },
      mask: { type: nullable('string') },
      mask_blur_x: { type: 'integer', minimum: 0, maximum: 64, default: 4 },
      mask_blur_y: { type: 'integer', minimum: 0, maximum: 64, default: 4 },
      mask_blur: { type: nullable('integer'), minimum: 0, maximum: 64 },
      inpainting_fill: { type: 'integer', minimum: 0, maximum: 3, default: 0 },
      inpaint_full_res: { type: 'boolean', default: true },
      inpaint_full_res_padding: { type: 'integer', default: 0 },
      inpainting_mask_invert: { type: 'integer', minimum: 0, maximum: 1, default: 0 },
      initial_noise_multiplier: { type: nullable('number') },
      latent_mask: { type: nullable('string') },
      include_init_images: { type: 'boolean', default: false },
    },
  } as const;
}

/** A body as the schemas leave it: every field with a default present. */
export interface A1111Body {
  prompt: string;
  negative_prompt: string | null;
  styles?: string[] | null;
  seed: number;
  subseed: number;
  subseed_strength: number;
  seed_resize_from_h: number;
  seed_resize_from_w: number;
  sampler_name: string | null;
  sampler_index: string | null;
  scheduler: string | null;
  batch_size: number;
  n_iter: number;
  steps: number;
  cfg_scale: number;
  width: number;
  height: number;
  restore_faces: boolean | null;
  tiling: boolean | null;
  denoising_strength?: number | null;
  override_settings: { sd_model_checkpoint?: string; CLIP_stop_at_last_layers?: number; randn_source?: 'GPU' | 'CPU' | 'NV' } | null;
  refiner_checkpoint?: string | null;
  disable_extra_networks: boolean;
  script_name?: string | null;
  send_images: boolean;
  alwayson_scripts: Record<string, unknown>;
  enable_hr?: boolean;
  hr_scale?: number;
  hr_upscaler?: string | null;
  hr_second_pass_steps?: number;
  hr_resize_x?: number;
  hr_resize_y?: number;
  hr_checkpoint_name?: string | null;
  hr_sampler_name?: string | null;
  hr_scheduler?: string | null;
  hr_prompt?: string;
  hr_negative_prompt?: string;
  // img2img
  init_images?: string[];
  resize_mode?: number;
  mask?: string | null;
  mask_blur_x?: number;
  mask_blur_y?: number;
  mask_blur?: number | null;
  inpainting_mask_invert?: number;
  include_init_images?: boolean;
  [field: string]: unknown;
}

/** The webui's options that shape a job, as GET/POST /sdapi/v1/options keeps them. */
export interface A1111Options {
  sd_model_checkpoint: string | null;
  CLIP_stop_at_last_layers: number;
  randn_source: 'GPU' | 'CPU' | 'NV';
  show_progress_every_n_steps: number;
  live_previews_enable: boolean;
}

/** JobRequest fields by the body field a client wrote, for error messages. */
export const A1111_FIELD: Record<string, string> = {
  model: 'override_settings.sd_model_checkpoint',
  negativePrompt: 'negative_prompt',
  cfgScale: 'cfg_scale',
  sampler: 'sampler_name',
  batchCount: 'batch_size',
  clipSkip: 'override_settings.CLIP_stop_at_last_layers',
  initImage: 'init_images[0]',
  strength: 'denoising_strength',
  maskBlur: 'mask_blur',
  hires: 'enable_hr',
};

function unsupported(field: string, what: string): JobError {
  return new JobError({ status: 400, code: 'unsupported', field, message: `${field}: sdnode does not do ${what}; leave it at its default` });
}

/** 400 for each field asking for what sdnode does not do. */
function refuseUnsupported(body: A1111Body): void {
  if (body.restore_faces) throw unsupported('restore_faces', 'face restoration');
  if (body.tiling) throw unsupported('tiling', 'tiling images');
  if (body.subseed_strength !== 0) throw unsupported('subseed_strength', 'variation seeds');
  if (body.seed_resize_from_w > 0 || body.seed_resize_from_h > 0) throw unsupported('seed_resize_from_w', 'seed resizing');
  if (body.styles && body.styles.length > 0) throw unsupported('styles', 'prompt styles');
  if (body.script_name) throw unsupported('script_name', 'scripts');
  const scripts = Object.keys(body.alwayson_scripts);
  if (scripts.length > 0) throw unsupported(`alwayson_scripts.${scripts[0]}`, 'extension scripts');
  if (body.refiner_checkpoint) throw unsupported('refiner_checkpoint', 'switching to a refiner mid-run');
  if (body.init_images && body.init_images.length > 1) throw unsupported('init_images', 'one init image per batch entry; send one');
  if (body.resize_mode !== undefined && body.resize_mode !== 0) throw unsupported('resize_mode', 'resize modes other than 0 (just resize)');
}

/** The model a body names (override_settings.sd_model_checkpoint) or the current one. */
function modelOf(body: A1111Body, options: A1111Options): string {
  const named = body.override_settings?.sd_model_checkpoint ?? options.sd_model_checkpoint;
  if (!named) throw new JobError({ status: 400, code: 'unknown_model', field: 'override_settings.sd_model_checkpoint', message: 'this server has no model; name one in override_settings.sd_model_checkpoint' });
  return named;
}

/**
 * A txt2img or img2img body as a JobRequest: the webui's sampler names mapped, batch_size ×
 * n_iter images, its mask (alpha strokes or luminance, inverted on request) made sdnode's,
 * live previews as its show_progress_every_n_steps asks.
 */
export async function jobRequestOf(body: A1111Body, options: A1111Options): Promise<JobRequest> {
  refuseUnsupported(body);
  const { sampler, scheduler } = samplerAndScheduler(body.sampler_name ?? body.sampler_index, body.scheduler, { sampler: body.sampler_name ? 'sampler_name' : 'sampler_index', scheduler: 'scheduler' }, 'euler');
  const overrides = body.override_settings ?? {};
  const clipSkip = overrides.CLIP_stop_at_last_layers ?? (options.CLIP_stop_at_last_layers > 1 ? options.CLIP_stop_at_last_layers : undefined);
  const randn = overrides.randn_source ?? options.randn_source;
  const interval = options.show_progress_every_n_steps;
  // disable_extra_networks: the webui still takes the tags out of the prompt, and applies none.
  const prompt = body.disable_extra_networks ? extractLoraTags(body.prompt).prompt : body.prompt;
  const request: JobRequest = {
    model: modelOf(body, options),
    prompt,
    negativePrompt: body.negative_prompt ?? '',
    width: body.width,
    height: body.height,
    steps: body.steps,
    cfgScale: body.cfg_scale,
    sampler,
    scheduler,
    seed: body.seed,
    rng: randn === 'CPU' ? 'cpu' : 'cuda',
    batchCount: body.batch_size * body.n_iter,
    ...(clipSkip !== undefined ? { clipSkip } : {}),
    ...(options.live_previews_enable && interval > 0 ? { preview: 'latent2rgb' as const, previewInterval: interval } : {}),
  };
  if (body.enable_hr && !body.init_images) request.hires = hiresOf(body);
  if (body.init_images) {
    request.initImage = body.init_images[0]!;
    request.strength = body.denoising_strength ?? 0.75;
    if (body.mask) {
      const mask = await decodeMask(base64Bytes(body.mask, 'mask'), 'mask', 'webui', body.inpainting_mask_invert === 1);
      request.mask = toBase64(await encodePng(mask));
      const { mask_blur: blur, mask_blur_x: x = 4, mask_blur_y: y = 4 } = body;
      // sdnode blurs the same both ways: the larger of the two.
      request.maskBlur = blur ?? Math.max(x, y);
    }
  }
  return request;
}

/**
 * enable_hr's fields as the hires option: hr_resize_x/y (0: unset) or hr_scale, hr_second_pass_steps
 * (0: steps), denoising_strength (the webui's 0.7 when null), hr_upscaler by its webui name (the
 * latent modes, Lanczos, Nearest; "Latent" when null). What the second pass would do otherwise
 * than the first (another checkpoint, sampler or prompt) is refused.
 */
function hiresOf(body: A1111Body): NonNullable<JobRequest['hires']> {
  if (body.hr_checkpoint_name && body.hr_checkpoint_name !== 'Use same checkpoint') throw unsupported('hr_checkpoint_name', 'another checkpoint for the hires pass');
  if (body.hr_sampler_name && body.hr_sampler_name !== 'Use same sampler') throw unsupported('hr_sampler_name', 'another sampler for the hires pass');
  if (body.hr_scheduler && body.hr_scheduler !== 'Use same scheduler') throw unsupported('hr_scheduler', 'another scheduler for the hires pass');
  if (body.hr_prompt && body.hr_prompt !== body.prompt) throw unsupported('hr_prompt', 'another prompt for the hires pass');
  if (body.hr_negative_prompt && body.hr_negative_prompt !== (body.negative_prompt ?? '')) throw unsupported('hr_negative_prompt', 'another negative prompt for the hires pass');
  const label = body.hr_upscaler ?? 'Latent';
  const upscaler = (Object.keys(HIRES_UPSCALER_LABELS) as HiresUpscalerName[]).find((k) => HIRES_UPSCALER_LABELS[k] === label);
  if (!upscaler) throw unsupported('hr_upscaler', `the '${label}' upscaler (only ${Object.values(HIRES_UPSCALER_LABELS).join(', ')})`);
  const { hr_resize_x: x = 0, hr_resize_y: y = 0 } = body;
  return {
    ...(x > 0 || y > 0 ? { ...(x > 0 ? { width: x } : {}), ...(y > 0 ? { height: y } : {}) } : { scale: body.hr_scale ?? 2 }),
    steps: body.hr_second_pass_steps ?? 0,
    strength: body.denoising_strength ?? 0.7,
    upscaler,
  };
}

/** YYYYMMDDhhmmss, the webui's job_timestamp. */
export function jobTimestamp(ms: number): string {
  const d = new Date(ms);
  const two = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}${two(d.getMonth() + 1)}${two(d.getDate())}${two(d.getHours())}${two(d.getMinutes())}${two(d.getSeconds())}`;
}

/** The answer's `info`: Processed.js() of the webui, filled from what ran. */
export function infoOf(body: A1111Body, request: JobRequest, result: JobResult, startedAt: number): string {
  const s = result.settings;
  const n = result.images.length;
  const labels = webuiLabels(s.sampler, s.scheduler);
  return JSON.stringify({
    prompt: s.prompt,
    all_prompts: Array(n).fill(s.prompt),
    negative_prompt: s.negativePrompt,
    all_negative_prompts: Array(n).fill(s.negativePrompt),
    seed: result.seeds[0],
    all_seeds: result.seeds,
    subseed: body.subseed,
    all_subseeds: Array(n).fill(body.subseed),
    subseed_strength: body.subseed_strength,
    width: s.width,
    height: s.height,
    sampler_name: labels.sampler,
    cfg_scale: s.cfgScale,
    steps: s.steps,
    batch_size: body.batch_size,
    restore_faces: body.restore_faces,
    face_restoration_model: null,
    sd_model_name: checkpointName(result.model),
    sd_model_hash: null,
    sd_vae_name: null,
    sd_vae_hash: null,
    seed_resize_from_w: body.seed_resize_from_w,
    seed_resize_from_h: body.seed_resize_from_h,
    denoising_strength: s.strength ?? s.hires?.strength ?? body.denoising_strength ?? null,
    extra_generation_params: { 'Schedule type': labels.scheduler, ...(s.maskBlur !== undefined ? { 'Mask blur': s.maskBlur } : {}), ...hiresParams(s.hires) },
    index_of_first_image: 0,
    infotexts: result.infotexts,
    styles: body.styles ?? [],
    job_timestamp: jobTimestamp(startedAt),
    clip_skip: request.clipSkip ?? 1,
    is_using_inpainting_conditioning: false,
    version: `sdnode ${packageVersion()}`,
  });
}

/** The webui's extra_generation_params of the hires fix. */
function hiresParams(h: JobRequest['hires']): Record<string, unknown> {
  if (!h) return {};
  return {
    ...(h.scale !== undefined ? { 'Hires upscale': h.scale } : { 'Hires resize': `${h.width ?? h.height}x${h.height ?? h.width}` }),
    ...(h.steps ? { 'Hires steps': h.steps } : {}),
    'Hires upscaler': HIRES_UPSCALER_LABELS[h.upscaler ?? 'latent'],
  };
}
