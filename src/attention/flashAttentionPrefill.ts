/**
 * The FastAttention operator: the fused, two-level tiled kernel with the
 * tiling-mask. Creating it validates everything and compiles (or reuses) the
 * pipeline; encoding it allocates nothing. K/V come from contiguous tensors or
 * from a paged KV cache (every tier), and tiers that round to f16 report
 * inputs that overflow it.
 */
import prefillWgsl from '../../shaders/flashAttentionPrefill.wgsl?raw';
import prefillMatrixWgsl from '../../shaders/flashAttentionPrefillSubgroupMatrix.wgsl?raw';
import { BufferError, NumericOverflowError, ShapeError, TileConfigError, UnsupportedError, type OverflowTensor } from '../errors.js';
import { NO_PAGE, type PagedKvCache } from '../kvcache/pagedKvCache.js';
import { BufferUsage, MapMode } from '../runtime/usage.js';
import { ParamsPool } from '../runtime/paramsPool.js';
import { PARAMS_BINDING, type CompiledKernel, type KernelSource } from '../runtime/pipelineCache.js';
import type { FastAttentionRuntime } from '../runtime/runtime.js';
import type { WgslConsts, WgslTypes } from '../runtime/wgsl.js';
import type { UnrollCounts } from '../runtime/wgslUnroll.js';
import { checkMatrixTile, chooseMatrixTile, MATRIX_SUBGROUP_SIZE, matrixKernelCounts, type MatrixTileConfig } from '../tiling/matrixTile.js';
import { checkTileConfig, chooseTileConfig, TILE_CANDIDATES, vectorKernelCounts, type TileConfig } from '../tiling/tileConfig.js';
import { lookupTuned, shapeClassKey, type TunedEntry } from '../tuning/tuning.js';
import { encodeDispatch, submitAndWait, type EncodeTarget } from './encode.js';
import {
  normalizeKvLengths,
  normalizeProblem,
  resolveBuffer,
  type AttentionBuffers,
  type ResolvedBinding,
  type AttentionCallOptions,
  type AttentionOptions,
  type AttentionProblem,
} from './problem.js';
import { chooseTier, type KernelTier, type TierChoice } from './tiers.js';

/** Tiers this operator implements. */
export const IMPLEMENTED_TIERS: ReadonlySet<KernelTier> = new Set<KernelTier>(['subgroup-matrix', 'f16', 'f32']);

/**
 * The two prefill kernel files. Their loops over register arrays are `//#for`
 * blocks (not WGSL until expanded): the pipeline cache unrolls them with the
 * counts each plan passes next to its consts ({@link vectorKernelCounts},
 * {@link matrixKernelCounts}).
 */
export const flashAttentionPrefillKernel: KernelSource = { name: 'flashAttentionPrefill', code: prefillWgsl };
export const flashAttentionPrefillMatrixKernel: KernelSource = { name: 'flashAttentionPrefillSubgroupMatrix', code: prefillMatrixWgsl };

/** The kernel file each tier family compiles: `vector` for the f32 and f16 tiers, `matrix` for the subgroup-matrix tier. */
export interface PrefillKernelSources {
  vector: KernelSource;
  matrix: KernelSource;
}

export const PREFILL_KERNELS: PrefillKernelSources = { vector: flashAttentionPrefillKernel, matrix: flashAttentionPrefillMatrixKernel };

/**
 * Most pool buffers of a paged cache the prefill reads: pools 0 and 1 are bound
 * where contiguous K and V are, which keeps every prefill pipeline within the
 * WebGPU default of 8 storage buffers per stage (WGSL counts a binding as used
 * even in a branch on a false const).
 */
export const MAX_PREFILL_POOL_BUFFERS = 2;

/** Bits of the kernels' `status` word (binding 7): which tensor held a value outside the f16 range. */
export const STATUS_BITS: Readonly<Record<OverflowTensor, number>> = { q: 1, k: 2, v: 4 };

/** What `readStatus()` reports. */
export interface PrefillStatus {
  /** Tensors that held values which overflow f16 where the kernel rounds to it, since the last read. */
  overflow: OverflowTensor[];
}

/** The part of a {@link PagedKvCache} the host-side page checks read (tests pass their own). */
export type PagedKvView = Pick<PagedKvCache, 'geometry' | 'pools' | 'lengths' | 'capacityTokens' | 'pageOf'>;

