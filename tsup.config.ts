import { cp } from 'node:fs/promises';

import type { Plugin } from 'esbuild';
import { defineConfig } from 'tsup';

// The CLI imports the library as '../index.js'; in dist/ that is the package's own ESM build,
// './index.js', kept external so that the CLI and `import 'sdnode'` share one copy (one addon
// load, one set of error classes).
const libraryAsSibling: Plugin = {
  name: 'library-as-sibling',
  setup(build) {
    build.onResolve({ filter: /^\.\.\/index\.js$/ }, (args) =>
      /[/\\]lib[/\\]cli[/\\][^/\\]+$/.test(args.importer) ? { path: './index.js', external: true } : undefined,
    );
  },
};

export default defineConfig([
  // One source, two module formats: dist/index.js (ESM) and dist/index.cjs (CommonJS), each
  // with its own .d.ts. `shims` gives the CJS build import.meta.url. Cleaning spares the CLI's
  // files, which the second build writes at the same time.
  {
    entry: ['lib/index.ts'],
    format: ['esm', 'cjs'],
    dts: true,
    shims: true,
    clean: ['!cli.js', '!cli.js.map'],
    sourcemap: true,
    target: 'node20',
    // The web page of `sdnode serve`: its files beside the bundle, where lib/server/routes/page.ts
    // looks for them ('./web/' from dist/index.js), and so in the package ("files": dist).
    onSuccess: async () => {
      await cp('lib/server/web', 'dist/web', { recursive: true });
    },
  },
  // The `sdnode` command: dist/cli.js, ESM, its #!/usr/bin/env node kept from lib/cli/main.ts.
  {
    entry: { cli: 'lib/cli/main.ts' },
    format: ['esm'],
    dts: false,
    clean: false,
    sourcemap: true,
    target: 'node20',
    esbuildPlugins: [libraryAsSibling],
  },
]);
