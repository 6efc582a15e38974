/**
 * The Volta-path attention operator: shaders/voltaAttention.wgsl, in which 32
 * invocations play a Volta warp and both GEMMs are sequences of mma.m8n8k4
 * steps per quadpair, in the FP16- or FP32-accumulator fragment layout.
 *
 * What runs where: the same kernel on every adapter. Lanes are `local index % 32`
 * of the workgroup, not subgroup invocations, and every cross-lane transfer
 * (row-max exchange and P exchange of the FP32 layout, the operand routing a
 * tensor core does inside a quadpair) goes through workgroup memory; so the
 * subgroup size (4 on SwiftShader, 32 on NVIDIA) does not matter and the
 * `subgroups` feature is not used. Storage and arithmetic are f32 for both
 * layouts (SwiftShader has no f16): the variants differ in which lane owns
 * which element, hence in what must be exchanged.
 *
 * Like {@link FlashAttentionPrefill}: `create` validates (typed errors naming
 * the field) and compiles once through the runtime's pipeline cache; `encode`
 * allocates nothing.
 */
import voltaWgsl from '../../shaders/voltaAttention.wgsl?raw';
import { encodeDispatch, submitAndWait, type EncodeTarget } from '../attention/encode.js';
import {
  normalizeKvLengths,
  normalizeProblem,
  rejectFusedKernelOptions,
  resolveAttentionBuffers,
  type AttentionBuffers,
  type AttentionCallOptions,
  type AttentionOptions,
  type AttentionProblem,
} from '../attention/problem.js';
import { TileConfigError, UnsupportedError } from '../errors.js';
import { ParamsPool } from '../runtime/paramsPool.js';
import { PARAMS_BINDING, type CompiledKernel, type KernelSource } from '../runtime/pipelineCache.js';
import type { FastAttentionRuntime } from '../runtime/runtime.js';
import {
  planVoltaSwizzle,
  VOLTA_ACCUMULATORS,
  voltaExchangeCounts,
  voltaKernelLayout,
  WARP_ROWS,
  withFragmentTables,
  type VoltaAccumulator,
  type VoltaExchangeCounts,
  type VoltaTileSwizzle,
} from './kernelTables.js';
import { WARP_SIZE } from './mmaLayouts.js';

/** Head dims of the Volta kernel: multiples of 8 (an m8n8k4 n-step of P·V) whose tiles fit workgroup memory. */
export const VOLTA_HEAD_DIMS = [32, 64, 80, 96, 128] as const;

/** Workgroup shape of the Volta kernel. */
export interface VoltaKernelConfig {
  /** Emulated warps per workgroup; the workgroup owns 32·warps query rows. */
  warps: number;
  /** Keys per block (Bc), a multiple of 8 (one m8n8k4 n-step of S). */
  blockKV: number;
}

/** Candidates tried by default, largest first: the first that fits the device is used. */
export const VOLTA_CONFIG_CANDIDATES: readonly VoltaKernelConfig[] = [
  { warps: 2, blockKV: 32 },
  { warps: 1, blockKV: 32 },
  { warps: 2, blockKV: 16 },
  { warps: 1, blockKV: 16 },
  { warps: 1, blockKV: 8 },
];

/**
 * The common attention options this kernel honours. `tile` and `tier` (the fused
 * kernel's) are rejected by `create` with an `UnsupportedError` naming the field,
 * as are what the kernel does not run: f16 storage, a sliding window, a paged
 * `cache`, and `checkF16Range: true`.
 */
export interface VoltaAttentionOptions extends Omit<AttentionOptions, 'tile' | 'tier' | 'checkF16Range' | 'dtype'> {
  /**
   * Storage type of Q/K/V/O: `f32` only (the default). `'f16'` does not compile;
   * from JavaScript it is rejected with an `UnsupportedError` naming `dtype`.
   */
  dtype?: 'f32';
  /**
   * `false` or omitted: the kernel stores and computes in f32 and has no f16
   * range check (the fused prefill's f32 tier runs one with `checkF16Range: true`);
   * `true` is rejected with an `UnsupportedError` naming `checkF16Range`.
   */
  checkF16Range?: false;
  /** Fragment layout of both accumulators: `f16` (P stays in registers) or `f32` (P exchanged through workgroup memory). */
  accumulator: VoltaAccumulator;
  /** Workgroup shape; default: the first of {@link VOLTA_CONFIG_CANDIDATES} whose FP32 variant fits (same for both layouts, so they compare). */
  config?: VoltaKernelConfig;
}

