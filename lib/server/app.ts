/**
 * createServer(): the HTTP server of `sdnode serve` as a Fastify app, not yet listening, for
 * users who mount it in their own service. Every route validates its body, params and query
 * against a JSON schema before its handler runs; every error is JSON with a code.
 *
 * Route modules (lib/server/routes/*.ts) each export a register function taking the app (an
 * encapsulated scope with its own error shape) and the ServerContext; ROUTE_MODULES lists them.
 */
import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify';

import type { Model } from '../model.js';
import { LORA_EXTENSIONS } from '../lora.js';
import type { WeightType } from '../weight-types.js';
import { authCheck } from './auth.js';
import type { ServerContext } from './context.js';
import { errorHandler, sdnodeErrorBody } from './http-errors.js';
import { JobError, QueueClosedError, type JobQueue } from './job-queue.js';
import { resolveLimits, type ServerLimits } from './limits.js';
import { LocalJobQueue } from './local-job-queue.js';
import { ModelCatalog, ModelPool } from './models.js';
import type { NamedFolder } from './names.js';
import { registerA1111Routes } from './routes/a1111.js';
import { registerNativeRoutes } from './routes/native.js';
import { registerOpenAIRoutes } from './routes/openai.js';
import { registerPageRoutes } from './routes/page.js';

export interface CreateServerOptions {
  /** The model served first: a checkpoint path, or a Model already loaded (kept, never disposed by the server). */
  model?: string | Model;
  /** Checkpoints clients may switch to by name (the webui's sd_model_checkpoint, OpenAI's `model`); only files inside it. */
  modelsDir?: string;
  /** LoRAs that `<lora:name:weight>` and request fields name; only files inside it. */
  loraModelDir?: string;
  /** Textual-inversion embeddings for the models the server loads. */
  embdDir?: string;
  /** Requests must carry `Authorization: Bearer <apiKey>`. */
  apiKey?: string;
  /** Or HTTP Basic credentials, 'user:pass' (several joined by ','), as the webui's --api-auth. */
  apiAuth?: string;
  /** What one request may ask; see ServerLimits for the defaults. */
  limits?: Partial<ServerLimits>;
  /** Where jobs go. Default: a LocalJobQueue running them in this process on the models above. The server closes it when it closes. */
  queue?: JobQueue;
  /** Fastify's logger option (false, true, or pino options). Default false. */
  logger?: FastifyServerOptions['logger'];
  /** How long close() lets queued and running jobs finish before cancelling them, ms. Default 30 000. */
  shutdownGraceMs?: number;
  /** For the models the server loads: loadModel's device, threads and weightType. */
  device?: string;
  threads?: number;
  weightType?: WeightType;
  /** Load the first model before returning (default true with the local queue), so that a bad model fails now rather than at the first request. */
  preload?: boolean;
}

/** A route module: registers its routes (and its error shape) on an encapsulated scope. */
export type RouteModule = (app: FastifyInstance, ctx: ServerContext) => Promise<void>;

/** The route modules, registered in this order. */
export const ROUTE_MODULES: RouteModule[] = [registerNativeRoutes, registerA1111Routes, registerOpenAIRoutes, registerPageRoutes];

const DEFAULT_SHUTDOWN_GRACE_MS = 30_000;

/**
 * The server as a Fastify app (call `listen({ port, host })`, or `inject()` in tests). Closing
 * it (app.close()) stops accepting requests, lets jobs finish for shutdownGraceMs, cancels the
 * rest, then disposes the models it loaded.
 */
export async function createServer(options: CreateServerOptions = {}): Promise<FastifyInstance> {
  const limits = resolveLimits(options.limits);
  const auth = authCheck({ ...(options.apiKey !== undefined ? { apiKey: options.apiKey } : {}), ...(options.apiAuth !== undefined ? { apiAuth: options.apiAuth } : {}) });
  const loraFolder: NamedFolder | undefined = options.loraModelDir !== undefined ? { dir: options.loraModelDir, extensions: LORA_EXTENSIONS, kind: 'LoRA' } : undefined;
  let pool: ModelPool | undefined;
  let queue = options.queue;
  // A queue that knows its models (one whose workers hold them) is listed instead of -m and --models-dir.
  let catalog = queue?.models;
  if (!queue) {
    const local = await ModelCatalog.create(options.model, options.modelsDir);
    catalog = local;
    pool = new ModelPool(local, {
      ...(options.device !== undefined ? { device: options.device } : {}),
      ...(options.threads !== undefined ? { threads: options.threads } : {}),
      ...(options.weightType !== undefined ? { weightType: options.weightType } : {}),
      ...(options.embdDir !== undefined ? { embeddingDir: options.embdDir } : {}),
    });
    queue = new LocalJobQueue({
      models: pool,
      ...(options.loraModelDir !== undefined ? { loraDir: options.loraModelDir } : {}),
      maxWaiting: limits.queue,
      maxPixels: limits.pixels,
    });
    if (options.preload !== false && catalog.current !== undefined) await pool.get(catalog.current);
  }
  catalog ??= await ModelCatalog.create(options.model, options.modelsDir);
  const credentials = { apiKey: options.apiKey !== undefined, apiAuth: options.apiAuth !== undefined };
  const ctx: ServerContext = { queue, catalog, loraFolder, limits, credentials };

  const app = Fastify({
    logger: options.logger ?? false,
    bodyLimit: limits.bodyBytes,
    // Bodies are checked as sent: "20" is not a number of steps, and unknown fields are not dropped silently.
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false, allErrors: false, allowUnionTypes: true } },
    // Requests arriving while the server closes are refused below, as JSON with a code like every error.
    return503OnClosing: false,
    // close() waits for running jobs for the grace period, in a hook that would otherwise time out after 10 s.
    pluginTimeout: 0,
  });
  app.setErrorHandler(errorHandler(sdnodeErrorBody));
  app.setNotFoundHandler((request) => {
    throw new JobError({ status: 404, code: 'not_found', message: `no route ${request.method} ${request.url.split('?')[0]}` });
  });
  // Requests being answered (an event stream included): close() waits for them before the
  // listening socket closes, which closes the connections idle at that moment — then all of them.
  let closing = false;
  let inFlight = 0;
  let drained: (() => void) | undefined;
  app.addHook('onRequest', async (_request, reply) => {
    if (closing) {
      reply.header('connection', 'close');
      throw new QueueClosedError();
    }
    inFlight++;
    reply.raw.once('close', () => {
      if (--inFlight === 0) drained?.();
    });
  });
  if (auth) app.addHook('onRequest', async (request) => auth(request));

  for (const register of ROUTE_MODULES) await app.register(async (scope) => register(scope, ctx));

  const grace = options.shutdownGraceMs ?? DEFAULT_SHUTDOWN_GRACE_MS;
  // Before the listening socket closes and in-flight requests are waited for: their jobs finish or are cancelled.
  app.addHook('preClose', async () => {
    closing = true;
    await ctx.queue.close(grace);
    if (inFlight > 0) await new Promise<void>((resolve) => (drained = resolve));
  });
  app.addHook('onClose', async () => {
    await pool?.dispose();
  });
  return app;
}
