import { describe, expect, it } from 'vitest';
import { criticalPathCycles, NpuCapacityError, simulate, simulationJson, TaskGraphError, totalTaskCycles, validateTaskGraph, type Task, type TaskGraph } from '../../src/npu-emu/index.js';
import { invariantViolations, peakOccupancy } from './helpers.js';

function graph(tasks: Omit<Task, 'id'>[], capacities: Record<string, number> = {}): TaskGraph {
  return { name: 't', clockHz: 1e9, tasks: tasks.map((t, id) => ({ ...t, id })), capacities };
}

function errorOf(f: () => unknown): Error & { field?: string } {
  try {
    f();
  } catch (e) {
    return e as Error & { field?: string };
  }
  throw new Error('expected a throw');
}

describe('simulate', () => {
  it('matches a hand-computed schedule', () => {
    // A (cube, 3) → B (vec, 5); C (cube, 4) is independent but queued after A on the cube.
    // A: 0–3, C: 3–7, B: 3–8 → latency 8; cube busy 7/8, vec 5/8.
    const g = graph([
      { name: 'A', unit: 'cube', kind: 'compute', cycles: 3, deps: [] },
      { name: 'B', unit: 'vec', kind: 'compute', cycles: 5, deps: [0] },
      { name: 'C', unit: 'cube', kind: 'compute', cycles: 4, deps: [] },
    ]);
    const r = simulate(g);
    expect([...r.starts]).toEqual([0, 3, 3]);
    expect([...r.ends]).toEqual([3, 8, 7]);
    expect(r.latencyCycles).toBe(8);
    expect(r.units.cube.utilization).toBeCloseTo(7 / 8);
    expect(r.units.vec.utilization).toBeCloseTo(5 / 8);
  });

  it('issues in program order: a ready task waits behind an earlier one on its unit', () => {
    // X (dma, 10); Y (cube, 1) deps X; Z (cube, 1) no deps but queued after Y → Z starts at 11, not 0.
    const g = graph([
      { name: 'X', unit: 'dma', kind: 'transfer', cycles: 10, deps: [] },
      { name: 'Y', unit: 'cube', kind: 'compute', cycles: 1, deps: [0] },
      { name: 'Z', unit: 'cube', kind: 'compute', cycles: 1, deps: [] },
    ]);
    expect(simulate(g).starts[2]).toBe(11);
  });

  it('a chain has latency equal to the sum of its parts and to its critical path', () => {
    const tasks: Omit<Task, 'id'>[] = [];
    const units = ['cube', 'vec', 'dma'];
    for (let i = 0; i < 50; i++) tasks.push({ name: `t${i}`, unit: units[i % 3], kind: 'compute', cycles: 1 + ((i * 7) % 13), deps: i ? [i - 1] : [] });
    const g = graph(tasks);
    const r = simulate(g);
    expect(r.latencyCycles).toBe(totalTaskCycles(g));
    expect(r.latencyCycles).toBe(criticalPathCycles(g));
  });

  it('counts syncs, bytes per level and memory high-water marks', () => {
    const g = graph(
      [
        { name: 'load', unit: 'mte2', kind: 'transfer', cycles: 4, deps: [], alloc: [{ memory: 'L1', bytes: 100 }], moved: { 'GM->L1': 100 } },
        { name: 'load2', unit: 'mte2', kind: 'transfer', cycles: 4, deps: [], alloc: [{ memory: 'L1', bytes: 50 }], moved: { 'GM->L1': 50 } },
        { name: 'use', unit: 'cube', kind: 'compute', cycles: 2, deps: [0, 1], free: [{ memory: 'L1', bytes: 150 }] },
        { name: 'flag', unit: 'sync', kind: 'sync', cycles: 7, deps: [2] },
      ],
      { L1: 200 },
    );
    const r = simulate(g);
    expect(r.syncs).toBe(1);
    expect(r.bytesMoved['GM->L1']).toBe(150);
    expect(r.highWater.L1).toEqual({ peakBytes: 150, capacityBytes: 200 });
    expect(r.latencyCycles).toBe(4 + 4 + 2 + 7);
  });

  it('rejects an allocation beyond capacity, with the numbers', () => {
    const g = graph(
      [
        { name: 'a', unit: 'x', kind: 'transfer', cycles: 5, deps: [], alloc: [{ memory: 'UB', bytes: 60 }] },
        { name: 'b', unit: 'y', kind: 'transfer', cycles: 5, deps: [], alloc: [{ memory: 'UB', bytes: 50 }] },
      ],
      { UB: 100 },
    );
    const e = errorOf(() => simulate(g));
    expect(e).toBeInstanceOf(NpuCapacityError);
    expect(e.field).toBe('UB');
    expect(e.message).toContain('110');
    expect(e.message).toContain('100');
  });

  it('is deterministic and its JSON round-trips', () => {
    const tasks: Omit<Task, 'id'>[] = [];
    for (let i = 0; i < 40; i++) tasks.push({ name: `t${i}`, unit: `u${i % 4}`, kind: 'compute', cycles: (i * 31) % 17, deps: i > 3 ? [i - 3, (i * 5) % i] : [] });
    const g = graph(tasks);
    const a = simulationJson(simulate(g), g, { intervals: true });
    const b = simulationJson(simulate(g), g, { intervals: true });
    expect(JSON.stringify(a)).toBe(JSON.stringify(b));
    expect(JSON.parse(JSON.stringify(a)).intervals).toHaveLength(40);
    const r = simulate(g);
    expect(invariantViolations(g, r)).toEqual([]);
  });
});

