/**
 * `sdnode serve`: the HTTP server (lib/server) on one loaded model — the AUTOMATIC1111 webui
 * API, OpenAI's images API and sdnode's own — until SIGTERM or Ctrl-C, which stop new requests,
 * let running jobs finish for --shutdown-grace seconds, cancel the rest and exit 0.
 */
import { Command } from 'commander';

import { connectRedisQueue, createServer, type JobQueue } from '../index.js';
import { count, number } from './args.js';
import { EXIT, EXIT_CODES_HELP, UsageError, classify, reportFailure } from './exit.js';
import { withLoadFlags, type LoadFlags } from './load-flags.js';

/** The defaults, as the webui's: port 7860, this machine only. */
export const SERVE_DEFAULTS = { port: 7860, host: '127.0.0.1', maxBodyMb: 32, maxPixels: 2048 * 2048, maxSteps: 150, maxBatch: 8, maxQueue: 32, shutdownGrace: 30 } as const;

/** Secrets may come from the environment, which other users of the machine cannot list as they can list arguments. */
const ENV = { apiKey: 'SDNODE_API_KEY', apiAuth: 'SDNODE_API_AUTH' } as const;

const BYTES_PER_MB = 1024 * 1024;
const MS_PER_SECOND = 1000;

interface Flags extends LoadFlags {
  queue?: string;
  queuePrefix: string;
  model?: string;
  modelsDir?: string;
  loraModelDir?: string;
  embdDir?: string;
  port: number;
  host: string;
  apiKey?: string;
  apiAuth?: string;
  maxBodyMb: number;
  maxPixels: number;
  maxSteps: number;
  maxBatch: number;
  maxQueue: number;
  shutdownGrace: number;
  log?: boolean;
}

export function serveCommand(): Command {
  const d = SERVE_DEFAULTS;
  return withLoadFlags(
    new Command('serve')
      .description("an HTTP server on a loaded model: the AUTOMATIC1111 webui API (/sdapi/v1), OpenAI's images API (/v1/images) and sdnode's own (/sdnode/v1)")
      .option('-m, --model <path>', 'the model served first: a checkpoint (.safetensors, .ckpt, .gguf) or a diffusers folder')
      .option('--queue <url>', "scale out: put jobs on this Redis (redis://host:6379) for 'sdnode worker' processes to run; the server then loads no model and offers the workers' models")
      .option('--queue-prefix <name>', 'prefix of the Redis keys, as the workers\' (several deployments on one Redis)', 'sdnode')
      .option('--models-dir <dir>', 'checkpoints clients may switch to by name (the webui\'s sd_model_checkpoint, OpenAI\'s model); only files inside it')
      .option('--lora-model-dir <dir>', 'LoRAs that <lora:name:weight> in prompts names; only files inside it')
      .option('--embd-dir <dir>', 'textual-inversion embeddings')
      .option('--port <n>', 'TCP port (0: any free one)', number, d.port)
      .option('--host <address>', 'address to listen on; 0.0.0.0 opens the server to the network — set --api-key or --api-auth then', d.host)
      .option('--api-key <key>', `requests must send Authorization: Bearer <key> (or set ${ENV.apiKey})`)
      .option('--api-auth <user:pass>', `HTTP Basic credentials, several joined by ',' (or set ${ENV.apiAuth})`)
      .option('--max-body-mb <n>', 'largest request body, MiB', number, d.maxBodyMb)
      .option('--max-pixels <n>', 'largest image a request makes, width × height', number, d.maxPixels)
      .option('--max-steps <n>', 'most sampling steps a request may ask', number, d.maxSteps)
      .option('--max-batch <n>', 'most images one request may ask', number, d.maxBatch)
      .option('--max-queue <n>', 'most jobs waiting; more are answered 429 with Retry-After', number, d.maxQueue)
      .option('--shutdown-grace <seconds>', 'on SIGTERM / Ctrl-C, how long running jobs may finish before they are cancelled', number, d.shutdownGrace),
  )
    .option('--log', 'log each request as a JSON line on stdout')
    .addHelpText('after', `
Examples:
  sdnode serve -m v1-5-pruned-emaonly.safetensors
  sdnode serve -m sd15.safetensors --models-dir models/ --lora-model-dir loras/ --port 7860
  sdnode serve --queue redis://127.0.0.1:6379      # jobs run by 'sdnode worker --queue … -m …'
  SDNODE_API_KEY=secret sdnode serve -m sd15.safetensors --host 0.0.0.0

  curl -s localhost:7860/sdapi/v1/txt2img -H 'content-type: application/json' \\
       -d '{"prompt": "a lovely cat", "steps": 20}' | jq -r '.images[0]' | base64 -d > cat.png

SIGTERM or Ctrl-C: new requests are refused, running jobs get --shutdown-grace seconds to
finish, the rest are cancelled (their clients get an error), then the server exits 0.

${EXIT_CODES_HELP}`)
    .action(async (flags: Flags) => {
      process.exitCode = await runServe(flags);
    });
}

