/** What this machine offers: ggml's version, backends, CPU features and devices. */
import { freemem } from 'node:os';

import type { BinaryOrigin, GpuFallback, GpuSetInfo } from './binary-loader.js';
import { native, nativeReport, preferGpuBackend, type NativeDevice } from './native.js';

/**
 * A compute device: `id` ("cpu", "cuda:0", "vulkan:0", "metal:0") is what `device` options take;
 * `backend` the ggml backend, `name`/`description` what the driver reports, `type` 'cpu', 'gpu',
 * 'igpu' (integrated) or 'accel', `memoryFree`/`memoryTotal` in bytes (0 where unknown).
 */
export type Device = NativeDevice;

/** The ggml build and this machine, as systemInfo() reports them. */
export interface SystemInfo {
  /** ggml version compiled in, e.g. "0.23.0". */
  ggmlVersion: string;
  /** The commit of the vendored ggml source. */
  ggmlCommit: string;
  /** Backends whose modules were loaded, e.g. ["CPU"] or ["Vulkan", "CPU"]. */
  backends: string[];
  /** Features of the CPU module chosen for this processor (e.g. AVX2: "1"). */
  cpuFeatures: Record<string, string>;
  /** The addon file in use: a platform package's, a prebuild or a local build. */
  addonPath: string;
  /** Where the addon came from: SDNODE_ADDON_PATH, an `@sdnode/<platform>` package, prebuilds/, or build/Release. */
  binaryOrigin: BinaryOrigin;
  /** The GPU set loaded beside it (after its probe passed), or null. */
  gpuSet: GpuSetInfo | null;
  /** GPU sets found but not used, each with the reason (also a SDNODE_DEVICE_FALLBACK warning). */
  deviceFallbacks: GpuFallback[];
  /** True when SDNODE_FORCE_CPU is set: every job runs on the CPU. */
  forceCpu: boolean;
}

/** SDNODE_FORCE_CPU is set (to anything but '', '0' or 'false'): every job runs on the CPU. */
export function forceCpu(): boolean {
  const v = process.env.SDNODE_FORCE_CPU;
  return v !== undefined && v !== '' && v !== '0' && v.toLowerCase() !== 'false';
}

/** ggml version, loaded backends and the CPU features in use. */
export function systemInfo(): SystemInfo {
  const info = native().systemInfo();
  const report = nativeReport();
  return {
    ...info,
    addonPath: report.addonPath,
    binaryOrigin: report.origin,
    gpuSet: report.gpu,
    deviceFallbacks: report.fallbacks,
    forceCpu: forceCpu(),
  };
}

/**
 * Compute devices, CPU included. `id` is what `device` options take ("cpu", "vulkan:0",
 * "cuda:0", "metal:0"). With SDNODE_FORCE_CPU set, only the CPU is listed.
 */
export function listDevices(): Device[] {
  const devices = native().listDevices();
  return forceCpu() ? devices.filter((d) => d.id === 'cpu') : devices;
}

const DEVICE_PATTERN = /^(auto|cpu|[a-z]+(:\d+)?)$/;

/**
 * Maps a `device` option to a device id. `auto` (the default) picks the first GPU, else the
 * CPU; `cuda` means `cuda:0`. Throws TypeError/RangeError for a bad or unknown device.
 */
/** Bytes free on a device now: a GPU's own memory, else (the CPU, or a GPU that does not say) the system's. */
export function freeMemoryOn(deviceId: string): number {
  const device = deviceId === 'cpu' ? undefined : listDevices().find((d) => d.id === deviceId);
  return device && device.memoryFree > 0 ? device.memoryFree : freemem();
}

export function resolveDevice(requested: unknown): { id: string; auto: boolean } {
  if (requested === undefined) requested = 'auto';
  if (typeof requested !== 'string') throw new TypeError(`device must be a string, got ${typeof requested}`);
  const wanted = requested.toLowerCase();
  if (!DEVICE_PATTERN.test(wanted)) {
    throw new RangeError(`device '${requested}' is not of the form 'auto', 'cpu', 'cuda:0', 'vulkan:0' or 'metal'`);
  }
  const backend = /^(cuda|vulkan|metal)(:\d+)?$/.exec(wanted)?.[1] as 'cuda' | 'vulkan' | 'metal' | undefined;
  // Asked for a GPU backend before anything loaded the addon: try that backend's set first.
  if (backend) preferGpuBackend(backend);
  const devices = listDevices();
  if (wanted === 'auto') {
    const gpu = devices.find((d) => d.type === 'gpu') ?? devices.find((d) => d.type === 'igpu');
    return { id: gpu ? gpu.id : 'cpu', auto: true };
  }
  if (forceCpu()) return { id: 'cpu', auto: false };
  const id = wanted.includes(':') || wanted === 'cpu' ? wanted : `${wanted}:0`;
  if (!devices.some((d) => d.id === id)) {
    const known = devices.map((d) => d.id).join(', ');
    const fallback = nativeReport().fallbacks.find((f) => f.backend === backend);
    const why = fallback ? `; ${fallback.package} was not used: ${fallback.reason}` : '';
    throw new RangeError(`device '${requested}' is not available here (available: ${known})${why}`);
  }
  return { id, auto: false };
}
