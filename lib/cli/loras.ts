/**
 * The prompt's `<lora:name:weight>` tags for `sdnode generate`: found in --lora-model-dir before
 * the model loads (a misspelt name fails in a moment, not after the load), and the webui's
 * "Lora hashes" infotext field for them.
 */
import { createReadStream } from 'node:fs';
import { open } from 'node:fs/promises';
import { createHash } from 'node:crypto';

import { extractLoraTags, resolveLoraTag } from '../lora.js';
import { UsageError } from './exit.js';

/** A prompt tag's name (as written) and the file it names. */
export interface TaggedLora {
  name: string;
  path: string;
}

/**
 * The files the prompt's LoRA tags name in `dir`, once per name, in the prompt's order.
 * UsageError for tags without --lora-model-dir; the library's FileAccessError (nearest names
 * listed) for a name with no file.
 */
export function taggedLoras(prompt: string, dir: string | undefined): TaggedLora[] {
  const { tags } = extractLoraTags(prompt);
  if (tags.length === 0) return [];
  if (dir === undefined) throw new UsageError(`the prompt has <lora:${tags[0]!.name}> tags: give the folder they are in with --lora-model-dir <folder>`);
  const names = [...new Set(tags.map((t) => t.name))];
  return names.map((name) => ({ name, path: resolveLoraTag(dir, name) }));
}

// The webui's short hashes are the first 12 hex digits of a SHA-256 (network.py's shorthash).
const SHORT_HASH_DIGITS = 12;
// A safetensors file starts with the header's length, a little-endian u64.
const SAFETENSORS_LENGTH_BYTES = 8;

/**
 * The webui's short hash of a LoRA file: for .safetensors, the "addnet" hash of kohya's
 * sd-scripts (SHA-256 of the tensor data after the JSON header, so that editing the metadata
 * keeps it), for other formats SHA-256 of the whole file; the first 12 hex digits.
 */
export async function loraShortHash(path: string): Promise<string> {
  let start = 0;
  if (path.toLowerCase().endsWith('.safetensors')) {
    const file = await open(path, 'r');
    try {
      const head = Buffer.alloc(SAFETENSORS_LENGTH_BYTES);
      await file.read(head, 0, SAFETENSORS_LENGTH_BYTES, 0);
      start = SAFETENSORS_LENGTH_BYTES + Number(head.readBigUInt64LE(0));
    } finally {
      await file.close();
    }
  }
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path, { start })) hash.update(chunk as Buffer);
  return hash.digest('hex').slice(0, SHORT_HASH_DIGITS);
}

/**
 * The webui's "Lora hashes" value: `name: hash` pairs joined by ", ", each name as the prompt
 * wrote it with ':' and ',' removed (they would break the pairs). undefined without LoRAs.
 */
export async function loraHashesField(loras: readonly TaggedLora[]): Promise<string | undefined> {
  if (loras.length === 0) return undefined;
  const hashes = await Promise.all(loras.map((l) => loraShortHash(l.path)));
  return loras.map((l, i) => `${l.name.replace(/[:,]/g, '')}: ${hashes[i]}`).join(', ');
}
