/**
 * Tiling-AllReduce (FastAttention §3.3). N devices split the heads of a layer
 * (tensor parallelism); each computes attention for its heads and its slice of
 * the output projection, giving a partial [S, hidden] output that an AllReduce
 * sums over devices.
 *
 *  - baseline: all attention, then the Linear, then one AllReduce of S·hidden;
 *  - tiled: the sequence is cut into blocks; block i's AllReduce runs on the
 *    SDMA engine while the AI cores compute block i+1.
 *
 * Block sizes are chosen by a dynamic program over block boundaries that
 * minimizes the pipeline's makespan with the same cost model the simulator
 * runs, so "a smaller first block" (the AllReduce starts early) and "larger
 * blocks where the per-message latency would waste bandwidth" come out of the
 * costs, not out of constants.
 */
import { NpuConfigError } from './errors.js';
import { secondsToCycles, validateMachine, type MachineConfig } from './machine.js';
import { simulateAttention, busiestCoreRows } from './schedules.js';
import { simulate, type SimulationSummary } from './simulator.js';
import { TaskGraphBuilder, type TaskGraph } from './taskGraph.js';

export type AllReduceAlgorithm = 'ring' | 'tree';

/** One transformer layer's attention + output projection, prefill of `seqLen` tokens. */
export interface LayerConfig {
  name: string;
  hidden: number;
  heads: number;
  headDim: number;
  seqLen: number;
  causal: boolean;
  batch?: number;
}

/** Fraction of the Cube peak the output-projection GEMM reaches (ASSUMPTION). */
export const LINEAR_CUBE_EFFICIENCY = 0.8;
/** Rows of the attention's level-1 query block: the smallest sequence block. */
export const ROW_BLOCK = 128;

/** Cycles of one AllReduce of `bytes` over `devices` (α–β model; ring: 2(N−1) steps of bytes/N, tree: 2⌈log₂N⌉ steps of bytes). */
export function allReduceCycles(m: MachineConfig, bytes: number, devices: number, algorithm: AllReduceAlgorithm): number {
  if (devices <= 1 || bytes <= 0) return 0;
  const alpha = m.sdma.latencySeconds;
  const beta = m.sdma.linkBytesPerSecond;
  const seconds = algorithm === 'ring' ? 2 * (devices - 1) * (alpha + bytes / devices / beta) : 2 * Math.ceil(Math.log2(devices)) * (alpha + bytes / beta);
  return secondsToCycles(m, seconds);
}

/** Fraction of an AllReduce's time spent moving data (the rest is per-step latency). */
export function allReduceBandwidthUtilization(m: MachineConfig, bytes: number, devices: number, algorithm: AllReduceAlgorithm): number {
  if (devices <= 1 || bytes <= 0) return 0;
  const steps = algorithm === 'ring' ? 2 * (devices - 1) : 2 * Math.ceil(Math.log2(devices));
  const stepBytes = algorithm === 'ring' ? bytes / devices : bytes;
  const data = steps * (stepBytes / m.sdma.linkBytesPerSecond);
  return data / (data + steps * m.sdma.latencySeconds);
}

/** Throw an {@link NpuConfigError} naming the first unusable layer/device value. */
export function validateLayer(layer: LayerConfig, devices: number, algorithm: AllReduceAlgorithm = 'ring'): void {
  for (const k of ['hidden', 'heads', 'headDim', 'seqLen'] as const) {
    const v = layer[k];
    if (!Number.isInteger(v) || v < 1) throw new NpuConfigError(`layer.${k}`, `must be an integer ≥ 1, got ${v}`, 'integers ≥ 1');
  }
  if (layer.batch !== undefined && (!Number.isInteger(layer.batch) || layer.batch < 1))
    throw new NpuConfigError('layer.batch', `must be an integer ≥ 1, got ${layer.batch}`, 'integers ≥ 1');
  if (!Number.isInteger(devices) || devices < 1) throw new NpuConfigError('devices', `must be an integer ≥ 1, got ${devices}`, 'integers ≥ 1');
  if (layer.heads % devices !== 0) {
    const divisors = Array.from({ length: layer.heads }, (_, i) => i + 1).filter((d) => layer.heads % d === 0);
    throw new NpuConfigError('devices', `${devices} devices do not divide the ${layer.heads} heads of ${layer.name}`, `divisors of ${layer.heads}: ${divisors.join(', ')}`);
  }
  if (algorithm !== 'ring' && algorithm !== 'tree') throw new NpuConfigError('algorithm', `got ${String(algorithm)}`, 'ring or tree');
}

/** Per-device costs of a layer as functions of the sequence block, in cycles. */
export interface LayerCostModel {
  devices: number;
  headsPerDevice: number;
  /** Attention of query rows [a, b) (keys [0, b) when causal, all keys otherwise), launch included. */
  attention(a: number, b: number): number;
  /** Output-projection slice for `rows` rows, launch included. */
  linear(rows: number): number;
  /** AllReduce of the partial output of `rows` rows. */
  allReduce(rows: number): number;
  /** Bytes of partial output per row (batch · hidden · 2). */
  bytesPerRow: number;
  /** Cycles per (query, key) pair of the busiest core, calibrated on the two-level schedule. */
  cyclesPerPair: number;
}

