/**
 * Which native binaries this process loads. The CPU set (the addon, ggml, its CPU modules) comes
 * from SDNODE_ADDON_PATH, else build/Release (a build from source, made here on purpose), else
 * the platform package `@sdnode/<platform>-<arch>`, else prebuilds/. A GPU set (`@sdnode/<platform>-<arch>-cuda`, `-vulkan`,
 * or a backend folder inside the CPU package, e.g. Metal's) adds one ggml backend module; before
 * it is trusted it is probed once in a child process (load, list devices, one tiny graph per
 * device) under a timeout, and the verdict is cached per package version and driver. A set that
 * fails leaves the process on the CPU, with the reason in systemInfo() and a
 * SDNODE_DEVICE_FALLBACK warning.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { homedir, release } from 'node:os';
import { dirname, join } from 'node:path';

import { SdnodeError } from './errors.js';

export type GpuBackend = 'cuda' | 'vulkan' | 'metal';

/** The default order: the first set that passes its probe is used. */
export const GPU_ORDER: readonly GpuBackend[] = ['cuda', 'vulkan', 'metal'];
/** What SDNODE_GPU takes (a comma-separated list of GPU backends is tried in its order). */
export const SDNODE_GPU_CHOICES = ['auto', 'cpu', ...GPU_ORDER] as const;

/** Where the CPU set came from. */
export type BinaryOrigin = 'env' | 'package' | 'prebuild' | 'build';

/** A GPU set that passed its probe and is loaded. */
export interface GpuSetInfo {
  backend: GpuBackend;
  /** The npm package (or the CPU package, for a backend folder inside it). */
  package: string;
  module: string;
  /** The probe's verdict came from the cache (no child process this time). */
  cached: boolean;
  /** What deciding cost this process: the child's run, or reading the cache. */
  probeMs: number;
}

/** A GPU set that was found but not used, and why. */
export interface GpuFallback {
  backend: GpuBackend;
  package: string;
  reason: string;
}

/** What the loader chose (part of systemInfo()). */
export interface BinaryReport {
  addonPath: string;
  origin: BinaryOrigin;
  gpu: GpuSetInfo | null;
  fallbacks: GpuFallback[];
}

interface CpuSet {
  origin: BinaryOrigin;
  addon: string;
  /** The platform package's name and version, for a CPU set from a package. */
  package?: { name: string; version: string; dir: string };
}

interface GpuCandidate {
  backend: GpuBackend;
  package: string;
  version: string;
  module: string;
}

interface ProbeVerdict {
  ok: boolean;
  reason: string;
  devices: Array<{ id: string; description: string; ok: boolean; error: string; ms: number }>;
  ms: number;
}

const platformKey = `${process.platform}-${process.arch}`;
const moduleFile = (backend: string) => (process.platform === 'win32' ? `ggml-${backend}.dll` : `libggml-${backend}.so`);

/**
 * SDNODE_GPU as a list of GPU backends to try, in order ([] for 'cpu'). `preferred` (a backend
 * a `device` option named before the addon was loaded) goes first. Throws a RangeError listing
 * the choices for anything else.
 */
export function gpuPreference(value: string | undefined, preferred?: GpuBackend): GpuBackend[] {
  const tokens = (value ?? '').split(',').map((s) => s.trim().toLowerCase()).filter(Boolean);
  for (const t of tokens) {
    if (!(SDNODE_GPU_CHOICES as readonly string[]).includes(t)) {
      throw Object.assign(
        new RangeError(`SDNODE_GPU='${value}': unknown backend '${t}' (choices: ${SDNODE_GPU_CHOICES.join(', ')}; a comma-separated list tries GPU backends in its order)`),
        { code: 'ERR_INVALID_ARGUMENT' },
      );
    }
  }
  let order: GpuBackend[];
  if (tokens.includes('cpu')) order = [];
  else if (tokens.length === 0 || tokens.includes('auto')) order = [...GPU_ORDER];
  else order = tokens as GpuBackend[];
  if (preferred && !tokens.includes('cpu')) order = [preferred, ...order.filter((b) => b !== preferred)];
  return order;
}

