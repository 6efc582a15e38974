/**
 * Node entry of the offload path (`fastattention-webgpu/offload/node`):
 * everything in `fastattention-webgpu/offload`, plus worker threads and loading
 * the WebAssembly module built by `npm run build:wasm`. Kept apart from
 * `fastattention-webgpu/offload` so browser bundles never import `node:*`.
 *
 * @example
 * ```ts
 * import { CpuAttentionPool, HostKvCache, loadOffloadWasm, nodeWorkerSpawner } from 'fastattention-webgpu/offload/node';
 * const cache = HostKvCache.create({ layers: 4, batch: 1, heads: 32, kvHeads: 8, headDim: 128, capacity: 65536, dtype: 'f16', threads: 8 });
 * const pool = await CpuAttentionPool.create(cache, { module: await loadOffloadWasm(), spawn: nodeWorkerSpawner });
 * ```
 */
import type { PoolWorker, WorkerSpawner } from './cpuAttention.js';
import { UnsupportedError } from '../errors.js';

export * from './index.js';

/** Worker threads running the worker body from source (eval), so no separate bundle entry is needed. */
export const nodeWorkerSpawner: WorkerSpawner = (init, mainSource) => {
  let worker: import('node:worker_threads').Worker | undefined;
  const ready = (async () => {
    const { Worker } = await import('node:worker_threads');
    const code = `const { parentPort, workerData } = require('node:worker_threads');\n(${mainSource})(workerData, (m) => parentPort.postMessage(m));`;
    const w = new Worker(code, { eval: true, workerData: init });
    worker = w;
    await new Promise<void>((resolve, reject) => {
      w.once('message', () => resolve());
      w.once('error', reject);
    });
    w.unref(); // an idle pool must not keep the process alive
  })();
  return { ready, terminate: () => void worker?.terminate() };
};

/** Where `npm run build:wasm` (asm/build.mjs) writes the offload module, relative to the package root; shipped under `files: ["dist/wasm"]`. */
export const OFFLOAD_WASM_PATH = 'dist/wasm/offload.wasm';
const PACKAGE_NAME = 'fastattention-webgpu';

/**
 * The absolute path of this package's {@link OFFLOAD_WASM_PATH}, found from
 * where the module `from` lies (default: this one), not from the working
 * directory: the nearest enclosing directory whose package.json is named
 * `fastattention-webgpu` is the package root. That is the repository for the
 * source (src/offload/node.ts), the tests and the bundles under dist/, and
 * node_modules/fastattention-webgpu for an installed package (dist/lib/).
 * `undefined` when `from` is not a file inside the package (e.g. this module was
 * bundled into an application): pass `loadOffloadWasm` a path then.
 */
export async function defaultOffloadWasmPath(from: string | URL = import.meta.url): Promise<string | undefined> {
  const url = new URL(from);
  if (url.protocol !== 'file:') return undefined;
  const [{ readFile }, { dirname, join }, { fileURLToPath }] = await Promise.all([import('node:fs/promises'), import('node:path'), import('node:url')]);
  for (let dir = dirname(fileURLToPath(url)); ; ) {
    try {
      if ((JSON.parse(await readFile(join(dir, 'package.json'), 'utf8')) as { name?: unknown })?.name === PACKAGE_NAME) return join(dir, OFFLOAD_WASM_PATH);
    } catch {
      // no (readable) package.json here: look further up
    }
    const up = dirname(dir);
    if (up === dir) return undefined;
    dir = up;
  }
}

/**
 * Compile the offload WebAssembly module: by default this package's
 * `dist/wasm/offload.wasm` ({@link defaultOffloadWasmPath}: found from this
 * module's location, whatever the working directory), or `path`, where a
 * relative path resolves from the working directory as usual for `node:fs`.
 * A missing file is an `UnsupportedError` naming `wasm`.
 */
export async function loadOffloadWasm(path?: string | URL): Promise<WebAssembly.Module> {
  const file = path ?? (await defaultOffloadWasmPath());
  if (file === undefined)
    throw new UnsupportedError('wasm', `no default path: this module (${import.meta.url}) is not inside the ${PACKAGE_NAME} package`, `loadOffloadWasm(path) with the path of ${OFFLOAD_WASM_PATH} (built by \`npm run build:wasm\`)`);
  const { readFile } = await import('node:fs/promises');
  let bytes: Buffer;
  try {
    bytes = await readFile(file);
  } catch {
    throw new UnsupportedError('wasm', `${String(file)} is missing`, 'a module built from asm/ with `npm run build:wasm`');
  }
  return WebAssembly.compile(new Uint8Array(bytes));
}
