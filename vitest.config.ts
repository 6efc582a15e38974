import { defineConfig } from 'vitest/config';
import { alias } from './vite.config.js';

export default defineConfig({
  resolve: { alias },
  test: {
    include: ['test/**/*.test.ts'],
    // Workers are processes, so the Vulkan driver selected in globalSetup reaches dawn.node.
    pool: 'forks',
    globalSetup: ['test/setup/softwareAdapter.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
  },
});
