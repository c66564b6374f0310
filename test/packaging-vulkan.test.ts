// The Vulkan set from tarballs (run by `npm run test:vulkan`, which builds the Vulkan module and
// names its folder in SDNODE_PACKAGING_VULKAN_DIR): the main package, @sdnode/linux-x64 and
// @sdnode/linux-x64-vulkan install into an empty project with no compiler on PATH; the loader
// probes the Vulkan module on Mesa's lavapipe once, caches the verdict and runs the tiny model
// there. On a machine without libvulkan.so.1 (hidden in a mount namespace: the library folder
// seen through a copy of its links without libvulkan.so*) the same set falls back to the CPU
// with dlopen's reason.
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, realpathSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';

// @ts-expect-error: plain JavaScript module with JSDoc types
import { generateModel } from '../scripts/generate-model.mjs';
import { installTarballs, packAll, probeAndGenerateScript, runIn } from './support/packaging.js';

const vulkanDir = process.env.SDNODE_PACKAGING_VULKAN_DIR;

describe.runIf(vulkanDir)('the Vulkan set from tarballs (npm run test:vulkan)', () => {
  const work = mkdtempSync(join(tmpdir(), 'sdnode-packaging-vulkan-'));
  const modelPath = join(work, 'tiny.safetensors');
  let project: string;

  beforeAll(async () => {
    const tarballs = packAll(['linux-x64', 'linux-x64-vulkan'], ['--from', `linux-x64-vulkan=${vulkanDir}`]);
    await generateModel({ out: modelPath, preset: 'tiny', dtype: 'f32', seed: 7 });
    project = join(work, 'app');
    installTarballs(project, [tarballs['sdnode']!, tarballs['@sdnode/linux-x64']!, tarballs['@sdnode/linux-x64-vulkan']!], work);
  });

  const infoScript = `
    import { listDevices, systemInfo } from 'sdnode';
    const t0 = performance.now();
    const ids = listDevices().map((d) => d.id);
    const loadMs = performance.now() - t0;
    const i = systemInfo();
    console.log(JSON.stringify({ ids, loadMs, gpu: i.gpuSet, fallbacks: i.deviceFallbacks }));`;

  it('probes the Vulkan module once, then runs the tiny model on lavapipe', () => {
    // ggml lists CPU-type Vulkan devices (lavapipe) only when named; lavapipe compiles ggml's
    // pipelines on the CPU when the device starts: minutes, not the default probe timeout.
    const env = { XDG_CACHE_HOME: join(work, 'cache'), GGML_VK_VISIBLE_DEVICES: '0', SDNODE_PROBE_TIMEOUT_MS: '840000' };
    const script = probeAndGenerateScript(modelPath);
    const first = JSON.parse(runIn(project, script, env, 'module').stdout) as {
      ids: string[]; loadMs: number; backends: string[]; device: string; width: number;
      gpu: { backend: string; package: string; cached: boolean; probeMs: number } | null; fallbacks: unknown[];
    };
    expect(first.fallbacks).toEqual([]);
    expect(first.gpu).toMatchObject({ backend: 'vulkan', package: '@sdnode/linux-x64-vulkan', cached: false });
    expect(first.backends).toContain('Vulkan');
    expect(first.ids).toContain('vulkan:0');
    expect(first.device).toBe('vulkan:0');
    expect(first.width).toBe(64);
    const second = JSON.parse(runIn(project, infoScript, env, 'module').stdout) as typeof first;
    expect(second.gpu).toMatchObject({ backend: 'vulkan', cached: true });
    console.log(`Vulkan probe on lavapipe: first load ${first.loadMs.toFixed(0)} ms (probe ${first.gpu!.probeMs.toFixed(0)} ms), cached ${second.loadMs.toFixed(0)} ms (verdict read in ${second.gpu!.probeMs.toFixed(1)} ms)`);
    expect(second.loadMs).toBeLessThan(first.loadMs);
  });

  it('without libvulkan.so.1 falls back to the CPU with the reason', () => {
    // The folder holding libvulkan.so.1, seen inside a mount namespace through a folder of links
    // to everything else in it: to dlopen, the Vulkan loader is not installed.
    const cache = execFileSync('ldconfig', ['-p'], { encoding: 'utf8' });
    const loader = /\slibvulkan\.so\.1 \(libc6,x86-64\) => (\S+)/.exec(cache)?.[1];
    if (!loader) throw new Error('no libvulkan.so.1 in ldconfig -p: nothing to hide (test:vulkan installs libvulkan1)');
    const libDir = dirname(realpathSync(loader));
    const orig = join(work, 'lib-original');
    const shadow = join(work, 'lib-without-vulkan');
    mkdirSync(orig);
    mkdirSync(shadow);
    for (const name of readdirSync(libDir)) if (!name.startsWith('libvulkan.so')) symlinkSync(join(orig, name), join(shadow, name));
    const hide = ['unshare', '-m', 'sh', '-c', `mount --bind ${libDir} ${orig} && mount --bind ${shadow} ${libDir} && exec "$0" "$@"`];
    const env = { XDG_CACHE_HOME: join(work, 'cache-no-libvulkan'), GGML_VK_VISIBLE_DEVICES: '0' };
    const out = runIn(project, infoScript, env, 'module', hide);
    const r = JSON.parse(out.stdout) as { ids: string[]; gpu: unknown; fallbacks: Array<{ backend: string; reason: string }> };
    expect(r.ids).toEqual(['cpu']);
    expect(r.gpu).toBeNull();
    expect(r.fallbacks).toHaveLength(1);
    expect(r.fallbacks[0]!.reason).toMatch(/libggml-vulkan\.so loaded no vulkan device: .*libvulkan\.so\.1: cannot open shared object file: No such file or directory/);
    expect(out.stderr).toContain('[SDNODE_DEVICE_FALLBACK]');
  });
});
