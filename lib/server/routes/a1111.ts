/**
 * The AUTOMATIC1111 webui's API (modules/api/api.py), the one many tools already speak:
 *
 *   POST /sdapi/v1/txt2img, /img2img  → { images: [base64 PNG], parameters, info }
 *   GET  /sdapi/v1/progress           progress, eta_relative, state, current_image (a live preview)
 *   POST /sdapi/v1/interrupt          cancels the running job (its request answers 409 'cancelled')
 *   GET  /sdapi/v1/sd-models, /samplers, /schedulers, /loras
 *   GET|POST /sdapi/v1/options        sd_model_checkpoint switches among --models-dir's files only
 *
 * Errors are sdnode's JSON ({ error: { code, message, field } }) with the webui's field names.
 */
import type { FastifyInstance, FastifyReply } from 'fastify';

import { SAMPLERS } from '../../samplers.js';
import { WEBUI_SAMPLER } from '../../cli/infotext.js';
import {
  A1111_FIELD,
  img2imgSchema,
  infoOf,
  jobRequestOf,
  jobTimestamp,
  txt2imgSchema,
  type A1111Body,
  type A1111Options,
} from '../a1111-request.js';
import { runJob, type ServerContext } from '../context.js';
import { errorHandler, sdnodeErrorBody } from '../http-errors.js';
import { listNames } from '../names.js';
import { checkpointName } from '../models.js';
import { WEBUI_SAMPLER_ALIASES, WEBUI_SCHEDULERS } from '../sampler-names.js';

/** The webui's defaults for the options that shape jobs (modules/shared_options.py). */
const OPTION_DEFAULTS = {
  CLIP_stop_at_last_layers: 1,
  randn_source: 'GPU',
  show_progress_every_n_steps: 10,
  live_previews_enable: true,
  samples_format: 'png',
  sd_vae: 'Automatic',
  sd_checkpoint_hash: null,
} as const;

/** What POST /sdapi/v1/options may set, and how each is checked. */
const OPTIONS_SCHEMA = {
  type: 'object',
  properties: {
    sd_model_checkpoint: { type: 'string', minLength: 1, maxLength: 600 },
    CLIP_stop_at_last_layers: { type: 'integer', minimum: 1, maximum: 64 },
    randn_source: { type: 'string', enum: ['GPU', 'CPU', 'NV'] },
    show_progress_every_n_steps: { type: 'integer', minimum: -1, maximum: 1000 },
    live_previews_enable: { type: 'boolean' },
  },
} as const;

/** Samplers the webui's "Automatic" schedule runs with Karras, as its samplers' options say. */
const KARRAS_BY_DEFAULT = new Set(['dpm2', 'dpm++2m', 'dpm++2s_a']);

