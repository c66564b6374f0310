/**
 * The models a server offers: the one it was started with (-m, a path or a loaded Model) and
 * the checkpoints in --models-dir, by name (their path inside the folder, e.g.
 * 'sd15/v1-5.safetensors'); which one requests use unless they name another (the webui's
 * sd_model_checkpoint); and, for a queue that runs jobs in this process, the loaded models.
 */
import { basename, relative, resolve, sep } from 'node:path';
import { realpath } from 'node:fs/promises';

import { loadModel, type LoadModelOptions } from '../load-model.js';
import type { Model } from '../model.js';
import { JobError } from './job-queue.js';
import { checkName, listNames, resolveName, type NamedFolder } from './names.js';

/** Checkpoint files a models folder is listed for (the webui's, and GGUF). */
export const MODEL_EXTENSIONS = ['.safetensors', '.ckpt', '.gguf'] as const;

/** One model the server offers. */
export interface ModelEntry {
  /** What requests name it by: its path inside --models-dir, or the -m file's name. */
  name: string;
  /** The file (real path); undefined for a Model given loaded. */
  path?: string;
  /** The Model given to createServer, when it was given loaded. */
  model?: Model;
}

/** The webui appends the checkpoint's short hash to its titles ('name.safetensors [6ce0161689]'): accepted and ignored. */
const TITLE_HASH = /\s+\[[0-9a-fA-F]{8,12}\]$/;

export class ModelCatalog {
  readonly #folder: NamedFolder | undefined;
  readonly #started: ModelEntry | undefined;
  #current: string | undefined;

  /** `started`: the -m model, as ModelCatalog.started made it. */
  private constructor(started: ModelEntry | undefined, modelsDir: string | undefined) {
    this.#started = started;
    this.#current = started?.name;
    this.#folder = modelsDir !== undefined ? { dir: modelsDir, extensions: MODEL_EXTENSIONS, kind: 'model' } : undefined;
  }

  /**
   * The catalog of `model` (a path or a loaded Model: the one served first) and `modelsDir`.
   * A path inside modelsDir is named by its place there; any other by its file name.
   */
  static async create(model: string | Model | undefined, modelsDir: string | undefined): Promise<ModelCatalog> {
    let started: ModelEntry | undefined;
    if (typeof model === 'string') {
      const path = resolve(model);
      const real = await realpath(path).catch(() => path);
      const root = modelsDir !== undefined ? await realpath(modelsDir).catch(() => undefined) : undefined;
      const inside = root !== undefined && real.startsWith(root + sep);
      started = { name: inside ? relative(root, real).split(sep).join('/') : basename(path), path: real };
    } else if (model) {
      const source = model.info.sources[0]?.path;
      started = { name: source ? basename(source) : 'model', model };
    }
    const catalog = new ModelCatalog(started, modelsDir);
    // Without -m, the first checkpoint of the folder is served, as the webui picks one.
    if (!started) catalog.#current = (await catalog.list())[0]?.name;
    return catalog;
  }

  /** The model requests use unless they name one: undefined when the server has none. */
  get current(): string | undefined {
    return this.#current;
  }

  /** Every model offered: the -m one first, then the folder's, by name. */
  async list(): Promise<ModelEntry[]> {
    const listed = this.#folder ? (await listNames(this.#folder)).map((f) => ({ name: f.file, path: f.path })) : [];
    const started = this.#started;
    return started ? [started, ...listed.filter((e) => e.name !== started.name)] : listed;
  }

  /**
   * The model a name means: the -m model's name, or a checkpoint in --models-dir by its path
   * there, with or without extension or the webui's ' [hash]'. JobError 400 ('invalid_name',
   * 'unknown_model') naming `field` otherwise; never a file outside the folder.
   */
  async resolve(name: unknown, field = 'model'): Promise<ModelEntry> {
    const bare = typeof name === 'string' ? name.replace(TITLE_HASH, '') : name;
    const started = this.#started;
    if (started && (bare === started.name || bare === stripExtension(started.name))) return started;
    if (!this.#folder) {
      checkName(bare, field, { dir: '', extensions: MODEL_EXTENSIONS, kind: 'model' });
      throw new JobError({ status: 400, code: 'unknown_model', field, message: `${field}: no model named '${String(bare)}'; this server has ${started ? `only '${started.name}'` : 'none'} (give it --models-dir to offer more)` });
    }
    const path = await resolveName(bare, field, this.#folder);
    const root = await realpath(this.#folder.dir);
    return { name: relative(root, path).split(sep).join('/'), path };
  }

  /** Makes `name` the model requests use (the webui's sd_model_checkpoint); rejects as resolve. */
  async select(name: unknown, field = 'sd_model_checkpoint'): Promise<ModelEntry> {
    const entry = await this.resolve(name, field);
    this.#current = entry.name;
    return entry;
  }
}

/** A name without its checkpoint extension. */
function stripExtension(name: string): string {
  const lower = name.toLowerCase();
  const ext = MODEL_EXTENSIONS.find((e) => lower.endsWith(e));
  return ext ? name.slice(0, name.length - ext.length) : name;
}

/** The webui's "Model" of a checkpoint: its file name without folder and extension. */
export function checkpointName(name: string): string {
  return stripExtension(basename(name));
}

/** What loadModel is given for models the pool loads (loraDir is not: the server resolves LoRAs itself). */
export type PoolLoadOptions = Pick<LoadModelOptions, 'device' | 'threads' | 'weightType' | 'embeddingDir'>;

/**
 * Loaded models by name, for a queue that runs one job at a time: one model loaded from a file
 * at a time (switching disposes the last one, after its jobs: the queue calls get() between
 * jobs), besides a Model given loaded, which is kept and never disposed here.
 */
export class ModelPool {
  #loaded: { name: string; model: Promise<Model> } | undefined;
  #disposed = false;

  constructor(
    readonly catalog: ModelCatalog,
    private readonly loadOptions: PoolLoadOptions = {},
  ) {}

  /** The loaded model `name` names, loading it (and disposing the last one) when it is another. */
  async get(name: string): Promise<Model> {
    if (this.#disposed) throw new JobError({ status: 503, code: 'shutting_down', message: 'the server is shutting down' });
    const entry = await this.catalog.resolve(name);
    if (entry.model) return entry.model;
    if (this.#loaded?.name === entry.name) return this.#loaded.model;
    const last = this.#loaded;
    this.#loaded = undefined;
    if (last) await last.model.then((m) => m.dispose(), () => undefined);
    const model = loadModel(entry.path!, this.loadOptions);
    this.#loaded = { name: entry.name, model };
    // A failed load is not kept: the next job naming it tries again.
    model.catch(() => {
      if (this.#loaded?.model === model) this.#loaded = undefined;
    });
    return model;
  }

  /** The name of the model loaded from a file now, if any. */
  get loadedName(): string | undefined {
    return this.#loaded?.name;
  }

  /** Disposes the model it loaded (not one given loaded). */
  async dispose(): Promise<void> {
    this.#disposed = true;
    const last = this.#loaded;
    this.#loaded = undefined;
    if (last) await last.model.then((m) => m.dispose(), () => undefined);
  }
}