/** The error for a platform with neither a package nor a build. */
function noBinaryError(root: string, cause: unknown): SdnodeError {
  return new SdnodeError(
    `sdnode has no native binaries for ${platformKey}: neither the package @sdnode/${platformKey} nor a build in ${join(root, 'build', 'Release')} is installed. ` +
      'Build from source (needs CMake and a C++17 compiler): `npm install sdnode --build-from-source`, or `npm run build:native` in a checkout.',
    'ERR_NO_NATIVE_BINARY',
    { cause },
  );
}

function findCpuSet(root: string, require: NodeJS.Require): CpuSet {
  if (process.env.SDNODE_ADDON_PATH) return { origin: 'env', addon: process.env.SDNODE_ADDON_PATH };
  // npm never ships build/: an addon there was built here (`--build-from-source`, or
  // `npm run build:native` in a checkout) on purpose, and wins over the packages.
  const built = join(root, 'build', 'Release', 'sdnode.node');
  if (existsSync(built)) return { origin: 'build', addon: built };
  const pkg = readPackage(require, `@sdnode/${platformKey}`);
  if (pkg) {
    const addon = join(pkg.dir, pkg.bin, 'sdnode.node');
    if (existsSync(addon)) return { origin: 'package', addon, package: pkg };
  }
  const nodeGypBuild = require('node-gyp-build') as { resolve(dir: string): string };
  let addon: string;
  try {
    addon = nodeGypBuild.resolve(root);
  } catch (err) {
    throw noBinaryError(root, err);
  }
  return { origin: addon.includes(`${join('prebuilds', platformKey)}`) ? 'prebuild' : 'build', addon };
}

function readPackage(require: NodeJS.Require, name: string): { name: string; version: string; dir: string; bin: string } | undefined {
  let manifest: string;
  try {
    manifest = require.resolve(`${name}/package.json`);
  } catch {
    return undefined;
  }
  const json = JSON.parse(readFileSync(manifest, 'utf8')) as { name: string; version: string; sdnode?: { bin?: string } };
  return { name: json.name, version: json.version, dir: dirname(manifest), bin: json.sdnode?.bin ?? 'bin' };
}

/** GPU sets installed beside this CPU set, in `order`; the ones that cannot pair with it go to `fallbacks`. */
function findGpuSets(cpu: CpuSet, order: readonly GpuBackend[], require: NodeJS.Require, fallbacks: GpuFallback[]): GpuCandidate[] {
  const out: GpuCandidate[] = [];
  for (const backend of order) {
    // A backend folder inside the CPU package (Metal on macOS) or its own package (CUDA, Vulkan).
    if (cpu.package) {
      const inside = join(cpu.package.dir, 'bin', backend, moduleFile(backend));
      if (existsSync(inside)) {
        out.push({ backend, package: cpu.package.name, version: cpu.package.version, module: inside });
        continue;
      }
    }
    const pkg = readPackage(require, `@sdnode/${platformKey}-${backend}`);
    if (!pkg) continue;
    const module = join(pkg.dir, pkg.bin, moduleFile(backend));
    if (!cpu.package) {
      fallbacks.push({ backend, package: pkg.name, reason: `the CPU set in use is not @sdnode/${platformKey} (${cpu.origin}: ${cpu.addon}); a GPU package only pairs with it` });
    } else if (pkg.version !== cpu.package.version) {
      fallbacks.push({ backend, package: pkg.name, reason: `${pkg.name}@${pkg.version} does not match ${cpu.package.name}@${cpu.package.version}` });
    } else if (!existsSync(module)) {
      fallbacks.push({ backend, package: pkg.name, reason: `${module} is missing` });
    } else {
      out.push({ backend, package: pkg.name, version: pkg.version, module });
    }
  }
  return out;
}

/** The user's cache folder for sdnode ($XDG_CACHE_HOME/sdnode, else ~/.cache/sdnode). */
export function cacheDir(): string {
  return join(process.env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'sdnode');
}

function statKey(path: string): string {
  try {
    const s = statSync(path);
    return `${path}:${s.size}:${s.mtimeMs}`;
  } catch {
    return `${path}:absent`;
  }
}

/**
 * What identifies the driver a module would run on, without loading it: the NVIDIA kernel
 * module's version, the Vulkan loader and its driver manifests, and the variables that steer them.
 */
