// Helpers of the packaging tests: pack the tarballs, install them into an empty project with
// a PATH that has node, npm and sh but no compiler, and run scripts there.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, realpathSync, symlinkSync, writeFileSync } from 'node:fs';
import { delimiter, join, resolve } from 'node:path';

const root = resolve(import.meta.dirname, '..', '..');

/** Variables that would steer the loader in the child (the test runner's own choices). */
const LOADER_VARIABLES = ['SDNODE_ADDON_PATH', 'SDNODE_GPU', 'SDNODE_TEST_DEVICE', 'GGML_BACKEND_PATH', 'SDNODE_PROBE_TIMEOUT_MS'];

/**
 * `npm run build:ts` and `npm run pack:all -- --only <packages> [args]` (from build/Release's
 * binaries: nothing is compiled); the tarballs by package name.
 */
export function packAll(only: string[], args: string[] = []): Record<string, string> {
  execFileSync('npm', ['run', 'build:ts'], { cwd: root, stdio: ['ignore', 'ignore', 'pipe'] });
  execFileSync(process.execPath, [join(root, 'scripts', 'pack-all.mjs'), '--only', only.join(','), ...args], { cwd: root, stdio: ['ignore', 'ignore', 'pipe'] });
  const sizes = JSON.parse(readFileSync(join(root, 'dist-packages', 'sizes.json'), 'utf8')) as Array<{ name: string; built: boolean; file?: string }>;
  return Object.fromEntries(sizes.filter((s) => s.built).map((s) => [s.name, join(root, 'dist-packages', s.file!)]));
}

function which(tool: string): string {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (dir && existsSync(join(dir, tool))) return realpathSync(join(dir, tool));
  }
  throw new Error(`${tool} is not on PATH`);
}

/** This environment with PATH = a folder holding only node, npm and sh (what npm's scripts run with). */
export function compilerFreeEnv(work: string): NodeJS.ProcessEnv {
  const bin = join(work, 'bin-no-compiler');
  if (!existsSync(bin)) {
    mkdirSync(bin, { recursive: true });
    symlinkSync(process.execPath, join(bin, 'node'));
    symlinkSync(which('npm'), join(bin, 'npm'));
    symlinkSync(which('sh'), join(bin, 'sh'));
  }
  const env: NodeJS.ProcessEnv = { ...process.env, PATH: bin, npm_config_loglevel: 'warn' };
  for (const v of LOADER_VARIABLES) delete env[v];
  return env;
}

/**
 * npm install of these tarballs (and nothing else new: the JavaScript dependencies come from
 * npm's cache) into `project`, a new empty project, with no compiler on PATH; npm's output,
 * the install scripts' included.
 */
export function installTarballs(project: string, tarballs: string[], work: string, extra: string[] = []): string {
  mkdirSync(project, { recursive: true });
  writeFileSync(join(project, 'package.json'), '{ "name": "app", "private": true }\n');
  const r = spawnSync('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', '--foreground-scripts', ...extra, ...tarballs], {
    cwd: project,
    env: compilerFreeEnv(work),
    encoding: 'utf8',
  });
  const log = `${r.stdout}\n${r.stderr}`;
  if (r.status !== 0) throw new Error(`npm install failed (${r.status}):\n${log}`);
  return log;
}

/** Runs `script` with node in `project` (CommonJS, or ESM with type 'module'); throws unless it exits 0. */
export function runIn(project: string, script: string, env: NodeJS.ProcessEnv, type: 'commonjs' | 'module' = 'commonjs', wrap: string[] = []): { stdout: string; stderr: string } {
  const base: NodeJS.ProcessEnv = { ...process.env, XDG_CACHE_HOME: join(project, '.cache') };
  for (const v of LOADER_VARIABLES) delete base[v];
  const node = [process.execPath, `--input-type=${type}`, '-e', script];
  const [cmd, ...args] = [...wrap, ...node];
  const r = spawnSync(cmd!, args, { cwd: project, env: { ...base, ...env }, encoding: 'utf8', timeout: 900_000 });
  if (r.status !== 0) throw new Error(`${cmd} exited with ${r.status ?? r.signal}:\n${r.stdout}\n${r.stderr}`);
  return { stdout: r.stdout, stderr: r.stderr };
}

/**
 * The child script both packaging tests run in an installed project: how long loading the
 * binaries took (the GPU probe included), what the loader chose, then one 64² step of the tiny
 * model at `modelPath`; prints { ids, loadMs, gpu, fallbacks, backends, device, width } as JSON.
 */
export function probeAndGenerateScript(modelPath: string): string {
  return `
    import { listDevices, loadModel, systemInfo } from 'sdnode';
    const t0 = performance.now();
    const ids = listDevices().map((d) => d.id);
    const loadMs = performance.now() - t0;
    const i = systemInfo();
    const model = await loadModel(${JSON.stringify(modelPath)}, { threads: 2 });
    const { images: [image] } = await model.generate({ prompt: 'a cat', width: 64, height: 64, steps: 1, seed: 1 });
    console.log(JSON.stringify({ ids, loadMs, gpu: i.gpuSet, fallbacks: i.deviceFallbacks, backends: i.backends, device: model.info.device, width: image.width }));
    model.dispose();`;
}
