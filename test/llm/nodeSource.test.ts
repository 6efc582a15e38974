// Checkpoints in a directory on disk (src/llm/nodeSource.ts, shipped as
// `fastattention-webgpu/llm/node`): written by writeCheckpointFiles, read back by
// directorySource, and loaded exactly as from memory.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { TINY_TEST_CONFIG, toHfConfig, type LlamaConfig } from '../../src/llm/config.js';
import { loadLlamaCheckpoint, memorySource } from '../../src/llm/checkpoint.js';
import { randomCheckpointTensors } from '../../src/llm/random.js';
import { serializeSafetensors } from '../../src/llm/safetensors.js';
import { directorySource, writeCheckpointFiles } from '../../src/llm/node.js';

const small: LlamaConfig = { ...TINY_TEST_CONFIG, numLayers: 1, vocabSize: 64 };

describe('checkpoint directories (llm/node)', async () => {
  const root = await mkdtemp(join(tmpdir(), 'fastattn-ckpt-'));
  afterAll(() => rm(root, { recursive: true, force: true }));

  it('writes a checkpoint into a new directory and loads it back unchanged', async () => {
    const files = new Map([
      ['config.json', new TextEncoder().encode(JSON.stringify(toHfConfig(small)))],
      ['model.safetensors', serializeSafetensors(randomCheckpointTensors(small, 5, 'F16'))],
    ]);
    const dir = join(root, 'nested', 'tiny');
    await writeCheckpointFiles(dir, files);
    const source = directorySource(dir);
    expect(await source.read('model.safetensors')).toEqual(files.get('model.safetensors'));
    const fromDisk = await loadLlamaCheckpoint(source);
    const fromMemory = await loadLlamaCheckpoint(memorySource(files));
    expect(fromDisk.config).toEqual(small);
    expect([...fromDisk.tensors.keys()].sort()).toEqual([...fromMemory.tensors.keys()].sort());
    for (const [name, t] of fromMemory.tensors) {
      const d = fromDisk.tensors.get(name)!;
      expect([d.dtype, d.shape]).toEqual([t.dtype, t.shape]);
      expect(d.data).toEqual(t.data);
    }
  });

  it('reads a missing file as null (how loadLlamaCheckpoint tells sharded from single-file) and rethrows other errors', async () => {
    expect(await directorySource(root).read('model.safetensors.index.json')).toBeNull();
    // A directory where a file is expected: EISDIR, not a missing file.
    await expect(directorySource(dirname(root)).read(basename(root))).rejects.toMatchObject({ code: 'EISDIR' });
  });
});
