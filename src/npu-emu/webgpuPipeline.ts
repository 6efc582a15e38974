/**
 * The emulator's fused attention schedules (unified and two-level tiling, with
 * or without the tiling-mask) executed for real on WebGPU, with results that
 * can be checked against the float64 reference.
 *
 * Mapping (an AI core ↦ a workgroup per row block; a Cube/Vector sync ↦ a
 * dispatch boundary; the GM workspace ↦ one storage buffer):
 *  - every level-1 block of a row block goes through four phases, each a
 *    workgroup's work inside a dispatch: QK (Cube, S → GM), SM (Vector, P → GM),
 *    PV (Cube, Ob → GM), UPD (Vector, O update), with the same block sizes
 *    (`FlashTiling`: blockQ, blockKV, level-2 subKV and vecRows, gmStages) as the
 *    emulator's task graph;
 *  - unified (gmStages 1): one buffer per handoff, so the four phases of a block
 *    are four dispatches and the Cube and the Vector take turns;
 *  - two-level (gmStages 2): two workspaces per handoff; step s runs QK(s),
 *    SM(s−1), PV(s−2), UPD(s−3) — the Cube on block s while the Vector works on
 *    block s−1 — either as four workgroup roles of ONE dispatch (`issue:
 *    'roles'`, they really run concurrently) or as four independent dispatches
 *    (`issue: 'dispatches'`, which a single WebGPU queue is free to serialize,
 *    and Dawn does whenever a dispatch touches a buffer an earlier one wrote).
 *
 * GPU atomic counters record what ran (phases, level-2 sub-blocks by mask kind,
 * score pairs) so the handoff count can be compared with the emulator's syncs.
 */
import cubeVectorWgsl from '../../shaders/npuCubeVector.wgsl?raw';
import { BufferError, TileConfigError, UnsupportedError } from '../errors.js';
import { encodeDispatch, submitAndWait, type EncodeTarget } from '../attention/encode.js';
import { normalizeProblem, rejectFusedKernelOptions, resolveAttentionBuffers, type AttentionBuffers, type AttentionOptions, type AttentionProblem } from '../attention/problem.js';
import type { FastAttentionRuntime } from '../runtime/runtime.js';
import { PARAMS_BINDING, type CompiledKernel } from '../runtime/pipelineCache.js';
import { ParamsPool } from '../runtime/paramsPool.js';
import { BufferUsage, MapMode } from '../runtime/usage.js';
import { isMasked, keyBlockRange } from '../tiling/mask.js';
import { NpuConfigError } from './errors.js';
import { ascend910B, type MachineConfig } from './machine.js';
import { buildSchedule, resolveTiling, validateTiling, type AttentionPrefillProblem, type FlashTiling, type ScheduleOptions } from './schedules.js';

export const npuCubeVectorKernel = { name: 'npuCubeVector', code: cubeVectorWgsl };

/** How a step's independent phases reach the GPU. */
export type WebGpuIssueMode = 'roles' | 'dispatches';
export const WEBGPU_ISSUE_MODES: readonly WebGpuIssueMode[] = ['roles', 'dispatches'];

/**
 * The common attention options this pipeline honours. `tile` and `tier` select
 * the fused kernel's tile and tier, and `checkF16Range` is that kernel's
 * overflow check: this kernel has none of them (its block sizes are `tiling`), so
 * `create` rejects them with an `UnsupportedError` naming the field, before any
 * GPU work, rather than ignoring them. `cache` is rejected likewise (contiguous
 * K/V only).
 */