export async function registerA1111Routes(app: FastifyInstance, ctx: ServerContext): Promise<void> {
  app.setErrorHandler(errorHandler(sdnodeErrorBody, (field) => A1111_FIELD[field] ?? field));
  const settings: Omit<A1111Options, 'sd_model_checkpoint'> & Record<string, unknown> = { ...OPTION_DEFAULTS };
  const options = (): A1111Options & Record<string, unknown> => ({ ...settings, sd_model_checkpoint: ctx.catalog.current ?? null });
  /** The job /interrupt cancelled, for /progress's state.interrupted. */
  let interrupted: string | undefined;

  const generate = async (body: A1111Body, reply: FastifyReply, img2img: boolean) => {
    const request = await jobRequestOf(body, options());
    let startedAt = Date.now();
    const result = await runJob(ctx, request, reply, (event) => {
      if (event.type === 'started') startedAt = event.startedAt;
    });
    // The webui answers with the request as it took it; init images and mask only when asked.
    const parameters = img2img && !body.include_init_images ? { ...body, init_images: null, mask: null } : body;
    return { images: body.send_images ? result.images : [], parameters, info: infoOf(body, request, result, startedAt) };
  };

  app.post<{ Body: A1111Body }>('/sdapi/v1/txt2img', { schema: { body: txt2imgSchema(ctx.limits) } }, (request, reply) => generate(request.body, reply, false));
  app.post<{ Body: A1111Body }>('/sdapi/v1/img2img', { schema: { body: img2imgSchema(ctx.limits) } }, (request, reply) => generate(request.body, reply, true));

  app.get('/sdapi/v1/progress', { schema: { querystring: { type: 'object', properties: { skip_current_image: { type: 'string' } } } } }, async (request) => {
    const skipImage = /^(true|1)$/i.test((request.query as { skip_current_image?: string }).skip_current_image ?? '');
    const { running } = await ctx.queue.snapshot();
    const idleState = { skipped: false, interrupted: false, stopping_generation: false, job: '', job_count: 0, job_timestamp: '0', job_no: 0, sampling_step: 0, sampling_steps: 0 };
    if (!running) return { progress: 0, eta_relative: 0, state: idleState, current_image: null, textinfo: null };
    // sdnode counts steps across the batch; the webui counts jobs (images) and steps within one.
    const perImage = running.steps > 0 ? running.steps / running.batchCount : 0;
    const jobNo = perImage > 0 ? Math.min(running.batchCount - 1, Math.floor(running.step / perImage)) : 0;
    const progress = Math.min(1, 0.01 + (running.steps > 0 ? running.step / running.steps : 0));
    const elapsed = (Date.now() - running.startedAt) / 1000;
    return {
      progress,
      eta_relative: elapsed / progress - elapsed,
      state: {
        ...idleState,
        interrupted: interrupted === running.id,
        job: `sdnode-${running.id}`,
        job_count: running.batchCount,
        job_timestamp: jobTimestamp(running.startedAt),
        job_no: jobNo,
        sampling_step: running.step - jobNo * perImage,
        sampling_steps: perImage,
      },
      current_image: !skipImage && running.preview ? running.preview : null,
      textinfo: null,
    };
  });

  app.post('/sdapi/v1/interrupt', async () => {
    const { running } = await ctx.queue.snapshot();
    if (running && (await ctx.queue.cancel(running.id, 'interrupted by /sdapi/v1/interrupt'))) interrupted = running.id;
    return {};
  });

  app.get('/sdapi/v1/sd-models', async () =>
    (await ctx.catalog.list()).map((m) => ({ title: m.name, model_name: checkpointName(m.name), hash: null, sha256: null, filename: m.name, config: null })),
  );

  app.get('/sdapi/v1/samplers', async () =>
    SAMPLERS.filter((s) => s !== 'ddim_trailing').map((s) => ({
      name: WEBUI_SAMPLER[s],
      aliases: WEBUI_SAMPLER_ALIASES[s],
      options: KARRAS_BY_DEFAULT.has(s) ? { scheduler: 'karras' } : {},
    })),
  );

  app.get('/sdapi/v1/schedulers', async () =>
    WEBUI_SCHEDULERS.map((s) => ({ name: s.name, label: s.label, aliases: s.aliases, default_rho: s.defaultRho, need_inner_model: false })),
  );

  app.get('/sdapi/v1/loras', async () =>
    (ctx.loraFolder ? await listNames(ctx.loraFolder) : []).map((l) => ({ name: l.name, alias: l.name, path: l.file, metadata: {} })),
  );

  app.get('/sdapi/v1/options', async () => options());

  app.post<{ Body: Partial<A1111Options> }>('/sdapi/v1/options', { schema: { body: OPTIONS_SCHEMA } }, async (request, reply) => {
    const { sd_model_checkpoint: checkpoint, ...rest } = request.body;
    // Checked before anything changes: a bad name leaves every option as it was.
    if (checkpoint !== undefined) await ctx.catalog.select(checkpoint, 'sd_model_checkpoint');
    for (const key of Object.keys(OPTIONS_SCHEMA.properties)) if (key in rest) settings[key] = (rest as Record<string, unknown>)[key];
    // The webui answers null; options it does not know are ignored, as it ignores them.
    return reply.type('application/json; charset=utf-8').send('null');
  });
}
