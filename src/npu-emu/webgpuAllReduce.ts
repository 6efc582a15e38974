/**
 * The tiling-AllReduce (FastAttention §3.3) executed for real: N logical devices
 * emulated on one GPUDevice, each with its own buffers. Tensor parallel over
 * heads: device d holds heads [d·H/N, (d+1)·H/N) of Q, K, V and the matching
 * rows of the output projection W, computes attention for its heads (the fused
 * FastAttention kernel) and its partial output Y_d = O_d · W_d (a GEMM), and an
 * AllReduce sums the partials so every device ends with Y = Σ_d Y_d.
 *
 *  - baseline: all attention, then the Linear, then one AllReduce of S·hidden;
 *  - tiled: the sequence is cut into blocks (by default the emulator's
 *    `chooseBlocks`), block i's query rows attend to keys [0, end of block i)
 *    when causal, and block i's AllReduce is encoded after block i+1's compute,
 *    where a second engine could overlap them.
 *
 * The AllReduce is a sequence of link transfers (shaders/npuAllReduce.wgsl),
 * one dispatch per (source, destination) pair per step. WebGPU has one queue,
 * and Dawn puts a barrier before any dispatch that reads what an earlier one
 * wrote, so on WebGPU the "overlap" is an encoding order; what it buys is
 * measured, not assumed (scripts/benchNpuOverlap.ts).
 */
import { submitAndWait } from '../attention/encode.js';
import allReduceWgsl from '../../shaders/npuAllReduce.wgsl?raw';
import { FlashAttentionPrefill } from '../attention/flashAttentionPrefill.js';
import { normalizeProblem } from '../attention/problem.js';
import { standardAttentionKernel } from '../attention/standardAttention.js';
import { cpuAttention } from '../reference/cpuAttention.js';
import type { FastAttentionRuntime } from '../runtime/runtime.js';
import { PARAMS_BINDING, type CompiledKernel } from '../runtime/pipelineCache.js';
import { ParamsPool } from '../runtime/paramsPool.js';
import { BufferUsage, MapMode } from '../runtime/usage.js';
import type { TileConfig } from '../tiling/tileConfig.js';
import { chooseBlocks, layerCostModel, pipelineMakespan, ROW_BLOCK, validateLayer, type AllReduceAlgorithm, type LayerConfig } from './allReduce.js';
import { NpuConfigError } from './errors.js';
import { ascend910B, type MachineConfig } from './machine.js';

export const npuAllReduceKernel = { name: 'npuAllReduce', code: allReduceWgsl };

/** One link transfer: `dst` (+)= `src` over chunk `chunk` of the region (-1 = the whole region). */
export interface LinkTransfer {
  src: number;
  dst: number;
  chunk: number;
  accumulate: boolean;
}

/**
 * The steps of an AllReduce over `devices` devices; the transfers of one step
 * are independent (distinct destinations and chunks). Ring: N−1 reduce-scatter
 * steps then N−1 all-gather steps, each moving one 1/N chunk per device; tree:
 * ⌈log₂N⌉ reduce steps then ⌈log₂N⌉ broadcast steps of the whole region, the
 * step counts the emulator's α–β model charges.
 */
export function allReduceSchedule(devices: number, algorithm: AllReduceAlgorithm): LinkTransfer[][] {
  const N = devices;
  const steps: LinkTransfer[][] = [];
  if (N <= 1) return steps;
  if (algorithm === 'ring') {
    // After reduce-scatter, device d holds the full sum of chunk (d + 1) mod N.
    for (let k = 0; k < N - 1; k++) steps.push(Array.from({ length: N }, (_, d) => ({ src: d, dst: (d + 1) % N, chunk: (((d - k) % N) + N) % N, accumulate: true })));
    for (let k = 0; k < N - 1; k++) steps.push(Array.from({ length: N }, (_, d) => ({ src: d, dst: (d + 1) % N, chunk: (((d + 1 - k) % N) + N) % N, accumulate: false })));
    return steps;
  }
  const levels = Math.ceil(Math.log2(N));
  for (let s = 0; s < levels; s++) {
    const step: LinkTransfer[] = [];
    for (let d = 0; d + (1 << s) < N; d += 2 << s) step.push({ src: d + (1 << s), dst: d, chunk: -1, accumulate: true });
    steps.push(step);
  }
  for (let s = levels - 1; s >= 0; s--) {
    const step: LinkTransfer[] = [];
    for (let d = 0; d + (1 << s) < N; d += 2 << s) step.push({ src: d, dst: d + (1 << s), chunk: -1, accumulate: false });
    steps.push(step);
  }
  return steps;
}