export interface CubeVectorOptions extends Omit<AttentionOptions, 'tile' | 'tier' | 'dtype' | 'checkF16Range'> {
  /**
   * Storage type of Q/K/V/O: `f32` only. The kernel (shaders/npuCubeVector.wgsl)
   * reads and writes `array<f32>`, so any other dtype is rejected by `create`
   * with an `UnsupportedError` naming `dtype`, before any GPU work.
   */
  dtype?: 'f32';
  /**
   * `false` or omitted: the kernel computes in f32 and has no f16 range check
   * (the fused prefill's f32 tier runs one with `checkF16Range: true`); `true`
   * is rejected with an `UnsupportedError` naming `checkF16Range`.
   */
  checkF16Range?: false;
  /** The emulator schedule to execute. */
  schedule: 'unified' | 'twoLevel';
  /** Skip empty blocks, leave full blocks unmasked, read M-mask windows; default true. */
  tilingMask?: boolean;
  /** Overrides of the schedule's default tiling (`UNIFIED_TILING` / `TWO_LEVEL_TILING`). */
  tiling?: Partial<FlashTiling>;
  /** Default `'roles'`. */
  issue?: WebGpuIssueMode;
  /** Valid keys of every sequence (≤ S_k), fixed at creation like the emulator's `kvLen`; default S_k. */
  kvLength?: number;
}

/** The level-1 block each phase works on in one step; -1 = idle. */
export interface PhaseStep {
  qk: number;
  sm: number;
  pv: number;
  upd: number;
}

/** What the GPU counted. `handoffs` = SM + PV + UPD runs: each consumes a block the other unit published in GM. */
export interface CubeVectorCounters {
  qk: number;
  sm: number;
  pv: number;
  upd: number;
  subBlocks: number;
  fullSubBlocks: number;
  partialSubBlocks: number;
  /** (query, key) pairs whose score was computed. */
  pairs: number;
  /** Row blocks no key reaches (written as zeros). */
  zeroRowBlocks: number;
  handoffs: number;
}

/** The emulator's counts for the same problem and schedule, all rows on one core. */
export interface EmulatorCounts {
  /** Cube↔Vector sync tasks. */
  syncs: number;
  levelOneBlocks: number;
  subBlocks: number;
  skippedPairs: number;
  taskCount: number;
}

/**
 * Steps of a row block with `blocks` level-1 blocks: unified issues one phase
 * per step; two-level overlaps four blocks in flight. With no block at all a
 * single UPD step writes the zeros.
 */
export function planPhaseSteps(blocks: number, gmStages: 1 | 2): PhaseStep[] {
  if (blocks <= 0) return [{ qk: -1, sm: -1, pv: -1, upd: 0 }];
  const idle = { qk: -1, sm: -1, pv: -1, upd: -1 };
  const steps: PhaseStep[] = [];
  if (gmStages === 1) {
    for (let j = 0; j < blocks; j++) steps.push({ ...idle, qk: j }, { ...idle, sm: j }, { ...idle, pv: j }, { ...idle, upd: j });
    return steps;
  }
  const at = (j: number): number => (j >= 0 && j < blocks ? j : -1);
  for (let s = 0; s < blocks + 3; s++) steps.push({ qk: at(s), sm: at(s - 1), pv: at(s - 2), upd: at(s - 3) });
  return steps;
}

function activePhases(s: PhaseStep): (keyof PhaseStep)[] {
  return (['qk', 'sm', 'pv', 'upd'] as const).filter((k) => s[k] >= 0);
}

/**
 * The emulator's task-graph counts for a problem on a one-core copy of
 * `machine`: every row block lands on the simulated core, so its syncs are the
 * whole problem's.
 */
export function emulatorCounts(problem: AttentionPrefillProblem, options: ScheduleOptions, machine: MachineConfig = ascend910B): EmulatorCounts {
  const g = buildSchedule({ ...machine, aiCores: 1 }, problem, options);
  const meta = g.meta ?? {};
  return {
    syncs: g.tasks.filter((t) => t.kind === 'sync').length,
    levelOneBlocks: Number(meta.levelOneBlocksOnCore),
    subBlocks: Number(meta.subBlocksOnCore),
    skippedPairs: Number(meta.skippedPairsOnCore),
    taskCount: g.tasks.length,
  };
}

interface Layout {
  threads: number;
  tm: number;
  colThreads: number;
  kc: number;
  maskBlock: number;
}

