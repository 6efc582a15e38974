/**
 * Split-KV decode ("flash-decoding"): 1..16 queries per sequence against a
 * long KV cache, contiguous or paged. Many workgroups each reduce one slice of
 * the keys to (partial output, max, sum); a small combine pass merges them.
 * Query heads that share a KV head are processed together, so K/V are read once
 * per row block. Creating the operator validates everything and compiles (or
 * reuses) both pipelines and sizes the workspace; encoding allocates nothing.
 */
import decodeWgsl from '../../shaders/flashDecode.wgsl?raw';
import { ScaleError, ShapeError, TileConfigError, UnsupportedError } from '../errors.js';
import { encodeDispatch, submitAndWait, type EncodeTarget } from '../attention/encode.js';
import {
  chooseDecodeSplit,
  chooseDecodeTiling,
  decodeComputeUnits,
  decodeKernelConsts,
  decodeKernelCounts,
  DEFAULT_WORKGROUPS_PER_UNIT,
  type DecodeReduction,
  type DecodeShape,
  type DecodeSplit,
  type DecodeTiling,
} from './decodePlan.js';
import { selectWgslSections } from '../runtime/wgslSections.js';
import { SUPPORTED_HEAD_DIMS, checkTensorDesc, resolveBuffer, resolveKvSource, type BufferArg, type ResolvedBinding } from '../attention/problem.js';
import { MAX_POOL_BUFFERS, type KvDType, type PagedKvCache } from '../kvcache/pagedKvCache.js';
import type { FastAttentionRuntime } from '../runtime/runtime.js';
import { PARAMS_BINDING, type CompiledKernel, type KernelSource } from '../runtime/pipelineCache.js';
import { ParamsPool } from '../runtime/paramsPool.js';
import { BufferUsage } from '../runtime/usage.js';
import { tensorElements, tensorStrides, type TensorDesc, type TensorLayout, type TensorStrides } from '../tiling/layout.js';

export * from './decodePlan.js';
export { selectWgslSections } from '../runtime/wgslSections.js';

/** The raw kernel file, `//#if` sections and `//#for` loops included (not WGSL until expanded); pipelines compile {@link decodeKernelVariant}'s output, its loops unrolled by the pipeline cache with {@link decodeKernelCounts}. */
export const flashDecodeKernel: KernelSource = { name: 'flashDecode', code: decodeWgsl };

/** Device features a decode pipeline is built with (each selects `//#if` sections of shaders/flashDecode.wgsl). */
export interface DecodeKernelFeatures {
  /** Widen f16 K/V with native f16 conversions (`shader-f16`) instead of unpack2x16float. */
  nativeF16: boolean;
  /** Sum the lanes' partial dots with subgroup shuffles (`subgroups`). */
  subgroups: boolean;
}

/**
 * The split/combine kernel source for a feature set (its `//#if` sections kept
 * or blanked, named after the features) and the `enable` directives it needs.
 * Its `//#for` loops are left for the pipeline cache to unroll with
 * {@link decodeKernelCounts} of the consts it is specialized with.
 */
export function decodeKernelVariant(f: DecodeKernelFeatures): { kernel: KernelSource; enables: string[] } {
  const enables = [...(f.nativeF16 ? ['f16'] : []), ...(f.subgroups ? ['subgroups'] : [])];
  const sections = selectWgslSections(decodeWgsl, { NATIVE_F16: f.nativeF16, SUBGROUPS: f.subgroups });
  return { kernel: { name: `flashDecode${enables.map((e) => `+${e}`).join('')}`, code: sections }, enables };
}

function isPass(t: EncodeTarget): t is GPUComputePassEncoder {
  return typeof (t as GPUComputePassEncoder).dispatchWorkgroups === 'function';
}

/** Most queries per sequence (speculative decoding drafts). */
export const MAX_DECODE_QUERIES = 16;

