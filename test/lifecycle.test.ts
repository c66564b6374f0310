// Teardown while a job runs: process exit and worker.terminate() must be clean (the addon's
// environment cleanup hook cancels and joins running jobs before objects are finalized).
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

import { listDevices, systemInfo } from '../lib/index.js';
import { taeDecoder } from './support/data.js';

const root = resolve(import.meta.dirname, '..');
const entry = resolve(root, 'dist', 'index.js');

function runNode(source: string, env: Record<string, string> = {}) {
  return spawnSync(process.execPath, ['--input-type=module', '-e', source], {
    cwd: root,
    encoding: 'utf8',
    env: { ...process.env, ...env },
    timeout: 120_000,
  });
}

const decodeForever = `
  import { loadAutoencoder } from ${JSON.stringify(entry)};
  const tae = await loadAutoencoder({ decoder: ${JSON.stringify(taeDecoder)} }, { device: 'cpu' });
  const latent = { channels: 32, width: 64, height: 64, data: new Float32Array(32 * 64 * 64) };
`;

describe('teardown mid-job', () => {
  it('process.exit() during a job exits cleanly with its code (repeated: it was a race)', () => {
    for (let i = 0; i < 8; i++) {
      const r = runNode(`${decodeForever}
        tae.decode(latent, { onProgress: () => process.exit(7) });`);
      expect(r.signal).toBeNull();
      expect(r.status).toBe(7);
    }
  });

  it('worker.terminate() during a job leaves the main thread running', () => {
    const r = runNode(`
      import { Worker } from 'node:worker_threads';
      const src = ${JSON.stringify(`${decodeForever}
        const { parentPort } = await import('node:worker_threads');
        tae.decode(latent, { onProgress: (p) => parentPort.postMessage(p.step) });`)};
      for (let round = 0; round < 3; round++) {
        const w = new Worker(src, { eval: true, type: 'module' });
        await new Promise((res, rej) => { w.once('message', res); w.once('error', rej); });
        await w.terminate();
      }
      const { loadAutoencoder } = await import(${JSON.stringify(entry)});
      const tae = await loadAutoencoder({ decoder: ${JSON.stringify(taeDecoder)} }, { device: 'cpu' });
      const img = await tae.decode({ channels: 32, width: 4, height: 4, data: new Float32Array(512) });
      console.log('main alive', img.width);`);
    expect(r.stderr).not.toMatch(/Abort|Segmentation|terminate called/);
    expect(r.signal).toBeNull();
    expect(r.stdout).toContain('main alive 32');
    expect(r.status).toBe(0);
  });

  it('dropping the last reference mid-job is safe; the job still settles', () => {
    const r = runNode(`${decodeForever}
      let p = tae.decode({ channels: 32, width: 24, height: 24, data: new Float32Array(32 * 24 * 24) });
      const done = p.then((img) => img.width);
      p = null;
      globalThis.gc?.();
      console.log('decoded', await done);`);
    expect(r.signal).toBeNull();
    expect(r.stdout).toContain('decoded 192');
  });
});

describe('devices', () => {
  it('lists the CPU and reports the ggml build', () => {
    const info = systemInfo();
    expect(info.ggmlVersion).toBe('0.23.0');
    // The commit of the ggml source we vendor (from its stamp), not of this repository.
    expect(info.ggmlCommit).toBe(JSON.parse(readFileSync(resolve(root, 'vendor', 'ggml', 'sdnode-stamp.json'), 'utf8')).commit);
    expect(info.backends).toContain('CPU');
    expect(Object.keys(info.cpuFeatures).length).toBeGreaterThan(0);
    expect(listDevices().some((d) => d.id === 'cpu' && d.type === 'cpu')).toBe(true);
  });

  it('SDNODE_FORCE_CPU keeps every job on the CPU', () => {
    const r = runNode(
      `import { listDevices, systemInfo } from ${JSON.stringify(entry)};
       console.log(JSON.stringify({ ids: listDevices().map((d) => d.id), force: systemInfo().forceCpu }));`,
      { SDNODE_FORCE_CPU: '1' },
    );
    expect(JSON.parse(r.stdout)).toEqual({ ids: ['cpu'], force: true });
  });
});
