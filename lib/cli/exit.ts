/**
 * Exit codes and error reporting, the same for every command:
 *   0 success · 1 runtime error (the error's code printed) · 2 usage error · 130 interrupted.
 */
import { AbortError, SdnodeError } from '../index.js';

export const EXIT = { ok: 0, error: 1, usage: 2, interrupted: 130 } as const;

export const EXIT_CODES_HELP = `Exit codes:
  0    success
  1    runtime error: a file could not be read or written, a model was refused, a
       device failed, … (the error's code is printed, e.g. ERR_FILE_ACCESS)
  2    usage error: an unknown flag, a missing or malformed value, a value out of range
  130  interrupted (Ctrl-C): the job was cancelled and no output file was written`;

/** A mistake in the command line found by the CLI itself. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

/**
 * The library names options as `options.cfgScale`; on the command line they are flags. `flags`
 * maps option names to flag names ({ cfgScale: '--cfg-scale' }).
 */
export function inFlagTerms(message: string, flags: Record<string, string>): string {
  return message.replace(/\b(?:options|source)\.([A-Za-z0-9]+)\b/g, (all, name: string) => flags[name] ?? all);
}

export interface Failure {
  exitCode: number;
  /** For --json: what failed, machine-readable. */
  error: { name: string; code: string; message: string };
}

/**
 * TypeErrors and RangeErrors that JavaScript itself raises (V8's wording) are faults, not bad
 * flags: e.g. an addon older than the library ("… is not a function").
 */
const ENGINE_ERROR =
  /is not a function|is not a constructor|Cannot read propert|Cannot set propert|is not defined|is not iterable|Cannot convert|Cannot access|Invalid array length|Invalid string length|Maximum call stack/;

/**
 * Classifies an error: AbortError → 130; TypeError/RangeError (the library's checks of values
 * that came from flags) and UsageError → 2; anything else → 1 with its code (ERR_INTERNAL when
 * it has none).
 */
export function classify(err: unknown, flags: Record<string, string> = {}): Failure {
  const e = err instanceof Error ? err : new Error(String(err));
  const message = inFlagTerms(e.message, flags);
  if (e instanceof AbortError || (e as { code?: unknown }).code === 'ABORT_ERR')
    return { exitCode: EXIT.interrupted, error: { name: 'AbortError', code: 'ABORT_ERR', message: 'interrupted' } };
  if (e instanceof UsageError || ((e instanceof TypeError || e instanceof RangeError) && !ENGINE_ERROR.test(e.message)))
    return { exitCode: EXIT.usage, error: { name: e.name, code: 'ERR_USAGE', message } };
  const own = (e as { code?: unknown }).code;
  const code = e instanceof SdnodeError ? e.code : typeof own === 'string' ? own : 'ERR_INTERNAL';
  return { exitCode: EXIT.error, error: { name: e.name, code, message } };
}

/**
 * Prints a failure: on stderr always ("sdnode generate: error: … (ERR_FILE_ACCESS)"), and with
 * --json also as `{ ok: false, error, exitCode }` on stdout. Returns the exit code.
 */
export function reportFailure(command: string, failure: Failure, json: boolean): number {
  const { exitCode, error } = failure;
  if (exitCode === EXIT.interrupted) process.stderr.write(`sdnode ${command}: interrupted\n`);
  else if (exitCode === EXIT.usage) process.stderr.write(`sdnode ${command}: error: ${error.message}\n(run 'sdnode ${command} --help' for usage)\n`);
  else process.stderr.write(`sdnode ${command}: error: ${error.message} (${error.code})\n`);
  if (json) process.stdout.write(`${JSON.stringify({ ok: false, command, exitCode, error })}\n`);
  return exitCode;
}
