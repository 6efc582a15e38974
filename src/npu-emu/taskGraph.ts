/**
 * Task graphs: what a schedule asks the machine to do. A task runs on one unit
 * (a Cube, a DMA engine, a vector core, a sync flag, an SDMA engine) for a
 * whole number of cycles, after its dependencies. Each unit executes its tasks
 * in the order they appear in `tasks` (in-order issue, like the instruction
 * queues of an AI core), so the array order is the program order.
 *
 * Buffers are accounted per memory (`L1`, `L0C`, `UB`, `GM`, …): a task
 * allocates bytes when it starts and frees bytes when it ends.
 */
import { TaskGraphError } from './errors.js';

export type TaskKind = 'compute' | 'transfer' | 'sync' | 'comm' | 'barrier';

export interface BufferUse {
  memory: string;
  bytes: number;
}

export interface Task {
  /** Index of the task in `TaskGraph.tasks`. */
  id: number;
  name: string;
  /** Unit that executes it, e.g. `cube`, `cube.mte2`, `vec.alu`, `sync.c2v`, `dev3.sdma`. */
  unit: string;
  kind: TaskKind;
  cycles: number;
  deps: number[];
  /** Bytes allocated when the task starts. */
  alloc?: BufferUse[];
  /** Bytes freed when the task ends. */
  free?: BufferUse[];
  /** Bytes moved, by level (e.g. `GM->L1`, `L1->L0`, `L0C->GM`, `GM->UB`, `UB->GM`, `HBM`, `SDMA`). */
  moved?: Record<string, number>;
}

export interface TaskGraph {
  name: string;
  clockHz: number;
  tasks: Task[];
  /** Capacity of every memory a task allocates in. */
  capacities: Record<string, number>;
  /** Free-form facts about how the graph was built (block sizes, skipped blocks, …). */
  meta?: Record<string, unknown>;
}

/** Incremental builder: tasks are appended in program order and get their index as id. */
export class TaskGraphBuilder {
  readonly tasks: Task[] = [];

  add(t: Omit<Task, 'id'>): number {
    const id = this.tasks.length;
    this.tasks.push({ ...t, id });
    return id;
  }

  /** Add a dependency after creation (e.g. a slot that is released later). */
  addDep(task: number, dep: number | undefined): void {
    if (dep !== undefined && dep !== task && !this.tasks[task].deps.includes(dep)) this.tasks[task].deps.push(dep);
  }

  addFree(task: number, use: BufferUse): void {
    (this.tasks[task].free ??= []).push(use);
  }

  build(name: string, clockHz: number, capacities: Record<string, number>, meta?: Record<string, unknown>): TaskGraph {
    return { name, clockHz, tasks: this.tasks, capacities, meta };
  }
}

/**
 * A ring of `slots` equal buffers in one memory (1 = single buffer, 2 =
 * ping-pong). The producer of slot s must wait for the task that last released
 * it; that dependency is what double buffering means.
 */
export class SlotRing {
  private next = 0;
  private readonly releasedBy: (number | undefined)[];

  constructor(
    readonly memory: string,
    readonly slotBytes: number,
    readonly slots: number,
  ) {
    this.releasedBy = new Array<number | undefined>(slots).fill(undefined);
  }

  /** Take the next slot: its index and the task that must finish before it is reused. */
  acquire(): { slot: number; waitFor: number | undefined } {
    const slot = this.next;
    this.next = (this.next + 1) % this.slots;
    return { slot, waitFor: this.releasedBy[slot] };
  }

  release(slot: number, task: number): void {
    this.releasedBy[slot] = task;
  }

  get footprint(): number {
    return this.slotBytes * this.slots;
  }

  use(): BufferUse {
    return { memory: this.memory, bytes: this.slotBytes };
  }
}

/**
 * Throw a {@link TaskGraphError} when the graph cannot be simulated: ids that
 * are not their index, unknown or self dependencies, a cycle (named with its
 * tasks), non-integer or negative cycles, a memory without capacity.
 * Returns a topological order of the tasks.
 */
export function validateTaskGraph(g: TaskGraph): number[] {
  const n = g.tasks.length;
  if (!(g.clockHz > 0)) throw new TaskGraphError('clockHz', `must be > 0, got ${g.clockHz}`, 'a positive clock');
  const indegree = new Int32Array(n);
  const dependents: number[][] = Array.from({ length: n }, () => []);
  for (let i = 0; i < n; i++) {
    const t = g.tasks[i];
    if (t.id !== i) throw new TaskGraphError(`tasks[${i}].id`, `is ${t.id}`, `the task's index ${i}`);
    if (!t.unit) throw new TaskGraphError(`tasks[${i}].unit`, 'is empty', 'a unit name');
    if (!Number.isInteger(t.cycles) || t.cycles < 0) throw new TaskGraphError(`tasks[${i}].cycles`, `is ${t.cycles}`, 'integers ≥ 0');
    for (const d of t.deps) {
      if (!Number.isInteger(d) || d < 0 || d >= n)
        throw new TaskGraphError(`tasks[${i}].deps`, `task ${i} (${t.name}) depends on task ${d}, which does not exist: the graph is incomplete`, `ids in [0, ${n})`);
      if (d === i) throw new TaskGraphError(`tasks[${i}].deps`, `task ${i} (${t.name}) depends on itself`, 'other tasks');
      indegree[i]++;
      dependents[d].push(i);
    }
    for (const u of [...(t.alloc ?? []), ...(t.free ?? [])]) {
      if (!(u.memory in g.capacities)) throw new TaskGraphError(`tasks[${i}].alloc`, `memory "${u.memory}" has no capacity`, Object.keys(g.capacities).join(', ') || 'declared memories');
      if (!(u.bytes >= 0)) throw new TaskGraphError(`tasks[${i}].alloc`, `negative bytes ${u.bytes}`, 'bytes ≥ 0');
    }
  }
  // Kahn; whatever is left lies on or behind a cycle.
  const order: number[] = [];
  const queue: number[] = [];
  for (let i = 0; i < n; i++) if (indegree[i] === 0) queue.push(i);
  for (let h = 0; h < queue.length; h++) {
    const i = queue[h];
    order.push(i);
    for (const j of dependents[i]) if (--indegree[j] === 0) queue.push(j);
  }
  if (order.length < n) {
    const cycle = findCycle(g, indegree);
    throw new TaskGraphError('tasks', `dependency cycle ${cycle.map((i) => `${i} (${g.tasks[i].name})`).join(' → ')}`, 'an acyclic graph');
  }
  return order;
}

/** A cycle among the tasks Kahn could not order (walk backwards along unresolved deps until a task repeats). */
function findCycle(g: TaskGraph, indegree: Int32Array): number[] {
  let start = indegree.findIndex((d) => d > 0);
  const seenAt = new Map<number, number>();
  const path: number[] = [];
  let cur = start;
  while (!seenAt.has(cur)) {
    seenAt.set(cur, path.length);
    path.push(cur);
    cur = g.tasks[cur].deps.find((d) => indegree[d] > 0)!;
  }
  const cycle = path.slice(seenAt.get(cur)!).reverse();
  start = cycle[0];
  return [...cycle, start];
}
