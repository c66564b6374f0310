// The published package: `npm run prebuild` writes prebuilds/<platform>-<arch>/, `npm pack`
// takes it, and an install of the tarball into an empty project loads it without compiling,
// from CommonJS and from ESM, with types that pass publint.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';

const root = resolve(import.meta.dirname, '..');
const npm = (args: string[], cwd: string) =>
  execFileSync('npm', args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, npm_config_loglevel: 'error' } });

describe('package', () => {
  let project: string;
  beforeAll(() => {
    npm(['run', 'prebuild'], root);
    npm(['run', 'build:ts'], root);
    const out = mkdtempSync(join(tmpdir(), 'sdnode-pack-'));
    const packed = JSON.parse(npm(['pack', '--json', '--ignore-scripts', '--pack-destination', out], root)) as Array<{ filename: string; files: Array<{ path: string }> }>;
    const files = packed[0]!.files.map((f) => f.path);
    expect(files.some((f) => f.startsWith(`prebuilds/${process.platform}-${process.arch}/`) && f.endsWith('.node'))).toBe(true);
    expect(files).toContain('dist/index.cjs');
    expect(files).toContain('dist/index.d.ts');
    expect(files.some((f) => f.startsWith('vendor/'))).toBe(false);
    // The web page of `sdnode serve`, beside the bundle that serves it.
    expect(files).toEqual(expect.arrayContaining(readdirSync(join(root, 'lib', 'server', 'web')).map((f) => `dist/web/${f}`)));
    project = mkdtempSync(join(tmpdir(), 'sdnode-app-'));
    writeFileSync(join(project, 'package.json'), '{ "name": "app", "private": true }');
    npm(['install', '--prefer-offline', '--no-audit', '--no-fund', join(out, packed[0]!.filename)], project);
  });

  it('installs from the tarball without compiling', () => {
    const installed = join(project, 'node_modules', 'sdnode');
    expect(existsSync(join(installed, 'build'))).toBe(false);
    const prebuilds = readdirSync(join(installed, 'prebuilds', `${process.platform}-${process.arch}`));
    expect(prebuilds.some((f) => f.endsWith('.node'))).toBe(true);
  });

  it('loads with require() and with import', () => {
    const cjs = execFileSync(process.execPath, ['-e', "const s = require('sdnode'); console.log(JSON.stringify(s.systemInfo()))"], { cwd: project, encoding: 'utf8' });
    const info = JSON.parse(cjs) as { addonPath: string; ggmlVersion: string; backends: string[] };
    expect(info.addonPath).toContain(join('node_modules', 'sdnode', 'prebuilds'));
    expect(info.ggmlVersion).toBe('0.23.0');
    expect(info.backends).toContain('CPU');
    const esm = execFileSync(process.execPath, ['--input-type=module', '-e', "import { listDevices, loadAutoencoder } from 'sdnode'; console.log(typeof loadAutoencoder, listDevices()[0].id)"], { cwd: project, encoding: 'utf8' });
    expect(esm.trim()).toBe('function cpu');
  });

  it('serves its web page from the installed files', () => {
    const script = "import { createServer } from 'sdnode'; const app = await createServer(); for (const url of ['/', '/ui/app.js']) { const r = await app.inject({ url }); console.log(r.statusCode, r.headers['content-type']); } await app.close();";
    const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], { cwd: project, encoding: 'utf8' });
    expect(out.trim().split('\n')).toEqual(['200 text/html; charset=utf-8', '200 text/javascript; charset=utf-8']);
  });

  it('passes publint', () => {
    const report = execFileSync(process.execPath, [join(root, 'node_modules', 'publint', 'src', 'cli.js'), '--strict', root], { encoding: 'utf8' });
    expect(report).not.toMatch(/error|warning/i);
  });
});