export interface TensorParallelOptions {
  /** The layer; `batch` must be 1 (a block of rows is then contiguous in every tensor). */
  layer: LayerConfig;
  devices: number;
  /** Default `'ring'`. */
  algorithm?: AllReduceAlgorithm;
  /** Rows per block of the tiled mode; default: the emulator's `chooseBlocks` on `machine`. */
  blocks?: number[];
  /** Block granularity for `chooseBlocks`; default {@link ROW_BLOCK}. Only without `blocks` (given together they throw). */
  granularity?: number;
  /**
   * Machine whose cost model picks the blocks, default `ascend910B`. With
   * `blocks` it predicts their makespan instead (`predictedSeconds`, as
   * `simulateTilingAllReduce` does for given blocks); `blocks` without it: no prediction.
   */
  machine?: MachineConfig;
  /** Tile of the fused attention kernel; default: the runtime's choice. */
  tile?: TileConfig;
}

export type TensorParallelMode = 'baseline' | 'tiled';

/** Host inputs of the whole layer: q/k/v `[S, H, D]` (token-major), w `[H·D, hidden]`, row-major. */
export interface TensorParallelInputs {
  q: Float32Array<ArrayBuffer>;
  k: Float32Array<ArrayBuffer>;
  v: Float32Array<ArrayBuffer>;
  w: Float32Array<ArrayBuffer>;
}

/** Buffers of one logical device. */
export interface LogicalDevice {
  q: GPUBuffer;
  k: GPUBuffer;
  v: GPUBuffer;
  /** Attention output of this device's heads, `[S, H/N, D]`. */
  o: GPUBuffer;
  /** Rows of the output projection for this device's heads, `[H/N·D, hidden]`. */
  w: GPUBuffer;
  /** Partial, then (after the AllReduce) full, layer output `[S, hidden]`. */
  y: GPUBuffer;
}

type Step =
  | { kind: 'attention'; op: FlashAttentionPrefill; device: number; rowStart: number }
  | { kind: 'dispatch'; pipeline: GPUComputePipeline; group: GPUBindGroup; offset: number; workgroups: [number, number, number]; label: string };

/** Float64 reference of the unsplit layer: full attention over all heads, then Y = O · W. */
export function cpuTensorParallelReference(layer: LayerConfig, inputs: TensorParallelInputs): Float64Array {
  const { heads: H, headDim: D, seqLen: S, hidden } = layer;
  const shape = [1, H, S, D] as const;
  const p = normalizeProblem({ q: { shape, layout: 'BSHD' }, k: { shape, layout: 'BSHD' }, v: { shape, layout: 'BSHD' }, causal: layer.causal });
  const o = cpuAttention(p, inputs.q, inputs.k, inputs.v);
  const K = H * D;
  const y = new Float64Array(S * hidden);
  for (let s = 0; s < S; s++)
    for (let c = 0; c < K; c++) {
      const x = o[s * K + c];
      if (x === 0) continue;
      for (let n = 0; n < hidden; n++) y[s * hidden + n] += x * inputs.w[c * hidden + n];
    }
  return y;
}

/**
 * A tensor-parallel attention + output-projection layer on N logical devices.
 *
 * @example
 * ```ts
 * const tp = await WebGpuTensorParallelLayer.create(rt, { layer: { name: 'l', hidden: 1024, heads: 8, headDim: 128, seqLen: 2048, causal: true }, devices: 4 });
 * tp.setInputs({ q, k, v, w });
 * await tp.run('tiled');
 * const y0 = await tp.readOutput(0); // equals cpuTensorParallelReference(layer, { q, k, v, w })
 * ```
 */
export class WebGpuTensorParallelLayer {
  readonly headsPerDevice: number;
  /** Makespan (s) of the blocks predicted on `machine`; null when `blocks` were given without a `machine`. */
  readonly predictedSeconds: number | null;

  private constructor(
    private readonly runtime: FastAttentionRuntime,
    readonly layer: LayerConfig,
    readonly devices: readonly LogicalDevice[],
    readonly algorithm: AllReduceAlgorithm,
    readonly blocks: readonly number[],
    private readonly programs: Record<TensorParallelMode, Step[]>,
    private readonly pools: ParamsPool[],
    private readonly ops: FlashAttentionPrefill[],
    predictedSeconds: number | null,
  ) {
    this.headsPerDevice = layer.heads / devices.length;
    this.predictedSeconds = predictedSeconds;
  }

