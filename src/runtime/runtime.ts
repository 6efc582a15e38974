/**
 * The runtime: one GPUDevice, its capabilities, the pipeline cache, the ledger
 * of every buffer the library creates, and the shared M-masks.
 */
import { DeviceLostError, NoAdapterError } from '../errors.js';
import { buildMMask, mMaskBytes } from '../tiling/mask.js';
import { DEFAULT_REGISTER_BUDGET, type TileLimits } from '../tiling/tileConfig.js';
import { BindGroupCache } from './bindGroupCache.js';
import { describeCapabilities, WANTED_FEATURES, WANTED_LIMITS, type DeviceCapabilities } from './capabilities.js';
import { BufferLedger } from './memory.js';
import { PipelineCache } from './pipelineCache.js';
import { BufferUsage } from './usage.js';
import { adapterKey, type TuningTable } from '../tuning/tuning.js';
import { shippedTuningFor } from '../tuning/shipped.js';
import { FlashAttentionPrefill, IMPLEMENTED_TIERS } from '../attention/flashAttentionPrefill.js';
import { tierAvailability, type TierAvailability } from '../attention/tiers.js';
import type { AttentionOptions } from '../attention/problem.js';
import { StandardAttention, type StandardAttentionOptions } from '../attention/standardAttention.js';
import { FlashDecode, type DecodeOptions } from '../decode/flashDecode.js';
import { PagedKvCache, type PagedKvCacheOptions } from '../kvcache/pagedKvCache.js';

export interface RuntimeOptions {
  /** Use this device (an LLM runner's own). The runtime never destroys a device it was given. */
  device?: GPUDevice;
  /** Adapter the given device came from, for its info; otherwise `device.adapterInfo` is used. */
  adapter?: GPUAdapter;
  /** The WebGPU entry point; default `navigator.gpu`. In Node, see `createNodeRuntime` in `fastattention-webgpu/node`. */
  gpu?: GPU;
  powerPreference?: GPUPowerPreference;
  /** Register budget per invocation used to reject tile configs that would spill; default 128. */
  registerBudget?: number;
  /** Tuning table to use (e.g. one produced by `fastattn tune`); default: the shipped table for this adapter, if any. */
  tuning?: TuningTable;
}

/** Request an adapter and a device with the features and limits the kernels can use. */
export async function acquireDevice(gpu: GPU, powerPreference: GPUPowerPreference = 'high-performance'): Promise<{ adapter: GPUAdapter; device: GPUDevice }> {
  const adapter = await gpu.requestAdapter({ powerPreference });
  if (!adapter) throw new NoAdapterError('requestAdapter() returned null: no WebGPU adapter is available');
  const requiredFeatures = WANTED_FEATURES.filter((f) => adapter.features.has(f)) as GPUFeatureName[];
  const requiredLimits: Record<string, number> = {};
  for (const name of WANTED_LIMITS) requiredLimits[name] = adapter.limits[name];
  const device = await adapter.requestDevice({ requiredFeatures, requiredLimits });
  return { adapter, device };
}

export class FastAttentionRuntime {
  readonly device: GPUDevice;
  readonly capabilities: DeviceCapabilities;
  /** Every buffer the library created and still holds. */
  readonly ledger: BufferLedger;
  readonly pipelines: PipelineCache;
  readonly bindGroups: BindGroupCache;
  readonly registerBudget: number;
  private readonly ownsDevice: boolean;
  private lostReason: string | null = null;
  private readonly mMasks = new Map<number, GPUBuffer>();
  /** Tuned (tier, tile) per shape class for this adapter; consulted when an operator is created without a tier or tile. */
  tuning: TuningTable | undefined;
  /** dawn.node tears the device down when its GPU instance or adapter is collected, so hold them. */
  private readonly keepAlive: unknown[];

  private constructor(device: GPUDevice, info: GPUAdapterInfo, ownsDevice: boolean, registerBudget: number, keepAlive: unknown[]) {
    this.device = device;
    this.keepAlive = keepAlive;
    this.ownsDevice = ownsDevice;
    this.capabilities = describeCapabilities(device, info);
    this.ledger = new BufferLedger(device);
    this.pipelines = new PipelineCache(device);
    this.bindGroups = new BindGroupCache(device);
    this.registerBudget = registerBudget;
    this.tuning = shippedTuningFor(adapterKey(this.capabilities));
    device.lost.then((info) => {
      this.lostReason = `${info.reason}: ${info.message}`;
    });
  }