function driverFingerprint(backend: GpuBackend): string[] {
  const parts = [process.platform, process.arch, release()];
  const env = (names: string[]) => names.map((n) => `${n}=${process.env[n] ?? ''}`);
  parts.push(...env(['LD_LIBRARY_PATH']));
  if (backend === 'cuda') {
    try {
      parts.push(readFileSync('/proc/driver/nvidia/version', 'utf8'));
    } catch {
      parts.push('no /proc/driver/nvidia/version');
    }
    parts.push(...env(['CUDA_VISIBLE_DEVICES']));
  } else if (backend === 'vulkan') {
    for (const dir of ['/usr/lib/x86_64-linux-gnu', '/usr/lib/aarch64-linux-gnu', '/usr/lib64', '/usr/lib', '/usr/local/lib']) {
      parts.push(statKey(join(dir, 'libvulkan.so.1')));
    }
    for (const dir of ['/usr/share/vulkan/icd.d', '/etc/vulkan/icd.d', '/usr/local/share/vulkan/icd.d', join(homedir(), '.local/share/vulkan/icd.d')]) {
      let names: string[] = [];
      try {
        names = readdirSync(dir).sort();
      } catch {
        /* no such folder */
      }
      parts.push(dir, ...names.map((n) => statKey(join(dir, n))));
    }
    parts.push(...env(['VK_ICD_FILENAMES', 'VK_DRIVER_FILES', 'VK_ADD_DRIVER_FILES', 'GGML_VK_VISIBLE_DEVICES']));
  }
  return parts;
}

// The child: loads the CPU set with the candidate module (ggml loads GGML_BACKEND_PATH after the
// folder's own modules), lists the module's devices and runs the addon's self-test on each.
const PROBE_SCRIPT = `
const addon = require(process.env.SDNODE_PROBE_ADDON);
addon.loadBackends(process.env.SDNODE_PROBE_DIR);
const prefix = process.env.SDNODE_PROBE_BACKEND + ':';
const devices = addon.listDevices().filter((d) => d.id.startsWith(prefix)).map((d) => {
  const r = typeof addon.probeDevice === 'function' ? addon.probeDevice(d.id) : { ok: true, error: '', ms: 0 };
  return { id: d.id, description: d.description, ok: r.ok, error: r.error, ms: r.ms };
});
process.stdout.write('SDNODE_PROBE ' + JSON.stringify(devices) + '\\n');
`;

/** Milliseconds a probe may take before it counts as a hang (SDNODE_PROBE_TIMEOUT_MS, default 60 s). */
function probeTimeout(): number {
  const v = Number(process.env.SDNODE_PROBE_TIMEOUT_MS);
  return Number.isFinite(v) && v > 0 ? v : 60_000;
}

function runProbe(cpu: CpuSet, gpu: GpuCandidate): ProbeVerdict {
  const start = performance.now();
  const child = spawnSync(process.execPath, ['-e', PROBE_SCRIPT], {
    encoding: 'utf8',
    timeout: probeTimeout(),
    killSignal: 'SIGKILL',
    env: {
      ...process.env,
      GGML_BACKEND_PATH: gpu.module,
      SDNODE_PROBE_ADDON: cpu.addon,
      SDNODE_PROBE_DIR: dirname(cpu.addon),
      SDNODE_PROBE_BACKEND: gpu.backend,
    },
  });
  const ms = performance.now() - start;
  const stderr = (child.stderr ?? '').trim().split('\n').slice(-4).join(' | ');
  const line = /^SDNODE_PROBE (.*)$/m.exec(child.stdout ?? '')?.[1];
  if ((child.error as NodeJS.ErrnoException | undefined)?.code === 'ETIMEDOUT') {
    return { ok: false, reason: `the probe did not finish within ${probeTimeout()} ms (killed)`, devices: [], ms };
  }
  if (child.status !== 0 || line === undefined) {
    const how = child.signal ? `was killed by ${child.signal}` : `exited with status ${child.status}`;
    return { ok: false, reason: `the probe ${how}${stderr ? `: ${stderr}` : ''}`, devices: [], ms };
  }
  const devices = JSON.parse(line) as ProbeVerdict['devices'];
  if (devices.length === 0) {
    return { ok: false, reason: `${moduleFile(gpu.backend)} loaded no ${gpu.backend} device${stderr ? `: ${stderr}` : ' (no driver or no GPU)'}`, devices, ms };
  }
  const failed = devices.filter((d) => !d.ok);
  if (failed.length === devices.length) {
    return { ok: false, reason: failed.map((d) => `${d.id} (${d.description}): ${d.error}`).join('; '), devices, ms };
  }
  return { ok: true, reason: '', devices, ms };
}