export interface DecodeOptions {
  /** Queries `[B, H_q, S_q, D]`, S_q ≤ 16. */
  q: TensorDesc;
  /** Output, same shape as `q`; default `{ shape: q.shape, layout: q.layout }`. */
  o?: TensorDesc;
  /** Contiguous keys `[B, H_kv, S_k, D]` (give `k` and `v`, or `cache`). */
  k?: TensorDesc;
  /** Contiguous values, same shape as `k`. */
  v?: TensorDesc;
  /** A paged cache; sequence b of the batch is cache sequence b. */
  cache?: PagedKvCache;
  /** Causal offset for S_q > 1: query i sees keys < kvLen − S_q + i + 1. Default true. */
  causal?: boolean;
  /** Softmax scale; default 1/√D. */
  scale?: number;
  /** Storage type of Q, K, V and O; default `f32`. Must match the cache's. */
  dtype?: KvDType;
  /** Compute units (SMs, CUs) the split count is planned for; default {@link decodeComputeUnits} of the adapter. */
  computeUnits?: number;
  /**
   * Workgroups that fill the device (compute units × workgroups per unit); when
   * given, overrides `computeUnits` with ⌈targetWorkgroups / workgroupsPerUnit⌉.
   */
  targetWorkgroups?: number;
  /** Resident workgroups per compute unit needed to saturate it; default 2. */
  workgroupsPerUnit?: number;
  /** Fewest keys per split; default 2 steps. */
  minSplitKeys?: number;
  /** Upper bound on invocations per workgroup of the split pass (64, 128 or 256); default 256. */
  threads?: number;
  /** 16-byte words of a key row per lane; default: fewest with at most 32 lanes per row. */
  wordsPerLane?: number;
  /** Keys per key slot per step (1, 2, 4, 8); default 8. */
  keysPerSlot?: number;
  /** Load the next step's K/V before computing the current one; default true. */
  prefetch?: boolean;
  /** Lane reduction: `workgroup` (memory and barriers, the default: fastest measured on an H100) or `subgroup` (shuffles; needs the `subgroups` feature). */
  reduction?: DecodeReduction;
  /** f16 storage: widen with native f16 conversions instead of unpack2x16float; default true when the device has `shader-f16` (no measurable difference on an H100). */
  nativeF16?: boolean;
}

export interface DecodeBuffers {
  q: BufferArg;
  o: BufferArg;
  /** Contiguous mode only. */
  k?: BufferArg;
  v?: BufferArg;
}

export interface DecodeCallOptions {
  /** Keys of each sequence: B integers; default S_k (contiguous) or the cache's lengths (paged). */
  kvLengths?: ArrayLike<number>;
  /** Force this many splits (1..tiling.maxSplits) instead of the planned count (benchmarks, tests). */
  splits?: number;
}

/** The validated shape of a decode operator. */
export interface DecodeProblem extends DecodeShape {
  headsQ: number;
  causal: boolean;
  scale: number;
  paged: boolean;
  layouts: { q: TensorLayout; o: TensorLayout; k: TensorLayout; v: TensorLayout };
  strides: { q: TensorStrides; o: TensorStrides; k: TensorStrides; v: TensorStrides };
  elements: { q: number; o: number; k: number; v: number };
  bytesPerElement: number;
}

/** Validate decode options into a {@link DecodeProblem}, or throw a typed error naming the field. */
export function normalizeDecodeProblem(options: DecodeOptions): DecodeProblem {
  checkTensorDesc('q', options.q);
  const o = options.o ?? { shape: options.q.shape, layout: options.q.layout };
  checkTensorDesc('o', o);
  const [B, Hq, Sq, D] = options.q.shape;
  if (Sq > MAX_DECODE_QUERIES) throw new ShapeError('q.shape[2]', `${Sq} queries per sequence`, `integers in [1, ${MAX_DECODE_QUERIES}] (use prefill for more)`);
  if (!(SUPPORTED_HEAD_DIMS as readonly number[]).includes(D))
    throw new UnsupportedError('q.shape[3]', `head dimension ${D} is not supported`, SUPPORTED_HEAD_DIMS.join(', '));
  options.q.shape.forEach((x, i) => {
    if (o.shape[i] !== x) throw new ShapeError(`o.shape[${i}]`, `${o.shape[i]} differs from q.shape[${i}] = ${x}`, `${x} (o must have q's shape)`);
  });
  const dtype = options.dtype ?? 'f32';
  if (dtype !== 'f32' && dtype !== 'f16') throw new UnsupportedError('dtype', `${JSON.stringify(dtype)} is not supported`, 'f32, f16');
  const { k: kDesc, v: vDesc } = resolveKvSource(options, B, D, dtype, 'cache');
  const [, Hkv, Sk] = kDesc.shape;
  if (Hq % Hkv !== 0) throw new ShapeError('q.shape[1]', `${Hq} query heads is not a multiple of ${Hkv} key/value heads`, `a multiple of ${Hkv}`);
  const scale = options.scale ?? 1 / Math.sqrt(D);
  if (typeof scale !== 'number' || !Number.isFinite(scale) || scale === 0)
    throw new ScaleError('scale', `must be a finite non-zero number, got ${scale}`, 'finite numbers ≠ 0 (default 1/√headDim)');
  const layouts = { q: options.q.layout ?? 'BHSD', o: o.layout ?? 'BHSD', k: kDesc.layout ?? 'BHSD', v: vDesc.layout ?? 'BHSD' } as const;
  return {
    batch: B,
    headsQ: Hq,
    headsKV: Hkv,
    seqQ: Sq,
    seqK: Sk,
    headDim: D,
    groupSize: Hq / Hkv,
    causal: options.causal ?? true,
    scale,
    dtype,
    paged: options.cache !== undefined,
    layouts,
    strides: {
      q: tensorStrides(layouts.q, Hq, Sq, D),
      o: tensorStrides(layouts.o, Hq, Sq, D),
      k: tensorStrides(layouts.k, Hkv, Sk, D),
      v: tensorStrides(layouts.v, Hkv, Sk, D),
    },
    elements: { q: tensorElements(options.q.shape), o: tensorElements(o.shape), k: tensorElements(kDesc.shape), v: tensorElements(vDesc.shape) },
    bytesPerElement: dtype === 'f16' ? 2 : 4,
  };
}

