/** Synchronous option checks shared by the API: precise TypeError / RangeError messages. */

/** Levenshtein distance: how "did you mean" suggestions rank names. */
export function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const cur = row[j]!;
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = cur;
    }
  }
  return row[b.length]!;
}

/** Rejects unknown keys, suggesting the closest known one ("did you mean"). */
export function checkKeys(what: string, value: object, known: readonly string[]): void {
  for (const key of Object.keys(value)) {
    if (known.includes(key)) continue;
    const best = known
      .map((k) => ({ k, d: editDistance(key.toLowerCase(), k.toLowerCase()) }))
      .sort((x, y) => x.d - y.d)[0];
    const hint = best && best.d <= Math.max(2, Math.floor(key.length / 3)) ? ` (did you mean '${best.k}'?)` : '';
    throw new TypeError(`${what}: unknown option '${key}'${hint}`);
  }
}

/** An options object: `{}` for undefined; TypeError for null, arrays and non-objects. */
export function checkObject(what: string, value: unknown): Record<string, unknown> {
  if (value === undefined) return {};
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new TypeError(`${what} must be an object`);
  }
  return value as Record<string, unknown>;
}

/** A file path: TypeError unless a string; RangeError if empty or containing NUL. */
export function checkPath(what: string, value: unknown): string {
  if (typeof value !== 'string') throw new TypeError(`${what} must be a string path, got ${typeof value}`);
  if (value.length === 0) throw new RangeError(`${what} must not be empty`);
  if (value.includes('\0')) throw new RangeError(`${what} must not contain NUL characters`);
  return value;
}

/** An integer in [min, max]: TypeError unless a number, RangeError otherwise (NaN and ±Infinity included). */
export function checkInteger(what: string, value: unknown, min: number, max: number): number {
  if (typeof value !== 'number') throw new TypeError(`${what} must be a number, got ${typeof value}`);
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new RangeError(`${what} must be an integer in [${min}, ${max}], got ${value}`);
  }
  return value;
}

/** undefined, or an AbortSignal (TypeError otherwise). */
export function checkSignal(what: string, value: unknown): AbortSignal | undefined {
  if (value === undefined) return undefined;
  if (!(value instanceof AbortSignal)) throw new TypeError(`${what} must be an AbortSignal`);
  return value;
}

/** undefined, or a function (TypeError otherwise). */
export function checkFunction<T extends (...args: never[]) => unknown>(what: string, value: unknown): T | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'function') throw new TypeError(`${what} must be a function`);
  return value as T;
}

/** One of `allowed`: TypeError unless a string, RangeError listing the allowed values otherwise. */
export function checkEnum<T extends string>(what: string, value: unknown, allowed: readonly T[]): T {
  if (typeof value !== 'string') throw new TypeError(`${what} must be a string`);
  if (!allowed.includes(value as T)) throw new RangeError(`${what} must be one of ${allowed.join(', ')}, got '${value}'`);
  return value as T;
}

/** true or false (TypeError otherwise). */
export function checkBoolean(what: string, value: unknown): boolean {
  if (typeof value !== 'boolean') throw new TypeError(`${what} must be a boolean, got ${typeof value}`);
  return value;
}

/** A finite number in [min, max]: TypeError unless a finite number, RangeError otherwise. */
/** Seeds are 64-bit: 0 … 2^64−1. */
export const MAX_SEED = (1n << 64n) - 1n;

export function checkFinite(what: string, value: unknown, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isFinite(value)) throw new TypeError(`${what} must be a finite number`);
  if (value < min || value > max) throw new RangeError(`${what} must be in [${min}, ${max}], got ${value}`);
  return value;
}
