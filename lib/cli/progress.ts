/**
 * Progress on stderr: a cli-progress bar (step, s/it, ETA) when stderr is a terminal; one plain
 * line per step otherwise (logs and pipes get readable text, no escape codes); nothing with
 * --json, whose stdout is for the summary alone and whose stderr stays quiet for machines.
 */
import cliProgress from 'cli-progress';

import type { Progress } from '../index.js';

export type ProgressMode = 'bar' | 'lines' | 'none';

export function progressMode(json: boolean, stream: NodeJS.WriteStream = process.stderr): ProgressMode {
  if (json) return 'none';
  return stream.isTTY ? 'bar' : 'lines';
}

/** "1.23 s/it" from the time per step so far. */
function rate(msPerStep: number): string {
  return `${(msPerStep / 1000).toFixed(2)} s/it`;
}

/** Seconds as m:ss (or h:mm:ss). */
export function clock(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
  const mm = h ? String(m).padStart(2, '0') : String(m);
  return `${h ? `${h}:` : ''}${mm}:${String(r).padStart(2, '0')}`;
}

/**
 * One task's progress (loading tensors, sampling steps, converting tensors). `report` takes the
 * library's progress events; `done` ends the bar (or does nothing in line mode).
 */
export class ProgressReporter {
  readonly #mode: ProgressMode;
  readonly #label: string;
  readonly #unit: string;
  readonly #stream: NodeJS.WriteStream;
  #bar?: cliProgress.SingleBar;
  /** elapsedMs and step of the first event: the rate leaves out the job's set-up before it. */
  #first?: { step: number; elapsedMs: number };
  #lastLine = 0;
  #closed = false;

  /** `unit`: what one step is ('it' for sampler steps: "s/it"); line mode prints every `every`-th step. */
  constructor(mode: ProgressMode, label: string, options: { unit?: string; stream?: NodeJS.WriteStream } = {}) {
    this.#mode = mode;
    this.#label = label;
    this.#unit = options.unit ?? 'it';
    this.#stream = options.stream ?? process.stderr;
  }

  report = (p: Progress): void => {
    if (this.#mode === 'none' || this.#closed) return;
    const first = (this.#first ??= { step: p.step, elapsedMs: p.elapsedMs });
    // ms per step: from the first event on once there are two, else the first step's own time.
    const per = p.step > first.step ? (p.elapsedMs - first.elapsedMs) / (p.step - first.step) : p.elapsedMs / Math.max(1, p.step);
    const eta = (per * (p.steps - p.step)) / 1000;
    const speed = this.#unit === 'it' ? rate(per) : `${per > 0 ? Math.round(1000 / per) : '-'} ${this.#unit}s/s`;
    if (this.#mode === 'bar') {
      if (!this.#bar) {
        this.#bar = new cliProgress.SingleBar(
          {
            format: `${this.#label} {bar} {value}/{total} | {speed} | ETA {etaText}`,
            stream: this.#stream,
            hideCursor: true,
            barsize: 30,
            // The terminal shows every step of slow jobs; fast ones (tensors) are drawn at most 10×/s.
            fps: 10,
          },
          cliProgress.Presets.shades_classic,
        );
        this.#bar.start(p.steps, 0, { speed, etaText: clock(eta) });
      }
      this.#bar.setTotal(p.steps);
      this.#bar.update(p.step, { speed, etaText: clock(eta) });
      return;
    }
    // Line mode: every sampler step; for fast steps (tensors) at most one line a second and the last.
    const now = Date.now();
    if (this.#unit !== 'it' && p.step !== p.steps && now - this.#lastLine < 1000) return;
    this.#lastLine = now;
    this.#stream.write(`${this.#label} ${p.step}/${p.steps} (${speed}, ETA ${clock(eta)})\n`);
  };

  /** Ends the bar, leaving its last state on screen; later events are ignored. */
  done(): void {
    this.#closed = true;
    this.#bar?.stop();
    this.#bar = undefined;
  }

  /** A plain message on stderr (not with --json), after the bar is ended. */
  note(message: string): void {
    if (this.#mode === 'none') return;
    this.done();
    this.#stream.write(`${message}\n`);
  }
}
