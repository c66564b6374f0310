/**
 * sdnode's own API, for clients that want the queue's events:
 *
 *   POST   /sdnode/v1/jobs             a JobRequest → 202 { id, events } (400 / 429 at once)
 *   GET    /sdnode/v1/jobs/:id/events  Server-Sent Events: queued {position}, started,
 *                                      progress {step, steps, elapsedMs, preview?}, then one
 *                                      of done {result}, error {error}, cancelled {reason};
 *                                      closing the stream before the end cancels the job
 *   GET    /sdnode/v1/jobs/:id         the job's state now; the result once done
 *   DELETE /sdnode/v1/jobs/:id         cancels it (through the job's AbortSignal)
 *   GET    /sdnode/v1/models, /loras   what requests may name
 */
import type { FastifyInstance } from 'fastify';

import { CLIENT_GONE, type ServerContext } from '../context.js';
import { errorHandler, sdnodeErrorBody } from '../http-errors.js';
import { JobError, TERMINAL_EVENTS, type JobEvent, type JobRequest } from '../job-queue.js';
import { checkLimits } from '../limits.js';
import { listNames } from '../names.js';
import { JOB_ID_PARAMS, jobRequestSchema } from '../schemas.js';

/** A comment line now and then keeps proxies from closing an SSE stream that waits in a long queue. */
const SSE_HEARTBEAT_MS = 15_000;

function unknownJob(id: string): JobError {
  return new JobError({ status: 404, code: 'unknown_job', field: 'id', message: `no job '${id}' (never submitted, or ended and forgotten)` });
}

/** The events the queue tells about a job now, without waiting for more. */
async function presentEvents(ctx: ServerContext, id: string): Promise<JobEvent[] | undefined> {
  const events: JobEvent[] = [];
  const stop = await ctx.queue.watch(id, (e) => events.push(e));
  stop?.();
  return stop ? events : undefined;
}

export async function registerNativeRoutes(app: FastifyInstance, ctx: ServerContext): Promise<void> {
  app.setErrorHandler(errorHandler(sdnodeErrorBody));

  app.post<{ Body: Omit<JobRequest, 'model'> & { model?: string } }>(
    '/sdnode/v1/jobs',
    { schema: { body: jobRequestSchema(ctx.limits) } },
    async (request, reply) => {
      const model = request.body.model ?? ctx.catalog.current;
      if (model === undefined) throw new JobError({ status: 400, code: 'unknown_model', field: 'model', message: 'model: this server has no model; name one' });
      const job: JobRequest = { ...request.body, model };
      checkLimits(job, ctx.limits);
      const id = await ctx.queue.submit(job);
      return reply.code(202).send({ id, events: `/sdnode/v1/jobs/${id}/events` });
    },
  );

  app.get<{ Params: { id: string } }>('/sdnode/v1/jobs/:id/events', { schema: { params: JOB_ID_PARAMS } }, async (request, reply) => {
    const { id } = request.params;
    const res = reply.raw;
    let ended = false;
    let opened = false;
    const pending: JobEvent[] = [];
    const write = (event: JobEvent) => {
      if (ended) return;
      res.write(`event: ${event.type}\ndata: ${JSON.stringify(event)}\n\n`);
      if (TERMINAL_EVENTS.has(event.type)) {
        ended = true;
        res.end();
      }
    };
    const stop = await ctx.queue.watch(id, (event) => (opened ? write(event) : pending.push(event)));
    if (!stop) throw unknownJob(id);
    // From here the stream is this handler's own: Fastify sends nothing more.
    reply.hijack();
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache, no-transform',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
    });
    opened = true;
    for (const event of pending) write(event);
    const heartbeat = setInterval(() => res.write(': keep-alive\n\n'), SSE_HEARTBEAT_MS).unref();
    res.on('close', () => {
      clearInterval(heartbeat);
      stop();
      // The client left before the end: nobody will take the image.
      if (!ended) void ctx.queue.cancel(id, CLIENT_GONE);
      ended = true;
    });
    if (ended) stop();
  });

  app.get<{ Params: { id: string } }>('/sdnode/v1/jobs/:id', { schema: { params: JOB_ID_PARAMS } }, async (request) => {
    const { id } = request.params;
    const events = await presentEvents(ctx, id);
    if (!events) throw unknownJob(id);
    const last = events[events.length - 1];
    const progress = events.find((e) => e.type === 'progress');
    switch (last?.type) {
      case 'queued':
        return { id, state: 'queued', position: last.position };
      case 'done':
        return { id, state: 'done', result: last.result };
      case 'error':
        return { id, state: 'error', error: last.error };
      case 'cancelled':
        return { id, state: 'cancelled', reason: last.reason };
      default:
        return { id, state: 'running', ...(progress?.type === 'progress' ? { progress } : {}) };
    }
  });

  app.delete<{ Params: { id: string } }>('/sdnode/v1/jobs/:id', { schema: { params: JOB_ID_PARAMS } }, async (request) => {
    const { id } = request.params;
    if (!(await ctx.queue.cancel(id, 'cancelled by DELETE'))) throw new JobError({ status: 404, code: 'unknown_job', field: 'id', message: `no waiting or running job '${id}'` });
    return { id, cancelled: true };
  });

  app.get('/sdnode/v1/models', async () => {
    const models = await ctx.catalog.list();
    return { current: ctx.catalog.current ?? null, models: models.map((m) => ({ name: m.name })) };
  });

  app.get('/sdnode/v1/loras', async () => {
    const loras = ctx.loraFolder ? await listNames(ctx.loraFolder) : [];
    return { loras: loras.map((l) => ({ name: l.name, file: l.file })) };
  });
}
