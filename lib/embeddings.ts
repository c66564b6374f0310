/**
 * Textual-inversion embeddings, as stable-diffusion-webui uses them: a file in the model's
 * `embeddingDir` whose name (without extension) appears in a prompt stands for its vectors,
 * which take the place of token embeddings in the text encoder.
 *
 * Files: webui `.pt` (`string_to_param: { '*': [n, width] }`), `.safetensors` with one tensor
 * (`emb_params`), SDXL files with `clip_l` [n, 768] and `clip_g` [n, 1280]; also `.bin` and
 * `.gguf`. They are read by the addon's own readers (pickle interpreted, never executed), lazily
 * on first use and then kept for the model's life.
 *
 * Placeholder ids: the engine takes, per text encoder, a table of vectors [rows][width]; an id
 * `vocab + r` selects row r of it. An EmbeddingUse numbers the vectors of the embeddings one
 * job's prompts name and builds those tables.
 */
import { statSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { extname, join } from 'node:path';

import { FileAccessError, ModelCompatibilityError, ModelFormatError, fromNative } from './errors.js';
import { native } from './native.js';
import { TEXT_ENCODER_PLACES } from './families.js';
import type { ModelArchitecture } from './model-architecture.js';
import type { NativeModel } from './native.js';
import type { ClipTokenizer } from './text/clip-tokenizer.js';
import { CHUNK_TOKENS } from './text/prompt-weights.js';

/** File extensions taken as embeddings, in the order that wins when two files share a name. */
export const EMBEDDING_EXTENSIONS = ['.safetensors', '.pt', '.bin', '.gguf'] as const;

/**
 * Bytes an embedding file may have: 75 vectors for both SDXL encoders in f32 are 600 KB. The file
 * is read on the caller's thread (model.tokenize() is synchronous), so the cap bounds that read.
 */
export const MAX_EMBEDDING_FILE_BYTES = 8 * 1024 * 1024;

/** One embedding, fitted to a model: a table of `vectors` rows per text encoder, in the model's encoder order. */
export interface Embedding {
  name: string;
  path: string;
  vectors: number;
  /** Per text encoder: [vectors][width], flat. */
  tables: Float32Array[];
}

interface FileTensor {
  name: string;
  shape: number[];
  data: Float32Array;
}

/** A tensor as [vectors][width]: one vector ([width]) or several ([n, width]). */
function asVectors(path: string, t: FileTensor): { vectors: number; width: number; data: Float32Array } {
  const shape = t.shape.length === 1 ? [1, t.shape[0]!] : t.shape;
  if (shape.length !== 2) throw new ModelFormatError(`'${path}': tensor '${t.name}' has shape [${t.shape.join(', ')}]; an embedding is [vectors, width]`);
  const [vectors, width] = shape as [number, number];
  if (vectors < 1 || width < 1) throw new ModelFormatError(`'${path}': tensor '${t.name}' is empty`);
  // More vectors than a window's 75 positions cannot be placed (the webui would overflow the window).
  if (vectors > CHUNK_TOKENS) throw new ModelFormatError(`'${path}': tensor '${t.name}' holds ${vectors} vectors; at most ${CHUNK_TOKENS} fit a prompt window`);
  if (!t.data.every(Number.isFinite)) throw new ModelFormatError(`'${path}': tensor '${t.name}' holds values that are not finite`);
  return { vectors, width, data: t.data };
}

/**
 * The embedding in a file's tensors, fitted to text encoders of `widths` (the model's order),
 * by the webui's rules: `clip_l` + `clip_g` (SDXL), else the one `string_to_param.*` entry, else
 * the file's only tensor (`emb_params`). ModelFormatError for a file that holds no such tensor,
 * ModelCompatibilityError, naming both widths, for one that does not fit the model.
 * @internal exported for tests
 */
export function fitEmbedding(name: string, path: string, tensors: readonly FileTensor[], widths: readonly number[]): Embedding {
  const byName = new Map(tensors.map((t) => [t.name, t]));
  const widthsText = widths.join(' + ');
  if (byName.has('clip_l') || byName.has('clip_g')) {
    const l = byName.get('clip_l');
    const g = byName.get('clip_g');
    if (!l || !g) throw new ModelFormatError(`'${path}': an SDXL embedding needs both clip_l and clip_g; it has only ${l ? 'clip_l' : 'clip_g'}`);
    const vl = asVectors(path, l);
    const vg = asVectors(path, g);
    if (vl.vectors !== vg.vectors) throw new ModelFormatError(`'${path}': clip_l holds ${vl.vectors} vectors, clip_g ${vg.vectors}`);
    if (widths.length !== 2 || widths[0] !== vl.width || widths[1] !== vg.width) {
      throw new ModelCompatibilityError(
        `embedding '${name}' ('${path}') is for SDXL's two text encoders (clip_l ${vl.width} + clip_g ${vg.width} wide); this model's text encoders take ${widthsText}`,
      );
    }
    return { name, path, vectors: vl.vectors, tables: [vl.data, vg.data] };
  }
  const params = tensors.filter((t) => t.name.startsWith('string_to_param.'));
  const candidates = params.length > 0 ? params : tensors;
  if (candidates.length !== 1) {
    const names = tensors.map((t) => t.name).slice(0, 8).join(', ');
    throw new ModelFormatError(
      `'${path}' is not a textual-inversion embedding: it needs one vector tensor (string_to_param, emb_params) or clip_l + clip_g, and holds ${tensors.length === 0 ? 'no floating-point tensor' : names}`,
    );
  }
  const v = asVectors(path, candidates[0]!);
  if (widths.length !== 1 || widths[0] !== v.width) {
    throw new ModelCompatibilityError(
      `embedding '${name}' ('${path}') holds ${v.width}-wide vectors; this model's text encoder${widths.length > 1 ? 's take' : ' takes'} ${widthsText}` +
        (widths.length > 1 ? ' (an SDXL embedding has clip_l and clip_g)' : ''),
    );
  }
  return { name, path, vectors: v.vectors, tables: [v.data] };
}

/** Reads an embedding file with the addon's readers and fits it to text encoders of `widths`. */
export function readEmbedding(name: string, path: string, widths: readonly number[]): Embedding {
  let size: number;
  try {
    size = statSync(path).size;
  } catch (err) {
    throw new FileAccessError(`cannot read embedding '${path}': ${(err as Error).message}`, { cause: err });
  }
  if (size > MAX_EMBEDDING_FILE_BYTES) throw new ModelFormatError(`'${path}' has ${size} bytes; an embedding file has at most ${MAX_EMBEDDING_FILE_BYTES}`);
  let file: { tensors: FileTensor[] };
  try {
    file = native().readEmbeddingFile(path);
  } catch (err) {
    throw fromNative(err);
  }
  return fitEmbedding(name, path, file.tensors, widths);
}

/** What an embedding must fit: the widths of the text encoders a generate job runs, in order, and their vocabulary size. */
export interface EmbeddingTarget {
  widths: number[];
  vocab: number;
}

/**
 * The text encoders of a loaded model as generate runs them (SDXL: CLIP-L then bigG; the
 * refiner: bigG alone). Their vocabularies must agree: one placeholder id selects the same row of
 * each encoder's table.
 */
export function embeddingTarget(architecture: ModelArchitecture, handle: NativeModel): EmbeddingTarget {
  const facts = handle.architecture().textEncoders;
  const encoders = architecture.forGenerate().textEncoders.map((e) => {
    const prefix = e.prefix ?? TEXT_ENCODER_PLACES.first;
    const f = facts.find((t) => t.prefix === prefix);
    if (!f) throw new ModelCompatibilityError(`the model has no text encoder at '${prefix}'`);
    return f;
  });
  const vocab = encoders[0]!.vocab;
  if (encoders.some((e) => e.vocab !== vocab)) {
    throw new ModelCompatibilityError(`the model's text encoders have vocabularies of ${encoders.map((e) => e.vocab).join(' and ')} tokens; embeddings need one`);
  }
  return { widths: encoders.map((e) => e.width), vocab };
}

/** Where a run of a prompt's token ids names an embedding: how many ids, and which. */
export interface EmbeddingMatch {
  length: number;
  embedding: Embedding;
}

/** An embedding folder's names: name → file, one per name. */
export interface EmbeddingFolder {
  dir: string;
  files: Map<string, string>;
}

/**
 * Lists `dir` (not its subfolders; files added later are not seen): each file of an
 * EMBEDDING_EXTENSIONS extension, named by its file name without the extension; when two share
 * a name, the extension listed first wins. FileAccessError when `dir` cannot be read.
 */
export async function listEmbeddings(dir: string): Promise<EmbeddingFolder> {
  let entries: string[];
  try {
    entries = (await readdir(dir, { withFileTypes: true }))
      .filter((e) => e.isFile() || e.isSymbolicLink())
      .map((e) => e.name)
      .sort();
  } catch (err) {
    throw new FileAccessError(`cannot read embeddingDir '${dir}': ${(err as Error).message}`, { cause: err });
  }
  const rank = (ext: string) => EMBEDDING_EXTENSIONS.indexOf(ext.toLowerCase() as (typeof EMBEDDING_EXTENSIONS)[number]);
  const files = new Map<string, string>();
  for (const file of entries) {
    const ext = extname(file);
    const name = file.slice(0, file.length - ext.length);
    if (rank(ext) < 0 || name.length === 0) continue;
    const had = files.get(name);
    if (!had || rank(ext) < rank(extname(had))) files.set(name, join(dir, file));
  }
  return { dir, files };
}

/**
 * The embeddings of one folder, for one model: names listed when the model loads, files read on
 * first use and kept. Names match as the webui matches them: the name's CLIP tokens (lower-cased,
 * so case does not matter) found in the prompt's tokens.
 */
export class EmbeddingLibrary {
  readonly dir: string;
  readonly #target: () => EmbeddingTarget;
  /** name → path, one per name (EMBEDDING_EXTENSIONS order decides between extensions). */
  readonly #files: Map<string, string>;
  readonly #read = new Map<string, Embedding>();
  #index?: { tokenizer: ClipTokenizer; byFirst: Map<number, Array<{ ids: number[]; name: string }>> };

  /** `folder` from listEmbeddings(); `target` is asked on first use (a model that cannot generate says why then). */
  constructor(folder: EmbeddingFolder, target: () => EmbeddingTarget) {
    this.dir = folder.dir;
    this.#files = folder.files;
    this.#target = target;
  }

  /** The embedding names found in the folder, sorted. */
  names(): string[] {
    return [...this.#files.keys()].sort();
  }

  /** The embedding of that name, read and fitted on first use. */
  get(name: string): Embedding {
    const done = this.#read.get(name);
    if (done) return done;
    const path = this.#files.get(name);
    if (path === undefined) throw new RangeError(`no embedding '${name}' in '${this.dir}'`);
    const embedding = readEmbedding(name, path, this.#target().widths);
    this.#read.set(name, embedding);
    return embedding;
  }

  /** A numbering of placeholder ids for one job (or one tokenize() call). */
  use(tokenizer: ClipTokenizer): EmbeddingUse {
    return new EmbeddingUse(this, tokenizer, () => this.#target().vocab);
  }

  /**
   * The embedding whose name's tokens start at `ids[at]`, the longest name first (webui's
   * find_embedding_at_position), reading it on first use.
   */
  matchAt(tokenizer: ClipTokenizer, ids: readonly number[], at: number): EmbeddingMatch | undefined {
    const candidates = this.#byFirst(tokenizer).get(ids[at]!);
    if (!candidates) return undefined;
    for (const c of candidates) {
      if (at + c.ids.length > ids.length) continue;
      if (c.ids.every((id, i) => ids[at + i] === id)) return { length: c.ids.length, embedding: this.get(c.name) };
    }
    return undefined;
  }

  #byFirst(tokenizer: ClipTokenizer): Map<number, Array<{ ids: number[]; name: string }>> {
    if (this.#index?.tokenizer === tokenizer) return this.#index.byFirst;
    const byFirst = new Map<number, Array<{ ids: number[]; name: string }>>();
    for (const name of this.#files.keys()) {
      const ids = tokenizer.encode(name);
      if (ids.length === 0) continue;
      const list = byFirst.get(ids[0]!) ?? [];
      list.push({ ids, name });
      byFirst.set(ids[0]!, list);
    }
    for (const list of byFirst.values()) list.sort((a, b) => b.ids.length - a.ids.length || (a.name < b.name ? -1 : 1));
    this.#index = { tokenizer, byFirst };
    return byFirst;
  }
}

/**
 * The embeddings one job (or one tokenize() call) uses: each gets consecutive placeholder ids
 * from `base()` (the text encoders' vocabulary size) on, and tables() gives each encoder the rows
 * those ids select.
 */
export class EmbeddingUse {
  readonly #library: EmbeddingLibrary;
  readonly #tokenizer: ClipTokenizer;
  readonly #base: () => number;
  readonly #used = new Map<string, { embedding: Embedding; first: number }>();
  #rows = 0;

  constructor(library: EmbeddingLibrary, tokenizer: ClipTokenizer, base: () => number) {
    this.#library = library;
    this.#tokenizer = tokenizer;
    this.#base = base;
  }

  /** For lib/text/prompt-weights.ts: the placeholder ids of an embedding named at `ids[at]`, and the ids its name took. */
  matchAt(ids: readonly number[], at: number): { length: number; ids: number[]; name: string } | undefined {
    const m = this.#library.matchAt(this.#tokenizer, ids, at);
    if (!m) return undefined;
    let use = this.#used.get(m.embedding.name);
    if (!use) {
      use = { embedding: m.embedding, first: this.#base() + this.#rows };
      this.#used.set(m.embedding.name, use);
      this.#rows += m.embedding.vectors;
    }
    const first = use.first;
    return { length: m.length, ids: Array.from({ length: m.embedding.vectors }, (_, i) => first + i), name: m.embedding.name };
  }

  /** The embedding a placeholder id stands for, if it is one. */
  nameOf(id: number): string | undefined {
    for (const { embedding, first } of this.#used.values()) if (id >= first && id < first + embedding.vectors) return embedding.name;
    return undefined;
  }

  /** Per text encoder, the rows the placeholder ids select ([rows][width] flat); none without embeddings. */
  tables(encoders: number): Float32Array[] | undefined {
    if (this.#rows === 0) return undefined;
    return Array.from({ length: encoders }, (_, k) => {
      const parts = [...this.#used.values()].map((u) => u.embedding.tables[k]!);
      const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
      let at = 0;
      for (const p of parts) {
        out.set(p, at);
        at += p.length;
      }
      return out;
    });
  }
}
