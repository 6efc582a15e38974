/**
 * The Llama-family runner built on the attention library: checkpoints
 * (safetensors), weights on the GPU, a KV-cache interface, the runner with the
 * attention switch, and a float64 CPU model for testing.
 */
export { LLAMA2_7B, TINYLLAMA_1_1B, TINY_TEST_CONFIG, parseLlamaConfig, validateLlamaConfig, toHfConfig, parameterCount, type LlamaConfig } from './config.js';
export { CheckpointError, type CheckpointProblem } from './errors.js';
export {
  parseSafetensors,
  serializeSafetensors,
  tensorToF32,
  tensorToF16,
  f16ToF32,
  f32ToF16,
  bf16ToF32,
  SAFETENSORS_DTYPES,
  type SafetensorsDType,
  type SafetensorsTensor,
  type SafetensorsFile,
  type TensorToWrite,
} from './safetensors.js';
export { llamaTensorSpecs, checkCheckpointTensors, loadLlamaCheckpoint, memorySource, type CheckpointSource, type LoadedCheckpoint, type TensorSpec, type TensorKind } from './checkpoint.js';
export { randomCheckpointTensors, randomTensor, tensorSeed, fmix32 } from './random.js';
export { LlamaWeights, type WeightDType, type LlamaLayerWeights } from './weights.js';
export { ContiguousKvCache, PagedLlmKvCache, CAPACITY_MULTIPLE, type LlmKvCacheShape } from './kvCache.js';
export {
  LlamaRunner,
  GEMM_TILE_SMALL,
  GEMM_TILE_LARGE,
  MATRIX_GEMM_BK,
  type AttentionImpl,
  type GemmKind,
  type GemmTile,
  type LlamaRunnerOptions,
  type GenerateOptions,
  type GenerateResult,
} from './runner.js';
export { cpuLlamaLogits, cpuGreedyGenerate, argmaxWithMargin, type CpuWeights } from './cpuModel.js';
