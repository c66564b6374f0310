// The published type declarations against their users: `tsc -p tsconfig.examples.json` checks
// the examples (JavaScript, `// @ts-check`), the demo and test/types/ against dist/*.d.ts through
// the package's self-reference. test/types/ marks misuses with `@ts-expect-error`; here each
// directive is also removed in a copy to prove that the misuse under it fails on its own line
// and that nothing else in those files does.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';

const root = resolve(import.meta.dirname, '..');
const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc');

/** Runs tsc; its exit status and the `file(line,col): error TSxxxx` lines. */
function typeCheck(project: string): { status: number; errors: string[] } {
  try {
    execFileSync(process.execPath, [tsc, '-p', project], { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    return { status: 0, errors: [] };
  } catch (err) {
    const e = err as { status: number; stdout: string };
    return { status: e.status, errors: e.stdout.split('\n').filter((l) => / error TS\d+/.test(l)) };
  }
}

/** Rebuilds dist/ (tsup) when a lib/ source is newer than it. */
function buildDist(): void {
  const built = ['index.js', 'index.cjs', 'index.d.ts', 'index.d.cts'].map((f) => join(root, 'dist', f));
  const oldest = Math.min(...built.map((f) => (existsSync(f) ? statSync(f).mtimeMs : 0)));
  const sources = readdirSync(join(root, 'lib'), { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.ts'));
  if (sources.some((f) => statSync(join(root, 'lib', f)).mtimeMs > oldest))
    execFileSync('npx', ['tsup'], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
}

beforeAll(buildDist, 120_000);

describe('type declarations', () => {
  it('every example is type-checked (starts with // @ts-check)', () => {
    const files = readdirSync(join(root, 'examples')).filter((f) => /\.(mjs|cjs)$/.test(f));
    expect(files).toEqual(expect.arrayContaining(['txt2img.mjs', 'txt2img.cjs', 'img2img.mjs', 'inpainting.mjs', 'http-server.mjs']));
    for (const f of [...files.map((f) => join('examples', f)), join('scripts', 'demo.mjs')]) {
      const text = readFileSync(join(root, f), 'utf8');
      expect(text.replace(/^#!.*\n/, '').startsWith('// @ts-check\n'), f).toBe(true);
    }
  });

  it('the examples, the demo and the correct uses compile; every misuse is an expected error', () => {
    const r = typeCheck('tsconfig.examples.json');
    expect(r.errors).toEqual([]);
    expect(r.status).toBe(0);
  }, 120_000);

  it('each misuse fails on its own line without its @ts-expect-error, and nothing else fails', () => {
    // A copy inside the package (for the 'sdnode' self-reference), in a git-ignored folder.
    const dir = join(root, '.cache', 'type-tests');
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(join(dir, 'types'), { recursive: true });
    const expected: string[] = [];
    for (const f of readdirSync(join(root, 'test', 'types'))) {
      const lines = readFileSync(join(root, 'test', 'types', f), 'utf8').split('\n');
      lines.forEach((line, i) => {
        if (line.trim().startsWith('// @ts-expect-error')) {
          expected.push(`types/${f}:${i + 2}`);
          lines[i] = '';
        }
      });
      writeFileSync(join(dir, 'types', f), lines.join('\n'));
    }
    writeFileSync(join(dir, 'tsconfig.json'), JSON.stringify({ extends: '../../tsconfig.examples.json', include: ['types/*.ts', 'types/*.cts'] }));
    const r = typeCheck(join(dir, 'tsconfig.json'));
    rmSync(dir, { recursive: true, force: true });
    expect(expected.length).toBeGreaterThanOrEqual(35);
    const failing = [...new Set(r.errors.map((l) => /(types\/[^(]+)\((\d+),/.exec(l.replaceAll('\\', '/'))).map((m) => (m ? `${m[1]}:${m[2]}` : '?')))];
    expect(failing.sort()).toEqual(expected.sort());
  }, 120_000);
});
