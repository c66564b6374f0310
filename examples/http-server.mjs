// @ts-check
// An HTTP endpoint that serves generations, with nothing but node:http.
//
//   node examples/http-server.mjs [model.safetensors] [port]     (port: default 8080, 0 = any free)
//   curl -X POST localhost:8080/generate -d '{"prompt": "a red fox in the snow", "seed": 1}' -o fox.png
//
// POST /generate takes generate()'s options as JSON and answers image/png (the seed in the
// X-Seed header). One model serves every request: its jobs run one at a time in arrival
// order (the model's own FIFO queue), so concurrent requests simply wait their turn. Answers:
// 400 for bad parameters (sdnode's TypeError/RangeError message, which names the option),
// 503 when too many requests are waiting, 500 for anything else. A client that disconnects
// cancels its job, queued or running. Ctrl-C (or SIGTERM) stops the server.
import { createServer } from 'node:http';
import sharp from 'sharp';

import { AbortError, loadModel } from 'sdnode';

import { exampleModel } from './inputs.mjs';

const [given, port = '8080'] = process.argv.slice(2);
const { path, tiny } = await exampleModel(given);
const model = await loadModel(path);

/** The options a client may set (the rest, e.g. batchCount or initImage, are not served here). */
const ACCEPTED = ['prompt', 'negativePrompt', 'width', 'height', 'steps', 'cfgScale', 'sampler', 'scheduler', 'seed', 'rng', 'clipSkip'];
/** What the server sets when the client does not: small and quick on the tiny model. */
const DEFAULTS = tiny ? { width: 64, height: 64, steps: 8 } : { width: 512, height: 512, steps: 20 };
/** Limits that keep one request from holding the model for hours. */
const MAX_PIXELS = 1024 * 1024, MAX_STEPS = 50, MAX_WAITING = 8, MAX_BODY = 64 * 1024;

/** Thrown for a request we refuse: its HTTP status and message. */
class HttpError extends Error {
  /** @param {number} status @param {string} message */
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

let waiting = 0; // requests queued or running on the model
let jobs = 0;

/** @param {import('node:http').IncomingMessage} req */
async function readParams(req) {
  let body = '';
  for await (const chunk of req) {
    body += chunk;
    if (body.length > MAX_BODY) throw new HttpError(413, `the body is over ${MAX_BODY} bytes`);
  }
  let params;
  try {
    params = JSON.parse(body);
  } catch {
    throw new HttpError(400, 'the body must be JSON, e.g. {"prompt": "a cat"}');
  }
  if (params === null || typeof params !== 'object' || Array.isArray(params)) throw new HttpError(400, 'the body must be a JSON object');
  for (const key of Object.keys(params)) {
    if (!ACCEPTED.includes(key)) throw new HttpError(400, `unknown parameter '${key}' (accepted: ${ACCEPTED.join(', ')})`);
  }
  const options = { ...DEFAULTS, ...params };
  if (options.width * options.height > MAX_PIXELS) throw new HttpError(400, `width × height must be at most ${MAX_PIXELS} pixels`);
  if (options.steps > MAX_STEPS) throw new HttpError(400, `steps must be at most ${MAX_STEPS}`);
  return options;
}

const server = createServer(async (req, res) => {
  /** @param {number} status @param {string} message */
  const fail = (status, message) => {
    if (res.headersSent || res.destroyed) return;
    res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify({ error: message }));
  };
  if (req.url !== '/generate') return fail(404, 'POST /generate');
  if (req.method !== 'POST') return fail(405, 'POST /generate');
  const job = ++jobs;
  // A client that goes away (closes the connection before the answer) cancels its job.
  const controller = new AbortController();
  res.on('close', () => {
    if (!res.writableFinished) controller.abort();
  });
  try {
    const options = await readParams(req);
    if (waiting >= MAX_WAITING) throw new HttpError(503, `${waiting} requests are waiting; try again later`);
    waiting++;
    try {
      const started = performance.now();
      // generate() checks every option synchronously (TypeError/RangeError) before queueing.
      const { images, seed } = await model.generate({ ...options, signal: controller.signal });
      const png = await sharp(images[0].data, { raw: { width: images[0].width, height: images[0].height, channels: 3 } }).png().toBuffer();
      res.writeHead(200, { 'content-type': 'image/png', 'content-length': png.length, 'x-seed': String(seed) }).end(png);
      console.log(`job ${job}: ${images[0].width}×${images[0].height}, seed ${seed}, ${Math.round(performance.now() - started)} ms`);
    } finally {
      waiting--;
    }
  } catch (err) {
    if (err instanceof HttpError) {
      fail(err.status, err.message);
    } else if (err instanceof TypeError || err instanceof RangeError) {
      fail(400, err.message);
    } else if (err instanceof AbortError) {
      console.log(`job ${job}: cancelled, the client went away`);
    } else {
      console.error(`job ${job}:`, err);
      fail(500, 'generation failed');
    }
  }
});

server.listen(Number(port), '127.0.0.1', () => {
  const address = server.address();
  console.log(`listening on http://127.0.0.1:${typeof address === 'object' && address ? address.port : port}/generate`);
});

// Stop taking requests, cancel the open ones (closing their connections aborts their jobs),
// then free the model once its queue is empty.
for (const signal of /** @type {const} */ (['SIGINT', 'SIGTERM'])) {
  process.once(signal, () => {
    server.close();
    server.closeAllConnections();
    model.dispose().then(() => console.log('stopped'));
  });
}
