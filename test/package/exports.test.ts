// The package's public entries. scripts/build.mjs builds one library entry per
// subpath of package.json "exports" (./dist/lib/NAME.js from the source behind
// ./dist/types/PATH.d.ts, i.e. src/PATH.ts); this checks that every subpath
// follows that convention and has its source, and that each entry exports what
// README.md and src/llm/EMBEDDING.md tell users to import from it.
import { existsSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

interface ExportEntry {
  types: string;
  import: string;
}
const root = new URL('../../', import.meta.url);
const pkg = JSON.parse(readFileSync(new URL('package.json', root), 'utf8')) as {
  main: string;
  types: string;
  bin: Record<string, string>;
  files: string[];
  scripts: Record<string, string>;
  exports: Record<string, ExportEntry>;
};

/** What the documentation names, per subpath. A Node entry also carries everything of `base`. */
const DOCUMENTED: Record<string, { names: string[]; base?: string }> = {
  '.': {
    names: [
      'FastAttentionRuntime', 'FlashAttentionPrefill', 'StandardAttention', 'FlashDecode', 'PagedKvCache',
      'MAX_POOL_BUFFERS', 'MAX_PREFILL_POOL_BUFFERS', 'chooseDecodeSplit', 'parseTuningTable', 'KERNEL_TIERS',
      'SUPPORTED_HEAD_DIMS', 'SUPPORTED_DTYPES', 'FastAttentionError', 'ShapeError', 'UnsupportedError',
      'BufferError', 'ScaleError', 'TileConfigError', 'NumericOverflowError', 'DeviceLostError', 'NoAdapterError',
    ],
  },
  './node': { names: ['createNodeRuntime', 'createNodeGPU', 'DAWN_FLAGS'], base: '.' },
  './llm': {
    names: ['LlamaRunner', 'LlamaWeights', 'loadLlamaCheckpoint', 'memorySource', 'PagedLlmKvCache', 'ContiguousKvCache', 'CheckpointError', 'LLAMA2_7B', 'TINYLLAMA_1_1B'],
  },
  './llm/node': { names: ['directorySource', 'writeCheckpointFiles'], base: './llm' },
  './npu-emu': { names: ['WebGpuCubeVectorPipeline', 'WebGpuTensorParallelLayer', 'npuEmulationReport', 'simulateAttention', 'ganttSvg', 'ascend910B'] },
  './volta': { names: ['VoltaAttention'] },
  './offload': { names: ['planOffload', 'OffloadDecoder', 'CpuAttentionPool', 'HostKvCache'] },
  './offload/node': { names: ['nodeWorkerSpawner', 'loadOffloadWasm', 'defaultOffloadWasmPath', 'OFFLOAD_WASM_PATH'], base: './offload' },
};

/** The source file scripts/build.mjs builds a subpath from. */
function sourceOf(e: ExportEntry): string {
  const name = /^\.\/dist\/lib\/([^/]+)\.js$/.exec(e.import)?.[1];
  const source = /^\.\/dist\/types\/(.+)\.d\.ts$/.exec(e.types)?.[1];
  expect(name, `import ${e.import}`).toBeTruthy();
  expect(source, `types ${e.types}`).toBeTruthy();
  return `src/${source}.ts`;
}

async function load(subpath: string): Promise<Record<string, unknown>> {
  return import(/* @vite-ignore */ new URL(sourceOf(pkg.exports[subpath]).replace(/\.ts$/, '.js'), root).href);
}

describe('package entries', () => {
  it('every subpath of "exports" has a source file, a distinct bundle name, and an entry in this test', () => {
    const subpaths = Object.keys(pkg.exports);
    expect(subpaths.sort()).toEqual(Object.keys(DOCUMENTED).sort());
    for (const s of subpaths) expect(existsSync(new URL(sourceOf(pkg.exports[s]), root)), `${s} → ${sourceOf(pkg.exports[s])}`).toBe(true);
    const bundles = subpaths.map((s) => pkg.exports[s].import);
    expect(new Set(bundles).size).toBe(bundles.length);
    expect([pkg.main, pkg.types]).toEqual([pkg.exports['.'].import, pkg.exports['.'].types]);
  });

  it('npm pack builds what it ships: prepack runs the build, and every file package.json points to is a build output that `files` ships', () => {
    // dist/ is git-ignored, so without prepack a pack from a fresh checkout has no library, types, CLI or wasm.
    expect(pkg.scripts.prepack).toBe('npm run build');
    // Only the build's outputs ship, not whatever else sits in dist/ (development bundles).
    const shipped = pkg.files.filter((f) => f.startsWith('dist'));
    expect(shipped).toEqual(['dist/lib', 'dist/types', 'dist/cli.js', 'dist/wasm']);
    const targets = [pkg.main, pkg.types, ...Object.values(pkg.bin), ...Object.values(pkg.exports).flatMap((e) => [e.types, e.import])];
    for (const t of targets) expect(shipped.some((f) => t === `./${f}` || t.startsWith(`./${f}/`)), t).toBe(true);
  });

  it.each(Object.entries(DOCUMENTED))('%s exports what the documentation names', async (subpath, { names, base }) => {
    const mod = await load(subpath);
    const exported = Object.keys(mod);
    expect(exported).toEqual(expect.arrayContaining(names));
    for (const n of names) expect(mod[n], n).toBeDefined();
    if (base) expect(exported).toEqual(expect.arrayContaining(Object.keys(await load(base))));
  });
});