/** Cube register tiles: TM rows × columns strided by COL_THREADS; rejects what the device cannot run. */
function chooseLayout(t: FlashTiling, headDim: number, limits: FastAttentionRuntime['capabilities']['limits']): Layout {
  let colThreads = 16;
  while (t.subKV % colThreads !== 0) colThreads /= 2;
  const maxThreads = Math.min(256, limits.maxComputeInvocationsPerWorkgroup, limits.maxComputeWorkgroupSizeX);
  let tm = 1;
  while (tm <= t.blockQ && (t.blockQ % tm !== 0 || (t.blockQ / tm) * colThreads > maxThreads)) tm++;
  const threads = (t.blockQ / tm) * colThreads;
  const regs = tm * Math.max(t.subKV / colThreads, Math.ceil(headDim / colThreads));
  if (regs > 160)
    throw new TileConfigError('tiling.blockQ', `blockQ ${t.blockQ} with subKV ${t.subKV} and headDim ${headDim} needs ${regs} accumulators per invocation`, 'tilings needing ≤ 160 accumulators per invocation (smaller blockQ, or subKV a multiple of 16)');
  if (t.vecRows > threads)
    throw new TileConfigError('tiling.vecRows', `${t.vecRows} rows per vector pass exceed the ${threads} invocations of a workgroup`, `at most ${threads}`);
  const kc = 16;
  const storage = (t.blockQ * kc + kc * Math.max(t.subKV, headDim) + threads) * 4;
  if (storage > limits.maxComputeWorkgroupStorageSize)
    throw new TileConfigError('tiling.blockQ', `needs ${storage} bytes of workgroup storage`, `at most ${limits.maxComputeWorkgroupStorageSize} bytes`);
  return { threads, tm, colThreads, kc, maskBlock: Math.max(t.blockQ, t.subKV) };
}

interface Dispatch {
  offset: number;
  phases: number;
}

const COUNTERS = 16;

/**
 * Attention prefill executed as the emulator's Cube/Vector schedule. Creation
 * validates, compiles and allocates everything (workspace, counters, params);
 * encoding allocates nothing.
 *
 * @example
 * ```ts
 * const op = await WebGpuCubeVectorPipeline.create(rt, { q: { shape: [1, 8, 1024, 64] }, k: { shape: [1, 8, 1024, 64] }, v: { shape: [1, 8, 1024, 64] }, causal: true, schedule: 'twoLevel' });
 * await op.run({ q, k, v, o });
 * const c = await op.readCounters(); // c.handoffs === emulatorCounts(op.emulatorProblem, op.scheduleOptions).syncs
 * ```
 */
export class WebGpuCubeVectorPipeline {
  /** Steps of the schedule (a step = what may run at once). */
  readonly steps: readonly PhaseStep[];
  /** Dispatches one `encode` records. */
  readonly dispatchCount: number;
  /** Bytes of the GM workspace (S, P, Ob in `gmStages` copies, O accumulator, row state, α). */
  readonly workspaceBytes: number;
  /** The problem in the emulator's terms, for `buildSchedule` / `emulatorCounts`. */
  readonly emulatorProblem: AttentionPrefillProblem;
  readonly scheduleOptions: ScheduleOptions;

  private constructor(
    private readonly runtime: FastAttentionRuntime,
    readonly problem: AttentionProblem,
    readonly tiling: FlashTiling,
    readonly tilingMask: boolean,
    readonly issue: WebGpuIssueMode,
    readonly kvLength: number,
    readonly layout: Layout,
    private readonly kernel: CompiledKernel,
    private readonly params: ParamsPool,
    private readonly dispatches: Dispatch[],
    private readonly workspace: GPUBuffer,
    private readonly stats: GPUBuffer,
    private readonly mask: { buffer: GPUBuffer; owned: boolean },
    private readonly nRows: number,
    steps: PhaseStep[],
    schedule: 'unified' | 'twoLevel',
  ) {
    this.steps = steps;
    this.dispatchCount = dispatches.length;
    this.workspaceBytes = workspace.size;
    const p = problem;
    this.emulatorProblem = { batch: p.batch, heads: p.headsQ, seqQ: p.seqQ, seqK: p.seqK, headDim: p.headDim, causal: p.causal, window: p.window, kvLen: kvLength };
    this.scheduleOptions = { kind: schedule, tilingMask, tiling: { ...tiling } };
  }