/** Bytes of workgroup memory the kernel declares for a config (the FP32 layout adds the exchange tile). */
export function voltaWorkgroupBytes(config: VoltaKernelConfig, headDim: number, accumulator: VoltaAccumulator): number {
  const br = WARP_ROWS * config.warps;
  const tiles = (br + 2 * config.blockKV) * headDim * 4;
  const sharers = voltaKernelLayout(accumulator, config.blockKV).rowSharers;
  const pTile = accumulator === 'f32' ? br * (config.blockKV + 1) * 4 : 4;
  return tiles + pTile + br * sharers * 4;
}

/** Check a config against the kernel's rules and the device; throws {@link TileConfigError} naming the field. */
export function checkVoltaConfig(
  config: VoltaKernelConfig,
  headDim: number,
  accumulator: VoltaAccumulator,
  limits: { maxComputeWorkgroupStorageSize: number; maxComputeInvocationsPerWorkgroup: number; maxComputeWorkgroupSizeX: number },
): number {
  if (!config || typeof config !== 'object') throw new TileConfigError('config', 'is not an object', '{ warps, blockKV }');
  if (!Number.isInteger(config.warps) || config.warps < 1 || config.warps > 8) throw new TileConfigError('config.warps', `got ${config.warps}`, 'integers 1..8');
  if (!Number.isInteger(config.blockKV) || config.blockKV < 8 || config.blockKV > 64 || config.blockKV % 8 !== 0)
    throw new TileConfigError('config.blockKV', `got ${config.blockKV}`, 'multiples of 8 from 8 to 64');
  const threads = WARP_SIZE * config.warps;
  const maxThreads = Math.min(limits.maxComputeInvocationsPerWorkgroup, limits.maxComputeWorkgroupSizeX);
  if (threads > maxThreads) throw new TileConfigError('config.warps', `${config.warps} warps need ${threads} invocations`, `at most ${Math.floor(maxThreads / WARP_SIZE)} warps on this device`);
  const bytes = voltaWorkgroupBytes(config, headDim, accumulator);
  if (bytes > limits.maxComputeWorkgroupStorageSize)
    throw new TileConfigError('config', `needs ${bytes} bytes of workgroup memory at head dim ${headDim}`, `at most ${limits.maxComputeWorkgroupStorageSize} bytes (fewer warps or a smaller blockKV)`);
  return bytes;
}

/** The default config: the first candidate whose FP32 variant fits (it needs more memory than the FP16 one). */
export function chooseVoltaConfig(headDim: number, limits: Parameters<typeof checkVoltaConfig>[3]): VoltaKernelConfig {
  for (const c of VOLTA_CONFIG_CANDIDATES) {
    try {
      checkVoltaConfig(c, headDim, 'f32', limits);
      return c;
    } catch {
      // try the next, smaller one
    }
  }
  throw new TileConfigError('config', `no Volta kernel config fits this device at head dim ${headDim}`, VOLTA_CONFIG_CANDIDATES.map((c) => `${c.warps}w×${c.blockKV}`).join(', '));
}

/** The shader source for one accumulator layout: the .wgsl file with its fragment tables generated. */
export function voltaKernelSource(accumulator: VoltaAccumulator): KernelSource {
  return { name: `voltaAttention.${accumulator}`, code: withFragmentTables(voltaWgsl, voltaKernelLayout(accumulator)) };
}

/** The committed shader text (its generated section holds the FP16 defaults). */
export const voltaAttentionWgsl = voltaWgsl;

export class VoltaAttention {
  /** Accumulator → A-operand exchange counts of this variant (from fragmentConverter). */
  readonly exchange: VoltaExchangeCounts;
  private readonly kvScratch: Uint32Array;
  private readonly workgroups: [number, number, number];

  private constructor(
    private readonly runtime: FastAttentionRuntime,
    readonly problem: AttentionProblem,
    readonly accumulator: VoltaAccumulator,
    readonly config: VoltaKernelConfig,
    /** Planned swizzles of the Q, K and V tiles. */
    readonly swizzles: readonly VoltaTileSwizzle[],
    readonly workgroupStorageBytes: number,
    private readonly kernel: CompiledKernel,
    private readonly params: ParamsPool,
  ) {
    this.exchange = voltaExchangeCounts(accumulator, config.blockKV);
    this.kvScratch = new Uint32Array(problem.batch);
    this.workgroups = [Math.ceil(problem.seqQ / (WARP_ROWS * config.warps)), problem.headsQ, problem.batch];
  }

