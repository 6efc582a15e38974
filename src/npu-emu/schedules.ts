/**
 * Attention-prefill schedules as task graphs for one AI core (one Cube core and
 * its vector cores), the most loaded one after the (batch, head, query-block)
 * rows are spread over all cores; every core runs the same program on its own
 * rows, so that core's latency is the chip's.
 *
 *  - standard: three kernels (S = QKᵀ on the Cube, softmax on the Vector,
 *    O = PV on the Cube) with S and P materialized in GM and a barrier between.
 *  - unified tiling (FlashAttention-2 ported as is): small blocks; every block
 *    goes Cube (S) → GM → Vector (P) → GM → Cube (PV) → GM → Vector (O update),
 *    with a Cube↔Vector sync at each handoff, one GM buffer each.
 *  - two-level tiling (FastAttention §3.1): large level-1 blocks handed over
 *    through two GM buffers, so the Vector works on block i while the Cube
 *    works on block i+1; inside a block, level-2 sub-blocks sized to L0 (Cube)
 *    and UB (Vector) with their own ping-pong buffers.
 *
 * The tiling-mask (FastAttention §3.2) reuses the block classification of the
 * GPU kernel (`classifyBlock`): empty blocks are skipped, full blocks get no
 * mask, partial blocks read a small window of the M-mask. Without it, every
 * block is computed and, when the problem is masked at all, a dense Sq×Sk fp16
 * mask is read and applied everywhere.
 */
import { classifyBlock, mMaskWidth, sequenceConstraints, type BandConstraint, type BlockKind } from '../tiling/mask.js';
import { NpuCapacityError, NpuConfigError } from './errors.js';
import { cubeCycles, transferCycles, validateMachine, vectorCycles, type CubeDType, type GmPath, type MachineConfig } from './machine.js';
import { SlotRing, TaskGraphBuilder, type BufferUse, type TaskGraph, type TaskKind } from './taskGraph.js';
import { simulate, type SimulationResult, type SimulationSummary } from './simulator.js';

/** One attention prefill: Q `[batch, heads, seqQ, headDim]`, K/V `[batch, heads, seqK, headDim]`, fp16. */
export interface AttentionPrefillProblem {
  batch: number;
  heads: number;
  seqQ: number;
  seqK: number;
  headDim: number;
  causal?: boolean;
  window?: number;
  /** Valid keys (≤ seqK); default seqK. */
  kvLen?: number;
  dtype?: Extract<CubeDType, 'fp16' | 'bf16'>;
}

export type ScheduleKind = 'standard' | 'unified' | 'twoLevel';

/** Block sizes and buffer stages of a fused (unified or two-level) schedule. */
export interface FlashTiling {
  /** Level-1 query rows kept by the Cube (and split among the vector cores). */
  blockQ: number;
  /** Level-1 key columns handed from Cube to Vector through GM in one piece. */
  blockKV: number;
  /** Level-2 key columns of one Cube matmul (sized to L0). */
  subKV: number;
  /** Level-2 rows of one vector step (sized to UB), over all vector cores. */
  vecRows: number;
  /** GM workspace buffers per handoff: 2 lets Cube and Vector work on different blocks. */
  gmStages: 1 | 2;
  l1Stages: 1 | 2;
  l0Stages: 1 | 2;
  ubStages: 1 | 2;
}

export interface ScheduleOptions {
  kind: ScheduleKind;
  /** Skip empty blocks, leave full blocks unmasked, read M-mask windows; default true. */
  tilingMask?: boolean;
  /** Overrides of the kind's default tiling (fused kinds only). */
  tiling?: Partial<FlashTiling>;
  /** Every task waits for the previous one: the no-overlap reference. */
  serial?: boolean;
}

/** FlashAttention-2 as ported to the NPU: 128×128 blocks, one buffer everywhere. */
export const UNIFIED_TILING: Readonly<FlashTiling> = { blockQ: 128, blockKV: 128, subKV: 128, vecRows: 128, gmStages: 1, l1Stages: 1, l0Stages: 1, ubStages: 1 };

/** Two-level tiling: 128×512 level-1 blocks (K/V block fills a quarter of L1), 128-column Cube sub-blocks, 32-row vector steps. */
export const TWO_LEVEL_TILING: Readonly<FlashTiling> = { blockQ: 128, blockKV: 512, subKV: 128, vecRows: 32, gmStages: 2, l1Stages: 2, l0Stages: 2, ubStages: 2 };

/** fp32 vector passes per score in softmax: scale, row max, subtract, exp, row sum, cast to fp16. */
export const SOFTMAX_OPS = 6;
/** Passes per output element to fold a block's P·V into the accumulator: O·α + Oⱼ. */
export const O_UPDATE_OPS = 2;
/** One select per masked score. */
export const MASK_OPS = 1;

/** Standard attention tile: 128×128 for both matmuls. */
const STD_TILE = 128;

function checkInt(field: string, v: number | undefined, min = 1): void {
  if (v === undefined || !Number.isInteger(v) || v < min) throw new NpuConfigError(field, `must be an integer ≥ ${min}, got ${v}`, `integers ≥ ${min}`);
}

/** Throw an {@link NpuConfigError} naming the first unusable problem field. */
export function validateProblem(p: AttentionPrefillProblem): void {
  for (const k of ['batch', 'heads', 'seqQ', 'seqK', 'headDim'] as const) checkInt(`problem.${k}`, p[k]);
  if (p.kvLen !== undefined) {
    checkInt('problem.kvLen', p.kvLen);
    if (p.kvLen > p.seqK) throw new NpuConfigError('problem.kvLen', `${p.kvLen} exceeds seqK = ${p.seqK}`, `1 … ${p.seqK}`);
  }
  if (p.window !== undefined) checkInt('problem.window', p.window);
}

