// The destination policy (lib/output-path.ts) through writeImage and the module itself: a
// destination that exists and is not a regular file (a device, a FIFO, a socket, a directory) is
// refused with OutputPathError and left as it was; a symlink is followed only inside its own
// folder unless followSymlinks; files are replaced atomically (a reader holding the old file
// keeps it whole) and no temporary file is ever left behind.
import { execFileSync } from 'node:child_process';
import {
  closeSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  readSync,
  readdirSync,
  readlinkSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { FileAccessError, OutputPathError, writeImage, type Image } from '../lib/index.js';
import { commitTemporary, resolveOutputPath, temporaryPathFor, writeFileAtomic, writeTemporary } from '../lib/output-path.js';

const dir = mkdtempSync(join(tmpdir(), 'sdnode-output-path-'));
const image: Image = { width: 4, height: 2, channels: 3, data: new Uint8Array(4 * 2 * 3).fill(200) };
const isPng = (path: string) => readFileSync(path).subarray(1, 4).toString() === 'PNG';

/** A fresh folder for one case, so its listing shows exactly what the case left there. */
let n = 0;
function folder(): string {
  const f = join(dir, `case-${++n}`);
  mkdirSync(f);
  return f;
}

/**
 * A character device to aim at: /dev/null itself would be replaced for good if the policy
 * failed while the tests run as root, so as root a private copy of it (same major/minor) in
 * the test folder; otherwise /dev/null (only root could replace it).
 */
function nullDevice(where: string): string {
  if (process.getuid?.() !== 0) return '/dev/null';
  const path = join(where, 'null.png');
  execFileSync('mknod', [path, 'c', '1', '3']);
  return path;
}

let server: Server;
let socketPath: string;

beforeAll(async () => {
  socketPath = join(folder(), 'sock.png');
  server = createServer();
  await new Promise<void>((resolve) => server.listen(socketPath, resolve));
});

afterAll(async () => {
  await new Promise((resolve) => server.close(resolve));
});

/** What a path is, to check it was left as it was. */
function kind(path: string): string {
  const s = lstatSync(path);
  if (s.isSymbolicLink()) return `link→${readlinkSync(path)}`;
  if (s.isCharacterDevice()) return `char ${s.rdev}`;
  if (s.isFIFO()) return 'fifo';
  if (s.isSocket()) return 'socket';
  if (s.isDirectory()) return `dir ${readdirSync(path).join(',')}`;
  return `file ${s.ino} ${s.size}`;
}

describe('writeImage: destinations that exist and are not regular files', () => {
  const cases: Array<[string, () => { path: string; where: string }]> = [
    ['a character device (/dev/null)', () => { const where = folder(); return { path: nullDevice(where), where }; }],
    ['a FIFO', () => { const where = folder(); const path = join(where, 'fifo.png'); execFileSync('mkfifo', [path]); return { path, where }; }],
    ['a directory', () => { const where = folder(); const path = join(where, 'dir.png'); mkdirSync(path); return { path, where }; }],
    ['a unix socket', () => ({ path: socketPath, where: join(socketPath, '..') })],
  ];
  it.each(cases)('%s: OutputPathError (ERR_OUTPUT_PATH), left as it was, nothing else written', async (_, make) => {
    const { path, where } = make();
    const before = kind(path);
    const listing = readdirSync(where);
    const err = await writeImage(path, image).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OutputPathError);
    expect(err).toMatchObject({ code: 'ERR_OUTPUT_PATH' });
    expect((err as Error).message).toContain(path);
    expect(kind(path)).toBe(before);
    expect(readdirSync(where)).toEqual(listing);
  }, 10_000);

  it('/dev/null itself is refused by the policy check (which writes nothing)', async () => {
    await expect(resolveOutputPath('/dev/null')).rejects.toMatchObject({ code: 'ERR_OUTPUT_PATH', message: expect.stringMatching(/character device/) });
    expect(statSync('/dev/null').isCharacterDevice()).toBe(true);
  });
});

