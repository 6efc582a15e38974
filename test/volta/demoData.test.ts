import { describe, expect, it } from 'vitest';
import { ampereAccumulatorReuse, voltaAccumulatorReuse } from '../../src/volta/fragmentConverter.js';
import { bankHeatmap, conversionMap, ownershipMap, voltaDemoData } from '../../src/volta/demoData.js';
import { ampereFragment, QP_GRID_32x8, voltaFragment } from '../../src/volta/mmaLayouts.js';
import { rowMajorTile, type AccessPattern } from '../../src/volta/smemPlanner.js';

const roundTrip = <T>(x: T): T => JSON.parse(JSON.stringify(x)) as T;

describe('demo data', () => {
  it('ownership map of the 16×16 f16 accumulator: one owner per cell, colour key = quadpair', () => {
    const m = ownershipMap(voltaFragment('C.f16'));
    expect(roundTrip(m)).toEqual(m);
    expect(m.cells.length).toBe(16);
    expect(m.cells.every((row) => row.length === 16 && row.every((c) => c.length === 1))).toBe(true);
    expect(m.cells[8][0]).toEqual([[4, 0]]); // QP 1 holds rows 8..15, cols 0..7
    expect(m.laneGroup.slice(0, 8)).toEqual([0, 0, 0, 0, 1, 1, 1, 1]);
    expect(m.laneGroup[16]).toBe(0);
  });
  it('ownership map of Ampere A uses groupID', () => {
    const m = ownershipMap(ampereFragment('A'), 'groupID');
    expect(m.laneGroupKind).toBe('groupID');
    expect(m.cells[9][10]).toEqual([[5, 6]]); // hand: lane 5 value 6 is (9, 10)
  });
  it('conversion maps mark moved elements', () => {
    const f16 = conversionMap(voltaAccumulatorReuse('f16', { grid: QP_GRID_32x8 }));
    expect(f16.cells.flat().some((c) => c.moved)).toBe(false);
    const f32 = conversionMap(voltaAccumulatorReuse('f32', { grid: QP_GRID_32x8 }));
    expect(f32.cells.flat().filter((c) => c.moved).length).toBe((32 * 16) / 2);
    expect(f32.cells[0][2]).toEqual({ from: 2, to: [0], moved: true });
    expect(roundTrip(f32)).toEqual(f32);
    expect(conversionMap(ampereAccumulatorReuse('f32')).summary.zeroExchange).toBe(true);
  });
  it('bank heatmap of the naive 32×32 f32 column read: 32 words on one bank per step', () => {
    const lanes = Array.from({ length: 32 }, (_, l) => l);
    const cols: AccessPattern = { name: 'cols', steps: lanes.map((c) => ({ accesses: lanes.map((i) => ({ lane: i, row: i, col: c, elems: 1 })) })) };
    const h = bankHeatmap(rowMajorTile(32, 32, 4), cols, 2);
    expect(h.steps.length).toBe(2);
    expect(h.steps[1].phases).toEqual([lanes.map((b) => (b === 1 ? 32 : 0))]);
    expect(h.totals).toMatchObject({ steps: 32, wavefronts: 1024, ideal: 32, maxDegree: 32 });
    expect(h.bankOfElement[3][7]).toBe(7);
    expect(roundTrip(h)).toEqual(h);
  });
  it('voltaDemoData is plain JSON with fragments, conversions and Q/K/V heatmaps', () => {
    const d = voltaDemoData({ headDims: [64], maxSteps: 2 });
    expect(roundTrip(d)).toEqual(d);
    expect(d.fragments.length).toBe(10);
    const volta = d.conversions.filter((c) => c.arch === 'volta' && c.grid === '32x8x4');
    expect(volta.find((c) => c.accumulator === 'f16')?.map.summary.totalReceived).toBe(0);
    expect(volta.find((c) => c.accumulator === 'f32')?.map.summary.totalReceived).toBeGreaterThan(0);
    expect(d.tiles.map((t) => t.tile)).toEqual(['Q', 'K', 'V']);
    for (const t of d.tiles) {
      expect(t.readsBefore.totals.maxDegree).toBeGreaterThan(1);
      expect(t.readsAfter.totals.maxDegree).toBe(1);
      expect(t.readsAfter.steps[0].phases.length).toBe(2);
    }
  });
});