/** (query, key) pairs of query rows [a, b): causal rows see keys ≤ their position. */
function rowPairs(layer: LayerConfig, a: number, b: number): number {
  return layer.causal ? (b * (b + 1) - a * (a + 1)) / 2 : (b - a) * layer.seqLen;
}

/** The pair load of the busiest core when rows [a, b) of every local head are spread over the cores. */
function busiestPairs(m: MachineConfig, layer: LayerConfig, headsPerDevice: number, a: number, b: number): number {
  const work: number[] = [];
  const per: number[] = [];
  for (let q = a; q < b; q += ROW_BLOCK) per.push(rowPairs(layer, q, Math.min(b, q + ROW_BLOCK)));
  for (let h = 0; h < headsPerDevice * (layer.batch ?? 1); h++) work.push(...per);
  return busiestCoreRows(work, m.aiCores).load;
}

/**
 * Calibrate the cost model: simulate the two-level schedule (with tiling-mask)
 * for one device's heads over the whole sequence and scale by the busiest
 * core's pair load; the Linear is a roofline at {@link LINEAR_CUBE_EFFICIENCY}.
 */
export function layerCostModel(m: MachineConfig, layer: LayerConfig, devices: number, algorithm: AllReduceAlgorithm): LayerCostModel {
  validateMachine(m);
  validateLayer(layer, devices, algorithm);
  const hpd = layer.heads / devices;
  const batch = layer.batch ?? 1;
  const S = layer.seqLen;
  const sim = simulateAttention(m, { batch, heads: hpd, seqQ: S, seqK: S, headDim: layer.headDim, causal: layer.causal }, { kind: 'twoLevel', tilingMask: true });
  const fullCycles = Math.round(sim.latencySeconds * m.clockHz) - m.kernelLaunchCycles;
  const cyclesPerPair = fullCycles / busiestPairs(m, layer, hpd, 0, S);
  const H = layer.hidden;
  const hbmPerCycle = m.hbmBytesPerSecond / m.clockHz;
  const cubePerCycle = m.cube.flopsPerCycle.fp16 * m.aiCores * LINEAR_CUBE_EFFICIENCY;
  return {
    devices,
    headsPerDevice: hpd,
    cyclesPerPair,
    attention: (a, b) => m.kernelLaunchCycles + Math.ceil(cyclesPerPair * busiestPairs(m, layer, hpd, a, b)),
    linear: (rows) => {
      const flops = 2 * rows * batch * (H / devices) * H;
      const bytes = (H / devices) * H * 2 + rows * batch * (H / devices) * 2 + rows * batch * H * 2;
      return m.kernelLaunchCycles + Math.max(Math.ceil(flops / cubePerCycle), Math.ceil(bytes / hbmPerCycle));
    },
    allReduce: (rows) => allReduceCycles(m, rows * batch * H * 2, devices, algorithm),
    bytesPerRow: batch * H * 2,
  };
}

/**
 * Makespan of a block partition under the pipeline: compute is serial,
 * C_i = C_{i−1} + attention_i + linear_i; the SDMA is serial and waits for the
 * block, R_i = max(R_{i−1}, C_i) + allReduce_i; the layer ends at R_last.
 */
export function pipelineMakespan(costs: LayerCostModel, blocks: readonly number[]): number {
  let a = 0;
  let C = 0;
  let R = 0;
  for (const s of blocks) {
    C += costs.attention(a, a + s) + costs.linear(s);
    R = Math.max(R, C) + costs.allReduce(s);
    a += s;
  }
  return R;
}

/**
 * The block sizes (rows, multiples of `granularity` except possibly the last)
 * that minimize {@link pipelineMakespan}: a dynamic program over boundaries
 * keeping, at each boundary, the Pareto front of (compute done, SDMA done).
 */
export function chooseBlocks(costs: LayerCostModel, seqLen: number, granularity: number = ROW_BLOCK): { blocks: number[]; makespan: number } {
  if (!Number.isInteger(granularity) || granularity < 1) throw new NpuConfigError('granularity', `got ${granularity}`, 'integers ≥ 1');
  const bounds: number[] = [];
  for (let x = 0; x < seqLen; x += granularity) bounds.push(x);
  bounds.push(seqLen);
  const n = bounds.length - 1;
  interface State {
    C: number;
    R: number;
    prev: number;
    prevState: State | undefined;
  }
  const fronts: State[][] = Array.from({ length: n + 1 }, () => []);
  fronts[0] = [{ C: 0, R: 0, prev: -1, prevState: undefined }];
  for (let i = 0; i < n; i++) {
    for (let j = i + 1; j <= n; j++) {
      const a = bounds[i];
      const b = bounds[j];
      const comp = costs.attention(a, b) + costs.linear(b - a);
      const comm = costs.allReduce(b - a);
      for (const s of fronts[i]) {
        const C = s.C + comp;
        fronts[j].push({ C, R: Math.max(s.R, C) + comm, prev: i, prevState: s });
      }
    }
    // Prune the next boundary's front: keep states not dominated in (C, R).
    const next = fronts[i + 1].sort((x, y) => x.C - y.C || x.R - y.R);
    const kept: State[] = [];
    for (const s of next) if (kept.length === 0 || s.R < kept[kept.length - 1].R) kept.push(s);
    fronts[i + 1] = kept;
  }
  let best = fronts[n][0];
  for (const s of fronts[n]) if (s.R < best.R) best = s;
  const blocks: number[] = [];
  let at = n;
  let s: State | undefined = best;
  while (s && s.prev >= 0) {
    blocks.unshift(bounds[at] - bounds[s.prev]);
    at = s.prev;
    s = s.prevState;
  }
  return { blocks, makespan: best.R };
}