/** Throw an {@link NpuConfigError} naming the first unusable tiling field. */
export function validateTiling(t: FlashTiling, m: MachineConfig): void {
  for (const k of ['blockQ', 'blockKV', 'subKV', 'vecRows'] as const) checkInt(`tiling.${k}`, t[k]);
  for (const k of ['gmStages', 'l1Stages', 'l0Stages', 'ubStages'] as const)
    if (t[k] !== 1 && t[k] !== 2) throw new NpuConfigError(`tiling.${k}`, `got ${t[k]}`, '1 or 2');
  if (t.blockKV % t.subKV !== 0) throw new NpuConfigError('tiling.subKV', `${t.subKV} does not divide blockKV = ${t.blockKV}`, `divisors of ${t.blockKV}`);
  if (t.blockQ % t.vecRows !== 0) throw new NpuConfigError('tiling.vecRows', `${t.vecRows} does not divide blockQ = ${t.blockQ}`, `divisors of ${t.blockQ}`);
  if (t.vecRows % m.vectorUnitsPerCore !== 0)
    throw new NpuConfigError('tiling.vecRows', `${t.vecRows} rows cannot be split evenly over ${m.vectorUnitsPerCore} vector cores`, `multiples of ${m.vectorUnitsPerCore}`);
}

/** The memories of one AI core and their capacities (UB: all vector cores together). */
export function coreCapacities(m: MachineConfig): Record<string, number> {
  return { L1: m.buffers.l1, L0A: m.buffers.l0a, L0B: m.buffers.l0b, L0C: m.buffers.l0c, UB: m.buffers.ub * m.vectorUnitsPerCore, GM: m.hbmBytes };
}

/**
 * Reject a buffer plan that overflows a memory, with the numbers: `plan` maps
 * each memory to its named parts (bytes).
 */
export function checkCapacities(m: MachineConfig, plan: Record<string, Record<string, number>>, context: string): void {
  const caps = coreCapacities(m);
  for (const [memory, parts] of Object.entries(plan)) {
    const total = Object.values(parts).reduce((a, b) => a + b, 0);
    if (total > caps[memory]) {
      const detail = Object.entries(parts)
        .map(([k, v]) => `${k} ${v}`)
        .join(' + ');
      const per = memory === 'UB' ? ` (${m.vectorUnitsPerCore} vector cores × ${m.buffers.ub})` : '';
      throw new NpuCapacityError(memory, `${context} needs ${total} bytes (${detail})`, `≤ ${caps[memory]} bytes of ${memory}${per} on ${m.name}`);
    }
  }
}

/** What the tiling-mask (or its absence) does to one block. */
interface MaskPlan {
  constraints: BandConstraint[];
  /** Whether any score is masked at all (causal, window, padding). */
  masked: boolean;
  tilingMask: boolean;
}

function maskPlan(p: AttentionPrefillProblem, tilingMask: boolean): MaskPlan {
  const kvLen = p.kvLen ?? p.seqK;
  const constraints = sequenceConstraints({ seqQ: p.seqQ, kvLen, causal: p.causal, window: p.window });
  const masked = Boolean(p.causal) || p.window !== undefined || kvLen < p.seqK;
  return { constraints, masked, tilingMask };
}

/** Kind of a block under the plan: without the tiling-mask nothing is skipped and everything is masked when anything is. */
function blockKind(plan: MaskPlan, qStart: number, rows: number, kStart: number, cols: number): BlockKind {
  if (!plan.tilingMask) return plan.masked ? 'partial' : 'full';
  return classifyBlock(plan.constraints, { qStart, rows, kStart, cols }, Math.max(rows, cols)).kind;
}

/** Bytes of the dense fp16 mask the baseline reads, and of an fp16 M-mask of block bound `bMax` (bMax × 3·bMax). */
export function maskMemoryBytes(p: AttentionPrefillProblem, bMax: number): { dense: number; mMask: number } {
  return { dense: p.seqQ * p.seqK * 2, mMask: bMax * mMaskWidth(bMax) * 2 };
}

/** Spread `work[r]` over `cores` by longest-processing-time first; return the rows of the most loaded core, ascending. */
export function busiestCoreRows(work: readonly number[], cores: number): { rows: number[]; load: number } {
  const order = work.map((_, i) => i).sort((a, b) => work[b] - work[a] || a - b);
  const load = new Float64Array(cores);
  const owned: number[][] = Array.from({ length: cores }, () => []);
  for (const r of order) {
    let best = 0;
    for (let c = 1; c < cores; c++) if (load[c] < load[best]) best = c;
    load[best] += work[r];
    owned[best].push(r);
  }
  let busiest = 0;
  for (let c = 1; c < cores; c++) if (load[c] > load[busiest]) busiest = c;
  return { rows: owned[busiest].sort((a, b) => a - b), load: load[busiest] };
}

/** Small helpers shared by the builders. */
class Emitter {
  readonly b = new TaskGraphBuilder();
  constructor(readonly m: MachineConfig) {}

  task(unit: string, kind: TaskKind, name: string, cycles: number, deps: (number | undefined)[], extra: { alloc?: BufferUse[]; free?: BufferUse[]; moved?: Record<string, number> } = {}): number {
    const d = [...new Set(deps.filter((x): x is number => x !== undefined))];
    const t: Parameters<TaskGraphBuilder['add']>[0] = { name, unit, kind, cycles, deps: d };
    if (extra.alloc?.length) t.alloc = extra.alloc;
    if (extra.free?.length) t.free = extra.free;
    if (extra.moved) t.moved = extra.moved;
    return this.b.add(t);
  }

