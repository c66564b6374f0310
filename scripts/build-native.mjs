#!/usr/bin/env node
// Builds the addon: fetches ggml into vendor/, runs the CMake build through cmake-js into
// build-cmake/, and copies the addon with ggml's libraries and backend modules into
// build/Release (or --out DIR), where node-gyp-build and prebuildify look for them.
//
// Environment:
//   SDNODE_GPU=vulkan,cuda,metal   GPU backends to build (default: none; Metal on macOS)
//   SDNODE_CPU_VARIANTS=native     build one CPU module for this machine only (faster builds,
//                                  not portable); default: every variant, picked at run time
//   SDNODE_CUDA_ARCHITECTURES=89   CUDA architectures to compile for (default: ggml's list)
//   SDNODE_BUILD_DIR               CMake build folder (default: build-cmake)
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);
const outFlag = process.argv.indexOf('--out');
const outDir = resolve(outFlag > 0 ? process.argv[outFlag + 1] : join(root, 'build', 'Release'));
const buildDir = resolve(root, process.env.SDNODE_BUILD_DIR || 'build-cmake');

execFileSync(process.execPath, [join(root, 'scripts', 'fetch-ggml.mjs')], { stdio: 'inherit' });

// 'auto' and 'cpu' are the loader's run-time choices (lib/binary-loader.ts): no GPU module here.
const gpus = new Set((process.env.SDNODE_GPU || '').split(',').map((s) => s.trim().toLowerCase()).filter((s) => s && s !== 'auto' && s !== 'cpu'));
for (const gpu of gpus) {
  if (!['cuda', 'vulkan', 'metal'].includes(gpu)) throw new Error(`SDNODE_GPU: unknown backend '${gpu}' (cuda, vulkan, metal; auto or cpu: none)`);
}
const on = (b) => (b ? 'ON' : 'OFF');
const defines = {
  CMAKE_BUILD_TYPE: 'Release',
  SDNODE_CUDA: on(gpus.has('cuda')),
  SDNODE_VULKAN: on(gpus.has('vulkan')),
  SDNODE_METAL: on(gpus.has('metal') || (process.platform === 'darwin' && (!process.env.SDNODE_GPU || process.env.SDNODE_GPU === 'auto'))),
  SDNODE_CPU_ALL_VARIANTS: on(process.env.SDNODE_CPU_VARIANTS !== 'native'),
};
if (process.env.SDNODE_CPU_VARIANTS === 'native') defines.GGML_NATIVE = 'ON';
if (process.env.SDNODE_CUDA_ARCHITECTURES) defines.CMAKE_CUDA_ARCHITECTURES = process.env.SDNODE_CUDA_ARCHITECTURES;
try {
  execFileSync('ccache', ['--version'], { stdio: 'ignore' });
  // Hits across clones in other folders: paths under the project are hashed relative to it.
  process.env.CCACHE_BASEDIR ??= root;
  process.env.CCACHE_NOHASHDIR ??= 'true';
  defines.CMAKE_C_COMPILER_LAUNCHER = 'ccache';
  defines.CMAKE_CXX_COMPILER_LAUNCHER = 'ccache';
} catch { /* no ccache: plain compiles */ }

const cmakeJs = join(dirname(require.resolve('cmake-js/package.json')), 'bin', 'cmake-js');
const args = [cmakeJs, 'compile', '--directory', root, '--out', buildDir, '--parallel', String(availableParallelism())];
for (const [k, v] of Object.entries(defines)) args.push(`--CD${k}=${v}`);
execFileSync(process.execPath, args, { stdio: 'inherit', cwd: root });

// Everything the addon loads at run time sits in one folder. Only our files are replaced:
// node-gyp keeps its own bookkeeping in the same folder.
const binDir = join(buildDir, 'bin');
const isShipped = (f) => /\.(node|so|dylib|dll)$/.test(f);
mkdirSync(outDir, { recursive: true });
for (const f of readdirSync(outDir).filter(isShipped)) rmSync(join(outDir, f));
const shipped = readdirSync(binDir).filter(isShipped);
for (const f of shipped) copyFileSync(join(binDir, f), join(outDir, f));
process.stderr.write(`[build-native] ${shipped.length} files in ${outDir}\n`);