  static async create(runtime: FastAttentionRuntime, options: CubeVectorOptions): Promise<WebGpuCubeVectorPipeline> {
    runtime.assertAlive();
    const dtype: unknown = options.dtype ?? 'f32';
    if (dtype !== 'f32') throw new UnsupportedError('dtype', `${JSON.stringify(dtype)} storage is not read by the Cube/Vector pipeline (its kernel reads f32)`, 'f32');
    rejectFusedKernelOptions(options, 'Cube/Vector pipeline', 'tiling: { blockQ, blockKV, subKV, vecRows, gmStages }');
    const p = normalizeProblem(options);
    if (options.schedule !== 'unified' && options.schedule !== 'twoLevel')
      throw new NpuConfigError('schedule', `got ${JSON.stringify(options.schedule)}`, 'unified, twoLevel');
    const issue = options.issue ?? 'roles';
    if (!WEBGPU_ISSUE_MODES.includes(issue)) throw new NpuConfigError('issue', `got ${JSON.stringify(issue)}`, WEBGPU_ISSUE_MODES.join(', '));
    const kvLength = options.kvLength ?? p.seqK;
    if (!Number.isInteger(kvLength) || kvLength < 1 || kvLength > p.seqK) throw new NpuConfigError('kvLength', `got ${kvLength}`, `integers in [1, ${p.seqK}]`);
    const t = resolveTiling(options.schedule, options.tiling);
    // The emulator's own checks (divisibility, stages), so every tiling here is one it can simulate.
    validateTiling(t, ascend910B);
    const tilingMask = options.tilingMask ?? true;
    const L = runtime.capabilities.limits;
    const layout = chooseLayout(t, p.headDim, L);

    const qBlocks = Math.ceil(p.seqQ / t.blockQ);
    const nRows = p.batch * p.headsQ * qBlocks;
    if (nRows > L.maxComputeWorkgroupsPerDimension)
      throw new TileConfigError('tiling.blockQ', `${nRows} row blocks (batch × heads × ⌈Sq / blockQ⌉) in one dispatch dimension`, `at most ${L.maxComputeWorkgroupsPerDimension}`);
    const gm = t.gmStages;
    const D = p.headDim;
    const sLen = gm * nRows * t.blockQ * t.blockKV;
    const obLen = gm * nRows * t.blockQ * D;
    const accLen = nRows * t.blockQ * D;
    const stateLen = nRows * t.blockQ * 2;
    const alphaLen = 3 * nRows * t.blockQ;
    const wsBytes = (2 * sLen + obLen + accLen + stateLen + alphaLen) * 4;
    const wsLimit = Math.min(L.maxStorageBufferBindingSize, L.maxBufferSize);
    if (wsBytes > wsLimit)
      throw new BufferError('tiling', `the GM workspace needs ${wsBytes} bytes (S and P: ${gm} × ${nRows} row blocks × ${t.blockQ} × ${t.blockKV} floats each)`, `at most ${wsLimit} bytes: smaller blocks, fewer stages or a shorter sequence`);

    // Level-1 blocks per row block: the contiguous non-empty range (tiling-mask) or all of them.
    const seq = { seqQ: p.seqQ, kvLen: kvLength, causal: p.causal, window: p.window };
    let maxBlocks = 0;
    for (let qb = 0; qb < qBlocks; qb++) {
      const rows = Math.min(t.blockQ, p.seqQ - qb * t.blockQ);
      const [a, b] = tilingMask ? keyBlockRange(seq, qb * t.blockQ, rows, t.blockKV) : [0, Math.ceil(p.seqK / t.blockKV)];
      maxBlocks = Math.max(maxBlocks, b - a);
    }
    const steps = planPhaseSteps(maxBlocks, gm);

    const kernel = await runtime.pipelines.get(npuCubeVectorKernel, 'main', {
      HEAD_DIM: D,
      BLOCK_Q: t.blockQ,
      BLOCK_KV: t.blockKV,
      SUB_KV: t.subKV,
      VEC_ROWS: t.vecRows,
      GM_STAGES: gm,
      TILING_MASK: tilingMask,
      MASK_BLOCK: layout.maskBlock,
      TM: layout.tm,
      COL_THREADS: layout.colThreads,
      THREADS: layout.threads,
      KC: layout.kc,
    });
    const owner = 'npuEmu.cubeVector';
    const workspace = runtime.ledger.create(owner, { label: `${owner}.workspace`, size: wsBytes, usage: BufferUsage.STORAGE | BufferUsage.COPY_SRC });
    const stats = runtime.ledger.create(owner, { label: `${owner}.counters`, size: COUNTERS * 4, usage: BufferUsage.STORAGE | BufferUsage.COPY_SRC | BufferUsage.COPY_DST });
    runtime.device.queue.writeBuffer(stats, 0, new Uint32Array(COUNTERS));
    const masked = p.causal || p.window !== undefined || kvLength < p.seqK;
    let mask: { buffer: GPUBuffer; owned: boolean };
    if (!tilingMask && masked) {
      // The baseline the tiling-mask replaces: a dense Sq×Sk mask, read for every score.
      const dense = new Uint32Array(p.seqQ * p.seqK);
      for (let i = 0; i < p.seqQ; i++) for (let j = 0; j < p.seqK; j++) if (isMasked(seq, i, j)) dense[i * p.seqK + j] = 1;
      const buffer = runtime.ledger.create(owner, { label: `${owner}.denseMask`, size: dense.byteLength, usage: BufferUsage.STORAGE | BufferUsage.COPY_DST });
      runtime.device.queue.writeBuffer(buffer, 0, dense);
      mask = { buffer, owned: true };
    } else {
      mask = { buffer: runtime.mMask(layout.maskBlock).buffer, owned: false };
    }

    const plan: { step: PhaseStep; phases: number }[] = [];
    for (const s of steps) {
      const active = activePhases(s);
      if (issue === 'roles' || active.length === 1) plan.push({ step: s, phases: active.length });
      else for (const k of active) plan.push({ step: { qk: -1, sm: -1, pv: -1, upd: -1, [k]: s[k] }, phases: 1 });
    }
    const params = new ParamsPool(runtime.device.queue, runtime.ledger, owner, kernel.bindings.find((b) => b.name === PARAMS_BINDING)!.struct!, 0, L.minStorageBufferOffsetAlignment, plan.length);
    const st = p.strides;
    const fixed = {
      seqQ: p.seqQ, seqK: p.seqK, kvLen: kvLength,
      headsQ: p.headsQ, groupSize: p.groupSize, qBlocks, nRows,
      causal: p.causal ? 1 : 0, hasWindow: p.window !== undefined ? 1 : 0, window: p.window ?? 0, masked: masked ? 1 : 0,
      scaleLog2: p.scale * Math.LOG2E,
      qBatch: st.q.batch, qHead: st.q.head, qSeq: st.q.seq,
      kBatch: st.k.batch, kHead: st.k.head, kSeq: st.k.seq,
      vBatch: st.v.batch, vHead: st.v.head, vSeq: st.v.seq,
      oBatch: st.o.batch, oHead: st.o.head, oSeq: st.o.seq,
      sBase: 0, pBase: sLen, obBase: 2 * sLen, accBase: 2 * sLen + obLen, stateBase: 2 * sLen + obLen + accLen, alphaBase: 2 * sLen + obLen + accLen + stateLen,
    };
    const dispatches = plan.map(({ step, phases }) => ({
      offset: params.offsetFor({ ...fixed, qkBlock: step.qk, smBlock: step.sm, pvBlock: step.pv, updBlock: step.upd }),
      phases,
    }));
    return new WebGpuCubeVectorPipeline(runtime, p, t, tilingMask, issue, kvLength, layout, kernel, params, dispatches, workspace, stats, mask, nRows, steps, options.schedule);
  }

