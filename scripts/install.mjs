#!/usr/bin/env node
// npm's install script. With a platform package (@sdnode/<platform>-<arch>, an optional
// dependency npm installs where os/cpu/libc match), a prebuild or an earlier build there is
// nothing to do. Else, or with --build-from-source, the addon is built from source as
// node-gyp-build does (binding.gyp → scripts/build-native.mjs). Installed as a dependency
// without a toolchain, or when that build fails, the install still succeeds: sdnode then
// throws at its first use, saying how to build from source. In a checkout (not under
// node_modules) a failed build fails the install.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { delimiter, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(join(root, 'package.json'));
const platform = `${process.platform}-${process.arch}`;
const fromSource = /^(true|1|sdnode)$/.test(process.env.npm_config_build_from_source ?? '');
const asDependency = root.split(/[\\/]/).includes('node_modules');
const say = (line) => process.stderr.write(`sdnode: ${line}\n`);

function installed() {
  try {
    require.resolve(`@sdnode/${platform}/package.json`);
    return `@sdnode/${platform}`;
  } catch { /* not installed */ }
  try {
    return require('node-gyp-build').resolve(root);
  } catch {
    return undefined;
  }
}

/** The tools a build needs, looked up on PATH (no process started). */
function missingTools() {
  const dirs = (process.env.PATH ?? '').split(delimiter).filter(Boolean);
  const ext = process.platform === 'win32' ? ['.exe', '.cmd', ''] : [''];
  const has = (name) => dirs.some((d) => ext.some((e) => existsSync(join(d, name + e))));
  const missing = [];
  if (!has('cmake')) missing.push('cmake');
  // Windows builds find MSVC through CMake, not on PATH.
  if (process.platform !== 'win32' && !['c++', 'g++', 'clang++'].some(has)) missing.push('a C++ compiler (c++, g++ or clang++)');
  return missing;
}

const found = fromSource ? undefined : installed();
if (found) process.exit(0);

const missing = missingTools();
if (missing.length && asDependency) {
  say(`no native binaries for ${platform} (no @sdnode/${platform} package) and no ${missing.join(' or ')} to build them.`);
  say('The install goes on; sdnode will throw at first use. To build from source, install CMake and a C++17 compiler, then `npm install sdnode --build-from-source`.');
  process.exit(0);
}
const bin = require.resolve('node-gyp-build/bin.js');
const build = spawnSync(process.execPath, [bin], { cwd: root, stdio: 'inherit', env: process.env });
if (build.status === 0) process.exit(0);
if (asDependency) {
  say(`building the native addon from source failed (status ${build.status}); the install goes on, and sdnode will throw at first use.`);
  process.exit(0);
}
process.exit(build.status ?? 1);
