// Builds the shipped files with Vite (Rolldown underneath):
//   dist/lib/  the library (ES modules; `webgpu` and `wgsl_reflect` stay external)
//   dist/cli.js  the `fastattn` command, one file with only `webgpu` external, so it
//                runs on the GPU machine where node_modules holds nothing else
// Type declarations come from `tsc -p tsconfig.build.json`.
import { resolve } from 'node:path';
import { build, loadConfigFromFile } from 'vite';

// The alias lives in vite.config.ts (shared with the demo and the tests).
const { config } = await loadConfigFromFile({ command: 'build', mode: 'production' }, 'vite.config.ts');
const alias = config.resolve.alias;

const only = process.argv[2];
const common = { configFile: false, logLevel: 'warn', resolve: { alias } };

if (!only || only === 'lib') {
  await build({
    ...common,
    build: {
      outDir: 'dist/lib',
      emptyOutDir: true,
      target: 'es2022',
      minify: false,
      lib: {
        entry: { index: 'src/index.ts', node: 'src/node.ts', llm: 'src/llm/index.ts', 'npu-emu': 'src/npu-emu/index.ts', volta: 'src/volta/index.ts', offload: 'src/offload/index.ts' },
        formats: ['es'],
      },
      rollupOptions: { external: [/^webgpu$/, /^wgsl_reflect/, /^@petamoriken\/float16/, /^node:/] },
    },
  });
}
for (const [name, entry] of [['cli', 'src/cli.ts'], ...(process.env.EXTRA_ENTRY ? [[process.env.EXTRA_NAME ?? 'extra', process.env.EXTRA_ENTRY]] : [])]) {
  if (only && only !== name) continue;
  await build({
    ...common,
    ssr: { noExternal: true, external: ['webgpu'] },
    build: {
      ssr: true,
      outDir: 'dist',
      emptyOutDir: false,
      target: 'node20',
      minify: false,
      rollupOptions: { input: resolve(entry), external: [/^webgpu$/, /^node:/], output: { entryFileNames: `${name}.js`, format: 'es', codeSplitting: false } },
    },
  });
}