  /** Validate the problem and the config against the device, plan the tiles, and compile (or reuse) the pipeline. */
  static async create(runtime: FastAttentionRuntime, options: VoltaAttentionOptions): Promise<VoltaAttention> {
    runtime.assertAlive();
    if (!VOLTA_ACCUMULATORS.includes(options?.accumulator))
      throw new UnsupportedError('accumulator', `unknown accumulator layout ${JSON.stringify(options?.accumulator)}`, VOLTA_ACCUMULATORS.join(', '));
    rejectFusedKernelOptions(options, 'Volta kernel', 'config: { warps, blockKV }');
    const problem = normalizeProblem(options);
    if (problem.dtype !== 'f32') throw new UnsupportedError('dtype', `${problem.dtype} storage is not read by the Volta kernel`, 'f32');
    if (!(VOLTA_HEAD_DIMS as readonly number[]).includes(problem.headDim))
      throw new UnsupportedError('q.shape[3]', `head dimension ${problem.headDim} is not supported by the Volta kernel`, VOLTA_HEAD_DIMS.join(', '));
    if (problem.window !== undefined) throw new UnsupportedError('window', 'the Volta kernel has no sliding window', 'omit window (causal and kvLengths are supported)');
    const limits = runtime.tileLimits;
    const config = options.config ?? chooseVoltaConfig(problem.headDim, limits);
    const bytes = checkVoltaConfig(config, problem.headDim, options.accumulator, limits);
    const maxGroups = runtime.capabilities.limits.maxComputeWorkgroupsPerDimension;
    const groups = [Math.ceil(problem.seqQ / (WARP_ROWS * config.warps)), problem.headsQ, problem.batch];
    const names = ['query blocks (q.shape[2] / (32·config.warps))', 'q.shape[1]', 'q.shape[0]'];
    groups.forEach((g, i) => {
      if (g > maxGroups) throw new TileConfigError(i === 0 ? 'config.warps' : names[i], `${names[i]} = ${g} workgroups in one dimension`, `at most ${maxGroups}`);
    });
    const swizzles = (['Q', 'K', 'V'] as const).map((t) => planVoltaSwizzle(t, config.warps, config.blockKV, problem.headDim));
    const consts: Record<string, number> = { HEAD_DIM: problem.headDim, WARPS: config.warps, BLOCK_KV: config.blockKV };
    for (const sw of swizzles) sw.masks.forEach((mask, j) => (consts[`${sw.tile}_SWZ${j}`] = mask));
    const kernel = await runtime.pipelines.get(voltaKernelSource(options.accumulator), 'main', consts);
    const layout = kernel.bindings.find((b) => b.name === PARAMS_BINDING)!.struct!;
    const params = new ParamsPool(runtime.device.queue, runtime.ledger, `voltaAttention.${options.accumulator}`, layout, problem.batch, runtime.capabilities.limits.minStorageBufferOffsetAlignment);
    return new VoltaAttention(runtime, problem, options.accumulator, config, swizzles, bytes, kernel, params);
  }

  /** Record the attention into the caller's command encoder or open compute pass. No buffer is created. */
  encode(target: EncodeTarget, buffers: AttentionBuffers, call: AttentionCallOptions = {}): void {
    this.runtime.assertAlive();
    const p = this.problem;
    const limits = this.runtime.capabilities.limits;
    const { q, k, v, o } = resolveAttentionBuffers(buffers, p, limits);
    const kvLen = normalizeKvLengths(p, call.kvLengths, this.kvScratch);
    const s = p.strides;
    const offset = this.params.offsetFor({
      seqQ: p.seqQ,
      seqK: p.seqK,
      groupSize: p.groupSize,
      causal: p.causal ? 1 : 0,
      scaleLog2: p.scale * Math.LOG2E,
      qBatch: s.q.batch / 4, qHead: s.q.head / 4, qSeq: s.q.seq / 4,
      kBatch: s.k.batch / 4, kHead: s.k.head / 4, kSeq: s.k.seq / 4,
      vBatch: s.v.batch / 4, vHead: s.v.head / 4, vSeq: s.v.seq / 4,
      oBatch: s.o.batch, oHead: s.o.head, oSeq: s.o.seq,
      kvLen,
    });
    const group = this.runtime.bindGroups.get(this.kernel.bindGroupLayout, this.kernel.key, [
      { binding: 0, buffer: this.params.buffer, offset: 0, size: this.params.bindingBytes },
      { binding: 1, ...q },
      { binding: 2, ...k },
      { binding: 3, ...v },
      { binding: 4, ...o },
    ]);
    encodeDispatch(target, this.kernel.pipeline, group, [offset], this.workgroups, `voltaAttention.${this.accumulator}`);
  }

  /** Release the operator's parameter pool (the pipeline stays cached in the runtime). */
  destroy(): void {
    this.runtime.ledger.destroy(this.params.buffer);
  }

  /** Encode, submit, and resolve when the GPU is done. */
  async run(buffers: AttentionBuffers, call: AttentionCallOptions = {}): Promise<void> {
    await submitAndWait(this.runtime.device, (encoder) => this.encode(encoder, buffers, call));
  }
}
