import { defineConfig } from 'vite';

/**
 * One config for the demo page (`vite`, `vite build`) and, through
 * vitest.config.ts, the tests. The library and CLI bundles are built by
 * scripts/build.mjs with the same alias.
 */
export const alias = [
  // wgsl_reflect's `main` is CommonJS inside a "type": "module" package, which Node refuses; its ES build is fine.
  { find: /^wgsl_reflect$/, replacement: 'wgsl_reflect/wgsl_reflect.module.js' },
];

export default defineConfig({
  root: 'demo',
  resolve: { alias },
  build: { outDir: 'dist', emptyOutDir: true, target: 'es2022' },
  server: { fs: { allow: ['..'] } },
});
