import { describe, expect, it } from 'vitest';
import { countBlocks } from '../../src/tiling/mask.js';
import {
  ascend910B,
  buildSchedule,
  flashBufferPlan,
  NpuCapacityError,
  NpuConfigError,
  simulate,
  simulateAttention,
  totalTaskCycles,
  TWO_LEVEL_TILING,
  type AttentionPrefillProblem,
  type MachineConfig,
  type ScheduleOptions,
} from '../../src/npu-emu/index.js';
import { invariantViolations, peakOccupancy } from './helpers.js';

const oneCore: MachineConfig = { ...ascend910B, aiCores: 1 };
const small: AttentionPrefillProblem = { batch: 1, heads: 2, seqQ: 1024, seqK: 1024, headDim: 128, causal: true };

const VARIANTS: [string, ScheduleOptions][] = [
  ['standard', { kind: 'standard', tilingMask: false }],
  ['standard+mask', { kind: 'standard', tilingMask: true }],
  ['unified', { kind: 'unified', tilingMask: false }],
  ['unified+mask', { kind: 'unified', tilingMask: true }],
  ['twoLevel', { kind: 'twoLevel', tilingMask: false }],
  ['twoLevel+mask', { kind: 'twoLevel', tilingMask: true }],
];

function errorOf(f: () => unknown): Error & { field?: string; allowed?: string } {
  try {
    f();
  } catch (e) {
    return e as Error & { field?: string; allowed?: string };
  }
  throw new Error('expected a throw');
}

describe('schedule invariants', () => {
  it.each(VARIANTS)('%s: no unit overlap, dependencies respected, capacities never exceeded', (_, opts) => {
    for (const causal of [false, true]) {
      const g = buildSchedule(ascend910B, { ...small, causal }, opts);
      const r = simulate(g);
      expect(invariantViolations(g, r)).toEqual([]);
      const peaks = peakOccupancy(g, r);
      for (const [mem, cap] of Object.entries(g.capacities)) {
        expect(r.highWater[mem].peakBytes).toBe(peaks[mem] ?? 0);
        expect(r.highWater[mem].peakBytes).toBeLessThanOrEqual(cap);
      }
      // Every allocation is freed by the end.
      let balance = 0;
      for (const t of g.tasks) for (const a of t.alloc ?? []) balance += a.bytes;
      for (const t of g.tasks) for (const f of t.free ?? []) balance -= f.bytes;
      expect(balance).toBe(0);
    }
  });

  it.each(VARIANTS)('%s with serial: latency equals the sum of its tasks; overlapped is never slower', (_, opts) => {
    const serial = buildSchedule(ascend910B, small, { ...opts, serial: true });
    const rs = simulate(serial);
    expect(rs.latencyCycles).toBe(totalTaskCycles(serial));
    const overlapped = simulate(buildSchedule(ascend910B, small, opts));
    expect(overlapped.latencyCycles).toBeLessThanOrEqual(rs.latencyCycles);
  });

  it('two-level overlaps Cube and Vector: latency well below the sum of its parts', () => {
    const g = buildSchedule(ascend910B, small, { kind: 'twoLevel' });
    const r = simulate(g);
    expect(r.latencyCycles).toBeLessThan(0.6 * totalTaskCycles(g));
    // …and the busiest unit bounds it from below.
    expect(r.latencyCycles).toBeGreaterThanOrEqual(Math.max(...Object.values(r.units).map((u) => u.busyCycles)));
  });

  it('the high-water marks stay within the static buffer plan', () => {
    const g = buildSchedule(ascend910B, small, { kind: 'twoLevel' });
    const r = simulate(g);
    const plan = flashBufferPlan(ascend910B, small, TWO_LEVEL_TILING, true);
    for (const mem of ['L1', 'L0A', 'L0B', 'L0C', 'UB']) {
      const planned = Object.values(plan[mem]).reduce((a, b) => a + b, 0);
      expect(r.highWater[mem].peakBytes).toBeLessThanOrEqual(planned);
      expect(r.highWater[mem].peakBytes).toBeGreaterThan(0);
    }
  });
});

