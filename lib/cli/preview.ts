/**
 * Live previews written to one file while sampling runs (--preview, --preview-path), as
 * stable-diffusion.cpp's CLI does: each replaces the last through a rename (the library's atomic
 * write, under its destination policy), so an image viewer watching the file never sees a
 * half-written one. Writes never hold up sampling: while one is being written, only the newest
 * preview waits for its turn.
 */
import type { Image } from '../index.js';
import { commitTemporary, temporaryPathFor, writeTemporary } from '../output-path.js';
import { encodeImage, imageFormat, type ImageFormat } from './output.js';

export class PreviewWriter {
  readonly #path: string;
  readonly #target: string;
  readonly #format: ImageFormat;
  #pending?: Image;
  #writing?: Promise<void>;
  #failed = false;
  /** Previews written so far. */
  written = 0;

  /** `target`: the file previews go to, as the destination policy resolved `path` before the model loaded. */
  constructor(path: string, target = path) {
    this.#format = imageFormat(path, '--preview-path');
    this.#path = path;
    this.#target = target;
  }

  /** Queues a preview; returns at once. */
  offer(image: Image): void {
    this.#pending = image;
    this.#writing ??= this.#drain();
  }

  async #drain(): Promise<void> {
    while (this.#pending) {
      const image = this.#pending;
      this.#pending = undefined;
      try {
        const temporary = temporaryPathFor(this.#target);
        await writeTemporary(temporary, await encodeImage(image, this.#format), this.#target);
        // Checks the policy again: a preview never replaces what appeared there meanwhile.
        await commitTemporary(temporary, this.#target, '--preview-path');
        this.written++;
      } catch (err) {
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
