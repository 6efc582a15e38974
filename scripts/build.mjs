// Builds the shipped files with Vite (Rolldown underneath):
//   dist/lib/  the library (ES modules; `webgpu` and `wgsl_reflect` stay external)
//   dist/cli.js  the `fastattn` command, one file with only `webgpu` external, so it
//                runs on the GPU machine where node_modules holds nothing else
// Type declarations come from `tsc -p tsconfig.build.json`.
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { build, loadConfigFromFile } from 'vite';

// One library entry per subpath of package.json "exports", so the two cannot
// disagree: named after its import file (./dist/lib/NAME.js) and built from the
// source its declarations come from (./dist/types/PATH.d.ts ← src/PATH.ts, as
// tsconfig.build.json emits them). test/package/exports.test.ts checks the map.
const pkg = JSON.parse(await readFile('package.json', 'utf8'));
const libEntries = Object.fromEntries(
  Object.entries(pkg.exports).map(([subpath, e]) => {
    const name = /^\.\/dist\/lib\/([^/]+)\.js$/.exec(e.import)?.[1];
    const source = /^\.\/dist\/types\/(.+)\.d\.ts$/.exec(e.types)?.[1];
    if (!name || !source) throw new Error(`package.json exports["${subpath}"]: expected { types: './dist/types/PATH.d.ts', import: './dist/lib/NAME.js' }`);
    return [name, `src/${source}.ts`];
  }),
);

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
        entry: libEntries,
        formats: ['es'],
      },
      rollupOptions: {
        external: [/^webgpu$/, /^wgsl_reflect/, /^@petamoriken\/float16/, /^node:/],
        // An external import is written as the source spells it, before the alias: rewrite
        // it the same way, or Node resolves bare `wgsl_reflect` to its CommonJS main and
        // refuses the named imports, so no entry of the installed package would load.
        output: { paths: (id) => alias.reduce((to, { find, replacement }) => (typeof find === 'string' ? (to === find ? replacement : to) : to.replace(find, replacement)), id) },
      },
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