describe('task graph validation', () => {
  it('rejects a cycle and names its tasks', () => {
    const g = graph([
      { name: 'a', unit: 'x', kind: 'compute', cycles: 1, deps: [2] },
      { name: 'b', unit: 'x', kind: 'compute', cycles: 1, deps: [0] },
      { name: 'c', unit: 'y', kind: 'compute', cycles: 1, deps: [1] },
      { name: 'd', unit: 'y', kind: 'compute', cycles: 1, deps: [] },
    ]);
    const e = errorOf(() => validateTaskGraph(g));
    expect(e).toBeInstanceOf(TaskGraphError);
    expect(e.message).toMatch(/cycle/);
    for (const name of ['(a)', '(b)', '(c)']) expect(e.message).toContain(name);
    expect(e.message).not.toContain('(d)');
  });

  it('rejects an incomplete graph (unknown dependency), naming the task', () => {
    const g = graph([
      { name: 'a', unit: 'x', kind: 'compute', cycles: 1, deps: [] },
      { name: 'b', unit: 'x', kind: 'compute', cycles: 1, deps: [7] },
    ]);
    const e = errorOf(() => simulate(g));
    expect(e).toBeInstanceOf(TaskGraphError);
    expect(e.field).toBe('tasks[1].deps');
    expect(e.message).toContain('7');
  });

  it('rejects negative durations and undeclared memories', () => {
    expect(errorOf(() => simulate(graph([{ name: 'a', unit: 'x', kind: 'compute', cycles: -1, deps: [] }]))).field).toBe('tasks[0].cycles');
    expect(errorOf(() => simulate(graph([{ name: 'a', unit: 'x', kind: 'compute', cycles: 1, deps: [], alloc: [{ memory: 'L9', bytes: 1 }] }]))).message).toContain('L9');
  });

  it('reports a deadlock when program orders contradict the dependencies', () => {
    // On unit x: a then b; on unit y: c then d; a waits on d, c waits on b: acyclic but stuck in order.
    const g = graph([
      { name: 'a', unit: 'x', kind: 'compute', cycles: 1, deps: [3] },
      { name: 'b', unit: 'x', kind: 'compute', cycles: 1, deps: [] },
      { name: 'c', unit: 'y', kind: 'compute', cycles: 1, deps: [1] },
      { name: 'd', unit: 'y', kind: 'compute', cycles: 1, deps: [] },
    ]);
    expect(() => validateTaskGraph(g)).not.toThrow();
    const e = errorOf(() => simulate(g));
    expect(e).toBeInstanceOf(TaskGraphError);
    expect(e.message).toMatch(/deadlock/);
  });

  it('memory peaks agree with an independent sweep', () => {
    const g = graph(
      [
        { name: 'a', unit: 'x', kind: 'transfer', cycles: 5, deps: [], alloc: [{ memory: 'M', bytes: 10 }] },
        { name: 'b', unit: 'y', kind: 'transfer', cycles: 2, deps: [], alloc: [{ memory: 'M', bytes: 20 }], free: [{ memory: 'M', bytes: 20 }] },
        { name: 'c', unit: 'y', kind: 'transfer', cycles: 9, deps: [], alloc: [{ memory: 'M', bytes: 30 }] },
        { name: 'd', unit: 'x', kind: 'compute', cycles: 1, deps: [0, 2], free: [{ memory: 'M', bytes: 40 }] },
      ],
      { M: 1000 },
    );
    const r = simulate(g);
    // a holds 10 over 0–5, b holds 20 over 0–2, c holds 30 from 2: peak 40 (10 + 30) at 2.
    expect(r.highWater.M.peakBytes).toBe(40);
    expect(peakOccupancy(g, r).M).toBe(40);
  });
});