  /** A barrier on the control unit after every task so far (kernel launch / kernel boundary). */
  barrier(name: string): number {
    const lastPerUnit = new Map<string, number>();
    for (const t of this.b.tasks) lastPerUnit.set(t.unit, t.id);
    return this.task('ctrl', 'barrier', name, this.m.kernelLaunchCycles, [...lastPerUnit.values()]);
  }

  finish(name: string, serial: boolean, meta: Record<string, unknown>): TaskGraph {
    if (serial) for (let i = 1; i < this.b.tasks.length; i++) this.b.addDep(i, i - 1);
    return this.b.build(name, this.m.clockHz, coreCapacities(this.m), meta);
  }
}

interface RowBlock {
  /** (batch·heads) index and query start. */
  bh: number;
  qStart: number;
  rows: number;
}

function rowBlocks(p: AttentionPrefillProblem, blockQ: number): RowBlock[] {
  const out: RowBlock[] = [];
  for (let bh = 0; bh < p.batch * p.heads; bh++) for (let q = 0; q < p.seqQ; q += blockQ) out.push({ bh, qStart: q, rows: Math.min(blockQ, p.seqQ - q) });
  return out;
}

/** One level-1 block of a row: its key range and the level-2 sub-blocks the Cube computes. */
interface L1Block {
  row: RowBlock;
  kStart: number;
  subs: { kStart: number; cols: number; kind: BlockKind }[];
  /** Key columns actually computed (sum over non-empty sub-blocks). */
  cols: number;
}

function levelOneBlocks(p: AttentionPrefillProblem, plan: MaskPlan, t: FlashTiling, row: RowBlock): L1Block[] {
  const out: L1Block[] = [];
  for (let k = 0; k < p.seqK; k += t.blockKV) {
    const cols = Math.min(t.blockKV, p.seqK - k);
    if (blockKind(plan, row.qStart, row.rows, k, cols) === 'empty') continue;
    const subs: L1Block['subs'] = [];
    for (let s = k; s < k + cols; s += t.subKV) {
      const sc = Math.min(t.subKV, k + cols - s);
      const kind = blockKind(plan, row.qStart, row.rows, s, sc);
      if (kind !== 'empty') subs.push({ kStart: s, cols: sc, kind });
    }
    out.push({ row, kStart: k, subs, cols: subs.reduce((a, s) => a + s.cols, 0) });
  }
  return out;
}

/** The tiling of a fused kind with overrides applied. */
export function resolveTiling(kind: 'unified' | 'twoLevel', overrides: Partial<FlashTiling> = {}): FlashTiling {
  return { ...(kind === 'unified' ? UNIFIED_TILING : TWO_LEVEL_TILING), ...overrides };
}

/** Buffer plan of a fused schedule, by memory and part, in bytes. */
export function flashBufferPlan(m: MachineConfig, p: AttentionPrefillProblem, t: FlashTiling, maskLoads: boolean): Record<string, Record<string, number>> {
  const D = p.headDim;
  const plan: Record<string, Record<string, number>> = {
    L1: { [`Q ${t.l1Stages}×${t.blockQ}×${D}×2`]: t.l1Stages * t.blockQ * D * 2, [`K/V ${t.l1Stages}×${t.blockKV}×${D}×2`]: t.l1Stages * t.blockKV * D * 2, [`P ${t.blockQ}×${t.blockKV}×2`]: t.blockQ * t.blockKV * 2 },
    L0A: { [`Q/P ${t.l0Stages}×${t.blockQ}×${Math.max(D, t.subKV)}×2`]: t.l0Stages * t.blockQ * Math.max(D, t.subKV) * 2 },
    L0B: { [`K/V ${t.l0Stages}×${t.subKV}×${D}×2`]: t.l0Stages * t.subKV * D * 2 },
    L0C: { [`S/O ${t.l0Stages}×${t.blockQ}×${Math.max(D, t.subKV)}×4`]: t.l0Stages * t.blockQ * Math.max(D, t.subKV) * 4 },
    UB: {
      [`S+P ${t.ubStages}×${t.vecRows}×${t.blockKV}×6`]: t.ubStages * t.vecRows * t.blockKV * 6,
      [`O acc ${t.blockQ}×${D}×4`]: t.blockQ * D * 4,
      [`O block ${t.blockQ}×${D}×4`]: t.blockQ * D * 4,
    },
  };
  if (maskLoads) plan.UB[`mask ${t.ubStages}×${t.vecRows}×${t.blockKV}×2`] = t.ubStages * t.vecRows * t.blockKV * 2;
  return plan;
}

