#!/usr/bin/env node
// Puts ggml's source into vendor/ggml. ggml reaches us inside a registry package
// (node-llama-cpp ships a git bundle of llama.cpp, whose ggml/ is what we build), pinned
// by version and tarball integrity in package.json. Idempotent; offline once npm has the
// tarball in its cache.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const pin = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).sdnode.ggmlSource;
const vendorDir = join(root, 'vendor');
const ggmlDir = join(vendorDir, 'ggml');
const stampPath = join(ggmlDir, 'sdnode-stamp.json');

function log(msg) { process.stderr.write(`[fetch-ggml] ${msg}\n`); }

function run(cmd, args, opts = {}) {
  return execFileSync(cmd, args, { stdio: ['ignore', 'pipe', 'inherit'], ...opts }).toString();
}

function currentStamp() {
  try { return JSON.parse(readFileSync(stampPath, 'utf8')); } catch { return null; }
}

const stamp = currentStamp();
if (stamp && stamp.package === pin.package && stamp.version === pin.version && stamp.integrity === pin.integrity) {
  log(`vendor/ggml is ggml ${stamp.ggmlVersion} from ${stamp.package}@${stamp.version} (${stamp.commit.slice(0, 10)})`);
  process.exit(0);
}

const work = mkdtempSync(join(tmpdir(), 'sdnode-ggml-'));
try {
  const spec = `${pin.package}@${pin.version}`;
  log(`obtaining ${spec} from the npm registry (or npm's cache)`);
  const npm = process.env.npm_execpath && process.env.npm_execpath.endsWith('.js')
    ? [process.execPath, [process.env.npm_execpath]]
    : [process.platform === 'win32' ? 'npm.cmd' : 'npm', []];
  const packed = JSON.parse(run(npm[0], [...npm[1], 'pack', spec, '--json', '--prefer-offline',
    '--ignore-scripts', '--pack-destination', work], { shell: process.platform === 'win32' }));
  const tarball = join(work, packed[0].filename);

  const [algo, expected] = [pin.integrity.split('-')[0], pin.integrity.slice(pin.integrity.indexOf('-') + 1)];
  const actual = createHash(algo).update(readFileSync(tarball)).digest('base64');
  if (actual !== expected) {
    throw new Error(`integrity mismatch for ${spec}: expected ${algo}-${expected}, got ${algo}-${actual}`);
  }
  log('integrity verified');

  const bundle = 'package/llama/gitRelease.bundle';
  run('tar', ['-xzf', tarball, '-C', work, bundle]);
  const repo = join(work, 'repo');
  run('git', ['clone', '--quiet', '--no-checkout', join(work, bundle), repo]);
  const commit = run('git', ['-C', repo, 'rev-parse', 'HEAD']).trim();

  const staging = join(work, 'staging');
  mkdirSync(staging);
  const archive = join(work, 'ggml.tar');
  run('git', ['-C', repo, 'archive', '--format=tar', '-o', archive, 'HEAD', 'ggml']);
  run('tar', ['-xf', archive, '-C', staging]);

  const cmake = readFileSync(join(staging, 'ggml', 'CMakeLists.txt'), 'utf8');
  const part = (n) => cmake.match(new RegExp(`set\\(GGML_VERSION_${n}\\s+(\\d+)\\)`))?.[1];
  const ggmlVersion = `${part('MAJOR')}.${part('MINOR')}.${part('PATCH')}`;
  writeFileSync(join(staging, 'ggml', 'sdnode-stamp.json'), JSON.stringify({
    package: pin.package, version: pin.version, integrity: pin.integrity, commit, ggmlVersion,
  }, null, 2) + '\n');

  mkdirSync(vendorDir, { recursive: true });
  rmSync(ggmlDir, { recursive: true, force: true });
  renameSync(join(staging, 'ggml'), ggmlDir);
  log(`extracted ggml ${ggmlVersion} (${commit.slice(0, 10)}) into vendor/ggml`);
} finally {
  rmSync(work, { recursive: true, force: true });
}
