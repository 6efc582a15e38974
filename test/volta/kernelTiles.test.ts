import { describe, expect, it } from 'vitest';
import {
  kFragmentReads,
  planVoltaTiles,
  qFragmentReads,
  tileFill,
  vFragmentReads,
  warpsPerWorkgroup,
  type TilePlan,
} from '../../src/volta/kernelTiles.js';
import { QP_GRID_16x16, QP_GRID_32x8 } from '../../src/volta/mmaLayouts.js';
import { patternCost, rowMajorTile } from '../../src/volta/smemPlanner.js';

// Hand derivation of the "before" figures (row-major f16 tiles, rows of D·2 = 128 or 256 bytes, a
// multiple of the 128-byte bank window, so every row starts at bank 0). Fragment reads are 8 bytes
// per lane, served per half-warp: lanes 0–15 are the low groups of the 4 QPs.
//  - 32×8×4 grid: QP q reads A rows 8q + (lane % 4): 16 distinct rows at the same k → 16-way.
//    K (.col) and V (.row) B fragments: all QPs read the same 4 rows per half-warp → 4-way.
//  - 16×16×4 grid: A rows 8·(q%2) + lane%4 → 8 distinct rows → 8-way; K rows n0 + 8·(q/2) + lane%4
//    → 8-way; V rows k0 + lane%4 at columns n0 + 8·(q/2) + 0..3, two column groups in different
//    banks → 4-way.
// Each step has 2 phases (ideal 2 wavefronts); a d-way step costs 2·d.

const cfg64 = { br: 64, bc: 64, headDim: 64, grid: QP_GRID_32x8 };

describe('access patterns of the Volta kernel', () => {
  it('warps: Br / rows per warp', () => {
    expect(warpsPerWorkgroup(cfg64)).toBe(2);
    expect(warpsPerWorkgroup({ ...cfg64, grid: QP_GRID_16x16 })).toBe(4);
  });
  it('Q reads: lane 4 (QP 1) reads row 8, 4 consecutive d; one step per k-step', () => {
    const q = qFragmentReads(cfg64);
    expect(q.steps.length).toBe(16);
    expect(q.steps[1].accesses[4]).toEqual({ lane: 4, row: 8, col: 4, elems: 4 });
    expect(q.steps[0].accesses[20]).toEqual({ lane: 20, row: 12, col: 0, elems: 4 });
  });
  it('K reads: lane 17 reads key row n0 + 5 at d = k0..k0+3; V reads: lane 17 reads key row k0 + 1 at d = n0+4..n0+7', () => {
    const k = kFragmentReads(cfg64);
    expect(k.steps.length).toBe(8 * 16);
    expect(k.steps[16 + 2].accesses[17]).toEqual({ lane: 17, row: 8 + 5, col: 8, elems: 4 });
    const v = vFragmentReads(cfg64);
    expect(v.steps.length).toBe(8 * 16);
    expect(v.steps[16 + 2].accesses[17]).toEqual({ lane: 17, row: 8 + 1, col: 8 + 4, elems: 4 });
  });
  it('before: 16×16×4 grid (row-major tiles)', () => {
    const cfg = { ...cfg64, grid: QP_GRID_16x16 };
    const base = rowMajorTile(64, 64, 2);
    const q = patternCost(base, qFragmentReads(cfg));
    const k = patternCost(base, kFragmentReads(cfg));
    const v = patternCost(base, vFragmentReads(cfg));
    expect([q.maxDegree, q.wavefronts, q.ideal]).toEqual([8, 16 * 16, 16 * 2]);
    expect([k.maxDegree, k.wavefronts, k.ideal]).toEqual([8, 64 * 16, 64 * 2]);
    expect([v.maxDegree, v.wavefronts, v.ideal]).toEqual([4, 64 * 8, 64 * 2]);
    // The coalesced 16-byte fill is conflict-free: 8 lanes cover one 128-byte row.
    const f = patternCost(base, tileFill(cfg, 'Q'));
    expect(f.wavefronts).toBe(f.ideal);
  });
});

describe('plans for Br = Bc = 64, 32×8×4 grid', () => {
  const plans = new Map<number, TilePlan[]>();
  for (const d of [64, 128]) plans.set(d, planVoltaTiles({ ...cfg64, headDim: d }));
  const get = (d: number, t: 'Q' | 'K' | 'V') => (plans.get(d) as TilePlan[]).find((p) => p.tile === t) as TilePlan;

  it('before: Q 16-way, K and V 4-way', () => {
    for (const d of [64, 128]) {
      const q = get(d, 'Q');
      expect([q.reads.before.maxDegree, q.reads.before.wavefronts, q.reads.before.ideal]).toEqual([16, (d / 4) * 32, (d / 4) * 2]);
      const steps = (64 / 8) * (d / 4); // K: Bc/8 n-blocks × D/4 k-steps; V: D/8 n-blocks × Bc/4 k-steps
      for (const t of ['K', 'V'] as const) {
        const p = get(d, t);
        expect([p.reads.before.maxDegree, p.reads.before.wavefronts, p.reads.before.ideal]).toEqual([4, steps * 8, steps * 2]);
      }
    }
  });
  it('after: every tile conflict-free for reads and fill, no bytes added', () => {
    for (const d of [64, 128]) {
      for (const t of ['Q', 'K', 'V'] as const) {
        const p = get(d, t);
        expect(p.conflictFree).toBe(true);
        expect(p.reads.after.maxDegree).toBe(1);
        expect(p.reads.after.wavefronts).toBe(p.reads.after.ideal);
        expect(p.fill.after.wavefronts).toBe(p.fill.after.ideal);
        expect(p.layout.pitch).toBe(d);
      }
    }
  });
  it('the Q swizzle XORs exactly row bits 0, 1, 3, 4 (the rows a half-warp reads differ in those)', () => {
    for (const d of [64, 128]) {
      const masks = get(d, 'Q').layout.swizzle?.masks ?? [];
      expect(masks.reduce((a, m) => a | m, 0)).toBe(0b11011);
      expect(get(d, 'Q').layout.swizzle?.chunkElems).toBe(4);
    }
  });
  it('global loads are coalesced (segments = ideal); one row per lane touches 32 segments per load', () => {
    // Coalesced: 32 lanes × v bytes = 32·v/128 segments; row per lane: 32. Ratio 128 / v.
    for (const d of [64, 128]) {
      for (const t of ['Q', 'K', 'V'] as const) {
        const p = get(d, t);
        const g = p.global;
        expect(g.coalesced.segments).toBe(g.coalesced.ideal);
        expect(g.coalesced.perStep.every((n) => n === (32 * p.fillVectorBytes) / 128)).toBe(true);
        expect(g.rowPerLane.perStep.every((n) => n === 32)).toBe(true);
        expect(g.rowPerLane.segments).toBe((128 / p.fillVectorBytes) * g.coalesced.segments);
      }
    }
  });
});
