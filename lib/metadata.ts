/**
 * File metadata (safetensors `__metadata__`, GGUF key-values) from the addon's JSON texts
 * (native/addon/metadata_json.h): parsed one text at a time, letting the event loop run between
 * them, so that a file of 200k keys does not hold a server's JS thread while its object is built.
 */
import { ModelFormatError } from './errors.js';
import { runYielding, type Steps } from './text/tokenizer-files.js';

/**
 * What of a file's metadata reaches JS, whatever the file holds (the addon applies them:
 * native/addon/metadata_json.h). Entries in key order past `keys`, with a value longer than
 * `valueBytes`, or past `totalBytes` of keys and values are left out and counted
 * (`metadataOmitted`): a JS object of 200k keys holds the thread tens of ms in garbage collection
 * alone. Real checkpoints and LoRAs hold tens of keys.
 */
export const METADATA_LIMITS = Object.freeze({ keys: 16384, valueBytes: 4 * 1024 * 1024, totalBytes: 16 * 1024 * 1024 });

function* metadataSteps(chunks: readonly string[]): Steps<Record<string, string>> {
  const metadata: Record<string, string> = {};
  for (const chunk of chunks) {
    let entries: unknown;
    try {
      entries = JSON.parse(chunk);
    } catch (err) {
      throw new ModelFormatError('the addon gave metadata that is not JSON', { cause: err });
    }
    if (!Array.isArray(entries) || entries.length % 2 !== 0) throw new ModelFormatError('the addon gave metadata that is not key-value pairs');
    for (let i = 0; i < entries.length; i += 2) {
      const key = String(entries[i]);
      const value = String(entries[i + 1]);
      // Assigning "__proto__" would set the prototype: it is defined, a key like any other.
      if (key === '__proto__') Object.defineProperty(metadata, key, { value, enumerable: true, writable: true, configurable: true });
      else metadata[key] = value;
      if (i % 1024 === 0) yield;
    }
    yield;
  }
  return metadata;
}

/** The metadata object of the addon's JSON texts, built between event-loop turns. */
export function metadataFromChunks(chunks: readonly string[]): Promise<Record<string, string>> {
  return runYielding(metadataSteps(chunks));
}