export class FlashDecode {
  /** The workspace of partial outputs (runtime-owned, in the ledger). */
  readonly workspace: GPUBuffer;
  private readonly kvScratch: Uint32Array;
  private readonly combineGroups: [number, number, number];
  private lastSplit: DecodeSplit = { splits: 0, splitLen: 0 };

  private constructor(
    private readonly runtime: FastAttentionRuntime,
    readonly problem: DecodeProblem,
    readonly tiling: DecodeTiling,
    /** f16 storage is widened with native f16 conversions. */
    readonly nativeF16: boolean,
    private readonly cache: PagedKvCache | undefined,
    private readonly split: CompiledKernel,
    private readonly combine: CompiledKernel,
    private readonly params: ParamsPool,
    private readonly dummy: GPUBuffer,
    workspace: GPUBuffer,
  ) {
    this.workspace = workspace;
    this.kvScratch = new Uint32Array(problem.batch);
    this.combineGroups = [problem.headsQ * problem.seqQ, problem.batch, 1];
  }

  /**
   * Validate the problem against the device, compile (or fetch) the split and
   * combine pipelines, and create the workspace.
   *
   * @example
   * ```ts
   * const op = await FlashDecode.create(rt, { q: { shape: [1, 32, 1, 128] }, cache, dtype: 'f16' });
   * op.encode(encoder, { q, o });
   * ```
   */
  static async create(runtime: FastAttentionRuntime, options: DecodeOptions): Promise<FlashDecode> {
    runtime.assertAlive();
    const problem = normalizeDecodeProblem(options);
    const L = runtime.capabilities.limits;
    const perUnit = options.workgroupsPerUnit ?? DEFAULT_WORKGROUPS_PER_UNIT;
    let computeUnits = options.computeUnits ?? decodeComputeUnits(runtime.capabilities.adapter);
    if (options.targetWorkgroups !== undefined) {
      const t = options.targetWorkgroups;
      if (!Number.isInteger(t) || t <= 0) throw new ShapeError('targetWorkgroups', `must be a positive integer, got ${t}`, 'integers ≥ 1');
      computeUnits = Math.ceil(t / (Number.isInteger(perUnit) && perUnit > 0 ? perUnit : 1));
    }
    const tiling = chooseDecodeTiling(problem, L, {
      computeUnits,
      workgroupsPerUnit: perUnit,
      minSplitKeys: options.minSplitKeys,
      // SwiftShader runs invocations one after another between barriers: small workgroups.
      threads: options.threads ?? (runtime.capabilities.adapter.isSoftware ? 64 : undefined),
      wordsPerLane: options.wordsPerLane,
      keysPerSlot: options.keysPerSlot,
      prefetch: options.prefetch,
      subgroupMinSize: runtime.capabilities.features.subgroups ? (runtime.capabilities.subgroupSize?.min ?? 4) : 0,
      reduction: options.reduction,
    });
    if (tiling.threads > L.maxComputeInvocationsPerWorkgroup)
      throw new TileConfigError('threads', `${tiling.threads} invocations exceed the device's ${L.maxComputeInvocationsPerWorkgroup}`, `at most ${L.maxComputeInvocationsPerWorkgroup}`);
    if (tiling.workspaceBytes > L.maxStorageBufferBindingSize)
      throw new ShapeError('q.shape', `the split workspace needs ${tiling.workspaceBytes} bytes`, `at most ${L.maxStorageBufferBindingSize} (fewer sequences or computeUnits)`);
    const f16 = problem.dtype === 'f16';
    const hasF16 = runtime.capabilities.features.shaderF16;
    if (options.nativeF16 === true && !hasF16) throw new UnsupportedError('nativeF16', 'the device has no shader-f16 feature', 'false');
    // Only f16 storage has anything to widen.
    const nativeF16 = f16 && (options.nativeF16 ?? hasF16);
    const consts = decodeKernelConsts(problem, tiling, options.cache ? options.cache.pools.length : 1);
    const variant = decodeKernelVariant({ nativeF16, subgroups: tiling.reduction === 'subgroup' });
    const types = { enables: variant.enables };
    const unroll = decodeKernelCounts(consts);
    const [split, combine] = await Promise.all([
      runtime.pipelines.get(variant.kernel, 'main', consts, types, unroll),
      runtime.pipelines.get(variant.kernel, 'combine', consts, types, unroll),
    ]);
    const layout = split.bindings.find((b) => b.name === PARAMS_BINDING)!.struct!;
    const params = new ParamsPool(runtime.device.queue, runtime.ledger, 'flashDecode', layout, problem.batch, L.minStorageBufferOffsetAlignment);
    const workspace = runtime.ledger.create('flashDecode', { label: 'flashDecode.workspace', size: tiling.workspaceBytes, usage: BufferUsage.STORAGE });
    // Bound in place of unused pools (and of the page table in contiguous mode).
    const dummy = runtime.ledger.create('flashDecode', { label: 'flashDecode.unusedBinding', size: 16, usage: BufferUsage.STORAGE });
    return new FlashDecode(runtime, problem, tiling, nativeF16, options.cache, split, combine, params, dummy, workspace);
  }