/**
 * Check, before any dispatch, that every key below `kvLen[b]` of every sequence
 * has a page the kernel can read: a length within capacity, no {@link NO_PAGE}
 * entry, and a page that lies inside an existing pool buffer.
 */
export function checkPagedKeys(cache: PagedKvView, kvLen: ArrayLike<number>): void {
  const g = cache.geometry;
  for (let b = 0; b < kvLen.length; b++) {
    const len = cache.lengths[b];
    if (len > cache.capacityTokens)
      throw new ShapeError(`cache.lengths[${b}]`, `sequence ${b} holds ${len} tokens, beyond the cache's capacity of ${cache.capacityTokens}`, `at most ${cache.capacityTokens}`);
    const need = Math.ceil(kvLen[b] / g.pageTokens);
    for (let i = 0; i < need; i++) {
      const page = cache.pageOf(b, i);
      const keys = () => `keys [${i * g.pageTokens}, ${Math.min((i + 1) * g.pageTokens, kvLen[b])})`;
      if (page === NO_PAGE)
        throw new BufferError(`cache.pageTable[${b}][${i}]`, `sequence ${b} has no page for ${keys()}, below its length ${kvLen[b]}`, 'a page for every position below the sequence length');
      const pool = Math.floor(page / g.pagesPerBuffer);
      const inPool = Number.isInteger(page) && page >= 0 && pool < cache.pools.length ? cache.pools[pool].size / g.pageBytes : 0;
      if (page % g.pagesPerBuffer >= inPool || inPool === 0)
        throw new BufferError(`cache.pageTable[${b}][${i}]`, `page ${page} of ${keys()} of sequence ${b} lies outside the pool buffers`, `pages in [0, ${g.totalPages - 1}] inside the cache's ${cache.pools.length} pool buffers`);
    }
  }
}

/** Everything that differs between the vector tiers and the matrix tier. */
interface KernelPlan {
  source: KernelSource;
  consts: WgslConsts;
  types: WgslTypes;
  /** Trip counts of the kernel's `//#for` loops, unrolled by the pipeline cache. */
  unroll: UnrollCounts;
  tile: TileConfig | MatrixTileConfig;
  maskBlock: number;
}

const QUERY_BLOCKS = 'query blocks (q.shape[2] / blockQ)';

/**
 * The prefill grid: (query blocks, heads, batch), or (heads, query blocks,
 * batch) under a causal mask so that every head's longest block starts first;
 * the kernels map it back in `headAndQStart` (shaders/common/prefillParams.wgsl).
 * `names` says what each dimension counts, for the error when one is too large.
 */
export function prefillGrid(
  problem: Pick<AttentionProblem, 'seqQ' | 'headsQ' | 'batch' | 'causal'>,
  blockQ: number,
): { groups: [number, number, number]; names: [string, string, string] } {
  const blocks = [QUERY_BLOCKS, Math.ceil(problem.seqQ / blockQ)] as const;
  const heads = ['q.shape[1]', problem.headsQ] as const;
  const [x, y] = problem.causal ? [heads, blocks] : [blocks, heads];
  return { groups: [x[1], y[1], problem.batch], names: [x[0], y[0], 'q.shape[0]'] };
}

/** The tuned entry for this problem, if its tier runs here with this dtype and its tile fits this device. */
function usableTuned(runtime: FastAttentionRuntime, problem: AttentionProblem): TunedEntry | undefined {
  const entry = lookupTuned(runtime.tuning, problem);
  if (!entry) return undefined;
  try {
    chooseTier(runtime.capabilities, IMPLEMENTED_TIERS, problem.dtype, problem.headDim, entry.tier);
    if ('subgroups' in entry.tile) checkMatrixTile(entry.tile, problem.headDim, runtime.tileLimits);
    else checkTileConfig(entry.tile, problem.headDim, runtime.tileLimits, entry.tier === 'f32' ? 4 : 2);
    return entry;
  } catch {
    return undefined;
  }
}

