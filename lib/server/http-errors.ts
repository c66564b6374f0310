/**
 * Every error a route can meet — malformed JSON, a body over the limit, a schema violation, a
 * refused job, a failed one, missing credentials, a full queue — as one JSON answer with a
 * status, a stable code and the field at fault. Each API writes it in its own shape: sdnode's
 * `{ error: { code, message, field? } }` (the native and webui routes) or OpenAI's
 * `{ error: { message, type, param, code } }`.
 */
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';

import { AuthError } from './auth.js';
import { toJobError } from './errors.js';
import { JobCancelledError, JobError, QueueFullError, type JobErrorInfo } from './job-queue.js';

/** An error as it is answered. */
export interface HttpError extends JobErrorInfo {
  headers?: Record<string, string>;
}

/** One of ajv's errors, as Fastify attaches them (error.validation). */
interface SchemaViolation {
  instancePath: string;
  keyword: string;
  params: Record<string, unknown>;
  message?: string;
}

/** The field a schema violation is about: its path ('loras[0].weight'), or the property missing or unknown. */
function violationField(v: SchemaViolation): string {
  const path = v.instancePath
    .split('/')
    .slice(1)
    .map((seg) => seg.replace(/~1/g, '/').replace(/~0/g, '~'))
    .reduce((out, seg) => (/^\d+$/.test(seg) ? `${out}[${seg}]` : out ? `${out}.${seg}` : seg), '');
  const named = (v.params.missingProperty ?? v.params.additionalProperty) as string | undefined;
  return named !== undefined ? (path ? `${path}.${named}` : named) : path;
}

/** A schema violation's message naming its field: "steps must be integer", "prompt is required". */
function violationMessage(v: SchemaViolation, field: string): string {
  if (v.keyword === 'required') return `${field} is required`;
  if (v.keyword === 'additionalProperties') return `${field} is not a field of this request`;
  if (v.keyword === 'enum') return `${field} must be one of ${(v.params.allowedValues as unknown[]).map((x) => JSON.stringify(x)).join(', ')}`;
  return `${field || 'the body'} ${v.message ?? 'is invalid'}`;
}

/** Fastify's own errors that are the client's, by code: the status, our code. */
const FASTIFY_ERRORS: Record<string, { status: number; code: string }> = {
  FST_ERR_CTP_BODY_TOO_LARGE: { status: 413, code: 'body_too_large' },
  FST_ERR_CTP_INVALID_JSON_BODY: { status: 400, code: 'invalid_json' },
  FST_ERR_CTP_EMPTY_JSON_BODY: { status: 400, code: 'invalid_json' },
  FST_ERR_CTP_INVALID_MEDIA_TYPE: { status: 415, code: 'unsupported_media_type' },
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: { status: 400, code: 'invalid_content_length' },
  FST_ERR_BAD_URL: { status: 400, code: 'invalid_url' },
  // @fastify/multipart's limits.
  FST_REQ_FILE_TOO_LARGE: { status: 413, code: 'body_too_large' },
  FST_PARTS_LIMIT: { status: 413, code: 'too_many_parts' },
  FST_FILES_LIMIT: { status: 413, code: 'too_many_files' },
  FST_FIELDS_LIMIT: { status: 413, code: 'too_many_fields' },
  FST_INVALID_MULTIPART_CONTENT_TYPE: { status: 415, code: 'unsupported_media_type' },
};

/** Any error met while answering, as it is answered (a job cancelled while its client waited: 409). */
export function httpErrorOf(err: unknown): HttpError {
  const fastify = err as Partial<FastifyError> & { validation?: SchemaViolation[] };
  if (fastify?.validation && fastify.validation.length > 0) {
    const v = fastify.validation[0]!;
    const field = violationField(v);
    return { status: 400, code: 'invalid_request', message: violationMessage(v, field), ...(field ? { field } : {}) };
  }
  if (err instanceof JobCancelledError) return { status: 409, code: 'cancelled', message: err.message };
  if (err instanceof JobError) {
    const info: HttpError = err.toInfo();
    if (err instanceof QueueFullError) info.headers = { 'retry-after': String(err.retryAfterSeconds) };
    if (err instanceof AuthError) info.headers = { 'www-authenticate': err.challenge };
    return info;
  }
  const known = typeof fastify?.code === 'string' ? FASTIFY_ERRORS[fastify.code] : undefined;
  if (known) return { ...known, message: fastify.message ?? known.code };
  // Another client error Fastify raised (a 4xx with a status): its message is safe to show.
  if (typeof fastify?.statusCode === 'number' && fastify.statusCode >= 400 && fastify.statusCode < 500 && typeof fastify.code === 'string')
    return { status: fastify.statusCode, code: fastify.code.toLowerCase(), message: fastify.message ?? 'bad request' };
  return toJobError(err).toInfo();
}

/** How an API writes an error body. */
export type ErrorShape = (error: HttpError) => unknown;

/** sdnode's (and the webui routes'): `{ error: { code, message, field? } }`. */
export const sdnodeErrorBody: ErrorShape = ({ code, message, field }) => ({ error: { code, message, ...(field !== undefined ? { field } : {}) } });

/** OpenAI's: `{ error: { message, type, param, code } }`. */
export const openaiErrorBody: ErrorShape = ({ status, code, message, field }) => ({
  error: { message, type: status >= 500 ? 'server_error' : 'invalid_request_error', param: field ?? null, code },
});

/**
 * A Fastify error handler answering in `shape`; `fieldName` turns a JobRequest field into the
 * API's own name for it (cfgScale → cfg_scale). Server faults (5xx) are logged.
 */
export function errorHandler(shape: ErrorShape, fieldName: (field: string) => string = (f) => f) {
  return (err: unknown, request: FastifyRequest, reply: FastifyReply): void => {
    const error = httpErrorOf(err);
    if (error.field !== undefined) {
      // The message names the field as the library or the queue does ('options.cfgScale must …', 'initImage: …'): the API's name instead.
      const renamed = fieldName(error.field);
      const named = [`options.${error.field}`, error.field].find((name) => error.message.startsWith(name));
      if (named) error.message = renamed + error.message.slice(named.length);
      error.field = renamed;
    }
    if (error.status >= 500) request.log.error({ err }, 'request failed');
    for (const [name, value] of Object.entries(error.headers ?? {})) reply.header(name, value);
    delete error.headers;
    void reply.code(error.status).type('application/json; charset=utf-8').send(shape(error));
  };
}
