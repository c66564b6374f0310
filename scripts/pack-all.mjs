#!/usr/bin/env node
// npm run pack:all: writes the main package and the platform packages as tarballs into
// dist-packages/, with sizes.json (packed and unpacked bytes of each).
//
// The main package carries no binaries: it names each platform package (packaging/platforms.json)
// as an optional dependency at exactly its own version, and npm installs the ones whose
// os/cpu/libc match. A platform package is packed from a build folder that holds its files:
//
//   --from <platform package suffix>=<folder>   e.g. --from linux-x64-vulkan=build-vulkan/out
//
// Defaults, for this machine: <platform>-<arch> from build/Release (what `npm install` built;
// prebuilds/<platform>-<arch> after `npm run prebuild` took the addon from there),
// <platform>-<arch>-vulkan from build-vulkan/out and -cuda from build-cuda/out when those exist.
// Packages without a folder get their package.json written (dist-packages/templates/) and are
// reported as not built here. Binaries are copied stripped; --all-cpu-variants keeps every CPU
// module instead of the list in platforms.json (to measure what the dropped ones would cost);
// --only <package>[,<package>…] packs just those platform packages (the main one always).
import { execFileSync } from 'node:child_process';
import { copyFileSync, cpSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const out = resolve(root, 'dist-packages');
const stage = join(out, '.stage');
const mainPkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
const { packages } = JSON.parse(readFileSync(join(root, 'packaging', 'platforms.json'), 'utf8'));
const version = mainPkg.version;
const suffix = (name) => name.slice('@sdnode/'.length);

const args = process.argv.slice(2);
const from = new Map();
const host = `${process.platform}-${process.arch}`;
// The CPU set where the loader of a checkout finds it: build/Release, else prebuilds/ (npm run
// prebuild moves the addon out of build/Release).
from.set(host, [join(root, 'build', 'Release'), join(root, 'prebuilds', host)].find((d) => existsSync(join(d, 'sdnode.node'))) ?? join(root, 'build', 'Release'));
for (const gpu of ['vulkan', 'cuda']) {
  const dir = join(root, `build-${gpu}`, 'out');
  if (existsSync(dir)) from.set(`${host}-${gpu}`, dir);
}
let allCpuVariants = false;
let only;
for (let i = 0; i < args.length; i++) {
  if (args[i] === '--from') {
    const [key, dir] = (args[++i] ?? '').split('=');
    if (!key || !dir || !packages.some((p) => suffix(p.name) === key)) {
      throw new Error(`--from wants <package>=<folder>, package one of: ${packages.map((p) => suffix(p.name)).join(', ')}`);
    }
    from.set(key, resolve(dir));
  } else if (args[i] === '--all-cpu-variants') allCpuVariants = true;
  else if (args[i] === '--only') only = new Set((args[++i] ?? '').split(','));
  else throw new Error(`pack-all: unknown argument '${args[i]}' (--from <package>=<folder>, --all-cpu-variants, --only <package>,…)`);
}

rmSync(out, { recursive: true, force: true });
mkdirSync(join(out, 'templates'), { recursive: true });

/** npm pack in `dir`, into dist-packages/; returns npm's report (file name, sizes, files). */
function npmPack(dir) {
  const json = execFileSync('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', out], {
    cwd: dir,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
    env: { ...process.env, npm_config_loglevel: 'error' },
  });
  return JSON.parse(json)[0];
}

/** `name` matches one of the shell-style patterns (only * is special). */
const matches = (name, patterns) =>
  patterns.some((p) => new RegExp(`^${p.replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*')}$`).test(name));

/** The ggml CPU variant a module file is, or undefined for other files: libggml-cpu-haswell.so → haswell. */
const cpuVariant = (file) => /^(?:lib)?ggml-cpu-(.+)\.(?:so|dll)$/.exec(file)?.[1];

function packageJson(p) {
  return {
    name: p.name,
    version,
    description: p.description,
    license: mainPkg.license,
    os: p.os,
    cpu: p.cpu,
    ...(p.libc ? { libc: p.libc } : {}),
    // What the loader reads (lib/binary-loader.ts): which backend this set adds, and that its
    // binaries sit in bin/.
    sdnode: { backend: p.backend, bin: 'bin' },
    files: ['bin'],
  };
}

// Shared libraries a GPU module may assume on the machine: libc's and the compiler runtime's,
// and the driver's own (libcuda comes with the NVIDIA driver, libvulkan with the Vulkan loader).
const SYSTEM_LIBS = /^(libc|libm|libdl|librt|libpthread|libstdc\+\+|libgcc_s|ld-linux.*|libcuda|libvulkan|libggml-base|libggml)\.so/;

