/**
 * The public description of an attention call and its validation into a
 * normalized problem. Everything here runs before any GPU work, so every
 * misuse becomes a typed error that names the field.
 */
import { BufferError, ScaleError, ShapeError, UnsupportedError } from '../errors.js';
import { TENSOR_LAYOUTS, tensorElements, tensorStrides, type TensorDesc, type TensorLayout, type TensorStrides } from '../tiling/layout.js';
import type { TileConfig } from '../tiling/tileConfig.js';
import type { MatrixTileConfig } from '../tiling/matrixTile.js';
import type { KernelTier } from './tiers.js';
import { BufferUsage } from '../runtime/usage.js';
import type { PagedKvCache } from '../kvcache/pagedKvCache.js';

/** Head dimensions the kernels are built and tested for. */
export const SUPPORTED_HEAD_DIMS = [32, 64, 80, 96, 128, 256] as const;

/** Element types of Q/K/V/O in storage (f16 needs the device's `shader-f16`). */
export type AttentionDType = 'f32' | 'f16';
export const SUPPORTED_DTYPES: readonly AttentionDType[] = ['f32', 'f16'];

/** What a caller asks for when creating an attention operator. */
export interface AttentionOptions {
  /** Queries: `[B, H_q, S_q, D]`. */
  q: TensorDesc;
  /** Keys: `[B, H_kv, S_k, D]`; H_q must be a multiple of H_kv (grouped-query attention). Give `k` and `v`, or `cache`. */
  k?: TensorDesc;
  /** Values: same shape as `k`. */
  v?: TensorDesc;
  /**
   * A paged KV cache that supplies K and V (the fused prefill only; f16 or f32
   * vector tiers). Sequence b of the batch is cache sequence b; H_kv and D come
   * from the cache, S_k is its capacity, and key lengths default to the cache's
   * per-sequence lengths. `dtype` must be the cache's. Chunked prefill: append
   * the new tokens' K/V to the cache, then attend S_q new queries to all of it.
   */
  cache?: PagedKvCache;
  /** Output: same shape as `q` (its layout may differ); default `{ shape: q.shape, layout: q.layout }`. */
  o?: TensorDesc;
  /** Causal mask aligned to the end of the keys: query i sees keys ≤ i + (S_k − S_q). */
  causal?: boolean;
  /** Sliding window: each query sees its `window` most recent keys (itself included). */
  window?: number;
  /** Softmax scale; default 1/√D. */
  scale?: number;
  /** Storage type of Q/K/V/O; default `f32`. */
  dtype?: AttentionDType;
  /** Force a kernel tier (`subgroup-matrix`, `f16`, `f32`); default: chosen from the device and dtype. */
  tier?: KernelTier;
  /** Tile configuration of the fused kernel (a `MatrixTileConfig` on the subgroup-matrix tier); default: the best that fits the device. */
  tile?: TileConfig | MatrixTileConfig;
  /**
   * Report values that would overflow f16: staged inputs that are not finite or
   * exceed 65504 in magnitude (Q after scale·log2 e) set a flag that `run()`
   * turns into a {@link NumericOverflowError} and `readStatus()` returns. Always
   * on for tiers that round to f16 (f16, subgroup-matrix); on the f32 tier it is
   * off by default, and turning it on shows whether a workload could move to f16.
   */
  checkF16Range?: boolean;
}

/** A buffer argument: the buffer itself, or a buffer and a byte offset into it. */
export type BufferArg = GPUBuffer | { buffer: GPUBuffer; offset?: number };

/** Buffers of one call. */
export interface AttentionBuffers {
  q: BufferArg;
  /** Contiguous K (omit when the operator reads a paged cache). */
  k?: BufferArg;
  /** Contiguous V (omit when the operator reads a paged cache). */
  v?: BufferArg;
  o: BufferArg;
}

/** Per-call arguments besides the buffers. */
export interface AttentionCallOptions {
  /** Valid keys of each sequence (variable-length batches / padding): B integers in [0, S_k]; default S_k for all (a paged cache: its lengths, and at most those). */
  kvLengths?: ArrayLike<number>;
}

