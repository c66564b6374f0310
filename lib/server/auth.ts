/**
 * Who may use the server: with --api-key, requests carry `Authorization: Bearer <key>` (as
 * OpenAI's clients send their key); with --api-auth user:pass[,user:pass…], HTTP Basic
 * credentials (the webui's flag). With both, either is accepted; with neither, everyone on the
 * address the server binds (127.0.0.1 by default). Secrets are compared in constant time.
 * Routes whose config is PUBLIC_ROUTE (the web page's files) need no credentials: they hold no
 * data, and the API calls the page makes carry them.
 */
import { createHash, timingSafeEqual } from 'node:crypto';

import type { FastifyRequest } from 'fastify';

import { JobError } from './job-queue.js';

export interface AuthOptions {
  apiKey?: string;
  /** 'user:pass', several joined by ','. */
  apiAuth?: string;
}

declare module 'fastify' {
  interface FastifyContextConfig {
    /** Everyone may use the route, credentials or not. */
    public?: boolean;
  }
}

/** The route config (Fastify's `config` route option) of routes everyone may read. */
export const PUBLIC_ROUTE = { public: true } as const;

/** Equal strings, in time that does not depend on where they differ (their SHA-256s compared). */
function sameSecret(a: string, b: string): boolean {
  const digest = (s: string) => createHash('sha256').update(s, 'utf8').digest();
  return timingSafeEqual(digest(a), digest(b));
}

/** The `user:pass` pairs of --api-auth: TypeError / RangeError for a malformed list. */
export function parseApiAuth(spec: string): Array<{ user: string; pass: string }> {
  if (typeof spec !== 'string') throw new TypeError('apiAuth must be a string, user:pass[,user:pass…]');
  return spec.split(',').map((pair) => {
    const colon = pair.indexOf(':');
    if (colon <= 0 || colon === pair.length - 1) throw new RangeError(`apiAuth: '${pair}' is not user:pass`);
    return { user: pair.slice(0, colon), pass: pair.slice(colon + 1) };
  });
}

/** A check of each request's credentials, or undefined when the server is open. */
export function authCheck(options: AuthOptions): ((request: FastifyRequest) => void) | undefined {
  const { apiKey, apiAuth } = options;
  if (apiKey === undefined && apiAuth === undefined) return undefined;
  if (apiKey !== undefined && (typeof apiKey !== 'string' || apiKey === '')) throw new TypeError('apiKey must be a non-empty string');
  const users = apiAuth !== undefined ? parseApiAuth(apiAuth) : [];
  // Which scheme a refused client is told to use: Basic lets a browser ask for the password.
  const challenge = users.length > 0 ? 'Basic realm="sdnode", charset="UTF-8"' : 'Bearer realm="sdnode"';
  return (request) => {
    if (request.routeOptions.config.public === true) return;
    const header = request.headers.authorization ?? '';
    const space = header.indexOf(' ');
    const scheme = header.slice(0, space < 0 ? header.length : space).toLowerCase();
    const value = space < 0 ? '' : header.slice(space + 1).trim();
    let ok = false;
    if (scheme === 'bearer' && apiKey !== undefined) ok = sameSecret(value, apiKey);
    else if (scheme === 'basic' && users.length > 0) {
      const decoded = Buffer.from(value, 'base64').toString('utf8');
      const colon = decoded.indexOf(':');
      const user = decoded.slice(0, colon), pass = decoded.slice(colon + 1);
      // Every pair compared, so that the time does not tell which user exists.
      for (const u of users) ok = (colon > 0 && sameSecret(user, u.user) && sameSecret(pass, u.pass)) || ok;
    }
    if (ok) return;
    throw new AuthError(header === '', challenge);
  };
}

/** 401, with the WWW-Authenticate challenge the client should answer. */
export class AuthError extends JobError {
  constructor(
    missing: boolean,
    readonly challenge: string,
  ) {
    super({
      status: 401,
      code: missing ? 'missing_credentials' : 'invalid_credentials',
      message: missing ? 'this server needs credentials: Authorization: Bearer <api key>, or Basic user:pass' : 'the credentials were not accepted',
    });
  }
}
