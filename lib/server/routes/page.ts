/**
 * The web page of `sdnode serve`:
 *
 *   GET /                  the page (lib/server/web/index.html)
 *   GET /ui/<file>         its scripts, style sheet and icon (the other files of lib/server/web)
 *   GET /ui/config.json    what the form offers: samplers, schedules, the server's limits, and
 *                          which credentials the API wants
 *
 * The page is a client of the native API (POST /sdnode/v1/jobs, its event stream, DELETE).
 * These routes are public: they hold no data, and the page's API calls carry the credentials the
 * user types in. Files are read once at start-up into memory and served only by their names in
 * that folder, so no path a client sends reaches the file system. Each answer has an ETag and
 * `no-cache` (revalidated, so that an upgraded server never runs yesterday's script), and a
 * Content-Security-Policy allowing nothing but this origin's own scripts and styles.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';

import { WEBUI_SAMPLER } from '../../cli/infotext.js';
import { SAMPLERS, SCHEDULERS } from '../../samplers.js';
import { PUBLIC_ROUTE } from '../auth.js';
import type { ServerContext } from '../context.js';
import { errorHandler, sdnodeErrorBody } from '../http-errors.js';
import { JobError } from '../job-queue.js';

const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
};

/** The page's own files only; previews and results arrive as data (base64), shown as data: and blob: URLs. */
const CONTENT_SECURITY_POLICY = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data: blob:",
  "connect-src 'self'",
  "form-action 'none'",
  "frame-ancestors 'none'",
  "base-uri 'none'",
].join('; ');

const PAGE = 'index.html';

interface WebFile {
  body: Buffer;
  type: string;
  etag: string;
}

/**
 * The folder of the page's files: lib/server/web beside the sources (tests, and this module
 * run from lib/), dist/web in the package (tsup copies it there; the bundle is dist/index.js).
 */
function webFolder(): string {
  const candidates = ['./web/', '../web/'].map((rel) => fileURLToPath(new URL(rel, import.meta.url)));
  const found = candidates.find((dir) => existsSync(join(dir, PAGE)));
  if (!found) throw new Error(`sdnode's web page is missing: no ${PAGE} in ${candidates.join(' or ')}`);
  return found;
}

/** Every file of the folder, by name, with its content type; a file of a type not served is an error of the package. */
async function readWebFiles(dir: string): Promise<Map<string, WebFile>> {
  const files = new Map<string, WebFile>();
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    if (!entry.isFile()) continue;
    const type = CONTENT_TYPES[extname(entry.name)];
    if (!type) throw new Error(`sdnode's web page: no content type for ${entry.name}`);
    const body = await readFile(join(dir, entry.name));
    files.set(entry.name, { body, type, etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 27)}"` });
  }
  return files;
}

/** A file, or 304 when the client holds this version already. */
function sendFile(file: WebFile, request: FastifyRequest, reply: FastifyReply) {
  void reply.header('etag', file.etag).header('cache-control', 'no-cache').header('x-content-type-options', 'nosniff');
  if (file.type.startsWith('text/html')) void reply.header('content-security-policy', CONTENT_SECURITY_POLICY).header('referrer-policy', 'no-referrer');
  const held = request.headers['if-none-match'];
  if (held !== undefined && held.split(',').some((tag) => tag.trim() === file.etag)) return reply.code(304).send();
  return reply.type(file.type).send(file.body);
}

/** The form's choices and bounds, from the library's lists and this server's settings. */
function pageConfig(ctx: ServerContext) {
  return {
    // The webui's labels, as /sdapi/v1/samplers lists them; ddim_trailing, which shares DDIM's, by its own name.
    samplers: SAMPLERS.map((name) => ({ name, label: name === 'ddim_trailing' ? name : WEBUI_SAMPLER[name] })),
    schedulers: [...SCHEDULERS],
    limits: { steps: ctx.limits.steps, pixels: ctx.limits.pixels, batch: ctx.limits.batch },
    credentials: { apiKey: ctx.credentials?.apiKey ?? false, apiAuth: ctx.credentials?.apiAuth ?? false },
  };
}

export async function registerPageRoutes(app: FastifyInstance, ctx: ServerContext): Promise<void> {
  app.setErrorHandler(errorHandler(sdnodeErrorBody));
  const files = await readWebFiles(webFolder());
  const page = files.get(PAGE)!;
  const config = JSON.stringify(pageConfig(ctx));

  app.get('/', { config: PUBLIC_ROUTE }, (request, reply) => sendFile(page, request, reply));

  app.get('/ui/config.json', { config: PUBLIC_ROUTE }, (_request, reply) =>
    reply.header('cache-control', 'no-store').type('application/json; charset=utf-8').send(config),
  );

  app.get<{ Params: { file: string } }>('/ui/:file', { config: PUBLIC_ROUTE }, (request, reply) => {
    // A name of the map, or nothing: '../x', 'a/b' and encoded forms of them never match one.
    const file = request.params.file !== PAGE ? files.get(request.params.file) : undefined;
    if (!file) throw new JobError({ status: 404, code: 'not_found', message: `no file /ui/${request.params.file}` });
    return sendFile(file, request, reply);
  });
}