/** Build the fused (unified or two-level) schedule of the busiest core. */
function buildFlash(m: MachineConfig, p: AttentionPrefillProblem, kind: 'unified' | 'twoLevel', t: FlashTiling, tilingMask: boolean, serial: boolean): TaskGraph {
  const D = p.headDim;
  const vu = m.vectorUnitsPerCore;
  const plan = maskPlan(p, tilingMask);
  const maskLoads = plan.masked;
  checkCapacities(m, flashBufferPlan(m, p, t, maskLoads), `${kind} tiling (blockQ ${t.blockQ}, blockKV ${t.blockKV}, subKV ${t.subKV}, vecRows ${t.vecRows}, headDim ${D})`);

  // Work per row block is the same for every (batch, head): classify one head, replicate.
  const headRows = rowBlocks({ ...p, batch: 1, heads: 1 }, t.blockQ);
  const headBlocks = headRows.map((r) => levelOneBlocks(p, plan, t, r));
  const headWork = headBlocks.map((bl) => bl.reduce((a, b) => a + b.cols, 0) + 1);
  const all = rowBlocks(p, t.blockQ);
  const { rows: mine } = busiestCoreRows(
    all.map((_, i) => headWork[i % headRows.length]),
    m.aiCores,
  );
  const blocks: L1Block[] = [];
  for (const r of mine) for (const b of headBlocks[r % headRows.length]) blocks.push({ ...b, row: all[r] });

  const e = new Emitter(m);
  const launch = e.task('ctrl', 'barrier', 'launch', m.kernelLaunchCycles, []);
  const L1q = new SlotRing('L1', t.blockQ * D * 2, t.l1Stages);
  const L1kv = new SlotRing('L1', t.blockKV * D * 2, t.l1Stages);
  const L1p = new SlotRing('L1', t.blockQ * t.blockKV * 2, 1);
  const L0A = new SlotRing('L0A', t.blockQ * Math.max(D, t.subKV) * 2, t.l0Stages);
  const L0B = new SlotRing('L0B', t.subKV * D * 2, t.l0Stages);
  const L0C = new SlotRing('L0C', t.blockQ * Math.max(D, t.subKV) * 4, t.l0Stages);
  const UBs = new SlotRing('UB', t.vecRows * t.blockKV * 6, t.ubStages);
  const UBmask = new SlotRing('UB', t.vecRows * t.blockKV * 2, t.ubStages);
  const UBo = new SlotRing('UB', t.blockQ * D * 4, 1);
  const UBopart = new SlotRing('UB', t.blockQ * D * 4, 1);
  const GMs = new SlotRing('GM', t.blockQ * t.blockKV * 4, t.gmStages);
  const GMp = new SlotRing('GM', t.blockQ * t.blockKV * 2, t.gmStages);
  const GMo = new SlotRing('GM', t.blockQ * D * 4, t.gmStages);
  const densePath: GmPath = p.seqQ * p.seqK * 2 > m.l2Bytes ? 'hbm' : 'l2';

  // Per-block handles between the four phases.
  const st: { qkSync?: number; gs?: number; smSync?: number; gp?: number; pvSync?: number; go?: number }[] = blocks.map(() => ({}));
  let qSlot: { slot: number; task?: number } | undefined;
  let maskedScores = 0;
  let skippedPairs = 0;

  const emitQK = (i: number): void => {
    const blk = blocks[i];
    const R = blk.row.rows;
    const first = i === 0 || blocks[i - 1].row !== blk.row;
    const lastOfRow = i === blocks.length - 1 || blocks[i + 1].row !== blk.row;
    let tQ: number | undefined;
    if (first) {
      const q = L1q.acquire();
      tQ = e.task('cube.mte2', 'transfer', `Q r${blk.row.qStart}`, transferCycles(m, 'gmToL1', R * D * 2, 'hbm'), [launch, q.waitFor], { alloc: [L1q.use()], moved: { 'GM->L1': R * D * 2 } });
      qSlot = { slot: q.slot, task: tQ };
    }
    const kv = L1kv.acquire();
    const tK = e.task('cube.mte2', 'transfer', `K b${i}`, transferCycles(m, 'gmToL1', blk.cols * D * 2, 'l2'), [launch, kv.waitFor, tQ], { alloc: [L1kv.use()], moved: { 'GM->L1': blk.cols * D * 2 } });
    const gs = GMs.acquire();
    st[i].gs = gs.slot;
    let lastFix = tK;
    blk.subs.forEach((s, k) => {
      const a = L0A.acquire();
      const bb = L0B.acquire();
      const lastSub = k === blk.subs.length - 1;
      const freeL1: BufferUse[] = [];
      if (lastSub) freeL1.push(L1kv.use());
      if (lastSub && lastOfRow) freeL1.push(L1q.use());
      const t1 = e.task('cube.mte1', 'transfer', `Q,K→L0 b${i}.${k}`, transferCycles(m, 'l1ToL0', (R * D + s.cols * D) * 2), [tK, qSlot?.task, a.waitFor, bb.waitFor], {
        alloc: [L0A.use(), L0B.use()],
        free: freeL1,
        moved: { 'L1->L0': (R * D + s.cols * D) * 2 },
      });
      if (lastSub) L1kv.release(kv.slot, t1);
      if (lastSub && lastOfRow && qSlot) L1q.release(qSlot.slot, t1);
      const c = L0C.acquire();
      const t2 = e.task('cube', 'compute', `S=QKᵀ b${i}.${k}`, cubeCycles(m, R, s.cols, D, p.dtype), [t1, c.waitFor], { alloc: [L0C.use()], free: [L0A.use(), L0B.use()] });
      L0A.release(a.slot, t2);
      L0B.release(bb.slot, t2);
      const t3 = e.task('cube.fixpipe', 'transfer', `S→GM b${i}.${k}`, transferCycles(m, 'l0cToGm', R * s.cols * 4), [t2, k === 0 ? gs.waitFor : undefined], {
        alloc: k === 0 ? [GMs.use()] : [],
        free: [L0C.use()],
        moved: { 'L0C->GM': R * s.cols * 4 },
      });
      L0C.release(c.slot, t3);
      lastFix = t3;
    });
    st[i].qkSync = e.task('sync.c2v', 'sync', `sync S b${i}`, m.syncCycles, [lastFix]);
  };

  const emitSM = (i: number): void => {
    const blk = blocks[i];
    const gp = GMp.acquire();
    st[i].gp = gp.slot;
    let lastOut: number | undefined;
    for (let r = 0; r < blk.row.rows; r += t.vecRows) {
      const cr = Math.min(t.vecRows, blk.row.rows - r);
      let maskBytes = 0;
      let maskedElems = 0;
      if (plan.masked) {
        if (!tilingMask) {
          maskBytes = cr * blk.cols * 2;
          maskedElems = cr * blk.cols;
        } else {
          for (const s of blk.subs) {
            if (s.kind === 'full') continue;
            const k = blockKind(plan, blk.row.qStart + r, cr, s.kStart, s.cols);
            if (k === 'full') continue;
            maskBytes += cr * s.cols * 2;
            maskedElems += cr * s.cols;
          }
        }
      }
      maskedScores += maskedElems;
      const us = UBs.acquire();
      const um = maskBytes > 0 ? UBmask.acquire() : undefined;
      const lastChunk = r + t.vecRows >= blk.row.rows;
      const sBytes = cr * blk.cols * 4;
      const cycles = transferCycles(m, 'gmToUb', sBytes, 'l2', vu) + (maskBytes > 0 ? transferCycles(m, 'gmToUb', maskBytes, tilingMask ? 'l2' : densePath, vu) : 0);
      const tIn = e.task('vec.mte2', 'transfer', `S${maskBytes ? '+mask' : ''}→UB b${i}.r${r}`, cycles, [st[i].qkSync, us.waitFor, um?.waitFor], {
        alloc: um ? [UBs.use(), UBmask.use()] : [UBs.use()],
        free: lastChunk ? [GMs.use()] : [],
        moved: { 'GM->UB': sBytes + maskBytes, ...(maskBytes && !tilingMask && densePath === 'hbm' ? { HBM: maskBytes } : {}) },
      });
      if (lastChunk) GMs.release(st[i].gs!, tIn);
      const tA = e.task('vec.alu', 'compute', `softmax b${i}.r${r}`, vectorCycles(m, cr * blk.cols, SOFTMAX_OPS) + (maskedElems ? vectorCycles(m, maskedElems, MASK_OPS) : 0), [tIn]);
      const tOut = e.task('vec.mte3', 'transfer', `P→GM b${i}.r${r}`, transferCycles(m, 'ubToGm', cr * blk.cols * 2, 'l2', vu), [tA, r === 0 ? gp.waitFor : undefined], {
        alloc: r === 0 ? [GMp.use()] : [],
        free: um ? [UBs.use(), UBmask.use()] : [UBs.use()],
        moved: { 'UB->GM': cr * blk.cols * 2 },
      });
      UBs.release(us.slot, tOut);
      if (um) UBmask.release(um.slot, tOut);
      lastOut = tOut;
    }
    st[i].smSync = e.task('sync.v2c', 'sync', `sync P b${i}`, m.syncCycles, [lastOut]);
  };

  const emitPV = (i: number): void => {
    const blk = blocks[i];
    const R = blk.row.rows;
    const kv = L1kv.acquire();
    const pp = L1p.acquire();
    const vBytes = blk.cols * D * 2;
    const pBytes = R * blk.cols * 2;
    const tV = e.task('cube.mte2', 'transfer', `V,P→L1 b${i}`, transferCycles(m, 'gmToL1', vBytes, 'l2') + transferCycles(m, 'gmToL1', pBytes, 'l2'), [st[i].smSync, kv.waitFor, pp.waitFor], {
      alloc: [L1kv.use(), L1p.use()],
      free: [GMp.use()],
      moved: { 'GM->L1': vBytes + pBytes },
    });
    GMp.release(st[i].gp!, tV);
    const c = L0C.acquire();
    const go = GMo.acquire();
    st[i].go = go.slot;
    let lastMm = tV;
    blk.subs.forEach((s, k) => {
      const a = L0A.acquire();
      const bb = L0B.acquire();
      const lastSub = k === blk.subs.length - 1;
      const t1 = e.task('cube.mte1', 'transfer', `P,V→L0 b${i}.${k}`, transferCycles(m, 'l1ToL0', (R * s.cols + s.cols * D) * 2), [tV, a.waitFor, bb.waitFor], {
        alloc: [L0A.use(), L0B.use()],
        free: lastSub ? [L1kv.use(), L1p.use()] : [],
        moved: { 'L1->L0': (R * s.cols + s.cols * D) * 2 },
      });
      if (lastSub) {
        L1kv.release(kv.slot, t1);
        L1p.release(pp.slot, t1);
      }
      const t2 = e.task('cube', 'compute', `O+=PV b${i}.${k}`, cubeCycles(m, R, D, s.cols, p.dtype), [t1, k === 0 ? c.waitFor : undefined], {
        alloc: k === 0 ? [L0C.use()] : [],
        free: [L0A.use(), L0B.use()],
      });
      L0A.release(a.slot, t2);
      L0B.release(bb.slot, t2);
      lastMm = t2;
    });
    const t3 = e.task('cube.fixpipe', 'transfer', `O→GM b${i}`, transferCycles(m, 'l0cToGm', R * D * 4), [lastMm, go.waitFor], {
      alloc: [GMo.use()],
      free: [L0C.use()],
      moved: { 'L0C->GM': R * D * 4 },
    });
    L0C.release(c.slot, t3);
    st[i].pvSync = e.task('sync.c2v', 'sync', `sync O b${i}`, m.syncCycles, [t3]);
  };

  let oAcc: { slot: number; waitFor: number | undefined } | undefined;
  const emitUPD = (i: number): void => {
    const blk = blocks[i];
    const R = blk.row.rows;
    const first = i === 0 || blocks[i - 1].row !== blk.row;
    const last = i === blocks.length - 1 || blocks[i + 1].row !== blk.row;
    if (first) oAcc = UBo.acquire();
    const uo = UBopart.acquire();
    const tIn = e.task('vec.mte2', 'transfer', `O block→UB b${i}`, transferCycles(m, 'gmToUb', R * D * 4, 'l2', vu), [st[i].pvSync, uo.waitFor], {
      alloc: [UBopart.use()],
      free: [GMo.use()],
      moved: { 'GM->UB': R * D * 4 },
    });
    GMo.release(st[i].go!, tIn);
    const tA = e.task('vec.alu', 'compute', `O update b${i}`, vectorCycles(m, R * D, O_UPDATE_OPS) + (last ? vectorCycles(m, R * D, 1) : 0), [tIn, first ? oAcc!.waitFor : undefined], {
      alloc: first ? [UBo.use()] : [],
      free: [UBopart.use()],
    });
    UBopart.release(uo.slot, tA);
    if (last) {
      const tOut = e.task('vec.mte3', 'transfer', `O→GM r${blk.row.qStart}`, transferCycles(m, 'ubToGm', R * D * 2, 'hbm', vu), [tA], {
        free: [UBo.use()],
        moved: { 'UB->GM': R * D * 2, HBM: R * D * 2 },
      });
      UBo.release(oAcc!.slot, tOut);
    }
  };

  const lookahead = t.gmStages === 2;
  if (blocks.length > 0) {
    if (!lookahead) {
      for (let i = 0; i < blocks.length; i++) {
        emitQK(i);
        emitSM(i);
        emitPV(i);
        emitUPD(i);
      }
    } else {
      emitQK(0);
      emitSM(0);
      for (let i = 0; i < blocks.length; i++) {
        if (i + 1 < blocks.length) {
          emitQK(i + 1);
          emitSM(i + 1);
        }
        emitPV(i);
        emitUPD(i);
      }
    }
  }
  // Pairs (query, key) of this core's rows the tiling-mask did not compute.
  for (const r of mine) {
    const row = all[r];
    const computed = headBlocks[r % headRows.length].reduce((a, bl) => a + bl.cols, 0);
    skippedPairs += row.rows * (p.seqK - computed);
  }
  return e.finish(`${kind}${tilingMask ? '+mask' : ''}`, serial, {
    kind,
    tilingMask,
    tiling: t,
    rowsTotal: all.length,
    rowsOnCore: mine.length,
    levelOneBlocksOnCore: blocks.length,
    subBlocksOnCore: blocks.reduce((a, bl) => a + bl.subs.length, 0),
    maskedScoresOnCore: maskedScores,
    skippedPairsOnCore: skippedPairs,
  });
}

