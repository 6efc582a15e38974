/**
 * The FastAttention operator: the fused, two-level tiled kernel with the
 * tiling-mask. Creating it validates everything and compiles (or reuses) the
 * pipeline; encoding it allocates nothing.
 */
import prefillWgsl from '../../shaders/flashAttentionPrefill.wgsl?raw';
import prefillMatrixWgsl from '../../shaders/flashAttentionPrefillSubgroupMatrix.wgsl?raw';
import { TileConfigError } from '../errors.js';
import { ParamsPool } from '../runtime/paramsPool.js';
import { PARAMS_BINDING, type CompiledKernel, type KernelSource } from '../runtime/pipelineCache.js';
import type { FastAttentionRuntime } from '../runtime/runtime.js';
import type { WgslConsts, WgslTypes } from '../runtime/wgsl.js';
import { checkMatrixTile, chooseMatrixTile, MATRIX_SUBGROUP_SIZE, type MatrixTileConfig } from '../tiling/matrixTile.js';
import { checkTileConfig, chooseTileConfig, TILE_CANDIDATES, type TileConfig } from '../tiling/tileConfig.js';
import { lookupTuned, shapeClassKey, type TunedEntry } from '../tuning/tuning.js';
import { encodeDispatch, submitAndWait, type EncodeTarget } from './encode.js';
import {
  normalizeKvLengths,
  normalizeProblem,
  resolveBuffer,
  type AttentionBuffers,
  type AttentionCallOptions,
  type AttentionOptions,
  type AttentionProblem,
} from './problem.js';
import { chooseTier, type KernelTier, type TierChoice } from './tiers.js';

/** Tiers this operator implements. */
export const IMPLEMENTED_TIERS: ReadonlySet<KernelTier> = new Set<KernelTier>(['subgroup-matrix', 'f16', 'f32']);

export const flashAttentionPrefillKernel = { name: 'flashAttentionPrefill', code: prefillWgsl };
export const flashAttentionPrefillMatrixKernel = { name: 'flashAttentionPrefillSubgroupMatrix', code: prefillMatrixWgsl };

/** Everything that differs between the vector tiers and the matrix tier. */
interface KernelPlan {
  source: KernelSource;
  consts: WgslConsts;
  types: WgslTypes;
  tile: TileConfig | MatrixTileConfig;
  maskBlock: number;
  workgroups: [number, number, number];
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

function planVectorKernel(runtime: FastAttentionRuntime, problem: AttentionProblem, tier: KernelTier, requested: AttentionOptions['tile']): KernelPlan {
  const sliceBytes = tier === 'f32' ? 4 : 2;
  const limits = runtime.tileLimits;
  if (requested && 'subgroups' in requested) throw new TileConfigError('tile', 'a matrix tile was given to a vector tier', 'a TileConfig');
  const tile = requested ?? chooseTileConfig(problem.headDim, limits, TILE_CANDIDATES, sliceBytes);
  const geometry = checkTileConfig(tile, problem.headDim, limits, sliceBytes);
  return {
    source: flashAttentionPrefillKernel,
    consts: {
      HEAD_DIM: problem.headDim,
      BLOCK_Q: tile.blockQ,
      BLOCK_KV: tile.blockKV,
      ROWS_PER_THREAD: tile.rowsPerThread,
      THREADS_PER_ROW: tile.threadsPerRow,
      CHUNK: tile.chunk,
      KV_STAGES: tile.kvStages,
      MASK_BLOCK: geometry.maskBlock,
    },
    types: {
      aliases: { Store4: problem.dtype === 'f16' ? 'vec4<f16>' : 'vec4<f32>', Tile4: sliceBytes === 2 ? 'vec4<f16>' : 'vec4<f32>' },
      enables: problem.dtype === 'f16' || sliceBytes === 2 ? ['f16'] : [],
    },
    tile,
    maskBlock: geometry.maskBlock,
    workgroups: [Math.ceil(problem.seqQ / tile.blockQ), problem.headsQ, problem.batch],
  };
}

function planMatrixKernel(runtime: FastAttentionRuntime, problem: AttentionProblem, requested: AttentionOptions['tile']): KernelPlan {
  const limits = runtime.tileLimits;
  if (requested && !('subgroups' in requested)) throw new TileConfigError('tile', 'a vector tile was given to the subgroup-matrix tier', 'a MatrixTileConfig { blockQ, blockKV, subgroups }');
  const tile = requested ?? chooseMatrixTile(problem.headDim, limits);
  checkMatrixTile(tile, problem.headDim, limits);
  const maskBlock = Math.max(tile.blockQ, tile.blockKV);
  return {
    source: flashAttentionPrefillMatrixKernel,
    consts: { HEAD_DIM: problem.headDim, BLOCK_KV: tile.blockKV, SG_SIZE: MATRIX_SUBGROUP_SIZE, MASK_BLOCK: maskBlock },
    types: { enables: ['f16', 'subgroups', 'chromium_experimental_subgroup_matrix'] },
    tile,
    maskBlock,
    workgroups: [Math.ceil(problem.seqQ / tile.blockQ), problem.headsQ, problem.batch],
  };
}

export class FlashAttentionPrefill {
  /** Bytes of the M-mask this operator reads (shared per block size across operators). */
  readonly maskBytes: number;
  private readonly kvScratch: Uint32Array;
  private readonly workgroups: [number, number, number];