function planVectorKernel(
  runtime: FastAttentionRuntime,
  problem: AttentionProblem,
  tier: KernelTier,
  requested: AttentionOptions['tile'],
  cache: PagedKvCache | undefined,
  checkF16: boolean,
  source: KernelSource,
): KernelPlan {
  const sliceBytes = tier === 'f32' ? 4 : 2;
  const limits = runtime.tileLimits;
  if (requested && 'subgroups' in requested) throw new TileConfigError('tile', 'a matrix tile was given to a vector tier', 'a TileConfig');
  const tile = requested ?? chooseTileConfig(problem.headDim, limits, TILE_CANDIDATES, sliceBytes);
  const geometry = checkTileConfig(tile, problem.headDim, limits, sliceBytes);
  return {
    source,
    consts: vectorKernelConsts(problem.headDim, tile, geometry.maskBlock, cache, checkF16),
    unroll: vectorKernelCounts(tile, problem.headDim),
    types: {
      aliases: { Store4: problem.dtype === 'f16' ? 'vec4<f16>' : 'vec4<f32>', Tile4: sliceBytes === 2 ? 'vec4<f16>' : 'vec4<f32>' },
      enables: problem.dtype === 'f16' || sliceBytes === 2 ? ['f16'] : [],
    },
    tile,
    maskBlock: geometry.maskBlock,
  };
}

/**
 * The vector kernel's specialization consts (the const block of
 * shaders/flashAttentionPrefill.wgsl) for a head dim, a checked tile and its
 * M-mask block, the paged cache K/V come from (if any), and whether staged
 * values are checked against the f16 range.
 */
export function vectorKernelConsts(headDim: number, tile: TileConfig, maskBlock: number, cache: PagedKvCache | undefined, checkF16: boolean): WgslConsts {
  return {
    HEAD_DIM: headDim,
    BLOCK_Q: tile.blockQ,
    BLOCK_KV: tile.blockKV,
    ROWS_PER_THREAD: tile.rowsPerThread,
    THREADS_PER_ROW: tile.threadsPerRow,
    CHUNK: tile.chunk,
    KV_STAGES: tile.kvStages,
    MASK_BLOCK: maskBlock,
    ...pageConsts(cache),
    CHECK_F16: checkF16,
  };
}

// Both kernels' paged-read consts. Page geometry only specializes paged pipelines; contiguous ones keep the defaults.
function pageConsts(cache: PagedKvCache | undefined): WgslConsts {
  if (!cache) return { PAGED: false };
  return { PAGED: true, PAGE_TOKENS: cache.geometry.pageTokens, PAGE_HEADS: cache.geometry.headsKV, PAGE_TABLE_STRIDE: cache.geometry.maxPagesPerSequence };
}

function planMatrixKernel(runtime: FastAttentionRuntime, problem: AttentionProblem, requested: AttentionOptions['tile'], cache: PagedKvCache | undefined, source: KernelSource): KernelPlan {
  const limits = runtime.tileLimits;
  if (requested && !('subgroups' in requested)) throw new TileConfigError('tile', 'a vector tile was given to the subgroup-matrix tier', 'a MatrixTileConfig { blockQ, blockKV, subgroups }');
  const tile = requested ?? chooseMatrixTile(problem.headDim, limits);
  checkMatrixTile(tile, problem.headDim, limits);
  const maskBlock = Math.max(tile.blockQ, tile.blockKV);
  return {
    source,
    consts: { HEAD_DIM: problem.headDim, BLOCK_KV: tile.blockKV, SUBGROUPS: tile.subgroups, SG_SIZE: MATRIX_SUBGROUP_SIZE, MASK_BLOCK: maskBlock, ...pageConsts(cache) },
    unroll: matrixKernelCounts(tile, problem.headDim),
    types: { enables: ['f16', 'subgroups', 'chromium_experimental_subgroup_matrix'] },
    tile,
    maskBlock,
  };
}

export class FlashAttentionPrefill {
  /** Bytes of the M-mask this operator reads (shared per block size across operators). */
  readonly maskBytes: number;
  private readonly kvScratch: Uint32Array;
  private readonly workgroups: [number, number, number];
  /** Whether this pipeline flags values outside the f16 range (then `run()` reads the flags back). */
  readonly checksF16Range: boolean;
  /** The operator's flag word (binding `status`) and the buffer it is read back through. */
  private readonly status: GPUBuffer;
  private readonly statusReadback: GPUBuffer | undefined;
  /** Serialises readbacks: the staging buffer cannot be copied into while mapped. */
  private statusLock: Promise<unknown> = Promise.resolve();

