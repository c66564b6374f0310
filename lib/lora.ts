/**
 * LoRAs: a LoRA (LoCon, LoHa, LoKr, DoRA, PEFT, full diff) file matched to one loaded model
 * (model.loadLora), the `loras` option of generate() and the webui's `<lora:name:weight>` prompt
 * tags resolved in loadModel's `loraDir`. Applying them is the engine's
 * (native/engine/lora/adapter_set.h): per request, without reloading the model.
 */
import { readdirSync, statSync } from 'node:fs';
import { basename, extname, join, resolve } from 'node:path';

import { DisposedError, FileAccessError, ModelCompatibilityError } from './errors.js';
import type { NativeLora, NativeLoraReport } from './native.js';
import { checkBoolean, checkFinite, checkKeys, checkObject, editDistance } from './validate.js';

/** What a LoRA file holds for the model it was loaded for. */
export interface LoraReport {
  /** Tensors in the file. */
  tensors: number;
  /** Of them, the ones a patched weight uses. */
  appliedTensors: number;
  /** Model weights the LoRA patches. */
  targets: number;
  /** File tensors that name no weight of this model (a LoRA for another family shows up here). */
  unmatched: string[];
  /** "<module>: <why>": modules that name a weight but do not fit it (shapes given); left out. */
  incompatible: string[];
}

/** The LoRA weights generate() accepts: a multiplier of the file's own scale, −10 … 10. */
export const LORA_WEIGHT_LIMIT = 10;

/** A LoRA file read, checked and matched to one model (model.loadLora): reusable across requests. */
export class Lora implements AsyncDisposable {
  /** The file name without extension, as `<lora:name:…>` tags name it. */
  readonly name: string;
  readonly path: string;
  readonly report: LoraReport;
  /** The model weights it patches (internal names, see model.weights()). */
  readonly weights: readonly string[];
  #native: NativeLora | undefined;
  /** @internal Whose weights it was matched to. */
  readonly owner: object;

  /** @internal Use model.loadLora(). */
  constructor(native: NativeLora, owner: object) {
    const r: NativeLoraReport = native.report();
    this.#native = native;
    this.owner = owner;
    this.path = r.path;
    this.name = basename(r.path, extname(r.path));
    this.report = { tensors: r.tensors, appliedTensors: r.appliedTensors, targets: r.targets.length, unmatched: r.unmatched, incompatible: r.incompatible };
    this.weights = Object.freeze(r.targets.map((t) => t.weight));
  }

