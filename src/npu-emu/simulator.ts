/**
 * Discrete-event simulator of a task graph. Every unit is a server that runs
 * one task at a time, in program order (the order of `tasks`); a task starts
 * when its unit is free, it is the unit's next task, and all its dependencies
 * have finished. Events are task completions, popped by (time, task id), so
 * equal inputs give equal outputs.
 */
import { NpuCapacityError, TaskGraphError } from './errors.js';
import { validateTaskGraph, type TaskGraph } from './taskGraph.js';

export interface UnitStats {
  busyCycles: number;
  tasks: number;
  /** busyCycles / latency. */
  utilization: number;
}

export interface MemoryStats {
  peakBytes: number;
  capacityBytes: number;
}

export interface SimulationSummary {
  graph: string;
  clockHz: number;
  taskCount: number;
  latencyCycles: number;
  latencySeconds: number;
  /** Cube↔Vector synchronizations (tasks of kind `sync`). */
  syncs: number;
  units: Record<string, UnitStats>;
  bytesMoved: Record<string, number>;
  highWater: Record<string, MemoryStats>;
  meta?: Record<string, unknown>;
}

export interface SimulationResult extends SimulationSummary {
  /** Start cycle of every task (indexed by task id). */
  starts: Float64Array;
  /** End cycle of every task. */
  ends: Float64Array;
}

/** Min-heap of (time, id) pairs. */
class EventHeap {
  private times: number[] = [];
  private ids: number[] = [];

  get size(): number {
    return this.ids.length;
  }

  private less(a: number, b: number): boolean {
    return this.times[a] < this.times[b] || (this.times[a] === this.times[b] && this.ids[a] < this.ids[b]);
  }

  private swap(a: number, b: number): void {
    [this.times[a], this.times[b]] = [this.times[b], this.times[a]];
    [this.ids[a], this.ids[b]] = [this.ids[b], this.ids[a]];
  }

  push(time: number, id: number): void {
    this.times.push(time);
    this.ids.push(id);
    let i = this.ids.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.less(i, p)) break;
      this.swap(i, p);
      i = p;
    }
  }

  peekTime(): number {
    return this.times[0];
  }

  pop(): number {
    const top = this.ids[0];
    const lastT = this.times.pop()!;
    const lastId = this.ids.pop()!;
    if (this.ids.length > 0) {
      this.times[0] = lastT;
      this.ids[0] = lastId;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < this.ids.length && this.less(l, m)) m = l;
        if (r < this.ids.length && this.less(r, m)) m = r;
        if (m === i) break;
        this.swap(i, m);
        i = m;
      }
    }
    return top;
  }
}

/**
 * Run the graph. Throws {@link TaskGraphError} for an invalid graph or a
 * deadlock (a unit's next task waits on a task queued behind it elsewhere), and
 * {@link NpuCapacityError} when a memory's occupancy would exceed its capacity.
 */
