// Running the built CLI (dist/cli.js) from tests: dist/ rebuilt first when a lib/ source is
// newer than it, and `sdnode generate …` run in a child process with its exit code and output.
import { execFile } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';

export const root = resolve(import.meta.dirname, '..', '..');
export const cli = join(root, 'dist', 'cli.js');
const run = promisify(execFile);

/** Rebuilds dist/ (which the CLI runs from) when a lib/ source is newer than dist/cli.js. */
export async function ensureDistFresh(): Promise<void> {
  const oldest = existsSync(cli) ? statSync(cli).mtimeMs : 0;
  const sources = readdirSync(join(root, 'lib'), { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.ts'));
  if (sources.some((f) => statSync(join(root, 'lib', f)).mtimeMs > oldest)) await run('npx', ['tsup'], { cwd: root });
}

/** Exit code, stdout and stderr of `sdnode generate ...args`, run in `cwd`. */
export async function sdnodeGenerate(args: string[], cwd: string): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [cli, 'generate', ...args], { cwd, encoding: 'utf8' });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}
