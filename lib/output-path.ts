/**
 * Where sdnode may write, and how: the one destination policy of convertModel, writeImage, the
 * CLI's outputs (and any file the server writes).
 *
 * Policy: a destination that exists must be a regular file; a directory, FIFO, socket or device
 * (/dev/null) is refused with OutputPathError, never replaced. A symlink is followed only to a
 * target in the link's own folder (so `latest.png → run-7.png` works) unless the caller passes
 * `followSymlinks: true`; it then writes wherever the link points. Either way, the file written
 * is the link's target, not the link.
 *
 * Writing: to a hidden temporary file in the target's folder, created exclusively (O_EXCL: never
 * an existing file, never through a planted symlink), flushed to disk (fsync), then renamed over
 * the target after the policy is checked again. Readers see the old file or the whole new one,
 * never part of one; a failure removes the temporary file and leaves the target untouched.
 */
import { randomBytes } from 'node:crypto';
import { constants, type Stats } from 'node:fs';
import { access, lstat, open, readlink, realpath, rename, stat, unlink } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';

import { FileAccessError, OutputPathError } from './errors.js';
import { checkBoolean } from './validate.js';

/** How a destination may be reached. */
export interface OutputPathOptions {
  /**
   * Follow a symlinked destination wherever it points, out of its folder too. Default false:
   * only a link to a file in its own folder is followed; any other is refused (OutputPathError).
   */
  followSymlinks?: boolean;
}

/** `followSymlinks` from an options object, checked (TypeError unless a boolean). */
export function checkFollowSymlinks(what: string, value: unknown): boolean {
  return value === undefined ? false : checkBoolean(what, value);
}

// Links resolved one after the other before giving up, as the kernel's own limit (ELOOP).
const MAX_LINKS = 40;

/** What a non-regular file is, for messages. */
function kindOf(s: Stats): string {
  if (s.isDirectory()) return 'a directory';
  if (s.isFIFO()) return 'a FIFO';
  if (s.isSocket()) return 'a socket';
  if (s.isCharacterDevice()) return 'a character device';
  if (s.isBlockDevice()) return 'a block device';
  if (s.isSymbolicLink()) return 'a symlink';
  return 'not a regular file';
}

async function lstatOrUndefined(path: string): Promise<Stats | undefined> {
  try {
    return await lstat(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

async function realFolder(path: string): Promise<string | undefined> {
  try {
    return await realpath(dirname(path));
  } catch {
    return undefined;
  }
}

/**
 * The file a write to `path` lands on, after the policy: `path` itself, or its symlink's target.
 * Rejects with OutputPathError when the destination exists and is not a regular file, or is a
 * symlink the policy does not follow; with FileAccessError when its folder is missing, not a
 * folder or not writable. `what` names the option or flag in messages ('dst', '--output').
 * Nothing is created.
 */
export async function resolveOutputPath(path: string, options: OutputPathOptions = {}, what = 'path'): Promise<string> {
  const named = `${what} '${path}'`;
  let target = resolve(path);
  const home = await realFolder(target);
  try {
    for (let links = 0; ; links++) {
      const s = await lstatOrUndefined(target);
      if (!s) break;
      if (s.isFile()) break;
      if (!s.isSymbolicLink()) throw new OutputPathError(`${named} is ${kindOf(s)}; sdnode writes only regular files, and does not replace anything else`);
      if (links === MAX_LINKS) throw new OutputPathError(`${named}: more than ${MAX_LINKS} symlinks in a row`);
      const next = resolve(dirname(target), await readlink(target));
      if (!options.followSymlinks) {
        const there = await realFolder(next);
        if (home === undefined || there !== home)
          throw new OutputPathError(`${named} is a symlink to '${next}', outside its folder; pass followSymlinks to write there`);
      }
      target = next;
    }
  } catch (err) {
    if (err instanceof OutputPathError) throw err;
    throw new FileAccessError(`${named}: ${(err as Error).message}`, { cause: err });
  }
  const folder = dirname(target);
  try {
    if (!(await stat(folder)).isDirectory()) throw new Error('not a folder');
    await access(folder, constants.W_OK);
  } catch (cause) {
    throw new FileAccessError(`${named}: cannot write in '${folder}': ${(cause as Error).message}`, { cause });
  }
  return target;
}

/** A fresh hidden name beside `target` for its temporary file. */
export function temporaryPathFor(target: string): string {
  return join(dirname(target), `.${basename(target)}.partial-${process.pid}-${randomBytes(4).toString('hex')}`);
}

/**
 * Creates `temporary` exclusively (it must not exist: no file and no symlink is ever opened in
 * its place), writes `data`, fsyncs and closes it. On failure the file is removed and the error
 * is a FileAccessError naming `target`.
 */
export async function writeTemporary(temporary: string, data: Uint8Array, target = temporary): Promise<void> {
  let created = false;
  try {
    const file = await open(temporary, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o666);
    created = true;
    try {
      await file.writeFile(data);
      await file.sync();
    } finally {
      await file.close();
    }
  } catch (cause) {
    if (created) await unlink(temporary).catch(() => undefined);
    throw new FileAccessError(`cannot write '${target}': ${(cause as Error).message}`, { cause });
  }
}

/**
 * Throws OutputPathError unless `target` is absent or a regular file now (not following links:
 * resolveOutputPath already did, so a link appearing meanwhile is refused too).
 */
export async function checkStillWritable(target: string, what = 'path'): Promise<void> {
  const s = await lstatOrUndefined(target).catch(() => undefined);
  if (s && !s.isFile()) throw new OutputPathError(`${what} '${target}' is now ${kindOf(s)}; it was not replaced`);
}

/**
 * Renames a complete temporary file over `target` once the policy still holds for it; on any
 * failure the temporary file is removed and `target` left as it was.
 */
export async function commitTemporary(temporary: string, target: string, what = 'path'): Promise<void> {
  try {
    await checkStillWritable(target, what);
    await rename(temporary, target).catch((cause: Error) => {
      throw new FileAccessError(`cannot write '${target}': ${cause.message}`, { cause });
    });
  } catch (err) {
    await unlink(temporary).catch(() => undefined);
    throw err;
  }
}

/**
 * Writes `data` to `path` under the policy, atomically (see the file comment). Resolves to the
 * file written (the link's target when `path` is a followed symlink).
 */
export async function writeFileAtomic(path: string, data: Uint8Array, options: OutputPathOptions = {}, what = 'path'): Promise<string> {
  const target = await resolveOutputPath(path, options, what);
  const temporary = temporaryPathFor(target);
  await writeTemporary(temporary, data, target);
  await commitTemporary(temporary, target, what);
  return target;
}