  /** @internal The addon's handle; DisposedError after dispose(). */
  nativeHandle(): NativeLora {
    if (!this.#native) throw new DisposedError(`the LoRA '${this.name}' has been disposed`);
    return this.#native;
  }

  get disposed(): boolean {
    return this.#native === undefined;
  }

  /** Frees the file's map; a running job keeps what it uses until it settles. Idempotent. */
  dispose(): Promise<void> {
    this.#native?.dispose();
    this.#native = undefined;
    return Promise.resolve();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.dispose();
  }
}

/** ModelCompatibilityError unless every tensor of the file patched a weight (loadLora's `strict`). */
export function checkStrict(lora: Lora): void {
  const { unmatched, incompatible } = lora.report;
  if (unmatched.length === 0 && incompatible.length === 0) return;
  const first = [...incompatible, ...unmatched].slice(0, 3).join('; ');
  throw new ModelCompatibilityError(
    `the LoRA '${lora.name}' does not fit the model: ${incompatible.length} module(s) do not fit, ${unmatched.length} tensor(s) name no weight (${first})`,
  );
}

/** One entry of generate()'s `loras`: a loaded handle, or a file path loaded (and kept) for the model. */
export interface LoraOption {
  lora?: Lora;
  path?: string;
  /** Multiplier of the LoRA's own scale (alpha / rank), −10 … 10. Default 1. */
  weight?: number;
}

export interface ResolvedLoraOption {
  lora?: Lora;
  path?: string;
  weight: number;
}

/** A LoRA weight: TypeError for a non-number, RangeError when not finite or outside ±LORA_WEIGHT_LIMIT. */
export function checkLoraWeight(what: string, v: unknown): number {
  if (typeof v !== 'number') throw new TypeError(`${what} must be a number`);
  if (!Number.isFinite(v)) throw new RangeError(`${what} must be finite`);
  return checkFinite(what, v, -LORA_WEIGHT_LIMIT, LORA_WEIGHT_LIMIT);
}

/** generate()'s `loras`: TypeError / RangeError naming the entry. */
export function checkLoraOptions(what: string, v: unknown): ResolvedLoraOption[] {
  if (!Array.isArray(v)) throw new TypeError(`${what} must be an array of { lora } or { path } entries`);
  if (v.length > 64) throw new RangeError(`${what} has ${v.length} entries; at most 64`);
  return v.map((entry, i) => {
    const where = `${what}[${i}]`;
    const o = checkObject(where, entry);
    checkKeys(where, o, ['lora', 'path', 'weight']);
    if ((o.lora === undefined) === (o.path === undefined)) throw new TypeError(`${where} needs one of lora (a Lora from model.loadLora) or path`);
    if (o.lora !== undefined && !(o.lora instanceof Lora)) throw new TypeError(`${where}.lora must be a Lora from model.loadLora()`);
    if (o.path !== undefined && (typeof o.path !== 'string' || o.path === '')) throw new TypeError(`${where}.path must be a non-empty string`);
    const weight = o.weight === undefined ? 1 : checkLoraWeight(`${where}.weight`, o.weight);
    return { ...(o.lora ? { lora: o.lora as Lora } : { path: o.path as string }), weight };
  });
}

export function checkStrictOption(what: string, v: unknown): boolean {
  return v === undefined ? false : checkBoolean(what, v);
}

/** A `<lora:name:weight>` tag as the webui and stable-diffusion.cpp write them. */
export interface LoraTag {
  name: string;
  weight: number;
}

// <lora:name> or <lora:name:weight>; the name may hold anything but '>' and ':' (folders with '/').
const TAG = /<lora:([^:>]+)(?::([^:>]*))?>/g;

/** The prompt without its LoRA tags (what the text encoders read), and the tags. */
export function extractLoraTags(prompt: string): { prompt: string; tags: LoraTag[] } {
  const tags: LoraTag[] = [];
  const rest = prompt.replace(TAG, (_m, name: string, weight: string | undefined) => {
    const w = weight === undefined || weight.trim() === '' ? 1 : Number(weight);
    if (!Number.isFinite(w)) throw new RangeError(`the prompt's <lora:${name}:${weight}> has no number for its weight`);
    tags.push({ name: name.trim(), weight: checkLoraWeight(`the prompt's <lora:${name}> weight`, w) });
    return '';
  });
  return { prompt: rest, tags };
}

/** File extensions a LoRA folder is searched for, in this order (stable-diffusion.cpp's). */
export const LORA_EXTENSIONS = ['.safetensors', '.gguf', '.pt', '.ckpt'] as const;

/** The file a tag names in `dir`; FileAccessError listing the nearest names when none. */
export function resolveLoraTag(dir: string, name: string): string {
  if (name.includes('..') || name.startsWith('/') || name.includes('\0')) throw new RangeError(`<lora:${name}>: a LoRA name stays inside the LoRA folder`);
  for (const ext of LORA_EXTENSIONS) {
    const file = join(dir, name + ext);
    try {
      if (statSync(file).isFile()) return resolve(file);
    } catch {
      /* next extension */
    }
  }
  let names: string[] = [];
  try {
    names = readdirSync(dir)
      .filter((f) => (LORA_EXTENSIONS as readonly string[]).includes(extname(f).toLowerCase()))
      .map((f) => basename(f, extname(f)));
  } catch (err) {
    throw new FileAccessError(`the LoRA folder '${dir}' cannot be read: ${(err as Error).message}`);
  }
  const nearest = names
    .map((n) => ({ n, d: editDistance(n.toLowerCase(), name.toLowerCase()) }))
    .sort((a, b) => a.d - b.d || a.n.localeCompare(b.n))
    .slice(0, 3)
    .map((x) => x.n);
  throw new FileAccessError(
    `<lora:${name}>: no ${LORA_EXTENSIONS.join(', ')} file of that name in '${dir}'` + (nearest.length ? `; nearest: ${nearest.join(', ')}` : ' (the folder has no LoRAs)'),
  );
}