describe('writeImage: symlinks', () => {
  it('a symlink out of its folder is refused; its target is untouched', async () => {
    const inside = folder();
    const outside = folder();
    const target = join(outside, 'precious.png');
    writeFileSync(target, 'keep me');
    const link = join(inside, 'out.png');
    symlinkSync(target, link);
    const err = await writeImage(link, image).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OutputPathError);
    expect((err as Error).message).toMatch(/outside its folder.*followSymlinks/);
    expect(readFileSync(target, 'utf8')).toBe('keep me');
    expect(lstatSync(link).isSymbolicLink()).toBe(true);
    expect(readdirSync(inside)).toEqual(['out.png']);
    expect(readdirSync(outside)).toEqual(['precious.png']);
  });

  it('a relative symlink climbing out (../) and a dangling one out of the folder are refused too', async () => {
    const inside = folder();
    const outside = folder();
    symlinkSync(join('..', `case-${n}`, 'x.png'), join(inside, 'up.png'));
    symlinkSync(join(outside, 'missing.png'), join(inside, 'dangling.png'));
    await expect(writeImage(join(inside, 'up.png'), image)).rejects.toBeInstanceOf(OutputPathError);
    await expect(writeImage(join(inside, 'dangling.png'), image)).rejects.toBeInstanceOf(OutputPathError);
    expect(readdirSync(outside)).toEqual([]);
    expect(readdirSync(inside).sort()).toEqual(['dangling.png', 'up.png']);
  });

  it('followSymlinks: true writes the link\'s target out of the folder; the link stays a link', async () => {
    const inside = folder();
    const outside = folder();
    const target = join(outside, 'shared.png');
    writeFileSync(target, 'old');
    const link = join(inside, 'out.png');
    symlinkSync(target, link);
    await writeImage(link, image, { followSymlinks: true });
    expect(isPng(target)).toBe(true);
    expect(readlinkSync(link)).toBe(target);
    expect(readdirSync(outside)).toEqual(['shared.png']);
    expect(readdirSync(inside)).toEqual(['out.png']);
  });

  it('a symlink to a file in its own folder writes that file; the link stays a link', async () => {
    const where = folder();
    writeFileSync(join(where, 'run-7.png'), 'old');
    symlinkSync('run-7.png', join(where, 'latest.png'));
    await writeImage(join(where, 'latest.png'), image);
    expect(isPng(join(where, 'run-7.png'))).toBe(true);
    expect(readlinkSync(join(where, 'latest.png'))).toBe('run-7.png');
    expect(readdirSync(where).sort()).toEqual(['latest.png', 'run-7.png']);
  });

  it('a symlink in the folder to a FIFO is refused like the FIFO itself', async () => {
    const where = folder();
    execFileSync('mkfifo', [join(where, 'fifo')]);
    symlinkSync('fifo', join(where, 'to-fifo.png'));
    await expect(writeImage(join(where, 'to-fifo.png'), image)).rejects.toBeInstanceOf(OutputPathError);
    expect(lstatSync(join(where, 'fifo')).isFIFO()).toBe(true);
    expect(readdirSync(where).sort()).toEqual(['fifo', 'to-fifo.png']);
  });

  it('followSymlinks must be a boolean; unknown options are refused', async () => {
    const where = folder();
    await expect(writeImage(join(where, 'a.png'), image, { followSymlinks: 'yes' as never })).rejects.toBeInstanceOf(TypeError);
    await expect(writeImage(join(where, 'a.png'), image, { followSymlink: true } as never)).rejects.toThrow(/did you mean 'followSymlinks'/);
    expect(readdirSync(where)).toEqual([]);
  });
});

describe('atomic writes', () => {
  it('replacing a file: a reader holding the old one still reads it whole; no temporary file is left', async () => {
    const where = folder();
    const path = join(where, 'img.png');
    const old = Buffer.alloc(100_000, 7);
    writeFileSync(path, old);
    const fd = openSync(path, 'r');
    try {
      await writeImage(path, image);
      const seen = Buffer.alloc(old.length);
      expect(readSync(fd, seen, 0, old.length, 0)).toBe(old.length);
      expect(seen.equals(old)).toBe(true);
    } finally {
      closeSync(fd);
    }
    expect(isPng(path)).toBe(true);
    expect(readdirSync(where)).toEqual(['img.png']);
  });

  it('a missing folder is a FileAccessError, and nothing is created', async () => {
    const where = folder();
    await expect(writeImage(join(where, 'no', 'x.png'), image)).rejects.toBeInstanceOf(FileAccessError);
    expect(readdirSync(where)).toEqual([]);
  });

  it('the temporary file is created exclusively: a file or symlink planted under its name is never written through', async () => {
    const where = folder();
    const victim = join(where, 'victim');
    writeFileSync(victim, 'keep');
    const planted = join(where, '.planted');
    symlinkSync(victim, planted);
    await expect(writeTemporary(planted, new Uint8Array([1, 2, 3]))).rejects.toBeInstanceOf(FileAccessError);
    expect(readFileSync(victim, 'utf8')).toBe('keep');
    expect(lstatSync(planted).isSymbolicLink()).toBe(true);
  });

  it('the policy is checked again right before the rename: a FIFO that appeared meanwhile is not replaced', async () => {
    const where = folder();
    const target = await resolveOutputPath(join(where, 'late.png'));
    const temporary = temporaryPathFor(target);
    await writeTemporary(temporary, new Uint8Array([1, 2, 3]), target);
    execFileSync('mkfifo', [target]);
    await expect(commitTemporary(temporary, target)).rejects.toBeInstanceOf(OutputPathError);
    expect(lstatSync(target).isFIFO()).toBe(true);
    expect(readdirSync(where)).toEqual(['late.png']);
  });

  it('writeFileAtomic writes a new file whole and returns what it wrote', async () => {
    const where = folder();
    const path = join(where, 'data.bin');
    expect(await writeFileAtomic(path, new Uint8Array([1, 2, 3]))).toBe(path);
    expect([...readFileSync(path)]).toEqual([1, 2, 3]);
    expect(readdirSync(where)).toEqual(['data.bin']);
  });
});
