/**
 * Names that clients give for files in the server's folders (models, LoRAs): resolved only
 * inside their folder. A name is a relative path of plain segments ('style', 'sdxl/detail'); no
 * '..', '.', empty or absolute segments, no backslashes or NULs; and the file it reaches, after
 * every symlink is resolved (realpath), must still lie inside the folder's own real path. So
 * `../../etc/passwd` is refused before the file system is asked, and a symlink planted in the
 * folder that points out of it is treated as no file at all.
 */
import type { Dirent } from 'node:fs';
import { readdir, realpath, stat } from 'node:fs/promises';
import { extname, join, relative, sep } from 'node:path';

import { editDistance } from '../validate.js';
import { JobError } from './job-queue.js';

/** What a folder holds, for messages and codes: 'model' gives 'unknown_model', … */
export interface NamedFolder {
  /** The folder as given. */
  dir: string;
  /** File extensions (lower case, with the dot) that count, in the order a bare name tries them. */
  extensions: readonly string[];
  /** 'model', 'LoRA': used in messages, and lower-cased in error codes. */
  kind: string;
}

/** How deep a listing descends and how many files it returns: a folder is the user's, but a listing is an answer to a request. */
export const LISTING_LIMITS = { depth: 4, files: 2000 } as const;

// Longest name accepted: longer than any real path component chain, short enough to log.
const MAX_NAME_LENGTH = 512;

/** A name's shape, before any file is looked at: JobError 400 'invalid_name' naming `field`. */
export function checkName(name: unknown, field: string, folder: NamedFolder): string {
  const bad = (why: string) =>
    new JobError({ status: 400, code: 'invalid_name', field, message: `${field}: a ${folder.kind} name ${why}` });
  if (typeof name !== 'string' || name === '') throw bad('must be a non-empty string');
  if (name.length > MAX_NAME_LENGTH) throw bad(`must be at most ${MAX_NAME_LENGTH} characters`);
  if (name.includes('\0') || name.includes('\\')) throw bad('must not hold NUL or backslash characters');
  if (name.startsWith('/') || /^[a-zA-Z]:/.test(name)) throw bad(`is a path inside the ${folder.kind} folder, not an absolute path: '${name}'`);
  if (name.split('/').some((s) => s === '' || s === '.' || s === '..')) throw bad(`stays inside the ${folder.kind} folder: no '..', '.' or empty segments in '${name}'`);
  return name;
}

/** `path` is `root` or lies under it (both real paths). */
function inside(root: string, path: string): boolean {
  return path === root || path.startsWith(root.endsWith(sep) ? root : root + sep);
}

/** The folder's real path: JobError 500 when it cannot be read (the server's fault, not the client's). */
async function realFolder(folder: NamedFolder): Promise<string> {
  try {
    return await realpath(folder.dir);
  } catch (cause) {
    throw new JobError({ status: 500, code: 'folder_unreadable', message: `the ${folder.kind} folder cannot be read: ${(cause as Error).message}` }, { cause });
  }
}

/**
 * The real path of the file `name` names in the folder: the name as given when it ends with one
 * of the folder's extensions, else the name plus each extension in turn. JobError 400
 * 'invalid_name' for a malformed name, 400 'unknown_<kind>' (nearest names listed) when no file
 * of the folder has that name — a link out of the folder counts as none.
 */
export async function resolveName(name: unknown, field: string, folder: NamedFolder): Promise<string> {
  const checked = checkName(name, field, folder);
  const root = await realFolder(folder);
  const hasExtension = folder.extensions.includes(extname(checked).toLowerCase());
  const candidates = hasExtension ? [checked] : folder.extensions.map((ext) => checked + ext);
  for (const candidate of candidates) {
    let real: string;
    try {
      real = await realpath(join(root, candidate));
    } catch {
      continue;
    }
    if (!inside(root, real)) continue;
    try {
      if ((await stat(real)).isFile()) return real;
    } catch {
      // Gone since realpath: no file.
    }
  }
  const names = (await listNames(folder)).map((f) => f.name);
  const nearest = names
    .map((n) => ({ n, d: editDistance(n.toLowerCase(), checked.toLowerCase()) }))
    .sort((a, b) => a.d - b.d || a.n.localeCompare(b.n))
    .slice(0, 3)
    .map((x) => x.n);
  throw new JobError({
    status: 400,
    code: `unknown_${folder.kind.toLowerCase()}`,
    field,
    message: `${field}: no ${folder.kind} named '${checked}' in the ${folder.kind} folder` + (nearest.length ? `; nearest: ${nearest.join(', ')}` : ` (it has none)`),
  });
}

/** One file of a folder listing. */
export interface NamedFile {
  /** Its path inside the folder without extension, '/'-separated: what clients name it by. */
  name: string;
  /** Its path inside the folder with extension. */
  file: string;
  /** Its real path. */
  path: string;
}

/**
 * The folder's files with its extensions, sorted by name, descending LISTING_LIMITS.depth
 * folders and stopping at LISTING_LIMITS.files; hidden entries and links out of the folder are
 * left out. A folder that cannot be read lists nothing.
 */
export async function listNames(folder: NamedFolder): Promise<NamedFile[]> {
  let root: string;
  try {
    root = await realpath(folder.dir);
  } catch {
    return [];
  }
  const out: NamedFile[] = [];
  const walk = async (dir: string, depth: number): Promise<void> => {
    let entries: Dirent[];
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch {
      return;
    }
    entries.sort((a, b) => a.name.localeCompare(b.name));
    for (const entry of entries) {
      if (out.length >= LISTING_LIMITS.files) return;
      if (entry.name.startsWith('.')) continue;
      let real: string;
      try {
        real = await realpath(join(dir, entry.name));
      } catch {
        continue;
      }
      if (!inside(root, real)) continue;
      let info;
      try {
        info = await stat(real);
      } catch {
        continue;
      }
      const file = relative(root, join(dir, entry.name)).split(sep).join('/');
      if (info.isDirectory()) {
        if (depth < LISTING_LIMITS.depth) await walk(join(dir, entry.name), depth + 1);
      } else if (info.isFile() && folder.extensions.includes(extname(entry.name).toLowerCase())) {
        out.push({ name: file.slice(0, file.length - extname(file).length), file, path: real });
      }
    }
  };
  await walk(root, 1);
  return out;
}
