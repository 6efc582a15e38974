/**
 * Node-only pieces of the offload path: worker threads and loading the
 * WebAssembly module built by `npm run build:wasm`. Kept apart so browser
 * bundles never import node:*.
 */
import type { PoolWorker, WorkerSpawner } from './cpuAttention.js';
import { UnsupportedError } from '../errors.js';

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

/**
 * Compile dist/wasm/offload.wasm (or `path`). Relative paths resolve from the
 * working directory, the repository root for tests, benchmarks and the CLI.
 */
export async function loadOffloadWasm(path = 'dist/wasm/offload.wasm'): Promise<WebAssembly.Module> {
  const { readFile } = await import('node:fs/promises');
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch {
    throw new UnsupportedError('wasm', `${path} is missing`, 'a module built from asm/ with `npm run build:wasm`');
  }
  return WebAssembly.compile(new Uint8Array(bytes));
}