export function simulate(g: TaskGraph): SimulationResult {
  validateTaskGraph(g);
  const n = g.tasks.length;
  const unitNames: string[] = [];
  const unitIndex = new Map<string, number>();
  const taskUnit = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const u = g.tasks[i].unit;
    let k = unitIndex.get(u);
    if (k === undefined) {
      k = unitNames.length;
      unitIndex.set(u, k);
      unitNames.push(u);
    }
    taskUnit[i] = k;
  }
  const queues: number[][] = unitNames.map(() => []);
  for (let i = 0; i < n; i++) queues[taskUnit[i]].push(i);
  const pos = new Int32Array(unitNames.length);
  const busy = new Uint8Array(unitNames.length);
  const remaining = new Int32Array(n);
  const dependents: number[][] = Array.from({ length: n }, () => []);
  for (let i = 0; i < n; i++) {
    remaining[i] = g.tasks[i].deps.length;
    for (const d of g.tasks[i].deps) dependents[d].push(i);
  }
  const occupancy: Record<string, number> = {};
  const peak: Record<string, number> = {};
  for (const m of Object.keys(g.capacities)) {
    occupancy[m] = 0;
    peak[m] = 0;
  }
  const starts = new Float64Array(n).fill(-1);
  const ends = new Float64Array(n).fill(-1);
  const heap = new EventHeap();
  let started = 0;

  const tryStart = (u: number, now: number): void => {
    if (busy[u] || pos[u] >= queues[u].length) return;
    const id = queues[u][pos[u]];
    if (remaining[id] > 0) return;
    const t = g.tasks[id];
    for (const a of t.alloc ?? []) {
      const occ = (occupancy[a.memory] += a.bytes);
      if (occ > g.capacities[a.memory])
        throw new NpuCapacityError(
          a.memory,
          `task ${id} (${t.name}) allocates ${a.bytes} bytes at cycle ${now}: occupancy ${occ} bytes exceeds the capacity`,
          `≤ ${g.capacities[a.memory]} bytes`,
        );
      if (occ > peak[a.memory]) peak[a.memory] = occ;
    }
    busy[u] = 1;
    pos[u]++;
    started++;
    starts[id] = now;
    ends[id] = now + t.cycles;
    heap.push(ends[id], id);
  };

  for (let u = 0; u < unitNames.length; u++) tryStart(u, 0);
  const affected = new Set<number>();
  while (heap.size > 0) {
    const now = heap.peekTime();
    affected.clear();
    while (heap.size > 0 && heap.peekTime() === now) {
      const id = heap.pop();
      const u = taskUnit[id];
      busy[u] = 0;
      affected.add(u);
      for (const f of g.tasks[id].free ?? []) occupancy[f.memory] -= f.bytes;
      for (const j of dependents[id]) if (--remaining[j] === 0) affected.add(taskUnit[j]);
    }
    for (const u of [...affected].sort((a, b) => a - b)) tryStart(u, now);
  }
  if (started < n) {
    const waiting = unitNames
      .map((name, u) => (pos[u] < queues[u].length ? `${name} at task ${queues[u][pos[u]]} (${g.tasks[queues[u][pos[u]]].name})` : ''))
      .filter((s) => s)
      .slice(0, 4);
    throw new TaskGraphError('tasks', `deadlock: program order disagrees with dependencies; blocked: ${waiting.join('; ')}`, 'per-unit program orders consistent with the dependencies');
  }
  return { ...summarize(g, starts, ends, peak, unitNames, taskUnit), starts, ends };
}

function summarize(g: TaskGraph, starts: Float64Array, ends: Float64Array, peak: Record<string, number>, unitNames: string[], taskUnit: Int32Array): SimulationSummary {
  let latency = 0;
  let syncs = 0;
  const busy = new Float64Array(unitNames.length);
  const count = new Int32Array(unitNames.length);
  const bytesMoved: Record<string, number> = {};
  for (let i = 0; i < g.tasks.length; i++) {
    const t = g.tasks[i];
    if (ends[i] > latency) latency = ends[i];
    busy[taskUnit[i]] += t.cycles;
    count[taskUnit[i]]++;
    if (t.kind === 'sync') syncs++;
    for (const [level, b] of Object.entries(t.moved ?? {})) bytesMoved[level] = (bytesMoved[level] ?? 0) + b;
  }
  const units: Record<string, UnitStats> = {};
  unitNames.forEach((name, u) => {
    units[name] = { busyCycles: busy[u], tasks: count[u], utilization: latency > 0 ? busy[u] / latency : 0 };
  });
  const highWater: Record<string, MemoryStats> = {};
  for (const m of Object.keys(g.capacities)) highWater[m] = { peakBytes: peak[m], capacityBytes: g.capacities[m] };
  return {
    graph: g.name,
    clockHz: g.clockHz,
    taskCount: g.tasks.length,
    latencyCycles: latency,
    latencySeconds: latency / g.clockHz,
    syncs,
    units,
    bytesMoved,
    highWater,
    meta: g.meta,
  };
}

/** The JSON-serializable part of a result; with `intervals`, also every task's [unit, start, end]. */
export function simulationJson(r: SimulationResult, g?: TaskGraph, options: { intervals?: boolean } = {}): SimulationSummary & { intervals?: { task: number; name: string; unit: string; start: number; end: number }[] } {
  const { starts, ends, ...summary } = r;
  if (!options.intervals || !g) return summary;
  const intervals = g.tasks.map((t, i) => ({ task: i, name: t.name, unit: t.unit, start: starts[i], end: ends[i] }));
  return { ...summary, intervals };
}

/** Sum of all task durations: the latency of a schedule with no overlap at all. */
export function totalTaskCycles(g: TaskGraph): number {
  let s = 0;
  for (const t of g.tasks) s += t.cycles;
  return s;
}

/** Longest dependency chain, ignoring that units are shared: a lower bound on latency. */
export function criticalPathCycles(g: TaskGraph): number {
  const order = validateTaskGraph(g);
  const finish = new Float64Array(g.tasks.length);
  let best = 0;
  for (const i of order) {
    let s = 0;
    for (const d of g.tasks[i].deps) if (finish[d] > s) s = finish[d];
    finish[i] = s + g.tasks[i].cycles;
    if (finish[i] > best) best = finish[i];
  }
  return best;
}
