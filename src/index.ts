/**
 * fastattention-webgpu: exact attention on WebGPU.
 *
 * @example
 * ```ts
 * import { FastAttentionRuntime } from 'fastattention-webgpu';
 * const rt = await FastAttentionRuntime.create();
 * const op = await rt.createPrefill({ q: { shape: [1, 8, 512, 64] }, k: { shape: [1, 8, 512, 64] }, v: { shape: [1, 8, 512, 64] }, causal: true });
 * await op.run({ q, k, v, o });
 * ```
 */
export * from './errors.js';
export { FastAttentionRuntime, acquireDevice, type RuntimeOptions } from './runtime/runtime.js';
export type { DeviceCapabilities, SubgroupMatrixConfig } from './runtime/capabilities.js';
export { BufferLedger, type LedgerEntry } from './runtime/memory.js';
export { BufferUsage, MapMode } from './runtime/usage.js';
// MAX_PREFILL_POOL_BUFFERS: most pool buffers a PagedKvCache may have for the prefill to read it (decode binds up to MAX_POOL_BUFFERS).
export { FlashAttentionPrefill, MAX_PREFILL_POOL_BUFFERS } from './attention/flashAttentionPrefill.js';
export { StandardAttention, type StandardAttentionOptions } from './attention/standardAttention.js';
export * from './decode/flashDecode.js';
export * from './kvcache/pagedKvCache.js';
export {
  SUPPORTED_HEAD_DIMS,
  SUPPORTED_DTYPES,
  normalizeProblem,
  type AttentionOptions,
  type AttentionBuffers,
  type AttentionCallOptions,
  type AttentionProblem,
  type AttentionDType,
  type BufferArg,
} from './attention/problem.js';
export type { EncodeTarget } from './attention/encode.js';
export { chooseTier, tierAvailability, KERNEL_TIERS, type KernelTier, type TierChoice, type TierAvailability } from './attention/tiers.js';
export { selfCheck, type SelfCheckOptions, type SelfCheckReport, type SelfCheckCase } from './bench/selfCheck.js';
export { runBench, formatBenchTable, type BenchCase, type BenchOptions, type BenchReport, type BenchRow, type BenchVariant } from './bench/suite.js';
export { timeGpu, type Timing, type TimingOptions } from './bench/timing.js';
export * from './tiling/matrixTile.js';
export * from './tuning/tuning.js';
export { tune, type TuneOptions } from './tuning/tuner.js';
export { SHIPPED_TUNING, shippedTuningFor } from './tuning/shipped.js';
export { attentionFlops, unmaskedPairs } from './attention/flops.js';
export { cpuAttention } from './reference/cpuAttention.js';
export * from './tiling/layout.js';
export * from './tiling/mask.js';
export * from './tiling/tileConfig.js';
