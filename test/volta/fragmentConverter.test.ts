import { describe, expect, it } from 'vitest';
import {
  ampereAccumulatorReuse,
  planAccumulatorReuse,
  summarizeReuse,
  voltaAccumulatorReuse,
} from '../../src/volta/fragmentConverter.js';
import { ampereFragment, QP_GRID_16x16, QP_GRID_32x8, tileFragment, voltaFragment } from '../../src/volta/mmaLayouts.js';

// Counts derived by hand from the PTX fragment formulas:
//  - m8n8k4 C.f16: a lane holds one row of its QP tile, all 8 columns; A .row for the next GEMM
//    needs one row, 4 consecutive k per k-step: the same row, so nothing moves.
//  - m8n8k4 C.f32: a lane holds rows X, X+2 (X = lane&1, +4 high) and columns (lane&2)+{0,1,4,5}:
//    of the 8 elements of its A row per 8 keys it owns 4, so it receives 4 per 8 keys.
//  - m16n8k16: C (f16 or f32) of two n8 tiles has exactly the elements of A for k16 in every lane.

describe('Volta m8n8k4: S accumulator → A operand of P·V', () => {
  it('FP16 accumulator, QPs owning whole rows (32×8×4): zero exchange, registers reused as they are', () => {
    const plan = voltaAccumulatorReuse('f16', { grid: QP_GRID_32x8, keys: 16 });
    expect(plan.totalReceived).toBe(0);
    expect(plan.zeroExchange).toBe(true);
    expect(plan.registerRenameOnly).toBe(true);
    expect(plan.receivedPerLane.every((n) => n === 0)).toBe(true);
  });
  it('FP16 with 64 keys (the Bc=64 S tile) is still zero', () => {
    expect(voltaAccumulatorReuse('f16', { grid: QP_GRID_32x8, keys: 64 }).totalReceived).toBe(0);
  });
  it('FP32 accumulator: every lane receives 4 of its 8 values per 8 keys', () => {
    const per8 = voltaAccumulatorReuse('f32', { grid: QP_GRID_32x8, keys: 8 });
    expect(per8.receivedPerLane).toEqual(new Array(32).fill(4));
    expect(per8.totalReceived).toBe(128);
    const per16 = voltaAccumulatorReuse('f32', { grid: QP_GRID_32x8, keys: 16 });
    expect(per16.totalReceived).toBe(256);
    expect(per16.maxReceivedPerLane).toBe(8);
    expect(per16.zeroExchange).toBe(false);
  });
  it('FP32: lane 0 needs S(0,2) from lane 2’s c0 and gets S(0,0..1) from itself', () => {
    const plan = voltaAccumulatorReuse('f32', { grid: QP_GRID_32x8, keys: 8 });
    const lane0 = plan.entries.filter((e) => e.lane === 0);
    expect(lane0.map((e) => [e.row, e.col])).toEqual([0, 1, 2, 3, 4, 5, 6, 7].map((c) => [0, c]));
    expect(lane0.map((e) => e.sourceLane)).toEqual([0, 0, 2, 2, 0, 0, 2, 2]);
    expect(lane0.map((e) => e.sourceValue)).toEqual([0, 1, 0, 1, 4, 5, 4, 5]);
    // Values move only inside a quadpair, between the two lanes that differ in bit 1.
    plan.sourceLanesPerLane.forEach((srcs, lane) => expect(srcs).toEqual([lane ^ 2]));
  });
  it('CUTLASS’s 16×16×4 tile (2×2 QPs): each QP computes half of a row’s keys, so even FP16 must exchange', () => {
    // A lane needs its row for all 16 keys; it owns the 8 of its QP's column half (f16) or 4 (f32).
    const f16 = voltaAccumulatorReuse('f16', { grid: QP_GRID_16x16 });
    expect(f16.receivedPerLane).toEqual(new Array(32).fill(8));
    expect(f16.totalReceived).toBe(256);
    const f32 = voltaAccumulatorReuse('f32', { grid: QP_GRID_16x16 });
    expect(f32.receivedPerLane).toEqual(new Array(32).fill(12));
    expect(f32.totalReceived).toBe(384);
  });
  it('A .col for P·V: a lane needs one k column of 4 rows, but owns one row: 12 of 16 move', () => {
    const plan = voltaAccumulatorReuse('f16', { grid: QP_GRID_32x8, consumerLayout: 'A.col' });
    expect(plan.receivedPerLane).toEqual(new Array(32).fill(12));
  });
});

describe('Ampere m16n8k16', () => {
  it('FP16 and FP32 accumulators both convert with zero exchange', () => {
    const f16 = ampereAccumulatorReuse('f16');
    const f32 = ampereAccumulatorReuse('f32', 64);
    expect(f16.totalReceived).toBe(0);
    expect(f32.totalReceived).toBe(0);
    // f16 registers are reused as they are; f32 pairs must be converted and packed (in-lane).
    expect(f16.registerRenameOnly).toBe(true);
    expect(f32.registerRenameOnly).toBe(false);
  });
});

describe('general converter', () => {
  it('a fragment reused as itself needs nothing', () => {
    const c = tileFragment(ampereFragment('C.f32'), 1, 2);
    expect(planAccumulatorReuse(c, c).totalReceived).toBe(0);
  });
  it('consumer entries are the consumer fragment itself (which lane must hold which element)', () => {
    const consumer = tileFragment(voltaFragment('A.row', QP_GRID_32x8), 1, 4);
    const plan = planAccumulatorReuse(tileFragment(voltaFragment('C.f32', QP_GRID_32x8), 1, 2), consumer);
    for (const e of plan.entries) expect(consumer.elements[e.lane][e.value]).toEqual([e.row, e.col]);
  });
  it('rejects tiles of different shapes and non-partition producers', () => {
    expect(() => planAccumulatorReuse(voltaFragment('C.f16'), ampereFragment('B'))).toThrow(RangeError); // 16×16 vs 16×8
    const a = voltaFragment('A.row', QP_GRID_16x16); // replicated: not a partition
    expect(() => planAccumulatorReuse(a, a)).toThrow(/partition/);
  });
  it('summaries are compact and consistent', () => {
    const s = summarizeReuse(voltaAccumulatorReuse('f32', { grid: QP_GRID_32x8 }));
    expect(s).toMatchObject({ tile: '32x16', totalReceived: 256, maxReceivedPerLane: 8, minReceivedPerLane: 8, consumerValuesPerLane: 16 });
  });
});
