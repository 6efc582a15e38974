/**
 * Deterministic random weights for configs whose checkpoint is not at hand.
 * Each tensor gets its own seed (a hash of the model seed and the tensor name)
 * and value(i) = (2·u(i) − 1)·scale + shift, u from a murmur3 finalizer of the
 * element index: the exact arithmetic of shaders/llm/init.wgsl, so the GPU can
 * generate 13 GB of LLaMA2-7B weights in place and the CPU can reproduce any of them.
 */
import type { LlamaConfig } from './config.js';
import { f32ToF16 } from './safetensors.js';
import { llamaTensorSpecs, type TensorSpec } from './checkpoint.js';

/** murmur3's 32-bit finalizer, as in the WGSL kernels. */
export function fmix32(x: number): number {
  let h = x >>> 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b) >>> 0;
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35) >>> 0;
  h ^= h >>> 16;
  return h >>> 0;
}

/** Seed of one tensor: FNV-1a of its name, mixed with the model seed. */
export function tensorSeed(modelSeed: number, name: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193);
  return fmix32((h ^ Math.imul(modelSeed >>> 0, 0x9e3779b9)) >>> 0);
}

/** Distribution of one tensor: uniform on [shift − scale, shift + scale]. */
export interface InitRange {
  scale: number;
  shift: number;
}

/** Norm gains near 1, embeddings of unit scale, linear layers with variance 1/fan_in (activations stay O(1) through depth). */
export function initRange(spec: TensorSpec): InitRange {
  if (spec.kind === 'norm') return { scale: 0.1, shift: 1 };
  if (spec.kind === 'embedding') return { scale: 1, shift: 0 };
  return { scale: Math.sqrt(3 / spec.shape[1]), shift: 0 };
}

/** Element i of a tensor, in f32 arithmetic like the kernel. */
export function randomValue(i: number, key: number, range: InitRange): number {
  const u = Math.fround((fmix32((i ^ key) >>> 0) >>> 8) / 16777216);
  return Math.fround(Math.fround(Math.fround(2 * u - 1) * Math.fround(range.scale)) + Math.fround(range.shift));
}

/** A whole tensor: f32 values, or binary16 words when `dtype` is `F16`. */
export function randomTensor(seed: number, spec: TensorSpec, dtype: 'F32' | 'F16'): Float32Array | Uint16Array {
  const n = spec.shape.reduce((a, b) => a * b, 1);
  const key = fmix32(tensorSeed(seed, spec.name));
  const range = initRange(spec);
  if (dtype === 'F32') {
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) out[i] = randomValue(i, key, range);
    return out;
  }
  const out = new Uint16Array(n);
  for (let i = 0; i < n; i++) out[i] = f32ToF16(randomValue(i, key, range));
  return out;
}

/** Every tensor of a config, generated on the CPU (small models: tests, examples). */
export function randomCheckpointTensors(config: LlamaConfig, seed: number, dtype: 'F32' | 'F16'): Array<{ name: string; dtype: 'F32' | 'F16'; shape: number[]; data: Float32Array | Uint16Array }> {
  return llamaTensorSpecs(config).map((spec) => ({ name: spec.name, dtype, shape: [...spec.shape], data: randomTensor(seed, spec, dtype) }));
}