export interface AttentionProblem {
  /** K and V come from a paged KV cache (S_k is then its capacity per sequence). */
  paged: boolean;
  batch: number;
  headsQ: number;
  headsKV: number;
  seqQ: number;
  seqK: number;
  headDim: number;
  groupSize: number;
  causal: boolean;
  window: number | undefined;
  scale: number;
  dtype: AttentionDType;
  layouts: { q: TensorLayout; k: TensorLayout; v: TensorLayout; o: TensorLayout };
  strides: { q: TensorStrides; k: TensorStrides; v: TensorStrides; o: TensorStrides };
  /** Elements of each tensor. */
  elements: { q: number; k: number; v: number; o: number };
  bytesPerElement: number;
}

/** Check one tensor descriptor: four positive integer dims and a known layout (typed errors name `<name>.shape[i]` / `<name>.layout`). */
export function checkTensorDesc(name: string, desc: TensorDesc | undefined): void {
  if (!desc || !Array.isArray(desc.shape) || desc.shape.length !== 4)
    throw new ShapeError(`${name}.shape`, `expected [batch, heads, seq, headDim], got ${JSON.stringify(desc?.shape)}`, 'an array of 4 positive integers');
  desc.shape.forEach((x, i) => {
    if (!Number.isInteger(x) || x <= 0) throw new ShapeError(`${name}.shape[${i}]`, `must be a positive integer, got ${x}`, 'integers ≥ 1');
  });
  if (desc.layout !== undefined && !TENSOR_LAYOUTS.includes(desc.layout))
    throw new UnsupportedError(`${name}.layout`, `unknown layout ${JSON.stringify(desc.layout)}`, TENSOR_LAYOUTS.join(', '));
}

/**
 * K and V as the kernels see them — the caller's tensors, or a paged cache's
 * `[B, H_kv, capacity, D]` view — once exactly one of them was given and it
 * matches q's batch, head dim and storage type. `neitherField` is the field an
 * error names when neither was given. Shared by the prefill and decode operators.
 */
export function resolveKvSource(
  options: { k?: TensorDesc; v?: TensorDesc; cache?: PagedKvCache },
  B: number,
  D: number,
  dtype: string,
  neitherField: 'k' | 'cache',
): { k: TensorDesc; v: TensorDesc } {
  const { cache } = options;
  const hasKv = options.k !== undefined || options.v !== undefined;
  if (hasKv === (cache !== undefined))
    throw new ShapeError(hasKv ? 'cache' : neitherField, hasKv ? 'both contiguous k/v and a paged cache were given' : 'neither k/v nor a cache was given', 'either k and v, or cache');
  if (cache) {
    const g = cache.geometry;
    if (g.sequences !== B) throw new ShapeError('cache.sequences', `${g.sequences} cache sequences for a batch of ${B}`, `${B} (sequence b of the batch is cache sequence b)`);
    if (g.headDim !== D) throw new ShapeError('cache.headDim', `${g.headDim} differs from q's ${D}`, `${D}`);
    if (g.dtype !== dtype) throw new UnsupportedError('dtype', `${dtype} differs from the cache's ${g.dtype}`, g.dtype);
    const kv = { shape: [B, g.headsKV, g.maxPagesPerSequence * g.pageTokens, D] } as const;
    return { k: kv, v: kv };
  }
  checkTensorDesc('k', options.k);
  checkTensorDesc('v', options.v);
  const k = options.k!;
  const v = options.v!;
  const [Bk, , , Dk] = k.shape;
  if (Bk !== B) throw new ShapeError('k.shape[0]', `batch ${Bk} differs from q's ${B}`, `${B}`);
  if (Dk !== D) throw new ShapeError('k.shape[3]', `head dimension ${Dk} differs from q's ${D}`, `${D}`);
  k.shape.forEach((x, i) => {
    if (v.shape[i] !== x) throw new ShapeError(`v.shape[${i}]`, `${v.shape[i]} differs from k.shape[${i}] = ${x}`, `${x} (v must have k's shape)`);
  });
  return { k, v };
}

/**
 * For kernels of their own that take the common attention options (the Volta
 * kernel, the NPU Cube/Vector pipeline): refuse what only the fused prefill has
 * (a tier, its tile, the f16 range check) with an `UnsupportedError` naming the
 * field, before any GPU work, instead of ignoring it. `kernel` names the kernel
 * in the messages; `tileInstead` is the option it takes in place of a tile.
 */
