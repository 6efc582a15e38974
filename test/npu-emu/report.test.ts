import { describe, expect, it } from 'vitest';
import { npuEmulationReport, PAPER_FIGURES } from '../../src/npu-emu/index.js';

describe('npuEmulationReport', () => {
  const r = npuEmulationReport({
    seqLens: [1024],
    heads: 2,
    layers: [{ name: 'small', hidden: 1024, heads: 16, headDim: 64 }],
    allReduceSeqLens: [1024],
    algorithms: ['ring'],
  });

  it('is JSON-serializable and complete', () => {
    const back = JSON.parse(JSON.stringify(r));
    expect(back).toEqual(r);
    expect(r.attention).toHaveLength(2);
    expect(r.allReduce).toHaveLength(1);
    for (const row of r.attention) for (const v of Object.values(row.latencyMicros)) expect(v).toBeGreaterThan(0);
  });

  it('quotes only the figures found and marks the others "not found"', () => {
    expect(PAPER_FIGURES.fastAttentionVsStandard.value).toBe(10.7);
    const byClaim = Object.fromEntries(r.comparison.map((c) => [c.claim.split(',')[0], c.paper]));
    expect(byClaim['FastAttention vs standard attention']).toBe('up to 10.7×');
    expect(byClaim['Two-level tiling vs unified tiling']).toBe('not found');
    expect(r.comparison.filter((c) => c.paper.startsWith('not found'))).toHaveLength(3);
    expect(r.markdown.split('\n')).toHaveLength(2 + r.comparison.length);
  });

  it('derives its speedups from its own latencies', () => {
    const c = r.attention.find((x) => x.causal)!;
    expect(c.twoLevelVsUnified).toBeCloseTo(c.latencyMicros['unified+mask'] / c.latencyMicros['twoLevel+mask'], 2);
    expect(c.tilingMaskSpeedup).toBeGreaterThan(1);
    const nc = r.attention.find((x) => !x.causal)!;
    expect(nc.tilingMaskSpeedup).toBe(1);
  });
});