  /** Splits used by the most recent encode. */
  get lastSplits(): DecodeSplit {
    return { ...this.lastSplit };
  }

  /** How a call whose longest sequence has `maxKv` keys is split ({@link chooseDecodeSplit}). */
  splitFor(maxKv: number): DecodeSplit {
    const t = this.tiling;
    return chooseDecodeSplit({
      maxKv,
      baseWorkgroups: this.problem.batch * this.problem.headsKV * t.rowBlocks,
      computeUnits: t.computeUnits,
      workgroupsPerUnit: t.workgroupsPerUnit,
      stepKeys: t.blockN,
      minSplitKeys: t.minSplitKeys,
      maxSplits: t.maxSplits,
    });
  }

  /**
   * Record the decode (split pass, then combine pass) into the caller's command
   * encoder or open compute pass. No buffer is created.
   *
   * @example
   * ```ts
   * const enc = device.createCommandEncoder();
   * op.encode(enc, { q: qBuf, o: oBuf, k: kBuf, v: vBuf }, { kvLengths: [4097] });
   * device.queue.submit([enc.finish()]);
   * ```
   */
  encode(target: EncodeTarget, buffers: DecodeBuffers, call: DecodeCallOptions = {}): void {
    this.runtime.assertAlive();
    const p = this.problem;
    const limits = this.runtime.capabilities.limits;
    const bpe = p.bytesPerElement;
    const q = resolveBuffer('buffers.q', buffers.q, p.elements.q, bpe, limits);
    const o = resolveBuffer('buffers.o', buffers.o, p.elements.o, bpe, limits);
    const dummy: ResolvedBinding = { buffer: this.dummy, offset: 0, size: 16 };
    let pools: ResolvedBinding[];
    let pageTable = dummy;
    if (this.cache) {
      if (buffers.k !== undefined || buffers.v !== undefined) throw new ShapeError('buffers.k', 'contiguous K/V given to a paged operator', 'no k/v (the cache supplies them)');
      pools = this.cache.pools.map((b) => ({ buffer: b, offset: 0, size: b.size }));
      pageTable = { buffer: this.cache.pageTable, offset: 0, size: this.cache.pageTable.size };
    } else {
      pools = [resolveBuffer('buffers.k', buffers.k, p.elements.k, bpe, limits), resolveBuffer('buffers.v', buffers.v, p.elements.v, bpe, limits)];
    }
    while (pools.length < MAX_POOL_BUFFERS) pools.push(dummy);
    const kvLen = this.kvLengths(call.kvLengths);
    let maxKv = 0;
    for (let i = 0; i < kvLen.length; i++) maxKv = Math.max(maxKv, kvLen[i]);
    let { splits, splitLen } = this.splitFor(maxKv);
    if (call.splits !== undefined) {
      const n = call.splits;
      if (!Number.isInteger(n) || n < 1 || n > this.tiling.maxSplits) throw new ShapeError('splits', `got ${n}`, `integers in [1, ${this.tiling.maxSplits}]`);
      splitLen = Math.ceil(Math.ceil(Math.max(1, maxKv) / n) / this.tiling.blockN) * this.tiling.blockN;
      splits = Math.ceil(Math.max(1, maxKv) / splitLen);
    }
    this.lastSplit = { splits, splitLen };
    const epw = p.dtype === 'f16' ? 8 : 4;
    const s = p.strides;
    const g = this.cache?.geometry;
    const offset = this.params.offsetFor({
      seqQ: p.seqQ,
      groupSize: p.groupSize,
      headsQ: p.headsQ,
      causal: p.causal ? 1 : 0,
      numSplits: splits,
      splitLen,
      maxSplits: this.tiling.maxSplits,
      scaleLog2: p.scale * Math.LOG2E,
      qBatch: s.q.batch / epw, qHead: s.q.head / epw, qSeq: s.q.seq / epw,
      kBatch: s.k.batch / epw, kHead: s.k.head / epw, kSeq: s.k.seq / epw,
      vBatch: s.v.batch / epw, vHead: s.v.head / epw, vSeq: s.v.seq / epw,
      oBatch: s.o.batch, oHead: s.o.head, oSeq: s.o.seq,
      pageShift: g ? Math.log2(g.pageTokens) : 0,
      pageWords: g ? g.pageBytes / 16 : 0,
      vOffsetWords: g ? (g.headsKV * g.pageTokens * p.headDim) / epw : 0,
      pageTableStride: g ? g.maxPagesPerSequence : 0,
      kvLen,
    });
    const paramsBinding = { buffer: this.params.buffer, offset: 0, size: this.params.bindingBytes };
    const work = { buffer: this.workspace, offset: 0, size: this.workspace.size };
    const splitGroup = this.runtime.bindGroups.get(this.split.bindGroupLayout, this.split.key, [
      { binding: 0, ...paramsBinding },
      { binding: 1, ...q },
      ...pools.map((b, i) => ({ binding: 2 + i, ...b })),
      { binding: 6, ...pageTable },
      { binding: 7, ...work },
    ]);
    const combineGroup = this.runtime.bindGroups.get(this.combine.bindGroupLayout, this.combine.key, [
      { binding: 0, ...paramsBinding },
      { binding: 7, ...work },
      { binding: 8, ...o },
    ]);
    // One compute pass for both dispatches; WebGPU orders the combine after the split's writes.
    const pass = isPass(target) ? target : target.beginComputePass({ label: 'flashDecode' });
    encodeDispatch(pass, this.split.pipeline, splitGroup, [offset], [splits * this.tiling.rowBlocks, p.headsKV, p.batch], 'flashDecode.split');
    encodeDispatch(pass, this.combine.pipeline, combineGroup, [offset], this.combineGroups, 'flashDecode.combine');
    if (pass !== target) pass.end();
  }

