// The scale-out as users run it: redis-server, one `sdnode serve --queue` front end and two
// `sdnode worker` processes (the built dist/cli.js, tiny model, one thread each). 30 webui
// requests at once; both workers take jobs; one worker is SIGKILLed in the middle of a job,
// whose lock then lapses, and BullMQ's stalled-job check hands the job to the other worker;
// all 30 come back with model.generate's images at their seeds. Then SIGTERM: the survivor
// and the front end exit 0. And with Redis unreachable, both commands exit 1 saying so.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { loadModel, type Model } from '../lib/index.js';
import { RedisServer, freePort } from './support/redis-server.js';
import { pngPixels, tinyModelDir, waitFor } from './support/server.js';

const root = resolve(import.meta.dirname, '..');
const cli = join(root, 'dist', 'cli.js');
const JOBS = 30;
// About a quarter of a second a job on one thread: long enough to be killed in the middle of one.
const REQUEST = { prompt: 'a lighthouse at dusk', negative_prompt: 'blurry', width: 64, height: 64, steps: 40, cfg_scale: 6, sampler_name: 'Euler', scheduler: 'Uniform' };
// Short lock and stalled check, so that a dead worker's job moves within seconds (defaults: 30 s).
const STALL_FLAGS = ['--lock-duration', '2', '--stalled-interval', '1'];

let redis: RedisServer;
let model: string;
let remove: () => void;
let reference: Model;
const children: ChildProcess[] = [];

beforeAll(async () => {
  execFileSync('npm', ['run', 'build:ts'], { cwd: root, stdio: 'ignore' });
  redis = await RedisServer.start();
  ({ model, remove } = await tinyModelDir('sdnode-scale-out-'));
  reference = await loadModel(model, { device: 'cpu', threads: 1 });
}, 180_000);

afterAll(async () => {
  for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
  await reference?.dispose();
  await redis?.remove();
  remove?.();
});

interface Child {
  child: ChildProcess;
  exited: Promise<number | null>;
  stderr: () => string;
}

function start(args: string[]): Child {
  const child = spawn(process.execPath, [cli, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  children.push(child);
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const exited = new Promise<number | null>((done) => child.on('exit', (code) => done(code)));
  return { child, exited, stderr: () => stderr };
}

function worker(): Child {
  return start(['worker', '--queue', redis.url, '-m', model, '--device', 'cpu', '-t', '1', ...STALL_FLAGS]);
}

/** Job ids in a worker's log lines "job <id> <what>". */
function jobs(log: string, what: RegExp): string[] {
  return [...log.matchAll(/^sdnode worker: job (\S+) (.*)$/gm)].filter((m) => what.test(m[2]!)).map((m) => m[1]!);
}

describe('sdnode serve --queue and two sdnode workers', () => {
  it(`answers ${JOBS} requests with the right images although a worker is SIGKILLed mid-job`, async () => {
    const workers = [worker(), worker()];
    for (const w of workers) await waitFor(() => (/takes jobs/.test(w.stderr()) ? true : undefined), 60_000);
    const front = start(['serve', '--queue', redis.url, '--port', '0', '--max-queue', String(JOBS)]);
    const url = await waitFor(() => /listening on (http:\/\/\S+)/.exec(front.stderr())?.[1], 60_000);

    const [victim, survivor] = workers as [Child, Child];
    const began = performance.now();
    const answers = Array.from({ length: JOBS }, async (_, seed) => {
      const res = await fetch(`${url}/sdapi/v1/txt2img`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ ...REQUEST, seed }) });
      return { seed, status: res.status, body: (await res.json()) as { images: string[]; info: string } };
    });
    // Killed as it starts its fourth job: it has shown it takes jobs, and this one is under way.
    const killed = await waitFor(() => {
      const started = jobs(victim.stderr(), /^started$/);
      return started.length >= 4 ? started[3] : undefined;
    }, 60_000);
    victim.child.kill('SIGKILL');
    const results = await Promise.all(answers);
    const seconds = (performance.now() - began) / 1000;

    const doneBy = { victim: jobs(victim.stderr(), /^done /), survivor: jobs(survivor.stderr(), /^done /) };
    console.log(
      `scale-out: ${JOBS} jobs in ${seconds.toFixed(1)} s; the killed worker finished ${doneBy.victim.length}, ` +
        `the other ${doneBy.survivor.length}; job ${killed} (killed mid-job) was finished by the other: ${doneBy.survivor.includes(killed)}`,
    );
    expect(await victim.exited).toBe(null); // killed by the signal
    expect(doneBy.victim).not.toContain(killed);
    expect(doneBy.survivor).toContain(killed);
    expect(doneBy.victim.length).toBeGreaterThanOrEqual(3);
    expect(doneBy.victim.length + doneBy.survivor.length).toBe(JOBS);
    for (const { seed, status, body } of results) {
      expect(status).toBe(200);
      const image = await pngPixels(body.images[0]!);
      const [expected] = (await reference.generate({ prompt: REQUEST.prompt, negativePrompt: REQUEST.negative_prompt, width: 64, height: 64, steps: REQUEST.steps, cfgScale: REQUEST.cfg_scale, sampler: 'euler', scheduler: 'discrete', seed })).images;
      expect(image.data).toEqual(expected!.data);
      expect(JSON.parse(body.info)).toMatchObject({ seed });
    }

    // SIGTERM: both exit 0.
    survivor.child.kill('SIGTERM');
    front.child.kill('SIGTERM');
    expect(await survivor.exited).toBe(0);
    expect(await front.exited).toBe(0);
    expect(survivor.stderr()).toContain('stopped');
  }, 120_000);

  it('exits 1 naming Redis when it cannot be reached at start, front end and worker alike', async () => {
    const nowhere = `redis://127.0.0.1:${await freePort()}`;
    for (const args of [['serve', '--queue', nowhere, '--port', '0'], ['worker', '--queue', nowhere, '-m', model]]) {
      const child = start(args);
      expect(await child.exited).toBe(1);
      expect(child.stderr()).toMatch(new RegExp(`cannot reach Redis at ${nowhere}.*ECONNREFUSED`));
    }
  });
});