  /** Record the schedule's dispatches into one compute pass (the caller's, or one opened on the encoder). No buffer is created. */
  encode(target: EncodeTarget, buffers: AttentionBuffers): void {
    this.runtime.assertAlive();
    const p = this.problem;
    const limits = this.runtime.capabilities.limits;
    // f32 storage: create() accepts no other dtype.
    const { q, k, v, o } = resolveAttentionBuffers(buffers, p, limits, 4);
    const group = this.runtime.bindGroups.get(this.kernel.bindGroupLayout, this.kernel.key, [
      { binding: 0, buffer: this.params.buffer, offset: 0, size: this.params.bindingBytes },
      { binding: 1, ...q },
      { binding: 2, ...k },
      { binding: 3, ...v },
      { binding: 4, ...o },
      { binding: 5, buffer: this.mask.buffer, offset: 0, size: this.mask.buffer.size },
      { binding: 6, buffer: this.workspace, offset: 0, size: this.workspace.size },
      { binding: 7, buffer: this.stats, offset: 0, size: this.stats.size },
    ]);
    const isPass = typeof (target as GPUComputePassEncoder).dispatchWorkgroups === 'function';
    const pass = isPass ? (target as GPUComputePassEncoder) : (target as GPUCommandEncoder).beginComputePass({ label: 'npuCubeVector' });
    for (const d of this.dispatches) encodeDispatch(pass, this.kernel.pipeline, group, [d.offset], [this.nRows, d.phases, 1], 'npuCubeVector');
    if (!isPass) pass.end();
  }

