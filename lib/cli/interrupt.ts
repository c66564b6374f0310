/**
 * Ctrl-C: the first SIGINT aborts the running job through its AbortSignal (the command then
 * removes what it had started to write and exits 130); a second one exits 130 at once, after
 * removing the temporary files registered here.
 */
import { unlinkSync } from 'node:fs';

import { EXIT } from './exit.js';

export class Interrupt {
  readonly #controller = new AbortController();
  readonly #temporary = new Set<string>();
  readonly #listeners: Array<() => void> = [];
  readonly #onSignal = () => {
    if (this.#controller.signal.aborted) {
      this.removeTemporary();
      // A progress bar hides the cursor until it ends; it will not end now.
      if (process.stderr.isTTY) process.stderr.write('\x1b[?25h\n');
      process.exit(EXIT.interrupted);
    }
    // Progress bars end first, so that the message is not drawn over.
    for (const listener of this.#listeners) listener();
    process.stderr.write('\nsdnode: stopping (Ctrl-C again to quit at once)\n');
    this.#controller.abort();
  };

  constructor() {
    process.on('SIGINT', this.#onSignal);
    process.on('SIGTERM', this.#onSignal);
  }

  /** Called on the first signal, before anything is printed. */
  onInterrupt(listener: () => void): void {
    this.#listeners.push(listener);
  }

  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  /** A file being written, removed if the process is made to quit before it is renamed into place. */
  track(path: string): void {
    this.#temporary.add(path);
  }

  untrack(path: string): void {
    this.#temporary.delete(path);
  }

  removeTemporary(): void {
    for (const path of this.#temporary) {
      try {
        unlinkSync(path);
      } catch {
        // Already gone.
      }
    }
    this.#temporary.clear();
  }

  /** Restores Node's default SIGINT handling. */
  dispose(): void {
    process.off('SIGINT', this.#onSignal);
    process.off('SIGTERM', this.#onSignal);
  }
}
