// Where loadOffloadWasm() finds the module by default: this package's
// dist/wasm/offload.wasm (what `npm run build:wasm` writes, and `files: ["dist"]`
// ships), found from the module's own location, so it loads whatever the
// working directory: from the source tree (these tests), the bundles under
// dist/, and an installed package (node_modules/fastattention-webgpu/dist/lib).
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { UnsupportedError } from '../../src/errors.js';
import { defaultOffloadWasmPath, loadOffloadWasm, OFFLOAD_WASM_PATH } from '../../src/offload/node.js';
import { rejects } from '../helpers/errors.js';
import { offloadModule } from './helpers.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const scratch = mkdtempSync(join(tmpdir(), 'offload-wasm-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

/** A directory with a package.json of that name; returns its path. */
function pkgDir(dir: string, name: string): string {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name }));
  return dir;
}

describe('the default offload.wasm', () => {
  it('is the repository\'s dist/wasm/offload.wasm when running from source, and exists after `npm run build:wasm`', async () => {
    await offloadModule(); // builds it from asm/ in a fresh checkout, as `npm test` does first
    const path = await defaultOffloadWasmPath();
    expect(path).toBe(join(root, OFFLOAD_WASM_PATH));
    expect(existsSync(path!)).toBe(true);
    const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { files: string[] };
    expect(pkg.files.some((f) => OFFLOAD_WASM_PATH === f || OFFLOAD_WASM_PATH.startsWith(`${f}/`)), `package.json files ${pkg.files} ship ${OFFLOAD_WASM_PATH}`).toBe(true);
  });

  it('loads whatever the working directory', async () => {
    await offloadModule();
    const cwd = process.cwd();
    process.chdir(scratch); // no dist/ here: the old cwd-relative default failed
    try {
      const m = await loadOffloadWasm();
      expect(m).toBeInstanceOf(WebAssembly.Module);
      expect(WebAssembly.Module.imports(m).some((i) => i.kind === 'memory')).toBe(true);
    } finally {
      process.chdir(cwd);
    }
  });

  it('resolves from the built and installed layouts: the nearest enclosing fastattention-webgpu package', async () => {
    const app = pkgDir(join(scratch, 'app'), 'some-app');
    const installed = pkgDir(join(app, 'node_modules', 'fastattention-webgpu'), 'fastattention-webgpu');
    const want = join(installed, OFFLOAD_WASM_PATH);
    for (const file of ['dist/lib/offload-node.js', 'dist/lib/cpuAttention-abc123.js', 'dist/benchOffload.js', 'src/offload/node.ts'])
      expect(await defaultOffloadWasmPath(pathToFileURL(join(installed, file))), file).toBe(want);
    // Bundled into an application: no default, and loadOffloadWasm() says to pass a path.
    expect(await defaultOffloadWasmPath(pathToFileURL(join(app, 'dist', 'app.js')))).toBeUndefined();
    expect(await defaultOffloadWasmPath('data:text/javascript,0')).toBeUndefined();
  });

  it('an explicit path that is missing is an UnsupportedError naming wasm', async () => {
    const e = await rejects(loadOffloadWasm(join(scratch, 'nope.wasm')), UnsupportedError, 'wasm');
    expect(e.message).toContain('nope.wasm');
  });
});