  /** The tile configuration in use: two-level vector tiles, or matrix tiles on the subgroup-matrix tier. */
  readonly tile: TileConfig | MatrixTileConfig;

  private constructor(
    private readonly runtime: FastAttentionRuntime,
    readonly problem: AttentionProblem,
    plan: KernelPlan,
    private readonly kernel: CompiledKernel,
    private readonly params: ParamsPool,
    private readonly mMask: GPUBuffer,
    maskBytes: number,
    /** The kernel tier in use and why it was chosen. */
    readonly tier: TierChoice,
  ) {
    this.maskBytes = maskBytes;
    this.kvScratch = new Uint32Array(problem.batch);
    this.workgroups = plan.workgroups;
    this.tile = plan.tile;
  }

  /**
   * Validate the problem and the tile configuration against the device, then
   * compile (or fetch from cache) the specialized pipeline.
   */
  static async create(runtime: FastAttentionRuntime, options: AttentionOptions): Promise<FlashAttentionPrefill> {
    runtime.assertAlive();
    const problem = normalizeProblem(options);
    // Without an explicit tier or tile, take this adapter's tuned winner for the shape class when it applies here.
    const tuned = options.tier === undefined && options.tile === undefined ? usableTuned(runtime, problem) : undefined;
    const choice = tuned
      ? { tier: tuned.tier, reason: `tuned for ${shapeClassKey(tuned.shapeClass)} on ${runtime.tuning!.adapter} (${tuned.medianMs.toFixed(3)} ms)` }
      : chooseTier(runtime.capabilities, IMPLEMENTED_TIERS, problem.dtype, problem.headDim, options.tier);
    const tile = tuned ? tuned.tile : options.tile;
    const plan = choice.tier === 'subgroup-matrix' ? planMatrixKernel(runtime, problem, tile) : planVectorKernel(runtime, problem, choice.tier, tile);
    const maxGroups = runtime.capabilities.limits.maxComputeWorkgroupsPerDimension;
    const names = ['query blocks (q.shape[2] / blockQ)', 'q.shape[1]', 'q.shape[0]'];
    plan.workgroups.forEach((g, i) => {
      if (g > maxGroups) throw new TileConfigError(i === 0 ? 'tile.blockQ' : names[i], `${names[i]} = ${g} workgroups in one dimension`, `at most ${maxGroups}`);
    });
    const kernel = await runtime.pipelines.get(plan.source, 'main', plan.consts, plan.types);
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
    return new FlashAttentionPrefill(runtime, problem, plan, kernel, params, mask.buffer, mask.bytes, choice);
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
    const k = resolveBuffer('buffers.k', buffers.k, p.elements.k, p.bytesPerElement, limits);
    const v = resolveBuffer('buffers.v', buffers.v, p.elements.v, p.bytesPerElement, limits);
    const o = resolveBuffer('buffers.o', buffers.o, p.elements.o, p.bytesPerElement, limits);
    const kvLen = normalizeKvLengths(p, call.kvLengths, this.kvScratch);
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
    const group = this.runtime.bindGroups.get(this.kernel.bindGroupLayout, this.kernel.key, [
      { binding: 0, buffer: this.params.buffer, offset: 0, size: this.params.bindingBytes },
      { binding: 1, ...q },
      { binding: 2, ...k },
      { binding: 3, ...v },
      { binding: 4, ...o },
      { binding: 5, buffer: this.mMask, offset: 0, size: this.maskBytes },
    ]);
    encodeDispatch(target, this.kernel.pipeline, group, [offset], this.workgroups, 'flashAttentionPrefill');
  }

  /** Release the operator's parameter pool (pipelines and M-masks stay cached in the runtime). */
  destroy(): void {
    this.runtime.ledger.destroy(this.params.buffer);
  }

  /** Encode, submit, and resolve when the GPU is done. */
  async run(buffers: AttentionBuffers, call: AttentionCallOptions = {}): Promise<void> {
    await submitAndWait(this.runtime.device, (encoder) => this.encode(encoder, buffers, call));
  }
}