  static async create(runtime: FastAttentionRuntime, options: TensorParallelOptions): Promise<WebGpuTensorParallelLayer> {
    runtime.assertAlive();
    const { layer, devices: N } = options;
    const algorithm = options.algorithm ?? 'ring';
    validateLayer(layer, N, algorithm);
    if (options.blocks && options.granularity !== undefined)
      throw new NpuConfigError('granularity', `got ${options.granularity} together with blocks [${options.blocks.join(', ')}]; granularity only steers the block chooser`, 'granularity without blocks, or blocks without granularity');
    if ((layer.batch ?? 1) !== 1) throw new NpuConfigError('layer.batch', `got ${layer.batch}`, '1 (run one sequence per layer call)');
    if (layer.hidden % 4 !== 0) throw new NpuConfigError('layer.hidden', `got ${layer.hidden}`, 'multiples of 4 (the AllReduce moves vec4s)');
    const S = layer.seqLen;
    const D = layer.headDim;
    const Hd = layer.heads / N;
    const hidden = layer.hidden;
    const machine = options.machine ?? ascend910B;
    let blocks: number[];
    let predictedSeconds: number | null = null;
    const costs = layerCostModel(machine, layer, N, algorithm);
    if (options.blocks) {
      blocks = [...options.blocks];
      // Given blocks and a machine: that machine's prediction for them (as simulateTilingAllReduce gives); without a machine, none.
      if (options.machine) predictedSeconds = pipelineMakespan(costs, blocks) / machine.clockHz;
    } else {
      const chosen = chooseBlocks(costs, S, options.granularity ?? ROW_BLOCK);
      blocks = chosen.blocks;
      predictedSeconds = chosen.makespan / machine.clockHz;
    }
    if (blocks.length === 0 || blocks.some((b) => !Number.isInteger(b) || b < 1) || blocks.reduce((a, b) => a + b, 0) !== S)
      throw new NpuConfigError('blocks', `block sizes ${blocks.join(', ')} must be positive integers summing to seqLen = ${S}`, `a partition of ${S}`);
    const align = runtime.capabilities.limits.minStorageBufferOffsetAlignment;
    let start = 0;
    for (const b of blocks) {
      if ((start * Hd * D * 4) % align !== 0)
        throw new NpuConfigError('blocks', `a block starts at row ${start}, byte offset ${start * Hd * D * 4} into Q/O, not a multiple of ${align}`, `block starts that are multiples of ${align / gcd(align, Hd * D * 4)} rows`);
      start += b;
    }

    const owner = 'npuEmu.tensorParallel';
    const storage = BufferUsage.STORAGE | BufferUsage.COPY_DST | BufferUsage.COPY_SRC;
    const make = (label: string, floats: number): GPUBuffer => runtime.ledger.create(owner, { label: `${owner}.${label}`, size: floats * 4, usage: storage });
    const devices: LogicalDevice[] = Array.from({ length: N }, (_, d) => ({
      q: make(`dev${d}.q`, S * Hd * D),
      k: make(`dev${d}.k`, S * Hd * D),
      v: make(`dev${d}.v`, S * Hd * D),
      o: make(`dev${d}.o`, S * Hd * D),
      w: make(`dev${d}.w`, Hd * D * hidden),
      y: make(`dev${d}.y`, S * hidden),
    }));

    // Attention operators by (rows, keys): block i's rows see keys [0, end of block) when causal.
    const ops = new Map<string, FlashAttentionPrefill>();
    const attentionOp = async (rows: number, keys: number): Promise<FlashAttentionPrefill> => {
      const key = `${rows}x${keys}`;
      let op = ops.get(key);
      if (!op) {
        op = await FlashAttentionPrefill.create(runtime, {
          q: { shape: [1, Hd, rows, D], layout: 'BSHD' },
          k: { shape: [1, Hd, keys, D], layout: 'BSHD' },
          v: { shape: [1, Hd, keys, D], layout: 'BSHD' },
          causal: layer.causal,
          tile: options.tile,
        });
        ops.set(key, op);
      }
      return op;
    };

    const gemm = await runtime.pipelines.get(standardAttentionKernel, 'batchedGemm', {});
    const reduce = await runtime.pipelines.get(npuAllReduceKernel, 'main', {});
    const schedule = allReduceSchedule(N, algorithm);
    const gemmPool = new ParamsPool(runtime.device.queue, runtime.ledger, owner, structOf(gemm), 0, align, blocks.length + 1);
    const reducePool = new ParamsPool(runtime.device.queue, runtime.ledger, owner, structOf(reduce), 0, align, (blocks.length + 1) * 2 * Math.max(N, 1));
    const maxGroups = runtime.capabilities.limits.maxComputeWorkgroupsPerDimension;
    const group = (k: CompiledKernel, buffers: GPUBuffer[], paramsBuffer: GPUBuffer, paramsBytes: number): GPUBindGroup =>
      runtime.device.createBindGroup({
        layout: k.bindGroupLayout,
        entries: [{ binding: 0, resource: { buffer: paramsBuffer, size: paramsBytes } }, ...buffers.map((buffer, i) => ({ binding: i + 1, resource: { buffer } }))],
      });
    const gemmGroups = devices.map((dv) => group(gemm, [dv.o, dv.w, dv.y], gemmPool.buffer, gemmPool.bindingBytes));
    const linkGroups = new Map<string, GPUBindGroup>();
    const linkGroup = (src: number, dst: number): GPUBindGroup => {
      const key = `${src}>${dst}`;
      let g = linkGroups.get(key);
      if (!g) linkGroups.set(key, (g = group(reduce, [devices[src].y, devices[dst].y], reducePool.buffer, reducePool.bindingBytes)));
      return g;
    };

    const compute = async (rowStart: number, rows: number): Promise<Step[]> => {
      const op = await attentionOp(rows, layer.causal ? rowStart + rows : S);
      const steps: Step[] = devices.map((_, d) => ({ kind: 'attention', op, device: d, rowStart }));
      const offset = gemmPool.offsetFor({
        M: rows, N: hidden, K: Hd * D,
        aBase: rowStart * Hd * D, aZ0: 0, aGroup: 1, aBatch: 0, aRow: Hd * D, aCol: 1,
        bBase: 0, bZ0: 0, bGroup: 1, bBatch: 0, bRow: hidden, bCol: 1,
        cBase: rowStart * hidden, cZ0: 0, cGroup: 1, cBatch: 0, cRow: hidden, cCol: 1,
        rows: 0, cols: 0, scale: 0, maskBase: 0, maskRows: 0,
      });
      devices.forEach((_, d) =>
        steps.push({ kind: 'dispatch', pipeline: gemm.pipeline, group: gemmGroups[d], offset, workgroups: [Math.ceil(hidden / 64), Math.ceil(rows / 64), 1], label: 'npuEmu.linear' }),
      );
      return steps;
    };
    const allReduce = (rowStart: number, rows: number): Step[] => {
      const base = (rowStart * hidden) / 4;
      const len = (rows * hidden) / 4;
      const steps: Step[] = [];
      for (const step of schedule) {
        for (const t of step) {
          const lo = t.chunk < 0 ? 0 : Math.floor((t.chunk * len) / N);
          const hi = t.chunk < 0 ? len : Math.floor(((t.chunk + 1) * len) / N);
          if (hi <= lo) continue;
          const offset = reducePool.offsetFor({ srcOffset: base + lo, dstOffset: base + lo, count: hi - lo, accumulate: t.accumulate ? 1 : 0 });
          const wg = Math.ceil((hi - lo) / 256);
          const x = Math.min(wg, maxGroups);
          steps.push({ kind: 'dispatch', pipeline: reduce.pipeline, group: linkGroup(t.src, t.dst), offset, workgroups: [x, Math.ceil(wg / x), 1], label: 'npuEmu.allReduce' });
        }
      }
      return steps;
    };

    const baseline = [...(await compute(0, S)), ...allReduce(0, S)];
    const tiled: Step[] = [];
    const starts = blocks.map((_, i) => blocks.slice(0, i).reduce((a, b) => a + b, 0));
    for (let i = 0; i < blocks.length; i++) {
      tiled.push(...(await compute(starts[i], blocks[i])));
      // Block i−1's AllReduce after block i's compute: the order a concurrent SDMA engine would overlap.
      if (i > 0) tiled.push(...allReduce(starts[i - 1], blocks[i - 1]));
    }
    tiled.push(...allReduce(starts[blocks.length - 1], blocks[blocks.length - 1]));
    return new WebGpuTensorParallelLayer(runtime, layer, devices, algorithm, blocks, { baseline, tiled }, [gemmPool, reducePool], [...ops.values()], predictedSeconds);
  }