  /** The tile configuration in use: two-level vector tiles, or matrix tiles on the subgroup-matrix tier. */
  readonly tile: TileConfig | MatrixTileConfig;

  private constructor(
    private readonly runtime: FastAttentionRuntime,
    readonly problem: AttentionProblem,
    plan: KernelPlan,
    workgroups: [number, number, number],
    private readonly kernel: CompiledKernel,
    private readonly params: ParamsPool,
    private readonly mMask: GPUBuffer,
    maskBytes: number,
    /** The kernel tier in use and why it was chosen. */
    readonly tier: TierChoice,
    /** The paged KV cache K and V come from, if any. */
    readonly cache: PagedKvCache | undefined,
    checksF16Range: boolean,
  ) {
    this.maskBytes = maskBytes;
    // The binding is declared by the vector kernel whether or not it checks, so the buffer always exists (16 bytes).
    this.status = runtime.ledger.create('flashAttentionPrefill', { label: 'flashAttentionPrefill.status', size: 16, usage: BufferUsage.STORAGE | BufferUsage.COPY_SRC | BufferUsage.COPY_DST });
    // A kernel without a `status` binding (the subgroup-matrix one, until it gets it) reports nothing.
    this.checksF16Range = checksF16Range && kernel.bindings.some((b) => b.name === 'status');
    this.statusReadback = this.checksF16Range
      ? runtime.ledger.create('flashAttentionPrefill', { label: 'flashAttentionPrefill.statusReadback', size: 16, usage: BufferUsage.MAP_READ | BufferUsage.COPY_DST })
      : undefined;
    this.kvScratch = new Uint32Array(problem.batch);
    this.workgroups = workgroups;
    this.tile = plan.tile;
  }

  /**
   * Validate the problem and the tile configuration against the device, then
   * compile (or fetch from cache) the specialized pipeline. `sources`
   * replaces the kernel files: only the ablation benchmark (src/bench/ablation.ts)
   * passes it, with a variant of one file under a name of its own.
   */
  static async create(runtime: FastAttentionRuntime, options: AttentionOptions, sources: PrefillKernelSources = PREFILL_KERNELS): Promise<FlashAttentionPrefill> {
    runtime.assertAlive();
    const problem = normalizeProblem(options, true);
    const cache = options.cache;
    if (cache) {
      if (cache.pools.length > MAX_PREFILL_POOL_BUFFERS)
        throw new UnsupportedError(
          'cache',
          `the cache has ${cache.pools.length} pool buffers; prefill binds at most ${MAX_PREFILL_POOL_BUFFERS}`,
          `caches of at most ${MAX_PREFILL_POOL_BUFFERS} pool buffers (${MAX_PREFILL_POOL_BUFFERS} × maxBufferBytes)`,
        );
    }
    // Without an explicit tier or tile, take this adapter's tuned winner for the shape class when it applies here.
    const tuned = options.tier === undefined && options.tile === undefined ? usableTuned(runtime, problem) : undefined;
    const choice = tuned
      ? { tier: tuned.tier, reason: `tuned for ${shapeClassKey(tuned.shapeClass)} on ${runtime.tuning!.adapter} (${tuned.medianMs.toFixed(3)} ms)` }
      : chooseTier(runtime.capabilities, IMPLEMENTED_TIERS, problem.dtype, problem.headDim, options.tier);
    const tile = tuned ? tuned.tile : options.tile;
    // Tiers that keep f16 slices round every staged value to f16; the f32 tier checks only when asked.
    const checkF16 = choice.tier !== 'f32' || options.checkF16Range === true;
    const plan =
      choice.tier === 'subgroup-matrix'
        ? planMatrixKernel(runtime, problem, tile, cache, sources.matrix)
        : planVectorKernel(runtime, problem, choice.tier, tile, cache, checkF16, sources.vector);
    const maxGroups = runtime.capabilities.limits.maxComputeWorkgroupsPerDimension;
    const grid = prefillGrid(problem, plan.tile.blockQ);
    grid.groups.forEach((g, i) => {
      const name = grid.names[i];
      if (g > maxGroups) throw new TileConfigError(name === QUERY_BLOCKS ? 'tile.blockQ' : name, `${name} = ${g} workgroups in one dimension`, `at most ${maxGroups}`);
    });
    const kernel = await runtime.pipelines.get(plan.source, 'main', plan.consts, plan.types, plan.unroll);
    const layout = kernel.bindings.find((b) => b.name === PARAMS_BINDING)!.struct!;
    const params = new ParamsPool(
      runtime.device.queue,
      runtime.ledger,
      'flashAttentionPrefill',
      layout,
      problem.batch,
      runtime.capabilities.limits.minStorageBufferOffsetAlignment,
    );
    const mask = runtime.mMask(plan.maskBlock);
    return new FlashAttentionPrefill(runtime, problem, plan, grid.groups, kernel, params, mask.buffer, mask.bytes, choice, cache, checkF16);
  }