async function runServe(f: Flags): Promise<number> {
  let closing: Promise<void> | undefined;
  try {
    if (f.queue && (f.model || f.modelsDir)) throw new UsageError("with --queue the workers hold the models: give -m to 'sdnode worker --queue … -m <model>', not to serve");
    if (!f.queue && !f.model && !f.modelsDir) throw new UsageError('give the model with -m/--model <file>, or a folder of them with --models-dir <dir>');
    if (!Number.isInteger(f.port) || f.port < 0 || f.port > 65535) throw new UsageError(`--port must be 0 … 65535, got ${f.port}`);
    if (!(f.shutdownGrace >= 0)) throw new UsageError(`--shutdown-grace must be 0 or more seconds, got ${f.shutdownGrace}`);
    const apiKey = f.apiKey ?? process.env[ENV.apiKey];
    const apiAuth = f.apiAuth ?? process.env[ENV.apiAuth];
    // Scale-out: Redis is reached now (exit 1 naming it when it cannot be), before the port opens.
    let queue: JobQueue | undefined;
    if (f.queue) queue = await connectRedisQueue({ url: f.queue, prefix: f.queuePrefix, maxWaiting: count('--max-queue', f.maxQueue), maxPixels: count('--max-pixels', f.maxPixels) });
    const app = await createServer({
      ...(queue ? { queue } : {}),
      ...(f.model ? { model: f.model } : {}),
      ...(f.modelsDir ? { modelsDir: f.modelsDir } : {}),
      ...(f.loraModelDir ? { loraModelDir: f.loraModelDir } : {}),
      ...(f.embdDir ? { embdDir: f.embdDir } : {}),
      ...(apiKey ? { apiKey } : {}),
      ...(apiAuth ? { apiAuth } : {}),
      limits: {
        bodyBytes: count('--max-body-mb', f.maxBodyMb) * BYTES_PER_MB,
        pixels: count('--max-pixels', f.maxPixels),
        steps: count('--max-steps', f.maxSteps),
        batch: count('--max-batch', f.maxBatch),
        queue: count('--max-queue', f.maxQueue),
      },
      shutdownGraceMs: f.shutdownGrace * MS_PER_SECOND,
      device: f.device,
      ...(f.threads !== undefined ? { threads: count('--threads', f.threads) } : {}),
      ...(f.type ? { weightType: f.type } : {}),
      logger: Boolean(f.log),
    });
    const stopped = new Promise<void>((resolve) => {
      const stop = (signal: NodeJS.Signals) => {
        if (closing) {
          // A second signal: no more waiting.
          process.stderr.write(`sdnode serve: ${signal} again, exiting now\n`);
          process.exit(EXIT.interrupted);
        }
        process.stderr.write(`sdnode serve: ${signal}: refusing new requests, letting running jobs finish (up to ${f.shutdownGrace} s)\n`);
        closing = app.close().then(resolve);
      };
      process.on('SIGTERM', stop);
      process.on('SIGINT', stop);
    });
    const address = await app.listen({ port: f.port, host: f.host });
    process.stderr.write(`sdnode serve: listening on ${address}${apiKey || apiAuth ? ' (credentials required)' : ''}\n`);
    if (!apiKey && !apiAuth && !['127.0.0.1', 'localhost', '::1'].includes(f.host))
      process.stderr.write(`sdnode serve: warning: ${f.host} is reachable from other machines and no --api-key or --api-auth is set\n`);
    await stopped;
    process.stderr.write('sdnode serve: stopped\n');
    return EXIT.ok;
  } catch (err) {
    return reportFailure('serve', classify(err, { model: '--model' }), false);
  }
}
