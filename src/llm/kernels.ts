/**
 * The runner's own WGSL kernels (shaders/llm/), compiled through the runtime's
 * pipeline cache, each with a content-addressed params pool, plus the one
 * helper that binds and dispatches them. Kept apart from the attention library.
 */
import gemmWgsl from '../../shaders/llm/gemm.wgsl?raw';
import gemmMatrixWgsl from '../../shaders/llm/gemmMatrix.wgsl?raw';
import gemmMatrixDirectWgsl from '../../shaders/llm/gemmMatrixDirect.wgsl?raw';
import gemvWgsl from '../../shaders/llm/gemv.wgsl?raw';
import rmsNormWgsl from '../../shaders/llm/rmsNorm.wgsl?raw';
import ropeWgsl from '../../shaders/llm/rope.wgsl?raw';
import swigluWgsl from '../../shaders/llm/swiglu.wgsl?raw';
import embeddingWgsl from '../../shaders/llm/embedding.wgsl?raw';
import samplingWgsl from '../../shaders/llm/sampling.wgsl?raw';
import initWgsl from '../../shaders/llm/init.wgsl?raw';
import hashWgsl from '../../shaders/llm/common/hash.wgsl?raw';
import gemmParamsWgsl from '../../shaders/llm/common/gemmParams.wgsl?raw';
import resultTileOutWgsl from '../../shaders/llm/common/resultTileOut.wgsl?raw';
import type { FastAttentionRuntime } from '../runtime/runtime.js';
import { BindGroupCache } from '../runtime/bindGroupCache.js';
import { PARAMS_BINDING, type CompiledKernel, type KernelSource } from '../runtime/pipelineCache.js';
import { ParamsPool } from '../runtime/paramsPool.js';
import type { WgslConsts, WgslTypes } from '../runtime/wgsl.js';
import { resolveIncludes } from '../runtime/wgslIncludes.js';

/** WGSL shared by the runner's kernels, spliced where one says `//#include NAME`. */
const LLM_INCLUDES = { hash: hashWgsl, gemmParams: gemmParamsWgsl, resultTileOut: resultTileOutWgsl };

export const llmKernels = {
  gemm: { name: 'llm.gemm', code: resolveIncludes(gemmWgsl, LLM_INCLUDES) },
  gemmMatrix: { name: 'llm.gemmMatrix', code: resolveIncludes(gemmMatrixWgsl, LLM_INCLUDES) },
  gemmMatrixDirect: { name: 'llm.gemmMatrixDirect', code: resolveIncludes(gemmMatrixDirectWgsl, LLM_INCLUDES) },
  gemv: { name: 'llm.gemv', code: gemvWgsl },
  rmsNorm: { name: 'llm.rmsNorm', code: rmsNormWgsl },
  rope: { name: 'llm.rope', code: ropeWgsl },
  swiglu: { name: 'llm.swiglu', code: swigluWgsl },
  embedding: { name: 'llm.embedding', code: embeddingWgsl },
  sampling: { name: 'llm.sampling', code: resolveIncludes(samplingWgsl, LLM_INCLUDES) },
  init: { name: 'llm.init', code: resolveIncludes(initWgsl, LLM_INCLUDES) },
} satisfies Record<string, KernelSource>;

/** A compiled kernel and the pool its per-call parameters live in. */
export interface LlmOp {
  kernel: CompiledKernel;
  params: ParamsPool;
  /** Bindings after `params`, in binding order. */
  slots: number[];
}

/** A buffer bound whole, or a byte range of one. */
export type Bound = GPUBuffer | { buffer: GPUBuffer; offset: number; size: number };

/** Workgroups per dimension: spill to y when x would exceed the device limit. */
export function grid(n: number, maxPerDim: number): [number, number, number] {
  const x = Math.max(1, Math.min(n, maxPerDim));
  return [x, Math.ceil(n / x), 1];
}

/**
 * Compiles and caches the runner's pipelines (through the runtime's cache, so
 * two runners on one device share them) and keeps their bind groups: the
 * runner binds the same buffers every step, so each group is created once.
 */
export class LlmKernelSet {
  private readonly ops = new Map<string, Promise<LlmOp>>();
  private readonly pools: ParamsPool[] = [];
  /** Bind groups of the runner's fixed buffers; large enough for every layer of a 7B model. */
  readonly bindGroups: BindGroupCache;

  constructor(private readonly runtime: FastAttentionRuntime) {
    this.bindGroups = new BindGroupCache(runtime.device, 8192);
  }

  op(kernel: KernelSource, entry: string, consts: WgslConsts = {}, types: WgslTypes = {}): Promise<LlmOp> {
    const key = `${kernel.name}:${entry}:${JSON.stringify(consts)}:${JSON.stringify(types)}`;
    let hit = this.ops.get(key);
    if (!hit) {
      hit = this.runtime.pipelines.get(kernel, entry, consts, types).then((compiled) => {
        const layout = compiled.bindings.find((b) => b.name === PARAMS_BINDING)!.struct!;
        const params = new ParamsPool(this.runtime.device.queue, this.runtime.ledger, kernel.name, layout, 0, this.runtime.capabilities.limits.minStorageBufferOffsetAlignment, 64);
        this.pools.push(params);
        return { kernel: compiled, params, slots: compiled.bindings.filter((b) => b.name !== PARAMS_BINDING).map((b) => b.binding) };
      });
      this.ops.set(key, hit);
      hit.catch(() => this.ops.delete(key));
    }
    return hit;
  }

  /** Record one dispatch of `op` into an open compute pass. */
  dispatch(pass: GPUComputePassEncoder, op: LlmOp, params: Readonly<Record<string, number>>, buffers: readonly Bound[], groups: readonly [number, number, number]): void {
    const offset = op.params.offsetFor(params);
    const resources = [{ binding: 0, buffer: op.params.buffer, offset: 0, size: op.params.bindingBytes }];
    buffers.forEach((b, i) => {
      const r = 'buffer' in b ? b : { buffer: b, offset: 0, size: b.size };
      resources.push({ binding: op.slots[i], ...r });
    });
    const group = this.bindGroups.get(op.kernel.bindGroupLayout, op.kernel.key, resources);
    pass.setPipeline(op.kernel.pipeline);
    pass.setBindGroup(0, group, [offset]);
    pass.dispatchWorkgroups(groups[0], groups[1], groups[2]);
  }

  /** Release the params pools (pipelines stay cached in the runtime). */
  destroy(): void {
    for (const p of this.pools) this.runtime.ledger.destroy(p.buffer);
    this.pools.length = 0;
    this.ops.clear();
  }
}
