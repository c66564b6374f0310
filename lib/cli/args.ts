/**
 * Turning flag strings into values. Only the syntax is checked here (a number is a number);
 * ranges and names are the library's to check, and its TypeError/RangeError become usage errors —
 * except the server's and worker's own limits and timings (count, seconds), which no library
 * call checks.
 */
import { InvalidArgumentError } from 'commander';

import { UsageError } from './exit.js';

const MS_PER_SECOND = 1000;

const NUMBER = /^[-+]?(\d+\.?\d*|\.\d+)(e[-+]?\d+)?$/i;

/** A decimal number ("7", "7.5", "1e3"). */
export function number(value: string): number {
  if (!NUMBER.test(value.trim())) throw new InvalidArgumentError(`'${value}' is not a number.`);
  return Number(value);
}

/** A seed: an integer up to 2^64−1 (a bigint past 2^53), or any negative number for a random one (as stable-diffusion.cpp). */
export function seed(value: string): number | bigint {
  const v = value.trim();
  if (!/^[-+]?\d+$/.test(v)) throw new InvalidArgumentError(`'${value}' is not an integer.`);
  const n = BigInt(v);
  if (n < 0n) return -1;
  return n <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(n) : n;
}

/** Lower-cased, so stable-diffusion.cpp's spellings (q4_K, Q8_0) work. */
export function lower(value: string): string {
  return value.trim().toLowerCase();
}

/** A seed as JSON can carry it: a number while exact, else a decimal string. */
export function jsonSeed(seed: number | bigint): number | string {
  return typeof seed === 'bigint' ? (seed <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(seed) : seed.toString()) : seed;
}

/** A positive whole number (a count, a limit); UsageError naming `flag` otherwise. */
export function count(flag: string, value: number): number {
  if (!Number.isSafeInteger(value) || value < 1) throw new UsageError(`${flag} must be a positive whole number, got ${value}`);
  return value;
}

/** A positive number of seconds, in milliseconds; UsageError naming `flag` otherwise. */
export function seconds(flag: string, value: number): number {
  if (!(value > 0)) throw new UsageError(`${flag} must be a positive number of seconds, got ${value}`);
  return Math.round(value * MS_PER_SECOND);
}
