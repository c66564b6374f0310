// Helpers of the server tests (test/server-*.test.ts): the tiny generated model, a server on an
// ephemeral 127.0.0.1 port, Server-Sent Events read from a fetch response, PNGs decoded.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';

import { createServer, type CreateServerOptions } from '../../lib/index.js';
// @ts-expect-error: plain JavaScript module with JSDoc types
import { generateModel } from '../../scripts/generate-model.mjs';

/** A temporary folder holding the tiny model (tiny.safetensors, f32, seed 3); remove() deletes it. */
export async function tinyModelDir(prefix: string): Promise<{ dir: string; model: string; remove: () => void }> {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  const model = join(dir, 'tiny.safetensors');
  await generateModel({ out: model, preset: 'tiny', dtype: 'f32', seed: 3 });
  return { dir, model, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/**
 * createServer on the CPU with one thread (the tiny model's ops are too small to split; a second
 * thread on a busy machine only waits), listening on an ephemeral port of 127.0.0.1.
 */
export async function listeningServer(options: CreateServerOptions) {
  const app = await createServer({ device: 'cpu', threads: 1, ...options });
  await app.listen({ port: 0, host: '127.0.0.1' });
  const address = app.server.address();
  if (!address || typeof address === 'string') throw new Error('no TCP address');
  return { app, url: `http://127.0.0.1:${address.port}` };
}

export interface SseEvent {
  event: string;
  data: Record<string, unknown>;
}

/** The events of an SSE response, as they arrive; ends with the stream. */
export async function* sseEvents(response: Response): AsyncGenerator<SseEvent> {
  const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end: number;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let event = 'message', data = '';
      for (const line of block.split('\n')) {
        if (line.startsWith('event: ')) event = line.slice(7);
        else if (line.startsWith('data: ')) data += line.slice(6);
      }
      if (data) yield { event, data: JSON.parse(data) as Record<string, unknown> };
    }
  }
}

/** A PNG's (base64 or bytes) RGB pixels and size. */
export async function pngPixels(png: string | Uint8Array): Promise<{ width: number; height: number; data: Uint8Array }> {
  const bytes = typeof png === 'string' ? Buffer.from(png, 'base64') : png;
  const { data, info } = await sharp(bytes).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  return { width: info.width, height: info.height, data: new Uint8Array(data) };
}

/** Polls `check` every 20 ms until it returns a value other than undefined, or `timeoutMs` passes (then throws). */
export async function waitFor<T>(check: () => Promise<T | undefined> | T | undefined, timeoutMs = 20_000): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > until) throw new Error('waitFor: timed out');
    await new Promise((r) => setTimeout(r, 20));
  }
}
