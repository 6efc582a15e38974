import { describe, expect, it } from 'vitest';
import {
  allReduceCycles,
  ascend910B,
  chooseBlocks,
  layerCostModel,
  NpuConfigError,
  pipelineMakespan,
  simulate,
  simulateTilingAllReduce,
  tilingAllReduceGraph,
  type LayerConfig,
  type LayerCostModel,
} from '../../src/npu-emu/index.js';
import { invariantViolations } from './helpers.js';

/** A synthetic cost model (cycles): attention ∝ causal pairs, Linear ∝ rows, AllReduce = α + rows·β. */
function synthetic(alpha: number, beta: number, launch = 50): LayerCostModel {
  return {
    devices: 8,
    headsPerDevice: 4,
    cyclesPerPair: 0.01,
    attention: (a, b) => launch + Math.ceil((0.01 * (b * (b + 1) - a * (a + 1))) / 2),
    linear: (rows) => launch + 2 * rows,
    allReduce: (rows) => alpha + Math.ceil(beta * rows),
    bytesPerRow: 8192,
  };
}

/** Every composition of n units into blocks of whole units. */
function compositions(n: number): number[][] {
  if (n === 0) return [[]];
  const out: number[][] = [];
  for (let first = 1; first <= n; first++) for (const rest of compositions(n - first)) out.push([first, ...rest]);
  return out;
}

const layer: LayerConfig = { name: 'test layer', hidden: 1024, heads: 16, headDim: 64, seqLen: 1024, causal: true };

describe('AllReduce cost', () => {
  it('ring: 2(N−1) steps of α + (M/N)/β; tree: 2⌈log₂N⌉ steps of α + M/β', () => {
    const m = ascend910B;
    const M = 8 * 2 ** 20;
    const ring = 14 * (m.sdma.latencySeconds + M / 8 / m.sdma.linkBytesPerSecond);
    const tree = 6 * (m.sdma.latencySeconds + M / m.sdma.linkBytesPerSecond);
    expect(allReduceCycles(m, M, 8, 'ring')).toBe(Math.ceil(ring * m.clockHz - 1e-9));
    expect(allReduceCycles(m, M, 8, 'tree')).toBe(Math.ceil(tree * m.clockHz - 1e-9));
    expect(allReduceCycles(m, M, 1, 'ring')).toBe(0);
  });
});

describe('block-size selection', () => {
  it('equals the brute-force optimum over every partition', () => {
    for (const [alpha, beta] of [
      [500, 3],
      [5000, 0.5],
      [20, 9],
    ]) {
      const costs = synthetic(alpha, beta);
      const g = 64;
      const S = 10 * g;
      let best = Infinity;
      for (const c of compositions(10)) best = Math.min(best, pipelineMakespan(costs, c.map((x) => x * g)));
      const chosen = chooseBlocks(costs, S, g);
      expect(chosen.makespan).toBe(best);
      expect(pipelineMakespan(costs, chosen.blocks)).toBe(best);
      expect(chosen.blocks.reduce((a, b) => a + b, 0)).toBe(S);
      for (const b of chosen.blocks) expect(b % g).toBe(0);
    }
  });

  it('uses fewer, larger blocks when each AllReduce step costs more latency', () => {
    const counts = [100, 2000, 20000, 200000].map((alpha) => chooseBlocks(synthetic(alpha, 2), 2048, 64).blocks.length);
    for (let i = 1; i < counts.length; i++) expect(counts[i]).toBeLessThanOrEqual(counts[i - 1]);
    expect(counts[0]).toBeGreaterThan(counts[counts.length - 1]);
  });

  it('starts with a small block when communication dominates (the AllReduce starts early)', () => {
    const { blocks } = chooseBlocks(synthetic(100, 40), 2048, 64);
    expect(blocks.length).toBeGreaterThan(1);
    expect(blocks[0]).toBe(Math.min(...blocks));
    expect(blocks[0]).toBeLessThan(Math.max(...blocks));
  });
});

describe('tiling-AllReduce simulation', () => {
  it('the simulated makespan equals the chooser’s recurrence, and beats the baseline', () => {
    const r = simulateTilingAllReduce(ascend910B, layer, { devices: 8, algorithm: 'ring' });
    expect(r.tiledSeconds).toBeCloseTo(r.predictedTiledSeconds, 12);
    expect(r.tiledSeconds).toBeLessThanOrEqual(r.baselineSeconds);
    expect(r.blocks.reduce((a, b) => a + b, 0)).toBe(layer.seqLen);
    expect(r.tiled.units['dev0.sdma'].tasks).toBe(r.blocks.length);
  });

  it('a one-block partition is the baseline: compute, then the whole AllReduce', () => {
    const costs = layerCostModel(ascend910B, layer, 8, 'tree');
    const S = layer.seqLen;
    const r = simulateTilingAllReduce(ascend910B, layer, { devices: 8, algorithm: 'tree', blocks: [S] });
    const expected = costs.attention(0, S) + costs.linear(S) + costs.allReduce(S);
    expect(r.tiledSeconds * ascend910B.clockHz).toBeCloseTo(expected, 6);
    expect(r.speedup).toBe(1);
  });

  it('the 8-device graph respects every dependency and never overlaps a unit', () => {
    const costs = layerCostModel(ascend910B, layer, 8, 'ring');
    const g = tilingAllReduceGraph(ascend910B, costs, [256, 256, 512], 'g');
    const r = simulate(g);
    expect(invariantViolations(g, r)).toEqual([]);
    // Block i's AllReduce overlaps block i+1's compute on device 0.
    const ar0 = g.tasks.find((t) => t.name === 'allreduce blk0 dev0')!.id;
    const at1 = g.tasks.find((t) => t.name === 'attention blk1 dev0')!.id;
    expect(r.starts[ar0]).toBeLessThan(r.ends[at1]);
    expect(r.ends[ar0]).toBeGreaterThan(r.starts[at1]);
  });

  it('rejects N devices that do not divide the heads, naming the value', () => {
    let err: unknown;
    try {
      simulateTilingAllReduce(ascend910B, { ...layer, heads: 12 }, { devices: 8 });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(NpuConfigError);
    expect((err as NpuConfigError).field).toBe('devices');
    expect((err as NpuConfigError).message).toContain('12');
    expect((err as NpuConfigError).allowed).toContain('1, 2, 3, 4, 6, 12');
  });

  it('rejects block sizes that do not cover the sequence', () => {
    expect(() => simulateTilingAllReduce(ascend910B, layer, { blocks: [512, 256] })).toThrow(NpuConfigError);
    expect(() => simulateTilingAllReduce(ascend910B, { ...layer, seqLen: 0 })).toThrow(/layer.seqLen/);
  });
});
