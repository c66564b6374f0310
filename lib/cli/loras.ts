/**
 * The prompt's `<lora:name:weight>` tags for `sdnode generate`: found in --lora-model-dir before
 * the model loads (a misspelt name fails in a moment, not after the load); their "Lora hashes"
 * field comes from lib/lora-hash.ts.
 */
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