/** Rows per vector step of the standard softmax kernel that fit UB (2 stages if possible), or a capacity error. */
function standardSoftmaxRows(m: MachineConfig, p: AttentionPrefillProblem, maskLoads: boolean): { rows: number; stages: 1 | 2 } {
  const vu = m.vectorUnitsPerCore;
  // fp16 S in, fp32 work, fp16 P out, (+ fp16 mask): per score
  const perScore = 2 + 4 + 2 + (maskLoads ? 2 : 0);
  const perRow = p.seqK * perScore;
  const cap = m.buffers.ub * vu;
  for (const stages of [2, 1] as const) {
    let rows = Math.floor(cap / (stages * perRow) / vu) * vu;
    rows = Math.min(rows, STD_TILE);
    if (rows >= vu) return { rows, stages };
  }
  checkCapacities(m, { UB: { [`softmax of ${vu} row(s) × ${p.seqK} keys × ${perScore} bytes`]: vu * perRow } }, 'standard attention softmax');
  return { rows: vu, stages: 1 };
}

/** Build the three-kernel standard attention of the busiest core. */
function buildStandard(m: MachineConfig, p: AttentionPrefillProblem, tilingMask: boolean, serial: boolean): TaskGraph {
  const D = p.headDim;
  const vu = m.vectorUnitsPerCore;
  const T = STD_TILE;
  const plan = maskPlan(p, tilingMask);
  const maskLoads = plan.masked;
  const sm = standardSoftmaxRows(m, p, maskLoads);
  checkCapacities(
    m,
    {
      L1: { [`Q 2×${T}×${D}×2`]: 2 * T * D * 2, [`K|P,V 2×${T}×${Math.max(D, T) + D}×2`]: 2 * T * (Math.max(D, T) + D) * 2 },
      L0A: { [`2×${T}×${Math.max(D, T)}×2`]: 2 * T * Math.max(D, T) * 2 },
      L0B: { [`2×${T}×${D}×2`]: 2 * T * D * 2 },
      L0C: { [`2×${T}×${Math.max(D, T)}×4`]: 2 * T * Math.max(D, T) * 4 },
    },
    `standard attention (tile ${T}, headDim ${D})`,
  );
  const sBytesTotal = p.batch * p.heads * p.seqQ * p.seqK * 2;
  const sPath: GmPath = sBytesTotal > m.l2Bytes ? 'hbm' : 'l2';
  const densePath: GmPath = p.seqQ * p.seqK * 2 > m.l2Bytes ? 'hbm' : 'l2';
  const hbm = (bytes: number, path: GmPath): Record<string, number> => (path === 'hbm' ? { HBM: bytes } : {});

  const headRows = rowBlocks({ ...p, batch: 1, heads: 1 }, T);
  const tileKinds = headRows.map((r) => {
    const kinds: { kStart: number; cols: number; kind: BlockKind }[] = [];
    for (let k = 0; k < p.seqK; k += T) {
      const cols = Math.min(T, p.seqK - k);
      const kind = blockKind(plan, r.qStart, r.rows, k, cols);
      if (kind !== 'empty') kinds.push({ kStart: k, cols, kind });
    }
    return kinds;
  });
  const all = rowBlocks(p, T);
  const { rows: mine } = busiestCoreRows(
    all.map((_, i) => tileKinds[i % headRows.length].length + 1),
    m.aiCores,
  );
  const e = new Emitter(m);
  const L1q = new SlotRing('L1', T * D * 2, 2);
  const L1t = new SlotRing('L1', T * (Math.max(D, T) + D) * 2, 2);
  const L0A = new SlotRing('L0A', T * Math.max(D, T) * 2, 2);
  const L0B = new SlotRing('L0B', T * D * 2, 2);
  const L0C = new SlotRing('L0C', T * Math.max(D, T) * 4, 2);
  let maskedScores = 0;

  // Kernel 1: S = QKᵀ → GM (fp16).
  let bar = e.task('ctrl', 'barrier', 'launch QKᵀ', m.kernelLaunchCycles, []);
  for (const r of mine) {
    const row = all[r];
    const tiles = tileKinds[r % headRows.length];
    const q = L1q.acquire();
    const tQ = e.task('cube.mte2', 'transfer', `Q r${r}`, transferCycles(m, 'gmToL1', row.rows * D * 2, 'hbm'), [bar, q.waitFor], { alloc: [L1q.use()], moved: { 'GM->L1': row.rows * D * 2, HBM: row.rows * D * 2 } });
    tiles.forEach((tile, k) => {
      const s = L1t.acquire();
      const tK = e.task('cube.mte2', 'transfer', `K r${r}.${k}`, transferCycles(m, 'gmToL1', tile.cols * D * 2, 'l2'), [bar, s.waitFor, tQ], { alloc: [L1t.use()], moved: { 'GM->L1': tile.cols * D * 2 } });
      const a = L0A.acquire();
      const bb = L0B.acquire();
      const last = k === tiles.length - 1;
      const t1 = e.task('cube.mte1', 'transfer', `Q,K→L0 r${r}.${k}`, transferCycles(m, 'l1ToL0', (row.rows + tile.cols) * D * 2), [tK, a.waitFor, bb.waitFor], {
        alloc: [L0A.use(), L0B.use()],
        free: last ? [L1t.use(), L1q.use()] : [L1t.use()],
        moved: { 'L1->L0': (row.rows + tile.cols) * D * 2 },
      });
      L1t.release(s.slot, t1);
      if (last) L1q.release(q.slot, t1);
      const c = L0C.acquire();
      const t2 = e.task('cube', 'compute', `S r${r}.${k}`, cubeCycles(m, row.rows, tile.cols, D, p.dtype), [t1, c.waitFor], { alloc: [L0C.use()], free: [L0A.use(), L0B.use()] });
      L0A.release(a.slot, t2);
      L0B.release(bb.slot, t2);
      const bytes = row.rows * tile.cols * 2;
      const t3 = e.task('cube.fixpipe', 'transfer', `S→GM r${r}.${k}`, transferCycles(m, 'l0cToGm', bytes, sPath), [t2], { free: [L0C.use()], moved: { 'L0C->GM': bytes, ...hbm(bytes, sPath) } });
      L0C.release(c.slot, t3);
    });
  }

  // Kernel 2: P = softmax(S + mask) on the vector cores.
  bar = e.barrier('launch softmax');
  const UBs = new SlotRing('UB', sm.rows * p.seqK * (2 + 4 + 2), sm.stages);
  const UBmask = new SlotRing('UB', sm.rows * p.seqK * 2, sm.stages);
  for (const r of mine) {
    const row = all[r];
    const tiles = tileKinds[r % headRows.length];
    const cols = tiles.reduce((a, x) => a + x.cols, 0);
    for (let q = 0; q < row.rows; q += sm.rows) {
      const cr = Math.min(sm.rows, row.rows - q);
      let maskBytes = 0;
      let maskedElems = 0;
      if (plan.masked) {
        if (!tilingMask) {
          maskBytes = cr * p.seqK * 2;
          maskedElems = cr * cols;
        } else {
          for (const tile of tiles) {
            if (tile.kind === 'full' || blockKind(plan, row.qStart + q, cr, tile.kStart, tile.cols) === 'full') continue;
            maskBytes += cr * tile.cols * 2;
            maskedElems += cr * tile.cols;
          }
        }
      }
      maskedScores += maskedElems;
      const us = UBs.acquire();
      const um = maskBytes > 0 ? UBmask.acquire() : undefined;
      const sBytes = cr * cols * 2;
      const maskPath: GmPath = tilingMask ? 'l2' : densePath;
      const tIn = e.task(
        'vec.mte2',
        'transfer',
        `S${maskBytes ? '+mask' : ''}→UB r${r}.${q}`,
        transferCycles(m, 'gmToUb', sBytes, sPath, vu) + (maskBytes ? transferCycles(m, 'gmToUb', maskBytes, maskPath, vu) : 0),
        [bar, us.waitFor, um?.waitFor],
        { alloc: um ? [UBs.use(), UBmask.use()] : [UBs.use()], moved: { 'GM->UB': sBytes + maskBytes, HBM: (sPath === 'hbm' ? sBytes : 0) + (maskPath === 'hbm' ? maskBytes : 0) } },
      );
      const tA = e.task('vec.alu', 'compute', `softmax r${r}.${q}`, vectorCycles(m, cr * cols, SOFTMAX_OPS) + (maskedElems ? vectorCycles(m, maskedElems, MASK_OPS) : 0), [tIn]);
      const tOut = e.task('vec.mte3', 'transfer', `P→GM r${r}.${q}`, transferCycles(m, 'ubToGm', sBytes, sPath, vu), [tA], {
        free: um ? [UBs.use(), UBmask.use()] : [UBs.use()],
        moved: { 'UB->GM': sBytes, ...hbm(sBytes, sPath) },
      });
      UBs.release(us.slot, tOut);
      if (um) UBmask.release(um.slot, tOut);
    }
  }

  // Kernel 3: O = PV on the Cube.
  bar = e.barrier('launch PV');
  for (const r of mine) {
    const row = all[r];
    const tiles = tileKinds[r % headRows.length];
    const c = L0C.acquire();
    let lastMm: number | undefined;
    tiles.forEach((tile, k) => {
      const s = L1t.acquire();
      const pBytes = row.rows * tile.cols * 2;
      const vBytes = tile.cols * D * 2;
      const tL = e.task('cube.mte2', 'transfer', `P,V r${r}.${k}`, transferCycles(m, 'gmToL1', pBytes, sPath) + transferCycles(m, 'gmToL1', vBytes, 'l2'), [bar, s.waitFor], {
        alloc: [L1t.use()],
        moved: { 'GM->L1': pBytes + vBytes, ...hbm(pBytes, sPath) },
      });
      const a = L0A.acquire();
      const bb = L0B.acquire();
      const t1 = e.task('cube.mte1', 'transfer', `P,V→L0 r${r}.${k}`, transferCycles(m, 'l1ToL0', pBytes + vBytes), [tL, a.waitFor, bb.waitFor], {
        alloc: [L0A.use(), L0B.use()],
        free: [L1t.use()],
        moved: { 'L1->L0': pBytes + vBytes },
      });
      L1t.release(s.slot, t1);
      const t2 = e.task('cube', 'compute', `O+=PV r${r}.${k}`, cubeCycles(m, row.rows, D, tile.cols, p.dtype), [t1, k === 0 ? c.waitFor : undefined], {
        alloc: k === 0 ? [L0C.use()] : [],
        free: [L0A.use(), L0B.use()],
      });
      L0A.release(a.slot, t2);
      L0B.release(bb.slot, t2);
      lastMm = t2;
    });
    const oBytes = row.rows * D * 2;
    const t3 = e.task('cube.fixpipe', 'transfer', `O→GM r${r}`, transferCycles(m, 'l0cToGm', oBytes, 'hbm'), [lastMm ?? bar], { free: lastMm === undefined ? [] : [L0C.use()], moved: { 'L0C->GM': oBytes, HBM: oBytes } });
    if (lastMm === undefined) continue;
    L0C.release(c.slot, t3);
  }
  return e.finish(`standard${tilingMask ? '+mask' : ''}`, serial, {
    kind: 'standard',
    tilingMask,
    tile: T,
    softmaxRows: sm.rows,
    softmaxStages: sm.stages,
    sPath,
    rowsTotal: all.length,
    rowsOnCore: mine.length,
    maskedScoresOnCore: maskedScores,
  });
}

