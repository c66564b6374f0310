#!/usr/bin/env node
// `sdnode serve` under load (issue 14): autocannon against the server on 127.0.0.1, bounded to
// --requests requests (default 200) at --connections (default 16) at once, each a webui txt2img
// of the tiny generated model (64², 2 steps). Run 1: a queue deep enough for every connection —
// every request must be answered 200 (0 errors); p50 / p99 latency, throughput, and the
// process's memory after a warm-up and after each of --runs (default 3) identical runs (flat:
// nothing kept per request). Run 2: a queue limit below the connections — the 429s (with Retry-After)
// are counted, and every request is still answered.
// Run after `npm install` (it imports dist/): `npm run bench:server`. Options: --requests N,
// --connections N, --queue-limit N (run 2's, default 4), --steps N, --threads N (default 1: the
// tiny model's ops are too small to split, and on a busy machine a second thread waiting at
// ggml's barriers makes a job take seconds instead of tens of milliseconds).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

import autocannon from 'autocannon';

import { createServer } from '../dist/index.js';
import { generateModel } from '../scripts/generate-model.mjs';

const { values } = parseArgs({
  options: {
    requests: { type: 'string', default: '200' },
    connections: { type: 'string', default: '16' },
    'queue-limit': { type: 'string', default: '4' },
    steps: { type: 'string', default: '2' },
    threads: { type: 'string', default: '1' },
    runs: { type: 'string', default: '3' },
  },
});
const requests = Number(values.requests), connections = Number(values.connections), queueLimit = Number(values['queue-limit']);
const body = JSON.stringify({ prompt: 'a lovely cat', width: 64, height: 64, steps: Number(values.steps), seed: 42 });
// A request waits for the jobs of every other connection ahead of it.
const TIMEOUT_S = 300;
const MIB = 1024 * 1024;

/** The process's memory after a full collection (node --expose-gc, as `npm run bench:server` runs it): what requests left behind. */
function memoryMiB() {
  globalThis.gc?.();
  const { rss, heapUsed } = process.memoryUsage();
  return { rss: +(rss / MIB).toFixed(1), heapUsed: +(heapUsed / MIB).toFixed(1) };
}

async function listening(model, limits) {
  const app = await createServer({ model, device: 'cpu', threads: Number(values.threads), limits });
  await app.listen({ port: 0, host: '127.0.0.1' });
  return { app, url: `http://127.0.0.1:${app.server.address().port}` };
}

function load(url, amount) {
  return autocannon({
    url: `${url}/sdapi/v1/txt2img`,
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body,
    connections,
    amount,
    timeout: TIMEOUT_S,
  });
}

function summary(result) {
  const codes = Object.fromEntries(Object.entries(result.statusCodeStats ?? {}).map(([code, { count }]) => [code, count]));
  return {
    sent: result.requests.sent,
    answered: Object.values(codes).reduce((a, b) => a + b, 0),
    statusCodes: codes,
    errors: result.errors,
    timeouts: result.timeouts,
    p50ms: result.latency.p50,
    p99ms: result.latency.p99,
    maxMs: result.latency.max,
    throughputPerS: Math.round((result.requests.total / result.duration) * 100) / 100,
    durationS: result.duration,
  };
}

const dir = mkdtempSync(join(tmpdir(), 'sdnode-bench-server-'));
try {
  const model = join(dir, 'tiny.safetensors');
  await generateModel({ out: model, preset: 'tiny', dtype: 'f32', seed: 3 });

  // Run 1: every connection's request fits in the queue.
  let { app, url } = await listening(model, { queue: connections * 2 });
  await load(url, connections); // warm-up: the model's first jobs, the code paths compiled
  const memory = [memoryMiB()];
  const runs = [];
  // The same load --runs times: memory after each shows whether requests leave anything behind.
  for (let i = 0; i < Number(values.runs); i++) {
    runs.push(summary(await load(url, requests)));
    memory.push(memoryMiB());
  }
  await app.close();
  console.log(`run 1: ${requests} requests, ${connections} connections, queue limit ${connections * 2}, ${values.threads} thread(s)`);
  console.log(JSON.stringify({ runs, memoryMiB: { afterWarmUp: memory[0], afterEachRun: memory.slice(1) } }, null, 2));

  // Run 2: the queue holds fewer than the connections send: 429s, each request answered.
  ({ app, url } = await listening(model, { queue: queueLimit }));
  const limited = summary(await load(url, requests));
  await app.close();
  console.log(`run 2: ${requests} requests, ${connections} connections, queue limit ${queueLimit}`);
  console.log(JSON.stringify({ limited, rejected429: limited.statusCodes['429'] ?? 0 }, null, 2));

  const ok = runs.every((r) => r.errors === 0 && r.timeouts === 0 && (r.statusCodes['200'] ?? 0) === requests) && limited.answered === requests && limited.errors === 0;
  if (!ok) {
    console.error('server-load: not every request was answered as expected');
    process.exitCode = 1;
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
