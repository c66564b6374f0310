/**
 * What the route modules share: the queue, the models and LoRAs on offer, the limits; and
 * running one job for a request that waits for its answer (the webui and OpenAI routes).
 */
import type { FastifyReply } from 'fastify';

import { jobResult, type JobEvent, type JobQueue, type JobRequest, type JobResult, type ModelDirectory } from './job-queue.js';
import { checkLimits, type ServerLimits } from './limits.js';
import type { NamedFolder } from './names.js';

export interface ServerContext {
  queue: JobQueue;
  /** The models requests may name: the server's (-m, --models-dir) or the queue's. */
  catalog: ModelDirectory;
  /** --lora-model-dir, for listings; the queue resolves the names. */
  loraFolder: NamedFolder | undefined;
  limits: ServerLimits;
  /** Which credentials requests must carry (--api-key: Bearer; --api-auth: Basic); absent or false: none. */
  credentials?: { apiKey: boolean; apiAuth: boolean };
}

/** The reason a job is cancelled with when its client goes away. */
export const CLIENT_GONE = 'the client disconnected';

/**
 * Cancels job `id` when the client's connection closes before the answer was sent; returns the
 * function that stops watching for that.
 */
export function cancelOnDisconnect(queue: JobQueue, id: string, reply: FastifyReply): () => void {
  const onClose = () => {
    if (!reply.raw.writableFinished) void queue.cancel(id, CLIENT_GONE);
  };
  reply.raw.on('close', onClose);
  // Gone already (while the request was being read or checked): no 'close' is to come.
  if (reply.raw.destroyed || reply.raw.socket?.destroyed) onClose();
  return () => reply.raw.off('close', onClose);
}

/**
 * Submits `request` (limits checked first), waits for its result and returns it; the job is
 * cancelled if the client disconnects meanwhile. Rejects with JobError (refused or failed) or
 * JobCancelledError.
 */
export async function runJob(ctx: ServerContext, request: JobRequest, reply: FastifyReply, onEvent?: (event: JobEvent) => void): Promise<JobResult> {
  checkLimits(request, ctx.limits);
  const id = await ctx.queue.submit(request);
  const stop = cancelOnDisconnect(ctx.queue, id, reply);
  try {
    return await jobResult(ctx.queue, id, onEvent);
  } finally {
    stop();
  }
}
