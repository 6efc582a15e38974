/**
 * CPU-GPU cooperative decoding for contexts that do not fit on the GPU: the
 * planner (L_cpu / L_gpu), the host KV cache in shared memory, the WebAssembly
 * SIMD decode-attention worker pool, and a stand-in decoder running the
 * cooperative step and the classical-offloading baseline. Node-only helpers
 * (worker threads, loading the .wasm) are in `./node.js`, the package entry
 * `fastattention-webgpu/offload/node` (which also re-exports all of this one).
 */
export { planOffload, formatPlan, budgetForGpuTokens, maxCooperativeContext, LLAMA2_7B, type ModelConfig, type PlanOptions, type OffloadPlan, type OffloadDType } from './planner.js';
export { HostKvCache, splitHostKv, assertSharedMemory, MAX_HOST_CACHE_BYTES, type HostKvPart, type HostKvCacheOptions, type HostKvDType, type HostKvLayout } from './hostKvCache.js';
export { CpuAttentionPool, webWorkerSpawner, type CpuAttentionOptions, type AttendCall, type PoolWorker, type WorkerSpawner } from './cpuAttention.js';
export { OffloadDecoder, type OffloadDecoderOptions, type OffloadMode, type PrefillTiming } from './decoder.js';
export { toHalf, fromHalf } from './f16.js';
