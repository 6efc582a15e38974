/** Offload test helpers: the WebAssembly module (built from asm/ if a fresh checkout lacks it). */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { loadOffloadWasm } from '../../src/offload/node.js';

let module: Promise<WebAssembly.Module> | undefined;

export function offloadModule(): Promise<WebAssembly.Module> {
  if (!existsSync('dist/wasm/offload.wasm')) execFileSync(process.execPath, ['asm/build.mjs'], { stdio: 'inherit' });
  module ??= loadOffloadWasm();
  return module;
}