  /**
   * Record the attention into the caller's command encoder (its own compute
   * pass) or into an open compute pass. No buffer is created.
   *
   * @example
   * ```ts
   * const enc = device.createCommandEncoder();
   * op.encode(enc, { q: qBuf, k: kBuf, v: vBuf, o: oBuf });
   * device.queue.submit([enc.finish()]);
   * ```
   */
  encode(target: EncodeTarget, buffers: AttentionBuffers, call: AttentionCallOptions = {}): void {
    this.runtime.assertAlive();
    const p = this.problem;
    const limits = this.runtime.capabilities.limits;
    const q = resolveBuffer('buffers.q', buffers.q, p.elements.q, p.bytesPerElement, limits);
    const o = resolveBuffer('buffers.o', buffers.o, p.elements.o, p.bytesPerElement, limits);
    let k: ResolvedBinding;
    let v: ResolvedBinding;
    let pageTable: ResolvedBinding;
    let kvLen: Uint32Array;
    if (this.cache) {
      const cache = this.cache;
      if (buffers.k !== undefined || buffers.v !== undefined)
        throw new ShapeError(buffers.k !== undefined ? 'buffers.k' : 'buffers.v', 'contiguous K/V given to an operator that reads a paged cache', 'no k/v (the cache supplies them)');
      kvLen = this.pagedKvLengths(cache, call.kvLengths);
      checkPagedKeys(cache, kvLen);
      const pool = (b: GPUBuffer): ResolvedBinding => ({ buffer: b, offset: 0, size: b.size });
      k = pool(cache.pools[0]);
      // A one-buffer cache: pool 1 is never addressed, any read-only binding fills the slot.
      v = pool(cache.pools[1] ?? cache.pools[0]);
      pageTable = pool(cache.pageTable);
    } else {
      k = resolveBuffer('buffers.k', buffers.k, p.elements.k, p.bytesPerElement, limits);
      v = resolveBuffer('buffers.v', buffers.v, p.elements.v, p.bytesPerElement, limits);
      kvLen = normalizeKvLengths(p, call.kvLengths, this.kvScratch);
      // Contiguous pipelines never read the page table; the (read-only) M-mask fills its slot.
      pageTable = { buffer: this.mMask, offset: 0, size: this.maskBytes };
    }
    // Kernels index Q/K/V/O as vec4: every stride is a multiple of the head dim, hence of 4.
    const u = 4;
    const s = p.strides;
    const offset = this.params.offsetFor({
      seqQ: p.seqQ,
      seqK: p.seqK,
      groupSize: p.groupSize,
      causal: p.causal ? 1 : 0,
      hasWindow: p.window !== undefined ? 1 : 0,
      window: p.window ?? 0,
      scaleLog2: p.scale * Math.LOG2E,
      qBatch: s.q.batch / u, qHead: s.q.head / u, qSeq: s.q.seq / u,
      kBatch: s.k.batch / u, kHead: s.k.head / u, kSeq: s.k.seq / u,
      vBatch: s.v.batch / u, vHead: s.v.head / u, vSeq: s.v.seq / u,
      oBatch: s.o.batch / u, oHead: s.o.head / u, oSeq: s.o.seq / u,
      kvLen,
    });
    const resources: Record<string, ResolvedBinding> = {
      params: { buffer: this.params.buffer, offset: 0, size: this.params.bindingBytes },
      q,
      k,
      v,
      o,
      mMask: { buffer: this.mMask, offset: 0, size: this.maskBytes },
      pageTable,
      status: { buffer: this.status, offset: 0, size: this.status.size },
    };
    // Bound by name from the kernel's reflected bindings: kernels may declare a subset (the matrix tier has no page table).
    const entries = this.kernel.bindings.map((b) => {
      const r = resources[b.name];
      if (!r) throw new Error(`flashAttentionPrefill: kernel binding ${b.name} (${b.binding}) has no resource`);
      return { binding: b.binding, ...r };
    });
    const group = this.runtime.bindGroups.get(this.kernel.bindGroupLayout, this.kernel.key, entries);
    encodeDispatch(target, this.kernel.pipeline, group, [offset], this.workgroups, 'flashAttentionPrefill');
  }

