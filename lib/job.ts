/**
 * Running native jobs from JS: one FIFO queue per model object, AbortSignal wiring, progress
 * callbacks that can never break a job, and errors mapped to their classes.
 */
import { AbortError, DisposedError, fromNative } from './errors.js';
import type { Image } from './image.js';
import type { NativeJob, NativeProgress } from './native.js';

/** One progress event of a job: step `step` of `steps` is done. */
export interface Progress {
  /** 1-based, increasing. */
  step: number;
  /** Steps of this job. */
  steps: number;
  /** Milliseconds since the job started. */
  elapsedMs: number;
  /**
   * A live preview made at this step, when the job makes them (model.generate's `preview`
   * option): the sampler's current denoised estimate as 8-bit RGB of the image's size.
   */
  preview?: Image & { channels: 3 };
}

/** What every job takes: cancellation and progress. Both optional, none by default. */
export interface JobOptions {
  /** Cancels the job, queued or running; the promise rejects with AbortError. Default: none. */
  signal?: AbortSignal;
  /**
   * Called on the JS thread for every step, in order, never after the promise settles. If it
   * throws, the job is cancelled and the promise rejects with what it threw. A slow callback
   * neither slows nor changes the computation (it runs on its own thread); the promise settles
   * after the last event has been delivered. Default: none.
   */
  onProgress?: (progress: Progress) => void;
}

type Start<T> = (onProgress: ((p: NativeProgress) => void) | undefined) => NativeJob<T>;

/** Jobs on one object run one at a time, in the order they were asked for. */
export class JobQueue {
  private readonly waiting: Array<() => void> = [];
  private running = false;
  private closed = false;
  private idleWaiters: Array<() => void> = [];

  constructor(private readonly what: string) {}

  /** Pending jobs, running one included. */
  get size(): number {
    return this.waiting.length + (this.running ? 1 : 0);
  }

  /**
   * Queues a job: `start` runs once the jobs before it have settled. Rejects with DisposedError
   * after close(), with AbortError when `options.signal` fires first; errors from the addon
   * come back as their classes (fromNative).
   */
  run<T>(start: Start<T>, options: JobOptions = {}): Promise<T> {
    if (this.closed) return Promise.reject(new DisposedError(`${this.what} has been disposed`));
    const { signal, onProgress } = options;
    if (signal?.aborted) return Promise.reject(new AbortError(undefined, { cause: signal.reason }));

    return new Promise<T>((resolve, reject) => {
      let job: NativeJob<T> | undefined;
      let callbackError: { error: unknown } | undefined;
      let settled = false;

      const onAbort = () => {
        if (job) {
          job.cancel();
        } else {
          const i = this.waiting.indexOf(begin);
          if (i >= 0) this.waiting.splice(i, 1);
          finish(() => reject(new AbortError(undefined, { cause: signal?.reason })));
          this.maybeIdle();
        }
      };
      const finish = (settle: () => void) => {
        if (settled) return;
        settled = true;
        signal?.removeEventListener('abort', onAbort);
        settle();
      };
      const progress = onProgress
        ? (p: NativeProgress) => {
            if (settled || callbackError) return;
            try {
              const event: Progress = { step: p.step, steps: p.steps, elapsedMs: p.elapsedMs };
              if (p.preview) event.preview = p.preview as Image & { channels: 3 };
              onProgress(event);
            } catch (error) {
              callbackError = { error };
              job?.cancel();
            }
          }
        : undefined;

      const begin = () => {
        this.running = true;
        try {
          job = start(progress);
        } catch (err) {
          this.running = false;
          finish(() => reject(fromNative(err)));
          this.next();
          return;
        }
        job.promise.then(
          (value) => finish(() => resolve(value)),
          (err) => finish(() => reject(callbackError ? callbackError.error : fromNative(err))),
        ).finally(() => {
          this.running = false;
          this.next();
        });
      };

      signal?.addEventListener('abort', onAbort, { once: true });
      this.waiting.push(begin);
      if (!this.running) this.next();
    });
  }

  /** Refuses new jobs; resolves once the queued and running ones have settled. */
  close(): Promise<void> {
    this.closed = true;
    if (this.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private next(): void {
    if (this.running) return;
    const begin = this.waiting.shift();
    if (begin) begin();
    else this.maybeIdle();
  }

  private maybeIdle(): void {
    if (this.size > 0) return;
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const w of waiters) w();
  }
}