export function rejectFusedKernelOptions(options: object, kernel: string, tileInstead: string): void {
  const o = options as AttentionOptions;
  if (o.tile !== undefined) throw new UnsupportedError('tile', `the fused kernel's tile does not apply to the ${kernel}`, `omit tile; use ${tileInstead}`);
  if (o.tier !== undefined) throw new UnsupportedError('tier', `${JSON.stringify(o.tier)}: the ${kernel} is a kernel of its own, not a tier of the fused one`, 'omit tier');
  if (o.checkF16Range !== undefined && o.checkF16Range !== false)
    throw new UnsupportedError('checkF16Range', `${JSON.stringify(o.checkF16Range)}: the ${kernel} has no f16 range check (it computes in f32)`, "false or omitted (the fused prefill's f32 tier runs the check)");
}

/**
 * Validate options into a normalized problem, or throw a typed error naming the
 * field. Only operators that read a paged cache pass `allowCache`; the others
 * reject `cache` instead of ignoring it.
 */
export function normalizeProblem(options: AttentionOptions, allowCache = false): AttentionProblem {
  const { q, cache } = options;
  checkTensorDesc('q', q);
  const o = options.o ?? { shape: q.shape, layout: q.layout };
  checkTensorDesc('o', o);
  const [B, Hq, Sq, D] = q.shape;
  if (!(SUPPORTED_HEAD_DIMS as readonly number[]).includes(D))
    throw new UnsupportedError('q.shape[3]', `head dimension ${D} is not supported`, SUPPORTED_HEAD_DIMS.join(', '));
  const dtype = options.dtype ?? 'f32';
  if (!SUPPORTED_DTYPES.includes(dtype)) throw new UnsupportedError('dtype', `${JSON.stringify(dtype)} is not a storage type`, SUPPORTED_DTYPES.join(', '));
  if (cache !== undefined && !allowCache)
    throw new UnsupportedError('cache', 'this operator reads contiguous K/V only', 'k and v tensors (the fused prefill and the decode operator read a paged cache)');
  const { k, v } = resolveKvSource(options, B, D, dtype, 'k');
  const [, Hkv, Sk] = k.shape;
  q.shape.forEach((x, i) => {
    if (o.shape[i] !== x) throw new ShapeError(`o.shape[${i}]`, `${o.shape[i]} differs from q.shape[${i}] = ${x}`, `${x} (o must have q's shape)`);
  });
  if (Hq % Hkv !== 0)
    throw new ShapeError('q.shape[1]', `${Hq} query heads is not a multiple of ${Hkv} key/value heads${cache ? ' (the cache\'s headsKV)' : ''}`, `a multiple of ${Hkv}`);
  if (options.checkF16Range !== undefined && typeof options.checkF16Range !== 'boolean')
    throw new UnsupportedError('checkF16Range', `must be a boolean, got ${JSON.stringify(options.checkF16Range)}`, 'true, false');
  const scale = options.scale ?? 1 / Math.sqrt(D);
  if (typeof scale !== 'number' || !Number.isFinite(scale) || scale === 0)
    throw new ScaleError('scale', `must be a finite non-zero number, got ${scale}`, 'finite numbers ≠ 0 (default 1/√headDim)');
  if (options.window !== undefined && (!Number.isInteger(options.window) || options.window <= 0))
    throw new ShapeError('window', `must be a positive integer, got ${options.window}`, 'integers ≥ 1 (or omit for no window)');
  const layouts = { q: q.layout ?? 'BHSD', k: k.layout ?? 'BHSD', v: v.layout ?? 'BHSD', o: o.layout ?? 'BHSD' } as const;
  return {
    paged: cache !== undefined,
    batch: B,
    headsQ: Hq,
    headsKV: Hkv,
    seqQ: Sq,
    seqK: Sk,
    headDim: D,
    groupSize: Hq / Hkv,
    causal: options.causal ?? false,
    window: options.window,
    scale,
    dtype,
    layouts,
    strides: {
      q: tensorStrides(layouts.q, Hq, Sq, D),
      k: tensorStrides(layouts.k, Hkv, Sk, D),
      v: tensorStrides(layouts.v, Hkv, Sk, D),
      o: tensorStrides(layouts.o, Hq, Sq, D),
    },
    elements: { q: tensorElements(q.shape), k: tensorElements(k.shape), v: tensorElements(v.shape), o: tensorElements(o.shape) },
    bytesPerElement: dtype === 'f16' ? 2 : 4,
  };
}

