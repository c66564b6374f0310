// The platform packages: `npm run pack:all` writes the main package and @sdnode/linux-x64 as
// tarballs; they install into an empty project from the tarballs alone with no compiler on
// PATH, load and generate. A GPU set that cannot work (a truncated module, a module that hangs
// when loaded) is caught by the loader's probe in a child process: the process goes on on the
// CPU with the reason and a SDNODE_DEVICE_FALLBACK warning, and the verdict is cached. Without
// a platform package or a toolchain the install succeeds and loadModel says how to build.
// (The Vulkan set on lavapipe, and without libvulkan.so.1: test/packaging-vulkan.test.ts, run
// by `npm run test:vulkan`.)
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join, resolve } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';

// @ts-expect-error: plain JavaScript module with JSDoc types
import { generateModel } from '../scripts/generate-model.mjs';
import { compilerFreeEnv, installTarballs, packAll, probeAndGenerateScript, runIn } from './support/packaging.js';

const root = resolve(import.meta.dirname, '..');
const platform = `${process.platform}-${process.arch}`;

describe.runIf(platform === 'linux-x64')('platform packages (linux-x64)', () => {
  const work = mkdtempSync(join(tmpdir(), 'sdnode-packaging-'));
  const modelPath = join(work, 'tiny.safetensors');
  let tarballs: Record<string, string>;
  let project: string;
  let installLog: string;

  beforeAll(async () => {
    tarballs = packAll(['linux-x64']);
    await generateModel({ out: modelPath, preset: 'tiny', dtype: 'f32', seed: 7 });
    project = join(work, 'app');
    installLog = installTarballs(project, [tarballs['sdnode']!, tarballs['@sdnode/linux-x64']!], work);
  });

  it('packs the main package without binaries, naming each platform package at its version', () => {
    const sizes = JSON.parse(readFileSync(join(root, 'dist-packages', 'sizes.json'), 'utf8')) as Array<{ name: string; built: boolean; packed?: number; unpacked?: number }>;
    console.log(sizes.map((s) => (s.built ? `${s.name}: packed ${s.packed} B, unpacked ${s.unpacked} B` : `${s.name}: template only`)).join('\n'));
    const main = JSON.parse(readFileSync(join(project, 'node_modules', 'sdnode', 'package.json'), 'utf8')) as { version: string; optionalDependencies: Record<string, string> };
    expect(Object.keys(main.optionalDependencies)).toEqual(expect.arrayContaining(['@sdnode/linux-x64', '@sdnode/linux-x64-vulkan', '@sdnode/linux-x64-cuda', '@sdnode/darwin-arm64', '@sdnode/win32-x64']));
    for (const v of Object.values(main.optionalDependencies)) expect(v).toBe(main.version);
    const installed = join(project, 'node_modules', 'sdnode');
    expect(existsSync(join(installed, 'prebuilds'))).toBe(false);
    expect(existsSync(join(installed, 'build'))).toBe(false);
    const bin = readdirSync(join(project, 'node_modules', '@sdnode', 'linux-x64', 'bin'));
    expect(bin).toEqual(expect.arrayContaining(['sdnode.node', 'libggml-base.so', 'libggml-cpu-x64.so', 'libggml-cpu-haswell.so']));
    // Stripped: no symbol table left in the shipped modules.
    expect(execFileSync('readelf', ['-S', join(project, 'node_modules', '@sdnode', 'linux-x64', 'bin', 'sdnode.node')], { encoding: 'utf8' })).not.toMatch(/\.symtab/);
  });

  it('installs with no compiler on PATH and loads the package set', () => {
    // sdnode's install script found the package: no build started (cmake-js, build-native.mjs).
    expect(installLog).toMatch(/> sdnode@[^ ]+ install\n> node scripts\/install\.mjs/);
    expect(installLog).not.toMatch(/cmake|build-native|gyp info/i);
    const out = runIn(project, `const s = require('sdnode'); const i = s.systemInfo(); console.log(JSON.stringify({ origin: i.binaryOrigin, addon: i.addonPath, backends: i.backends, gpu: i.gpuSet, fallbacks: i.deviceFallbacks }));`, {});
    const info = JSON.parse(out.stdout) as { origin: string; addon: string; backends: string[]; gpu: unknown; fallbacks: unknown[] };
    expect(info).toEqual({ origin: 'package', addon: join(project, 'node_modules', '@sdnode', 'linux-x64', 'bin', 'sdnode.node'), backends: ['CPU'], gpu: null, fallbacks: [] });
  });

  it('generates a tiny image with the installed CPU set', () => {
    const script = `
      import { loadModel } from 'sdnode';
      const model = await loadModel(${JSON.stringify(modelPath)}, { threads: 2 });
      const { images: [image] } = await model.generate({ prompt: 'a cat', width: 64, height: 64, steps: 2, seed: 1 });
      console.log(JSON.stringify({ device: model.info.device, width: image.width, height: image.height, bytes: image.data.length }));
      model.dispose();`;
    const out = runIn(project, script, {}, 'module');
    expect(JSON.parse(out.stdout)).toEqual({ device: 'cpu', width: 64, height: 64, bytes: 64 * 64 * 3 });
  });

  describe('a broken GPU set', () => {
    const cache = join(work, 'cache');
    const fakeVulkan = (module: Buffer | string) => {
      const dir = join(project, 'node_modules', '@sdnode', 'linux-x64-vulkan');
      mkdirSync(join(dir, 'bin'), { recursive: true });
      const version = (JSON.parse(readFileSync(join(project, 'node_modules', 'sdnode', 'package.json'), 'utf8')) as { version: string }).version;
      writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: '@sdnode/linux-x64-vulkan', version, sdnode: { backend: 'vulkan', bin: 'bin' } }));
      if (typeof module === 'string') execFileSync('cp', [module, join(dir, 'bin', 'libggml-vulkan.so')]);
      else writeFileSync(join(dir, 'bin', 'libggml-vulkan.so'), module);
    };
    const probeScript = probeAndGenerateScript(modelPath);

    it('a truncated module fails its probe: CPU, the reason, a warning, no crash; the verdict is cached', () => {
      // The first 8 KiB of a real shared object: an ELF header whose segments are cut off.
      fakeVulkan(readFileSync(join(project, 'node_modules', '@sdnode', 'linux-x64', 'bin', 'libggml-cpu-x64.so')).subarray(0, 8192));
      const env = { XDG_CACHE_HOME: cache };
      const first = runIn(project, probeScript, env, 'module');
      const a = JSON.parse(first.stdout) as { ids: string[]; loadMs: number; gpu: unknown; fallbacks: Array<{ backend: string; package: string; reason: string }>; device: string; width: number };
      expect(a.ids).toEqual(['cpu']);
      expect(a.gpu).toBeNull();
      expect(a.device).toBe('cpu');
      expect(a.width).toBe(64);
      expect(a.fallbacks).toHaveLength(1);
      expect(a.fallbacks[0]!.package).toBe('@sdnode/linux-x64-vulkan');
      // dlopen maps the segments the header promises: touching the missing ones is a SIGBUS, which
      // in the user's process would have killed it.
      expect(a.fallbacks[0]!.reason).toMatch(/^the probe was killed by SIG(BUS|SEGV)$/);
      expect(first.stderr).toContain('[SDNODE_DEVICE_FALLBACK]');
      const cached = readdirSync(join(cache, 'sdnode')).filter((f) => f.startsWith('probe-vulkan-'));
      expect(cached).toHaveLength(1);
      const second = runIn(project, probeScript, env, 'module');
      const b = JSON.parse(second.stdout) as typeof a;
      expect(b.fallbacks).toEqual(a.fallbacks);
      expect(second.stderr).toContain('[SDNODE_DEVICE_FALLBACK]');
      console.log(`probe of a truncated module: first load ${a.loadMs.toFixed(0)} ms (child process), cached ${b.loadMs.toFixed(0)} ms`);
      expect(b.loadMs).toBeLessThan(a.loadMs);
      // A device option naming the failed backend is told why it is not there.
      const asked = runIn(project, `const s = require('sdnode'); try { s.loadModel(${JSON.stringify(modelPath)}, { device: 'vulkan:0' }); } catch (e) { console.log(e.name + ': ' + e.message); }`, env);
      expect(asked.stdout.trim()).toBe(
        "RangeError: device 'vulkan:0' is not available here (available: cpu); @sdnode/linux-x64-vulkan was not used: " + a.fallbacks[0]!.reason,
      );
    });

    it('a module that hangs when loaded is killed after the timeout and counted as a failure', () => {
      // A shared object whose constructor never returns: what a wedged driver looks like to dlopen.
      const src = join(work, 'hang.c');
      writeFileSync(src, '#include <unistd.h>\n__attribute__((constructor)) static void hang(void) { for (;;) pause(); }\n');
      const hang = join(work, 'libhang.so');
      execFileSync('cc', ['-shared', '-fPIC', '-o', hang, src]);
      fakeVulkan(hang);
      const env = { XDG_CACHE_HOME: join(work, 'cache-hang'), SDNODE_PROBE_TIMEOUT_MS: '1500' };
      const t0 = performance.now();
      const out = runIn(project, probeScript, env, 'module');
      const ms = performance.now() - t0;
      const r = JSON.parse(out.stdout) as { ids: string[]; fallbacks: Array<{ reason: string }>; device: string };
      expect(r.ids).toEqual(['cpu']);
      expect(r.device).toBe('cpu');
      expect(r.fallbacks[0]!.reason).toBe('the probe did not finish within 1500 ms (killed)');
      expect(ms).toBeLessThan(30_000);
    });

    it('SDNODE_GPU=cpu skips the GPU set and its probe; an unknown value lists the choices', () => {
      const cpu = runIn(project, `const s = require('sdnode'); console.log(JSON.stringify(s.systemInfo().deviceFallbacks))`, { SDNODE_GPU: 'cpu', XDG_CACHE_HOME: join(work, 'cache-cpu') });
      expect(JSON.parse(cpu.stdout)).toEqual([]);
      expect(existsSync(join(work, 'cache-cpu'))).toBe(false);
      const bad = runIn(project, `const s = require('sdnode'); try { s.listDevices(); } catch (e) { console.log(e.name + ': ' + e.message); }`, { SDNODE_GPU: 'opengl' });
      expect(bad.stdout.trim()).toBe(
        "RangeError: SDNODE_GPU='opengl': unknown backend 'opengl' (choices: auto, cpu, cuda, vulkan, metal; a comma-separated list tries GPU backends in its order)",
      );
    });
  });

  it('without a platform package or a toolchain, installs and then says how to build from source', () => {
    const bare = join(work, 'bare');
    const log = installTarballs(bare, [tarballs['sdnode']!], work);
    expect(log).toContain('sdnode: no native binaries for linux-x64');
    const script = `
      const { loadModel } = require('sdnode');
      try { loadModel(${JSON.stringify(modelPath)}); } catch (e) { console.log(JSON.stringify({ code: e.code, message: e.message })); }`;
    const out = JSON.parse(runIn(bare, script, {}).stdout) as { code: string; message: string };
    expect(out.code).toBe('ERR_NO_NATIVE_BINARY');
    expect(out.message).toContain('npm install sdnode --build-from-source');
    expect(out.message).toContain('npm run build:native');
  });

  it('runs npm with a PATH that has no compiler', () => {
    const env = compilerFreeEnv(work);
    const path = env.PATH!.split(delimiter);
    for (const tool of ['cc', 'gcc', 'g++', 'c++', 'clang', 'cmake', 'make']) {
      expect(path.some((d) => existsSync(join(d, tool)))).toBe(false);
    }
    expect(spawnSync('npm', ['--version'], { env, encoding: 'utf8' }).status).toBe(0);
  });
});