  /** Encode, submit, and resolve when the GPU is done. */
  async run(buffers: AttentionBuffers): Promise<void> {
    await submitAndWait(this.runtime.device, (encoder) => this.encode(encoder, buffers));
  }

  /** Zero the GPU counters (they accumulate over runs). */
  resetCounters(): void {
    this.runtime.device.queue.writeBuffer(this.stats, 0, new Uint32Array(COUNTERS));
  }

  /** Read the GPU counters (a staging buffer is created and destroyed: not for hot paths). */
  async readCounters(): Promise<CubeVectorCounters> {
    const staging = this.runtime.ledger.create('npuEmu.cubeVector', { label: 'npuEmu.cubeVector.countersReadback', size: this.stats.size, usage: BufferUsage.MAP_READ | BufferUsage.COPY_DST });
    try {
      const enc = this.runtime.device.createCommandEncoder();
      enc.copyBufferToBuffer(this.stats, 0, staging, 0, this.stats.size);
      this.runtime.device.queue.submit([enc.finish()]);
      await staging.mapAsync(MapMode.READ);
      const c = new Uint32Array(staging.getMappedRange().slice(0));
      return {
        qk: c[0], sm: c[1], pv: c[2], upd: c[3],
        subBlocks: c[4], fullSubBlocks: c[5], partialSubBlocks: c[6], pairs: c[7], zeroRowBlocks: c[8],
        handoffs: c[1] + c[2] + c[3],
      };
    } finally {
      this.runtime.ledger.destroy(staging);
    }
  }

  /** Release the workspace, counters, params (and the dense mask when this operator built one). */
  destroy(): void {
    this.runtime.ledger.destroy(this.workspace);
    this.runtime.ledger.destroy(this.stats);
    this.runtime.ledger.destroy(this.params.buffer);
    if (this.mask.owned) this.runtime.ledger.destroy(this.mask.buffer);
  }
}