/** Validate per-sequence key lengths into a Uint32Array of B entries. */
export function normalizeKvLengths(problem: AttentionProblem, kvLengths: ArrayLike<number> | undefined, out: Uint32Array): Uint32Array {
  if (kvLengths === undefined) return out.fill(problem.seqK);
  if (kvLengths.length !== problem.batch)
    throw new ShapeError('kvLengths', `has ${kvLengths.length} entries`, `exactly one per sequence (${problem.batch})`);
  for (let i = 0; i < kvLengths.length; i++) {
    const n = kvLengths[i];
    if (!Number.isInteger(n) || n < 0 || n > problem.seqK) throw new ShapeError(`kvLengths[${i}]`, `got ${n}`, `integers in [0, ${problem.seqK}]`);
    out[i] = n;
  }
  return out;
}

export interface ResolvedBinding {
  buffer: GPUBuffer;
  offset: number;
  size: number;
}

/** Check one buffer argument against what the kernel will read or write. */
export function resolveBuffer(
  field: string,
  arg: BufferArg | undefined,
  elements: number,
  bytesPerElement: number,
  limits: { minStorageBufferOffsetAlignment: number; maxStorageBufferBindingSize: number },
): ResolvedBinding {
  if (!arg) throw new BufferError(field, 'is missing', 'a GPUBuffer or { buffer, offset }');
  const wrapped = 'buffer' in arg;
  const buffer = wrapped ? arg.buffer : arg;
  const offset = wrapped ? (arg.offset ?? 0) : 0;
  if (!buffer || typeof (buffer as GPUBuffer).usage !== 'number') throw new BufferError(field, 'is not a GPUBuffer', 'a GPUBuffer or { buffer, offset }');
  if ((buffer.usage & BufferUsage.STORAGE) === 0) throw new BufferError(`${field}.usage`, 'lacks GPUBufferUsage.STORAGE', 'buffers created with STORAGE usage');
  if (!Number.isInteger(offset) || offset < 0 || offset % limits.minStorageBufferOffsetAlignment !== 0)
    throw new BufferError(`${field}.offset`, `${offset} is not a multiple of ${limits.minStorageBufferOffsetAlignment}`, `non-negative multiples of ${limits.minStorageBufferOffsetAlignment}`);
  const size = elements * bytesPerElement;
  if (offset + size > buffer.size)
    throw new BufferError(`${field}.size`, `needs ${size} bytes at offset ${offset} but the buffer has ${buffer.size}`, `buffers of at least ${offset + size} bytes`);
  if (size > limits.maxStorageBufferBindingSize)
    throw new BufferError(field, `a binding of ${size} bytes exceeds maxStorageBufferBindingSize (${limits.maxStorageBufferBindingSize})`, `at most ${limits.maxStorageBufferBindingSize} bytes per tensor (split the batch, or use the paged KV cache)`);
  return { buffer, offset, size };
}

/** Q, K, V and O of a contiguous problem, each checked with {@link resolveBuffer}, in that order. */
export function resolveAttentionBuffers(
  buffers: AttentionBuffers,
  p: AttentionProblem,
  limits: { minStorageBufferOffsetAlignment: number; maxStorageBufferBindingSize: number },
  bytesPerElement = p.bytesPerElement,
): { q: ResolvedBinding; k: ResolvedBinding; v: ResolvedBinding; o: ResolvedBinding } {
  return {
    q: resolveBuffer('buffers.q', buffers.q, p.elements.q, bytesPerElement, limits),
    k: resolveBuffer('buffers.k', buffers.k, p.elements.k, bytesPerElement, limits),
    v: resolveBuffer('buffers.v', buffers.v, p.elements.v, bytesPerElement, limits),
    o: resolveBuffer('buffers.o', buffers.o, p.elements.o, bytesPerElement, limits),
  };
}
