/**
 * The scale-out's entry points as the package exports them: BullMQ and ioredis are loaded when
 * a Redis queue or worker is made, not by every `import 'sdnode'`.
 *
 *   const queue = await connectRedisQueue({ url: 'redis://redis:6379' });
 *   const app = await createServer({ queue });            // a front end: runs no job itself
 *
 *   const worker = await startRedisWorker({ url: 'redis://redis:6379', model: 'sd15.safetensors' });
 *   process.on('SIGTERM', () => worker.close(30_000));    // finish, or give the job back
 */
import type { RedisJobQueue, RedisJobQueueOptions } from './redis-job-queue.js';
import type { RedisWorker, RedisWorkerOptions } from './queue/redis-worker.js';

/** A JobQueue on Redis for createServer({ queue }); rejects (QueueUnreachableError) when Redis cannot be reached. */
export async function connectRedisQueue(options: RedisJobQueueOptions): Promise<RedisJobQueue> {
  const { RedisJobQueue } = await import('./redis-job-queue.js');
  return RedisJobQueue.connect(options);
}

/** A worker taking its model's jobs from Redis until close(); rejects when Redis cannot be reached or the model does not load. */
export async function startRedisWorker(options: RedisWorkerOptions): Promise<RedisWorker> {
  const { RedisWorker } = await import('./queue/redis-worker.js');
  return RedisWorker.start(options);
}
