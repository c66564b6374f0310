/**
 * createServer as the package exports it: the HTTP framework is loaded when a server is made,
 * not by every `import 'sdnode'` (Fastify and its plugins take about 130 ms to load, which the
 * CLI's other commands and library users without a server would pay for nothing).
 */
import type { FastifyInstance } from 'fastify';

import type { CreateServerOptions } from './app.js';

/** See lib/server/app.ts. */
export async function createServer(options?: CreateServerOptions): Promise<FastifyInstance> {
  const { createServer: create } = await import('./app.js');
  return create(options);
}