  /**
   * Acquire a device (or adopt the caller's) and report what it can do.
   *
   * @example
   * ```ts
   * const rt = await FastAttentionRuntime.create();              // browser: navigator.gpu
   * const rt2 = await FastAttentionRuntime.create({ device });   // an existing GPUDevice
   * console.log(rt.capabilities.features, rt.capabilities.limits);
   * ```
   */
  static async create(options: RuntimeOptions = {}): Promise<FastAttentionRuntime> {
    const budget = options.registerBudget ?? DEFAULT_REGISTER_BUDGET;
    if (options.device) {
      const info = options.adapter?.info ?? (options.device as GPUDevice & { adapterInfo?: GPUAdapterInfo }).adapterInfo;
      return FastAttentionRuntime.withTuning(new FastAttentionRuntime(options.device, info ?? ({} as GPUAdapterInfo), false, budget, [options.adapter]), options);
    }
    const gpu = options.gpu ?? (globalThis as { navigator?: { gpu?: GPU } }).navigator?.gpu;
    if (!gpu) throw new NoAdapterError('navigator.gpu is missing: this browser has no WebGPU (in Node, use createNodeRuntime)');
    const { adapter, device } = await acquireDevice(gpu, options.powerPreference);
    return FastAttentionRuntime.withTuning(new FastAttentionRuntime(device, adapter.info, true, budget, [gpu, adapter]), options);
  }

  private static withTuning(rt: FastAttentionRuntime, options: RuntimeOptions): FastAttentionRuntime {
    if (options.tuning) rt.tuning = options.tuning;
    return rt;
  }

  /** Which kernel tiers this device can run, each with the reason. */
  get tiers(): TierAvailability[] {
    return tierAvailability(this.capabilities, IMPLEMENTED_TIERS);
  }

  /** Why the device was lost, or null while it is alive. */
  get lost(): string | null {
    return this.lostReason;
  }

  /** Throw {@link DeviceLostError} if the device is gone. */
  assertAlive(): void {
    if (this.lostReason !== null) throw new DeviceLostError(this.lostReason);
  }

  /** The limits tile configurations are checked against. */
  get tileLimits(): TileLimits {
    const L = this.capabilities.limits;
    return {
      maxComputeWorkgroupStorageSize: L.maxComputeWorkgroupStorageSize,
      maxComputeInvocationsPerWorkgroup: L.maxComputeInvocationsPerWorkgroup,
      maxComputeWorkgroupSizeX: L.maxComputeWorkgroupSizeX,
      registerBudget: this.registerBudget,
    };
  }

  /** The M-mask for blocks of at most `bMax` rows and columns, uploaded once and shared by every operator. */
  mMask(bMax: number): { buffer: GPUBuffer; bytes: number } {
    let buffer = this.mMasks.get(bMax);
    if (!buffer) {
      const data = buildMMask(bMax);
      buffer = this.ledger.create('tilingMask', { label: `mMask.${bMax}`, size: data.byteLength, usage: BufferUsage.STORAGE | BufferUsage.COPY_DST });
      this.device.queue.writeBuffer(buffer, 0, data);
      this.mMasks.set(bMax, buffer);
    }
    return { buffer, bytes: mMaskBytes(bMax) };
  }

  /**
   * Create the fused FastAttention operator for one problem shape.
   *
   * @example
   * ```ts
   * const op = await rt.createPrefill({ q: { shape: [1, 32, 4096, 128] }, k: { shape: [1, 8, 4096, 128] }, v: { shape: [1, 8, 4096, 128] }, causal: true });
   * op.encode(encoder, { q, k, v, o });
   * ```
   */
  createPrefill(options: AttentionOptions): Promise<FlashAttentionPrefill> {
    return FlashAttentionPrefill.create(this, options);
  }

  /** Create the standard-attention baseline (unfused, S×S intermediates) for one problem shape. */
  createStandardAttention(options: StandardAttentionOptions): Promise<StandardAttention> {
    return StandardAttention.create(this, options);
  }

  /** Create the split-KV decode operator (Sq ≤ 16 against a contiguous or paged KV cache). */
  createDecode(options: DecodeOptions): Promise<FlashDecode> {
    return FlashDecode.create(this, options);
  }

  /** Create a paged KV cache (pages in up to four pool buffers, a page table, appends without copies). */
  createPagedKvCache(options: PagedKvCacheOptions): PagedKvCache {
    return PagedKvCache.create(this, options);
  }

  /** Release every buffer the runtime created, and the device if the runtime created it. */
  destroy(): void {
    this.ledger.destroyAll();
    this.mMasks.clear();
    if (this.ownsDevice) this.device.destroy();
  }
}