  /** Dispatches one `encode(…, mode)` records. */
  dispatchCount(mode: TensorParallelMode): number {
    return this.programs[mode].length;
  }

  /** Split full-layer inputs by heads and upload them (setup, not a hot path). */
  setInputs(inputs: TensorParallelInputs): void {
    const { heads: H, headDim: D, seqLen: S, hidden } = this.layer;
    const Hd = this.headsPerDevice;
    const q = this.runtime.device.queue;
    const slice = new Float32Array(S * Hd * D);
    this.devices.forEach((dv, d) => {
      for (const [name, src] of [['q', inputs.q], ['k', inputs.k], ['v', inputs.v]] as const) {
        for (let s = 0; s < S; s++) slice.set(src.subarray((s * H + d * Hd) * D, (s * H + (d + 1) * Hd) * D), s * Hd * D);
        q.writeBuffer(dv[name], 0, slice);
      }
      q.writeBuffer(dv.w, 0, inputs.w.subarray(d * Hd * D * hidden, (d + 1) * Hd * D * hidden));
    });
  }

  /** Record the layer in one compute pass (the caller's, or one opened on the encoder). No buffer is created. */
  encode(target: GPUCommandEncoder | GPUComputePassEncoder, mode: TensorParallelMode): void {
    this.runtime.assertAlive();
    if (mode !== 'baseline' && mode !== 'tiled') throw new NpuConfigError('mode', `got ${JSON.stringify(mode)}`, 'baseline, tiled');
    const isPass = typeof (target as GPUComputePassEncoder).dispatchWorkgroups === 'function';
    const pass = isPass ? (target as GPUComputePassEncoder) : (target as GPUCommandEncoder).beginComputePass({ label: `npuEmu.tensorParallel.${mode}` });
    const Hd = this.headsPerDevice;
    const D = this.layer.headDim;
    for (const s of this.programs[mode]) {
      if (s.kind === 'attention') {
        const dv = this.devices[s.device];
        const at = s.rowStart * Hd * D * 4;
        s.op.encode(pass, { q: { buffer: dv.q, offset: at }, k: dv.k, v: dv.v, o: { buffer: dv.o, offset: at } });
      } else {
        pass.setPipeline(s.pipeline);
        pass.setBindGroup(0, s.group, [s.offset]);
        pass.dispatchWorkgroups(...s.workgroups);
      }
    }
    if (!isPass) pass.end();
  }