  /** Encode, submit, and resolve when the GPU is done. */
  async run(buffers: DecodeBuffers, call: DecodeCallOptions = {}): Promise<void> {
    await submitAndWait(this.runtime.device, (encoder) => this.encode(encoder, buffers, call));
  }

  /** Release the workspace, the parameter pool and the placeholder binding (pipelines stay cached). */
  destroy(): void {
    this.runtime.ledger.destroy(this.workspace);
    this.runtime.ledger.destroy(this.params.buffer);
    this.runtime.ledger.destroy(this.dummy);
  }

  private kvLengths(given: ArrayLike<number> | undefined): Uint32Array {
    const p = this.problem;
    const out = this.kvScratch;
    if (given === undefined) {
      if (this.cache) out.set(this.cache.lengths);
      else out.fill(p.seqK);
      return out;
    }
    if (given.length !== p.batch) throw new ShapeError('kvLengths', `has ${given.length} entries`, `exactly one per sequence (${p.batch})`);
    for (let i = 0; i < given.length; i++) {
      const n = given[i];
      const max = this.cache ? this.cache.lengths[i] : p.seqK;
      if (!Number.isInteger(n) || n < 0 || n > max)
        throw new ShapeError(`kvLengths[${i}]`, this.cache && Number.isInteger(n) && n > max ? `${n} keys but the cache holds ${max} for sequence ${i}` : `got ${n}`, `integers in [0, ${max}]`);
      out[i] = n;
    }
    return out;
  }
}
