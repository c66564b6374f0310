import { defineConfig } from 'tsup';

// One source, two module formats: dist/index.js (ESM) and dist/index.cjs (CommonJS), each
// with its own .d.ts. `shims` gives the CJS build import.meta.url.
export default defineConfig({
  entry: ['lib/index.ts'],
  format: ['esm', 'cjs'],
  dts: true,
  shims: true,
  clean: true,
  sourcemap: true,
  target: 'node20',
});
