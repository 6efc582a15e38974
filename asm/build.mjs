// Builds the offload WebAssembly module from source: asm/decodeAttention.ts → dist/wasm/offload.wasm.
//   node asm/build.mjs          (npm run build:wasm)
// SIMD and threads: the module imports one shared memory (initial 1 page, up to 4 GiB)
// and carries no runtime and no data segment, so every worker instantiates it on the
// same memory. The binary is never committed; CI builds it.
import asc from 'assemblyscript/asc';
import { mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const out = join(root, 'dist', 'wasm', 'offload.wasm');
mkdirSync(dirname(out), { recursive: true });
const { error, stderr } = await asc.main([
  join(root, 'asm', 'decodeAttention.ts'),
  '--outFile', out,
  '-O3', '--runtime', 'stub', '--noAssert', '--use', 'abort=',
  '--importMemory', '--sharedMemory', '--initialMemory', '1', '--maximumMemory', '65536',
  '--enable', 'simd', '--enable', 'threads',
]);
if (error) {
  console.error(stderr.toString());
  process.exit(1);
}
console.log(`built ${out}`);
