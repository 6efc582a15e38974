/**
 * Node entry of the runner (`fastattention-webgpu/llm/node`): everything in
 * `fastattention-webgpu/llm`, plus checkpoints in a directory on disk
 * (`node:fs`). Kept apart from `fastattention-webgpu/llm` so browser bundles
 * never import `node:*`.
 *
 * @example
 * ```ts
 * import { createNodeRuntime } from 'fastattention-webgpu/node';
 * import { LlamaRunner, LlamaWeights, directorySource, loadLlamaCheckpoint } from 'fastattention-webgpu/llm/node';
 * const rt = await createNodeRuntime();
 * const ckpt = await loadLlamaCheckpoint(directorySource('TinyLlama-1.1B')); // a Hugging Face directory
 * const runner = await LlamaRunner.create(rt, LlamaWeights.fromCheckpoint(rt, ckpt, 'f16'), { attention: 'fast', maxBatch: 1, maxSeqLen: 1024 });
 * ```
 */
export * from './index.js';
export { directorySource, writeCheckpointFiles } from './nodeSource.js';