/** Build the task graph of a schedule for the busiest core of `m`. */
export function buildSchedule(m: MachineConfig, p: AttentionPrefillProblem, options: ScheduleOptions): TaskGraph {
  validateMachine(m);
  validateProblem(p);
  const tilingMask = options.tilingMask ?? true;
  const serial = options.serial ?? false;
  if (options.kind === 'standard') return buildStandard(m, p, tilingMask, serial);
  if (options.kind !== 'unified' && options.kind !== 'twoLevel') throw new NpuConfigError('options.kind', `got ${String(options.kind)}`, 'standard, unified, twoLevel');
  const t = resolveTiling(options.kind, options.tiling);
  validateTiling(t, m);
  return buildFlash(m, p, options.kind, t, tilingMask, serial);
}

/** The outcome of simulating one schedule. */
export interface AttentionSimulation {
  label: string;
  kind: ScheduleKind;
  tilingMask: boolean;
  /** Simulated latency of the busiest core, floored by the chip's compulsory HBM traffic. */
  latencySeconds: number;
  /** Chip-wide compulsory HBM bytes (Q, K, V, O once) / HBM bandwidth, in cycles. */
  hbmFloorCycles: number;
  /** Attention FLOPs that were useful (unmasked pairs × 4·D) / latency, as a fraction of the chip's peak. */
  cubeEfficiency: number;
  summary: SimulationSummary;
  graph: TaskGraph;
  result: SimulationResult;
}