  /** Release the operator's parameter pool and status buffers (pipelines and M-masks stay cached in the runtime). */
  destroy(): void {
    this.runtime.ledger.destroy(this.params.buffer);
    this.runtime.ledger.destroy(this.status);
    if (this.statusReadback) this.runtime.ledger.destroy(this.statusReadback);
  }

  /**
   * Encode, submit, and resolve when the GPU is done. Where the pipeline checks
   * the f16 range, the flags raised since the last read are read back (and
   * cleared) with the call, and any flag rejects with {@link NumericOverflowError}.
   */
  async run(buffers: AttentionBuffers, call: AttentionCallOptions = {}): Promise<void> {
    if (!this.statusReadback) {
      await submitAndWait(this.runtime.device, (encoder) => this.encode(encoder, buffers, call));
      return;
    }
    const overflow = await this.withStatus((encoder) => this.encode(encoder, buffers, call));
    if (overflow.length > 0) throw new NumericOverflowError(overflow);
  }

  /**
   * The tensors flagged since the last read (by `run()` or this), and clear the
   * flags. Empty when the pipeline does not check (the f32 tier without
   * `checkF16Range`). Waits for work already submitted.
   *
   * @example
   * ```ts
   * op.encode(encoder, { q, k, v, o });
   * device.queue.submit([encoder.finish()]);
   * const { overflow } = await op.readStatus(); // e.g. ['q']
   * ```
   */
  async readStatus(): Promise<PrefillStatus> {
    this.runtime.assertAlive();
    if (!this.statusReadback) return { overflow: [] };
    return { overflow: await this.withStatus(() => {}) };
  }

  /** Record `before`, then copy the flags out and clear them, submit, and decode the flags. */
  private withStatus(before: (encoder: GPUCommandEncoder) => void): Promise<OverflowTensor[]> {
    const staging = this.statusReadback!;
    const next = this.statusLock.then(async () => {
      await submitAndWait(this.runtime.device, (encoder) => {
        before(encoder);
        encoder.copyBufferToBuffer(this.status, 0, staging, 0, 4);
        encoder.clearBuffer(this.status);
      });
      await staging.mapAsync(MapMode.READ, 0, 4);
      const bits = new Uint32Array(staging.getMappedRange(0, 4))[0];
      staging.unmap();
      return (Object.keys(STATUS_BITS) as OverflowTensor[]).filter((t) => (bits & STATUS_BITS[t]) !== 0);
    });
    // A failed call must not block the next one.
    this.statusLock = next.catch(() => undefined);
    return next;
  }

  /** Key lengths of a paged call: the cache's by default, and never beyond them. */
  private pagedKvLengths(cache: PagedKvCache, given: ArrayLike<number> | undefined): Uint32Array {
    const out = this.kvScratch;
    if (given === undefined) {
      out.set(cache.lengths);
      return out;
    }
    if (given.length !== this.problem.batch) throw new ShapeError('kvLengths', `has ${given.length} entries`, `exactly one per sequence (${this.problem.batch})`);
    for (let i = 0; i < given.length; i++) {
      const n = given[i];
      const max = cache.lengths[i];
      if (!Number.isInteger(n) || n < 0 || n > max)
        throw new ShapeError(`kvLengths[${i}]`, Number.isInteger(n) && n > max ? `${n} keys but the cache holds ${max} for sequence ${i}` : `got ${n}`, `integers in [0, ${max}]`);
      out[i] = n;
    }
    return out;
  }
}