/** A probe's verdict, from the cache when this package version and driver were probed before. */
function probe(cpu: CpuSet, gpu: GpuCandidate): { verdict: ProbeVerdict; cached: boolean; ms: number } {
  const start = performance.now();
  const key = createHash('sha256')
    .update(JSON.stringify([gpu.package, gpu.version, statKey(gpu.module), statKey(cpu.addon), ...driverFingerprint(gpu.backend)]))
    .digest('hex')
    .slice(0, 16);
  const file = join(cacheDir(), `probe-${gpu.backend}-${key}.json`);
  try {
    const verdict = JSON.parse(readFileSync(file, 'utf8')) as ProbeVerdict;
    if (typeof verdict.ok === 'boolean' && typeof verdict.reason === 'string') return { verdict, cached: true, ms: performance.now() - start };
  } catch {
    /* not probed yet, or a damaged cache file: probe again */
  }
  const verdict = runProbe(cpu, gpu);
  try {
    mkdirSync(cacheDir(), { recursive: true });
    // Written whole then renamed: a concurrent reader never sees half a verdict.
    const tmp = `${file}.${process.pid}.tmp`;
    writeFileSync(tmp, JSON.stringify(verdict));
    renameSync(tmp, file);
  } catch {
    /* a read-only cache: probe again next time */
  }
  return { verdict, cached: false, ms: performance.now() - start };
}

/** The binaries picked for this process and how to load them. */
export interface BinaryChoice {
  report: BinaryReport;
  /** Loads the addon and its backends (GPU module included) and returns it. */
  load<T extends { loadBackends(dir: string): void }>(): T;
}

/**
 * Picks the CPU set and at most one GPU set for this process. `root` is the package root;
 * `preferred` a GPU backend a `device` option asked for.
 */
export function chooseBinaries(root: string, preferred?: GpuBackend): BinaryChoice {
  const require = createRequire(join(root, 'package.json'));
  const order = gpuPreference(process.env.SDNODE_GPU, preferred);
  const cpu = findCpuSet(root, require);
  const fallbacks: GpuFallback[] = [];
  let gpu: GpuSetInfo | null = null;
  // SDNODE_ADDON_PATH names a build to use as it is: its folder's GPU modules load as before.
  const candidates = cpu.origin === 'env' ? [] : findGpuSets(cpu, order, require, fallbacks);
  for (const candidate of candidates) {
    const { verdict, cached, ms } = probe(cpu, candidate);
    if (verdict.ok) {
      gpu = { backend: candidate.backend, package: candidate.package, module: candidate.module, cached, probeMs: ms };
      break;
    }
    fallbacks.push({ backend: candidate.backend, package: candidate.package, reason: verdict.reason });
  }
  for (const f of fallbacks) {
    process.emitWarning(`sdnode: not using ${f.package} (${f.backend}), running on ${gpu ? gpu.backend : 'the CPU'}: ${f.reason}`, {
      code: 'SDNODE_DEVICE_FALLBACK',
    });
  }
  const report: BinaryReport = { addonPath: cpu.addon, origin: cpu.origin, gpu, fallbacks };
  return {
    report,
    load<T extends { loadBackends(dir: string): void }>(): T {
      let loaded: T;
      try {
        loaded = require(cpu.addon) as T;
      } catch (err) {
        if (cpu.origin === 'package' || cpu.origin === 'prebuild') throw noBinaryError(root, err);
        throw err;
      }
      const saved = process.env.GGML_BACKEND_PATH;
      if (gpu) process.env.GGML_BACKEND_PATH = gpu.module;
      try {
        loaded.loadBackends(dirname(cpu.addon));
      } finally {
        if (gpu) {
          if (saved === undefined) delete process.env.GGML_BACKEND_PATH;
          else process.env.GGML_BACKEND_PATH = saved;
        }
      }
      return loaded;
    },
  };
}