  async run(mode: TensorParallelMode): Promise<void> {
    await submitAndWait(this.runtime.device, (encoder) => this.encode(encoder, mode));
  }

  /** Device `d`'s layer output `[S, hidden]` (a staging buffer is created and destroyed). */
  async readOutput(d: number): Promise<Float32Array> {
    if (!Number.isInteger(d) || d < 0 || d >= this.devices.length) throw new NpuConfigError('device', `got ${d}`, `0 … ${this.devices.length - 1}`);
    const src = this.devices[d].y;
    const staging = this.runtime.ledger.create('npuEmu.tensorParallel', { label: 'npuEmu.tensorParallel.readback', size: src.size, usage: BufferUsage.MAP_READ | BufferUsage.COPY_DST });
    try {
      const enc = this.runtime.device.createCommandEncoder();
      enc.copyBufferToBuffer(src, 0, staging, 0, src.size);
      this.runtime.device.queue.submit([enc.finish()]);
      await staging.mapAsync(MapMode.READ);
      return new Float32Array(staging.getMappedRange().slice(0));
    } finally {
      this.runtime.ledger.destroy(staging);
    }
  }

  /** Release every device buffer and params pool this layer created. */
  destroy(): void {
    for (const dv of this.devices) for (const b of Object.values(dv)) this.runtime.ledger.destroy(b);
    for (const p of this.pools) this.runtime.ledger.destroy(p.buffer);
    for (const op of this.ops) op.destroy();
  }
}

function structOf(k: CompiledKernel) {
  return k.bindings.find((b) => b.name === PARAMS_BINDING)!.struct!;
}

function gcd(a: number, b: number): number {
  return b === 0 ? a : gcd(b, a % b);
}