describe('tiling-mask and syncs', () => {
  it('the blocks computed are exactly the non-empty blocks of the shared classifier', () => {
    for (const [kind, bq, bkv] of [
      ['unified', 128, 128],
      ['twoLevel', 128, 512],
    ] as const) {
      const p = { ...small, window: 300 };
      const g = buildSchedule(oneCore, p, { kind, tilingMask: true });
      const c = countBlocks({ seqQ: p.seqQ, kvLen: p.seqK, causal: true, window: 300 }, p.seqK, bq, bkv);
      expect(g.meta?.levelOneBlocksOnCore).toBe(p.batch * p.heads * (c.full + c.partial));
      // Three Cube↔Vector handoffs per level-1 block.
      expect(simulate(g).syncs).toBe(3 * p.batch * p.heads * (c.full + c.partial));
      const all = buildSchedule(oneCore, p, { kind, tilingMask: false });
      expect(all.meta?.levelOneBlocksOnCore).toBe(p.batch * p.heads * (c.full + c.partial + c.empty));
    }
  });

  it('two-level tiling needs blockKV/128 = 4× fewer syncs than unified tiling', () => {
    const p = { ...small, causal: false };
    const u = simulate(buildSchedule(ascend910B, p, { kind: 'unified' }));
    const t = simulate(buildSchedule(ascend910B, p, { kind: 'twoLevel' }));
    expect(u.syncs).toBe(4 * t.syncs);
  });

  it('without any mask, the tiling-mask changes nothing', () => {
    const p = { ...small, causal: false };
    for (const kind of ['standard', 'unified', 'twoLevel'] as const) {
      const a = simulate(buildSchedule(ascend910B, p, { kind, tilingMask: true }));
      const b = simulate(buildSchedule(ascend910B, p, { kind, tilingMask: false }));
      expect(a.latencyCycles).toBe(b.latencyCycles);
    }
  });

  it('with a causal mask the tiling-mask skips work and moves fewer bytes', () => {
    for (const kind of ['standard', 'unified', 'twoLevel'] as const) {
      const a = simulate(buildSchedule(ascend910B, small, { kind, tilingMask: true }));
      const b = simulate(buildSchedule(ascend910B, small, { kind, tilingMask: false }));
      expect(a.latencyCycles).toBeLessThan(b.latencyCycles);
      expect(a.bytesMoved['GM->UB']).toBeLessThan(b.bytesMoved['GM->UB']);
    }
  });

  it('reproduces the paper’s ordering: two-level beats unified, and FastAttention beats standard at long sequences', () => {
    const p = { ...small, seqQ: 4096, seqK: 4096 };
    const lat = (o: ScheduleOptions): number => simulateAttention(ascend910B, p, o).latencySeconds;
    expect(lat({ kind: 'twoLevel' })).toBeLessThan(lat({ kind: 'unified' }));
    expect(lat({ kind: 'twoLevel' })).toBeLessThan(lat({ kind: 'standard', tilingMask: false }));
  });
});

describe('bad input', () => {
  it('rejects level-1 blocks that overflow L1, with the numbers', () => {
    const e = errorOf(() => buildSchedule(ascend910B, small, { kind: 'twoLevel', tiling: { blockKV: 2048 } }));
    expect(e).toBeInstanceOf(NpuCapacityError);
    expect(e.field).toBe('L1');
    // Q 2·128·128·2 + K/V 2·2048·128·2 + P 128·2048·2 = 65536 + 1048576 + 524288.
    expect(e.message).toContain(String(65536 + 1048576 + 524288));
    expect(e.allowed).toContain('524288');
  });

  it('rejects vector steps that overflow UB', () => {
    const e = errorOf(() => buildSchedule(ascend910B, small, { kind: 'twoLevel', tiling: { vecRows: 128 } }));
    expect(e).toBeInstanceOf(NpuCapacityError);
    expect(e.field).toBe('UB');
  });

  it('rejects a standard softmax row that does not fit UB', () => {
    const tiny: MachineConfig = { ...ascend910B, buffers: { ...ascend910B.buffers, ub: 4096 } };
    expect(errorOf(() => buildSchedule(tiny, small, { kind: 'standard' })).field).toBe('UB');
  });

  it.each([
    [{ ...small, heads: 0 }, 'problem.heads'],
    [{ ...small, seqQ: -4 }, 'problem.seqQ'],
    [{ ...small, kvLen: 2000 }, 'problem.kvLen'],
    [{ ...small, headDim: 1.5 }, 'problem.headDim'],
  ])('rejects problem %#, naming %s', (p, field) => {
    const e = errorOf(() => buildSchedule(ascend910B, p, { kind: 'twoLevel' }));
    expect(e).toBeInstanceOf(NpuConfigError);
    expect(e.field).toBe(field);
  });

  it.each([
    [{ subKV: 96 }, 'tiling.subKV'],
    [{ vecRows: 33 }, 'tiling.vecRows'],
    [{ gmStages: 3 as 1 }, 'tiling.gmStages'],
    [{ blockQ: 0 }, 'tiling.blockQ'],
  ])('rejects tiling %o', (tiling, field) => {
    expect(errorOf(() => buildSchedule(ascend910B, small, { kind: 'twoLevel', tiling })).field).toBe(field);
  });

  it('rejects a machine with a non-positive size before building', () => {
    const e = errorOf(() => buildSchedule({ ...ascend910B, aiCores: -1 }, small, { kind: 'unified' }));
    expect(e).toBeInstanceOf(NpuConfigError);
    expect(e.field).toBe('aiCores');
  });
});
