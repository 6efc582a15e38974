/**
 * The FastAttention operator: the fused, two-level tiled kernel with the
 * tiling-mask. Creating it validates everything and compiles (or reuses) the
 * pipeline; encoding it allocates nothing.
 */
import prefillWgsl from '../../shaders/flashAttentionPrefill.wgsl?raw';
import { TileConfigError } from '../errors.js';
import type { FastAttentionRuntime } from '../runtime/runtime.js';
import type { CompiledKernel } from '../runtime/pipelineCache.js';
import { ParamsPool } from '../runtime/paramsPool.js';
import { PARAMS_BINDING } from '../runtime/pipelineCache.js';
import { checkTileConfig, chooseTileConfig, TILE_CANDIDATES, type TileConfig, type TileGeometry } from '../tiling/tileConfig.js';
import { chooseTier, type TierChoice, type KernelTier } from './tiers.js';

/** Tiers this operator implements (the subgroup-matrix kernel is a separate operator). */
export const IMPLEMENTED_TIERS: ReadonlySet<KernelTier> = new Set<KernelTier>(['f16', 'f32']);
import {
  normalizeKvLengths,
  normalizeProblem,
  resolveBuffer,
  type AttentionBuffers,
  type AttentionCallOptions,
  type AttentionOptions,
  type AttentionProblem,
} from './problem.js';
import { encodeDispatch, type EncodeTarget } from './encode.js';

export const flashAttentionPrefillKernel = { name: 'flashAttentionPrefill', code: prefillWgsl };

export class FlashAttentionPrefill {
  /** Bytes of the M-mask this operator reads (shared per block size across operators). */
  readonly maskBytes: number;
  private readonly kvScratch: Uint32Array;
  private readonly workgroups: [number, number, number];

  private constructor(
    private readonly runtime: FastAttentionRuntime,
    readonly problem: AttentionProblem,
    readonly tile: TileConfig,
    readonly geometry: TileGeometry,
    private readonly kernel: CompiledKernel,
    private readonly params: ParamsPool,
    private readonly mMask: GPUBuffer,
    maskBytes: number,
    /** The kernel tier in use and why it was chosen. */
    readonly tier: TierChoice,
  ) {
    this.maskBytes = maskBytes;
    this.kvScratch = new Uint32Array(problem.batch);
    this.workgroups = [Math.ceil(problem.seqQ / tile.blockQ), problem.headsQ, problem.batch];
  }

  /**
   * Validate the problem and the tile configuration against the device, then
   * compile (or fetch from cache) the specialized pipeline.
   */
  static async create(runtime: FastAttentionRuntime, options: AttentionOptions): Promise<FlashAttentionPrefill> {
    runtime.assertAlive();
    const problem = normalizeProblem(options);
    const choice = chooseTier(runtime.capabilities, IMPLEMENTED_TIERS, problem.dtype, problem.headDim, options.tier);
    const sliceBytes = choice.tier === 'f32' ? 4 : 2;
    const limits = runtime.tileLimits;
    const tile = options.tile ?? chooseTileConfig(problem.headDim, limits, TILE_CANDIDATES, sliceBytes);
    const geometry = checkTileConfig(tile, problem.headDim, limits, sliceBytes);
    const maxGroups = runtime.capabilities.limits.maxComputeWorkgroupsPerDimension;
    const groups = [Math.ceil(problem.seqQ / tile.blockQ), problem.headsQ, problem.batch];
    const names = ['query blocks (q.shape[2] / blockQ)', 'q.shape[1]', 'q.shape[0]'];
    groups.forEach((g, i) => {
      if (g > maxGroups) throw new TileConfigError(i === 0 ? 'tile.blockQ' : names[i], `${names[i]} = ${g} workgroups in one dimension`, `at most ${maxGroups}`);
    });
    const kernel = await runtime.pipelines.get(flashAttentionPrefillKernel, 'main', {
      HEAD_DIM: problem.headDim,
      BLOCK_Q: tile.blockQ,
      BLOCK_KV: tile.blockKV,
      ROWS_PER_THREAD: tile.rowsPerThread,
      THREADS_PER_ROW: tile.threadsPerRow,
      CHUNK: tile.chunk,
      KV_STAGES: tile.kvStages,
      MASK_BLOCK: geometry.maskBlock,
    }, {
      aliases: { Store4: problem.dtype === 'f16' ? 'vec4<f16>' : 'vec4<f32>', Tile4: sliceBytes === 2 ? 'vec4<f16>' : 'vec4<f32>' },
      enables: problem.dtype === 'f16' || sliceBytes === 2 ? ['f16'] : [],
    });
    const layout = kernel.bindings.find((b) => b.name === PARAMS_BINDING)!.struct!;
    const params = new ParamsPool(
      runtime.device.queue,
      runtime.ledger,
      'flashAttentionPrefill',
      layout,
      problem.batch,
      runtime.capabilities.limits.minStorageBufferOffsetAlignment,
    );
    const mask = runtime.mMask(geometry.maskBlock);
    return new FlashAttentionPrefill(runtime, problem, tile, geometry, kernel, params, mask.buffer, mask.bytes, choice);
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
    // The kernel indexes Q/K/V/O as vec4: every stride is a multiple of the head dim, hence of 4.
    const s = p.strides;
    const offset = this.params.offsetFor({
      seqQ: p.seqQ,
      seqK: p.seqK,
      groupSize: p.groupSize,
      causal: p.causal ? 1 : 0,
      hasWindow: p.window !== undefined ? 1 : 0,
      window: p.window ?? 0,
      scaleLog2: p.scale * Math.LOG2E,
      qBatch: s.q.batch / 4, qHead: s.q.head / 4, qSeq: s.q.seq / 4,
      kBatch: s.k.batch / 4, kHead: s.k.head / 4, kSeq: s.k.seq / 4,
      vBatch: s.v.batch / 4, vHead: s.v.head / 4, vSeq: s.v.seq / 4,
      oBatch: s.o.batch / 4, oHead: s.o.head / 4, oSeq: s.o.seq / 4,
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
    const encoder = this.runtime.device.createCommandEncoder();
    this.encode(encoder, buffers, call);
    this.runtime.device.queue.submit([encoder.finish()]);
    await this.runtime.device.queue.onSubmittedWorkDone();
  }
}