/** Unmasked (query, key) pairs of one sequence. */
export function unmaskedPairCount(p: AttentionPrefillProblem): number {
  const kvLen = p.kvLen ?? p.seqK;
  const offset = kvLen - p.seqQ;
  let n = 0;
  for (let i = 0; i < p.seqQ; i++) {
    let hi = kvLen - 1;
    let lo = 0;
    if (p.causal) hi = Math.min(hi, i + offset);
    if (p.window !== undefined) lo = Math.max(lo, i + offset - p.window + 1);
    if (hi >= lo) n += hi - lo + 1;
  }
  return n;
}

/** Build and simulate a schedule. */
export function simulateAttention(m: MachineConfig, p: AttentionPrefillProblem, options: ScheduleOptions): AttentionSimulation {
  const graph = buildSchedule(m, p, options);
  const result = simulate(graph);
  const { starts, ends, ...summary } = result;
  void starts;
  void ends;
  const compulsory = p.batch * p.heads * (2 * p.seqQ + 2 * p.seqK) * p.headDim * 2;
  const hbmFloorCycles = Math.ceil((compulsory / m.hbmBytesPerSecond) * m.clockHz);
  const latencyCycles = Math.max(result.latencyCycles, hbmFloorCycles);
  const latencySeconds = latencyCycles / m.clockHz;
  const useful = 4 * p.headDim * p.batch * p.heads * unmaskedPairCount(p);
  const peak = m.cube.flopsPerCycle[p.dtype ?? 'fp16'] * m.aiCores * m.clockHz;
  const tilingMask = options.tilingMask ?? true;
  return {
    label: `${options.kind}${tilingMask ? '+mask' : ''}`,
    kind: options.kind,
    tilingMask,
    latencySeconds,
    hbmFloorCycles,
    cubeEfficiency: useful / latencySeconds / peak,
    summary,
    graph,
    result,
  };
}
