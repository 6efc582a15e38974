/**
 * Node only: a software WebGPU adapter for machines without a GPU (CI, this
 * project's dev boxes). dawn.node needs a Vulkan driver; SwiftShader's, with its
 * Vulkan loader, ships inside the npm package `@sparticuz/chromium`. This
 * unpacks it once into node_modules/.cache and returns the environment a
 * process must start with (the loader path is read at process start, so the
 * variables have to be set before node runs: test workers and the CLI re-exec).
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { brotliDecompressSync } from 'node:zlib';

export interface SoftwareAdapterEnv {
  VK_ICD_FILENAMES: string;
  LD_LIBRARY_PATH: string;
}

/** The folder holding bin/swiftshader.tar.br, walking up from the package's entry file. */
function findArchive(from: string): string | null {
  for (let dir = dirname(from); dir !== dirname(dir); dir = dirname(dir)) {
    const archive = join(dir, 'bin', 'swiftshader.tar.br');
    if (existsSync(archive)) return archive;
  }
  return null;
}

/** Unpack SwiftShader (if not yet) and return the env that selects it, or null if `@sparticuz/chromium` is not installed. */
export function swiftShaderEnv(cacheRoot = join(process.cwd(), 'node_modules', '.cache', 'fastattention-swiftshader')): SoftwareAdapterEnv | null {
  let main: string;
  try {
    main = createRequire(import.meta.url).resolve('@sparticuz/chromium');
  } catch {
    return null;
  }
  const archive = findArchive(main);
  if (!archive) return null;
  const icd = join(cacheRoot, 'vk_swiftshader_icd.json');
  if (!existsSync(icd)) {
    mkdirSync(cacheRoot, { recursive: true });
    const tar = join(cacheRoot, 'swiftshader.tar');
    writeFileSync(tar, brotliDecompressSync(readFileSync(archive)));
    execFileSync('tar', ['-xf', tar, '-C', cacheRoot]);
  }
  const prev = process.env.LD_LIBRARY_PATH;
  return { VK_ICD_FILENAMES: icd, LD_LIBRARY_PATH: prev ? `${cacheRoot}:${prev}` : cacheRoot };
}
