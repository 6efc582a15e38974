/** Node helpers for checkpoints on disk (kept out of the browser entry). */
import { readFile, writeFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { CheckpointSource } from './checkpoint.js';

/** A checkpoint directory in the Hugging Face layout. */
export function directorySource(dir: string): CheckpointSource {
  return {
    async read(name) {
      try {
        return new Uint8Array(await readFile(join(dir, name)));
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
        throw e;
      }
    },
  };
}

/** Write files (name → bytes) into a directory, creating it. */
export async function writeCheckpointFiles(dir: string, files: ReadonlyMap<string, Uint8Array>): Promise<void> {
  await mkdir(dir, { recursive: true });
  for (const [name, bytes] of files) await writeFile(join(dir, name), bytes);
}
