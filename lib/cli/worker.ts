/**
 * `sdnode worker`: one machine of a scale-out. It holds one model and takes that model's jobs
 * from the Redis queue that `sdnode serve --queue` fronts (lib/server/queue/redis-worker.ts),
 * until SIGTERM or Ctrl-C: then it takes no more, lets the running jobs finish for
 * --shutdown-grace seconds, gives those still running back to the queue and exits 0.
 */
import { Command } from 'commander';

import { startRedisWorker } from '../index.js';
import { count, number, seconds } from './args.js';
import { EXIT, EXIT_CODES_HELP, UsageError, classify, reportFailure } from './exit.js';
import { withLoadFlags, type LoadFlags } from './load-flags.js';

/** The defaults; the lock and stalled-check timings are BullMQ's own (lib/server/queue/redis-worker.ts says why). */
export const WORKER_DEFAULTS = { concurrency: 1, shutdownGrace: 30, lockDuration: 30, stalledInterval: 30, prefix: 'sdnode' } as const;

const MS_PER_SECOND = 1000;

interface Flags extends LoadFlags {
  queue?: string;
  queuePrefix: string;
  model?: string;
  modelsDir?: string;
  loraModelDir?: string;
  embdDir?: string;
  concurrency: number;
  shutdownGrace: number;
  lockDuration: number;
  stalledInterval: number;
}

export function workerCommand(): Command {
  const d = WORKER_DEFAULTS;
  return withLoadFlags(
    new Command('worker')
      .description("takes jobs of one model from the Redis queue that 'sdnode serve --queue' fronts, on this machine")
      .option('--queue <url>', 'the Redis the front end queues jobs on: redis://[user:password@]host:port[/db]')
      .option('--queue-prefix <name>', 'prefix of the Redis keys, as the front end\'s (several deployments on one Redis)', d.prefix)
      .option('-m, --model <path>', 'the model this worker holds: a checkpoint (.safetensors, .ckpt, .gguf)')
      .option('--models-dir <dir>', 'the folder the model is named in, as the front end\'s clients name it (its path there); otherwise its file name')
      .option('--lora-model-dir <dir>', 'LoRAs that <lora:name:weight> in prompts names; only files inside it')
      .option('--embd-dir <dir>', 'textual-inversion embeddings')
      .option('--concurrency <n>', 'jobs at once, each on its own copy of the model (memory × n)', number, d.concurrency)
      .option('--shutdown-grace <seconds>', 'on SIGTERM / Ctrl-C, how long running jobs may finish before they go back to the queue', number, d.shutdownGrace)
      .option('--lock-duration <seconds>', "how long a job's lock lasts unless renewed (every half of it); a dead worker's job runs elsewhere after about this plus --stalled-interval", number, d.lockDuration)
      .option('--stalled-interval <seconds>', 'how often this worker looks for jobs whose worker died', number, d.stalledInterval),
  )
    .addHelpText('after', `
Examples:
  sdnode serve --queue redis://redis:6379 --host 0.0.0.0 --api-key secret     # the front end
  sdnode worker --queue redis://redis:6379 -m sd15.safetensors                 # on each GPU machine
  sdnode worker --queue redis://redis:6379 -m models/sdxl/base.gguf --models-dir models/

Jobs reach only workers that hold the model they name. A worker that dies mid-job loses
nothing: another worker holding the model runs the job again (same seed, same image).
SIGTERM or Ctrl-C: no new jobs are taken, running ones get --shutdown-grace seconds to finish,
the rest go back to the queue for other workers, then the worker exits 0.

${EXIT_CODES_HELP}`)
    .action(async (flags: Flags) => {
      process.exitCode = await runWorker(flags);
    });
}

async function runWorker(f: Flags): Promise<number> {
  try {
    if (!f.queue) throw new UsageError('give the Redis queue with --queue redis://host:6379');
    if (!f.model) throw new UsageError('give the model this worker holds with -m/--model <file>');
    if (!(f.shutdownGrace >= 0)) throw new UsageError(`--shutdown-grace must be 0 or more seconds, got ${f.shutdownGrace}`);
    const log = (line: string) => process.stderr.write(`sdnode worker: ${line}\n`);
    const worker = await startRedisWorker({
      url: f.queue,
      prefix: f.queuePrefix,
      model: f.model,
      ...(f.modelsDir ? { modelsDir: f.modelsDir } : {}),
      ...(f.loraModelDir ? { loraModelDir: f.loraModelDir } : {}),
      ...(f.embdDir ? { embdDir: f.embdDir } : {}),
      concurrency: count('--concurrency', f.concurrency),
      lockDurationMs: seconds('--lock-duration', f.lockDuration),
      stalledIntervalMs: seconds('--stalled-interval', f.stalledInterval),
      device: f.device,
      ...(f.threads !== undefined ? { threads: count('--threads', f.threads) } : {}),
      ...(f.type ? { weightType: f.type } : {}),
      log,
    });
    await new Promise<void>((resolve) => {
      let closing = false;
      const stop = (signal: NodeJS.Signals) => {
        if (closing) {
          process.stderr.write(`sdnode worker: ${signal} again, exiting now\n`);
          process.exit(EXIT.interrupted);
        }
        closing = true;
        log(`${signal}: taking no more jobs, letting running ones finish (up to ${f.shutdownGrace} s)`);
        void worker.close(f.shutdownGrace * MS_PER_SECOND).then(resolve);
      };
      process.on('SIGTERM', stop);
      process.on('SIGINT', stop);
    });
    log('stopped');
    return EXIT.ok;
  } catch (err) {
    return reportFailure('worker', classify(err, { model: '--model' }), false);
  }
}
