import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: 'unit',
          include: ['test/unit/**/*.test.ts'],
          environment: 'node',
          testTimeout: 60_000,
        },
      },
      {
        // Paths generated from the production machines (xstate/graph), replayed on real actors.
        test: {
          name: 'models',
          include: ['test/models/**/*.test.ts'],
          environment: 'node',
          testTimeout: 60_000,
        },
      },
      {
        // The whole gateway on a simulated network and clock, random event sequences (fast-check).
        test: {
          name: 'sim',
          include: ['test/sim/**/*.test.ts'],
          environment: 'node',
          testTimeout: 300_000,
        },
      },
      {
        // Root, network namespaces and real peers (wireguard-go, ...). Files run one at a time:
        // they share the machine's network configuration and its two cores.
        test: {
          name: 'e2e',
          include: ['test/e2e/**/*.test.ts'],
          environment: 'node',
          testTimeout: 300_000,
          hookTimeout: 120_000,
          fileParallelism: false,
        },
      },
    ],
  },
});
