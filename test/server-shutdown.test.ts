// `sdnode serve` as users run it (the built dist/cli.js in a child process) stopped with
// SIGTERM: a running job within --shutdown-grace finishes and its client gets the image, new
// requests are refused with JSON, the process exits 0; a job past the grace is cancelled (its
// client gets 409) and the process still exits 0.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { pngPixels, tinyModelDir, waitFor } from './support/server.js';

const root = resolve(import.meta.dirname, '..');
const cli = join(root, 'dist', 'cli.js');
let model: string;
let remove: () => void;
const children: ChildProcess[] = [];

beforeAll(async () => {
  execFileSync('npm', ['run', 'build:ts'], { cwd: root, stdio: 'ignore' });
  ({ model, remove } = await tinyModelDir('sdnode-server-shutdown-'));
}, 180_000);

afterAll(() => {
  for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
  remove?.();
});

/** Starts `sdnode serve` on a free port; resolves with its URL and a view of its stderr. */
async function serve(args: string[]) {
  const child = spawn(process.execPath, [cli, 'serve', '-m', model, '--port', '0', '--device', 'cpu', '-t', '1', ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  children.push(child);
  let stderr = '';
  let signalledAt: number | undefined;
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
    stderr += chunk;
    if (signalledAt === undefined && stderr.includes('SIGTERM')) signalledAt = Date.now();
  });
  const exited = new Promise<number | null>((done) => child.on('exit', (code) => done(code)));
  const url = await waitFor(() => /listening on (http:\/\/\S+)/.exec(stderr)?.[1], 60_000);
  return { child, url, exited, stderr: () => stderr, signalledAt: () => signalledAt };
}

function txt2img(url: string, steps: number) {
  return fetch(`${url}/sdapi/v1/txt2img`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ prompt: 'x', steps, width: 64, height: 64, seed: 1 }) });
}

/** Resolves once the server's job has taken a step. */
function running(url: string) {
  return waitFor(async () => {
    const p = (await (await fetch(`${url}/sdapi/v1/progress`)).json()) as { state: { sampling_step: number } };
    return p.state.sampling_step > 0 ? true : undefined;
  });
}

describe('sdnode serve and SIGTERM', () => {
  it('lets the running job finish within the grace, refuses new requests as JSON, exits 0', async () => {
    const server = await serve(['--shutdown-grace', '120']);
    const job = txt2img(server.url, 150).then((res) => ({ res, at: Date.now() }));
    await running(server.url);
    server.child.kill('SIGTERM');
    const signalledAt = await waitFor(server.signalledAt);
    const refused = await fetch(`${server.url}/sdapi/v1/progress`).then(
      async (r) => ({ status: r.status, body: (await r.json()) as { error?: { code: string } } }),
      () => ({ status: 0, body: {} as { error?: { code: string } } }), // or the connection is refused: equally closed
    );
    if (refused.status !== 0) expect(refused).toMatchObject({ status: 503, body: { error: { code: 'shutting_down' } } });
    const { res, at } = await job;
    expect(res.status).toBe(200);
    // Answered after the server took the signal: the job was still running then, and finished.
    expect(at).toBeGreaterThanOrEqual(signalledAt);
    const { images } = (await res.json()) as { images: string[] };
    expect(await pngPixels(images[0]!)).toMatchObject({ width: 64, height: 64 });
    expect(await server.exited).toBe(0);
    expect(server.stderr()).toContain('stopped');
  });

  it('cancels a job still running after the grace; its client gets 409; exits 0', async () => {
    const server = await serve(['--shutdown-grace', '0.2']);
    const job = txt2img(server.url, 150);
    await running(server.url);
    server.child.kill('SIGTERM');
    const res = await job;
    expect(res.status).toBe(409);
    expect(await res.json()).toMatchObject({ error: { code: 'cancelled' } });
    expect(await server.exited).toBe(0);
  });
});