/** Task graph of the layer on `devices` devices: per block, attention and Linear on each device's AI cores, then one AllReduce on every SDMA engine. */
export function tilingAllReduceGraph(m: MachineConfig, costs: LayerCostModel, blocks: readonly number[], name: string): TaskGraph {
  const b = new TaskGraphBuilder();
  let a = 0;
  blocks.forEach((s, i) => {
    const lin: number[] = [];
    for (let d = 0; d < costs.devices; d++) {
      const at = b.add({ name: `attention blk${i} dev${d}`, unit: `dev${d}.aicore`, kind: 'compute', cycles: costs.attention(a, a + s), deps: [] });
      lin.push(b.add({ name: `linear blk${i} dev${d}`, unit: `dev${d}.aicore`, kind: 'compute', cycles: costs.linear(s), deps: [at] }));
    }
    for (let d = 0; d < costs.devices; d++)
      b.add({ name: `allreduce blk${i} dev${d}`, unit: `dev${d}.sdma`, kind: 'comm', cycles: costs.allReduce(s), deps: [...lin], moved: { SDMA: s * costs.bytesPerRow } });
    a += s;
  });
  return b.build(name, m.clockHz, {});
}

export interface TilingAllReduceResult {
  layer: string;
  devices: number;
  algorithm: AllReduceAlgorithm;
  seqLen: number;
  baselineSeconds: number;
  tiledSeconds: number;
  speedup: number;
  /** Rows per block, first to last. */
  blocks: number[];
  /** Makespan the block chooser predicted (must equal the simulated one). */
  predictedTiledSeconds: number;
  perBlock: { rows: number; computeMicros: number; allReduceMicros: number; bandwidthUtilization: number }[];
  /** Fraction of the baseline spent in its one AllReduce. */
  baselineCommFraction: number;
  tiled: SimulationSummary;
}

/** Simulate baseline and tiling-AllReduce for a layer on `devices` devices (default 8, ring). */
export function simulateTilingAllReduce(
  m: MachineConfig,
  layer: LayerConfig,
  options: { devices?: number; algorithm?: AllReduceAlgorithm; blocks?: number[]; granularity?: number } = {},
): TilingAllReduceResult {
  const devices = options.devices ?? 8;
  const algorithm = options.algorithm ?? 'ring';
  const costs = layerCostModel(m, layer, devices, algorithm);
  const S = layer.seqLen;
  const chosen = options.blocks ? { blocks: options.blocks, makespan: pipelineMakespan(costs, options.blocks) } : chooseBlocks(costs, S, options.granularity ?? ROW_BLOCK);
  const total = chosen.blocks.reduce((x, y) => x + y, 0);
  if (total !== S || chosen.blocks.some((x) => !Number.isInteger(x) || x < 1))
    throw new NpuConfigError('blocks', `block sizes ${chosen.blocks.join(', ')} must be positive integers summing to seqLen = ${S}`, `a partition of ${S}`);
  const base = simulate(tilingAllReduceGraph(m, costs, [S], `${layer.name} baseline`));
  const tiled = simulate(tilingAllReduceGraph(m, costs, chosen.blocks, `${layer.name} tiling-AllReduce`));
  const { starts, ends, ...tiledSummary } = tiled;
  void starts;
  void ends;
  let a = 0;
  const perBlock = chosen.blocks.map((s) => {
    const comp = costs.attention(a, a + s) + costs.linear(s);
    a += s;
    return {
      rows: s,
      computeMicros: (comp / m.clockHz) * 1e6,
      allReduceMicros: (costs.allReduce(s) / m.clockHz) * 1e6,
      bandwidthUtilization: allReduceBandwidthUtilization(m, s * (layer.batch ?? 1) * layer.hidden * 2, devices, algorithm),
    };
  });
  return {
    layer: layer.name,
    devices,
    algorithm,
    seqLen: S,
    baselineSeconds: base.latencySeconds,
    tiledSeconds: tiled.latencySeconds,
    speedup: base.latencyCycles / tiled.latencyCycles,
    blocks: chosen.blocks,
    predictedTiledSeconds: chosen.makespan / m.clockHz,
    perBlock,
    baselineCommFraction: costs.allReduce(S) / base.latencyCycles,
    tiled: tiledSummary,
  };
}
