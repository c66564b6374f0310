/**
 * Live previews written to one file while sampling runs (--preview, --preview-path), as
 * stable-diffusion.cpp's CLI does: each replaces the last through a rename, so an image viewer
 * watching the file never sees a half-written one. Writes never hold up sampling: while one is
 * being written, only the newest preview waits for its turn.
 */
import { rename, unlink, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

import type { Image } from '../index.js';
import { encodeImage, imageFormat, type ImageFormat } from './output.js';

export class PreviewWriter {
  readonly #path: string;
  readonly #format: ImageFormat;
  #pending?: Image;
  #writing?: Promise<void>;
  #failed = false;
  /** Previews written so far. */
  written = 0;

  constructor(path: string) {
    this.#format = imageFormat(path, '--preview-path');
    this.#path = path;
  }

  /** Queues a preview; returns at once. */
  offer(image: Image): void {
    this.#pending = image;
    this.#writing ??= this.#drain();
  }

  async #drain(): Promise<void> {
    const temporary = join(dirname(this.#path), `.${basename(this.#path)}.preview-${process.pid}`);
    while (this.#pending) {
      const image = this.#pending;
      this.#pending = undefined;
      try {
        await writeFile(temporary, await encodeImage(image, this.#format));
        await rename(temporary, this.#path);
        this.written++;
      } catch (err) {
        await unlink(temporary).catch(() => undefined);
        if (!this.#failed) process.stderr.write(`sdnode generate: warning: cannot write the preview '${this.#path}': ${(err as Error).message}\n`);
        this.#failed = true;
      }
    }
    this.#writing = undefined;
  }

  /** Resolves once the previews offered so far are written. */
  async settle(): Promise<void> {
    while (this.#writing) await this.#writing;
  }
}