/** Libraries `file` needs that are neither system nor driver libraries, found where ld.so finds them. */
function bundledLibraries(file) {
  const needed = [...execFileSync('readelf', ['-d', file], { encoding: 'utf8' }).matchAll(/\(NEEDED\).*\[(.+)\]/g)].map((m) => m[1]);
  const cache = execFileSync('ldconfig', ['-p'], { encoding: 'utf8' });
  const found = [];
  for (const lib of needed.filter((n) => !SYSTEM_LIBS.test(n))) {
    const dirs = (process.env.LD_LIBRARY_PATH ?? '').split(':').filter(Boolean);
    const local = dirs.map((d) => join(d, lib)).find(existsSync);
    const cached = new RegExp(`\\s${lib.replace(/[.+]/g, '\\$&')} \\(.*x86-64.*\\) => (\\S+)`).exec(cache)?.[1];
    const path = local ?? cached;
    if (!path) throw new Error(`pack-all: ${file} needs ${lib}, not found (set LD_LIBRARY_PATH)`);
    found.push({ name: lib, path });
  }
  return found;
}

function strip(file) {
  if (process.platform === 'win32') return;
  const flags = process.platform === 'darwin' ? ['-x'] : ['--strip-unneeded'];
  execFileSync('strip', [...flags, file]);
}

const report = [];
for (const p of packages) {
  const key = suffix(p.name);
  const manifest = packageJson(p);
  writeFileSync(join(out, 'templates', `${key}.package.json`), `${JSON.stringify(manifest, null, 2)}\n`);
  const dir = only && !only.has(key) ? undefined : from.get(key);
  if (!dir) {
    report.push({ name: p.name, built: false });
    continue;
  }
  const pkgDir = join(stage, key);
  const bin = join(pkgDir, 'bin');
  mkdirSync(bin, { recursive: true });
  const available = readdirSync(dir).filter((f) => matches(f, p.files));
  const shipped = available.filter((f) => {
    const variant = cpuVariant(f);
    return variant === undefined || allCpuVariants || !p.cpuVariants || p.cpuVariants.includes(variant);
  });
  // Every named file (the addon, ggml's libraries) must be there: a folder mid-build is not a package.
  const absent = p.files.filter((pattern) => !pattern.includes('*') && !available.includes(pattern));
  if (absent.length || !shipped.length) throw new Error(`pack-all: ${dir} lacks ${p.name}'s ${absent.length ? absent.join(', ') : p.files.join(', ')}`);
  for (const f of shipped) {
    copyFileSync(join(dir, f), join(bin, f));
    strip(join(bin, f));
  }
  // A GPU module inside this package goes into bin/<backend>/: out of the folder ggml loads
  // every module from, so the loader can probe it before it is used.
  for (const [backend, patterns] of Object.entries(p.backendFiles ?? {})) {
    mkdirSync(join(bin, backend), { recursive: true });
    for (const f of readdirSync(dir).filter((f) => matches(f, patterns))) {
      copyFileSync(join(dir, f), join(bin, backend, f));
      strip(join(bin, backend, f));
    }
  }
  if (p.bundle && process.platform === 'linux') {
    for (const module of shipped) {
      for (const lib of bundledLibraries(join(dir, module))) copyFileSync(lib.path, join(bin, lib.name));
    }
  }
  writeFileSync(join(pkgDir, 'package.json'), `${JSON.stringify(manifest, null, 2)}\n`);
  writeFileSync(join(pkgDir, 'README.md'), `# ${p.name}\n\n${p.description}. Installed by \`sdnode\` as an optional dependency; not for direct use.\n`);
  const packed = npmPack(pkgDir);
  const dropped = available.filter((f) => !shipped.includes(f));
  report.push({ name: p.name, built: true, file: packed.filename, packed: packed.size, unpacked: packed.unpackedSize, files: shipped.length, dropped });
}

// The main package: the JavaScript, the sources for a build from source, no binaries.
const mainDir = join(stage, 'sdnode');
mkdirSync(mainDir, { recursive: true });
if (!existsSync(join(root, 'dist', 'index.js'))) throw new Error('pack-all: dist/ is missing: run `npx tsup` (npm run build:ts) first');
const files = mainPkg.files.filter((f) => f !== 'prebuilds');
for (const f of [...files, 'README.md', 'LICENSE']) {
  if (existsSync(join(root, f))) cpSync(join(root, f), join(mainDir, f), { recursive: true });
}
const main = { ...mainPkg, files };
main.optionalDependencies = Object.fromEntries(packages.map((p) => [p.name, version]));
writeFileSync(join(mainDir, 'package.json'), `${JSON.stringify(main, null, 2)}\n`);
const packedMain = npmPack(mainDir);
report.unshift({ name: mainPkg.name, built: true, file: packedMain.filename, packed: packedMain.size, unpacked: packedMain.unpackedSize, files: packedMain.entryCount });
rmSync(stage, { recursive: true, force: true });

writeFileSync(join(out, 'sizes.json'), `${JSON.stringify(report, null, 2)}\n`);
const mb = (n) => `${(n / 1e6).toFixed(2)} MB`;
for (const r of report) {
  process.stderr.write(
    r.built
      ? `[pack-all] ${r.file.padEnd(34)} packed ${mb(r.packed).padStart(9)}  unpacked ${mb(r.unpacked).padStart(9)}  ${r.files} files${r.dropped?.length ? `, dropped ${r.dropped.join(' ')}` : ''}\n`
      : `[pack-all] ${r.name.padEnd(34)} not built here (template: dist-packages/templates/)\n`,
  );
}
