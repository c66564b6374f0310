/**
 * The webui's "Lora hashes" infotext field: which LoRA files an image was made with, by short
 * hash, as AUTOMATIC1111's webui writes it (and civitai reads it). Used by `sdnode generate` and
 * `sdnode serve` for the PNGs they write.
 */
import { createReadStream } from 'node:fs';
import { open, stat } from 'node:fs/promises';
import { createHash } from 'node:crypto';

// The webui's short hashes are the first 12 hex digits of a SHA-256 (network.py's shorthash).
const SHORT_HASH_DIGITS = 12;
// A safetensors file starts with the header's length, a little-endian u64.
const SAFETENSORS_LENGTH_BYTES = 8;
// Hashes kept by path, size and modification time: a server hashes each LoRA file once, not per request.
const CACHE_ENTRIES = 256;
const cache = new Map<string, Promise<string>>();

async function hashFile(path: string): Promise<string> {
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
 * The webui's short hash of a LoRA file: for .safetensors, the "addnet" hash of kohya's
 * sd-scripts (SHA-256 of the tensor data after the JSON header, so that editing the metadata
 * keeps it), for other formats SHA-256 of the whole file; the first 12 hex digits.
 */
export async function loraShortHash(path: string): Promise<string> {
  const s = await stat(path);
  const key = `${s.size}:${s.mtimeMs}:${path}`;
  let hash = cache.get(key);
  if (!hash) {
    hash = hashFile(path);
    hash.catch(() => cache.delete(key));
    if (cache.size >= CACHE_ENTRIES) cache.delete(cache.keys().next().value!);
    cache.set(key, hash);
  }
  return hash;
}

/**
 * The "Lora hashes" value: `name: hash` pairs joined by ", ", each name as the prompt wrote it
 * with ':' and ',' removed (they would break the pairs), once per name. undefined without LoRAs.
 */
export async function loraHashesField(loras: ReadonlyArray<{ name: string; path: string }>): Promise<string | undefined> {
  const byName = new Map(loras.map((l) => [l.name, l.path]));
  if (byName.size === 0) return undefined;
  const entries = [...byName];
  const hashes = await Promise.all(entries.map(([, path]) => loraShortHash(path)));
  return entries.map(([name], i) => `${name.replace(/[:,]/g, '')}: ${hashes[i]}`).join(', ');
}
