import { defineConfig } from 'vitest/config';

// Native compute is heavy and the CI machine has 2 cores: one test file at a time, in
// forked processes (an addon crash must fail one file, not the runner).
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    pool: 'forks',
    fileParallelism: false,
    testTimeout: 120_000,
    hookTimeout: 600_000,
    reporters: ['default', './test/support/summary-reporter.ts'],
  },
});
