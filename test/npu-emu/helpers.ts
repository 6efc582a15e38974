/** Independent checks of a simulation, recomputed from the task list and the start/end times only. */
import type { SimulationResult, TaskGraph } from '../../src/npu-emu/index.js';

/** Problems found: overlapping tasks on a unit, a task starting before a dependency ended, out-of-order issue. */
export function invariantViolations(g: TaskGraph, r: SimulationResult): string[] {
  const out: string[] = [];
  const byUnit = new Map<string, number[]>();
  for (const t of g.tasks) {
    if (!byUnit.has(t.unit)) byUnit.set(t.unit, []);
    byUnit.get(t.unit)!.push(t.id);
    for (const d of t.deps) if (r.starts[t.id] < r.ends[d]) out.push(`task ${t.id} starts at ${r.starts[t.id]} before dep ${d} ends at ${r.ends[d]}`);
    if (r.ends[t.id] - r.starts[t.id] !== t.cycles) out.push(`task ${t.id} lasts ${r.ends[t.id] - r.starts[t.id]}, not ${t.cycles}`);
  }
  for (const [unit, ids] of byUnit) {
    // ids are in program order; each must start no earlier than the previous one ends.
    for (let k = 1; k < ids.length; k++) if (r.starts[ids[k]] < r.ends[ids[k - 1]]) out.push(`${unit}: task ${ids[k]} overlaps task ${ids[k - 1]}`);
  }
  return out;
}

/** Peak occupancy per memory, by a sweep over (end: free, start: alloc) events; frees first at equal times. */
export function peakOccupancy(g: TaskGraph, r: SimulationResult): Record<string, number> {
  const events: [number, number, string, number][] = [];
  for (const t of g.tasks) {
    for (const a of t.alloc ?? []) events.push([r.starts[t.id], 1, a.memory, a.bytes]);
    for (const f of t.free ?? []) events.push([r.ends[t.id], 0, f.memory, -f.bytes]);
  }
  events.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  const occ: Record<string, number> = {};
  const peak: Record<string, number> = {};
  for (const [, , mem, delta] of events) {
    occ[mem] = (occ[mem] ?? 0) + delta;
    peak[mem] = Math.max(peak[mem] ?? 0, occ[mem]);
  }
  return peak;
}
