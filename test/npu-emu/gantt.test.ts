import { describe, expect, it } from 'vitest';
import { ascend910B, buildSchedule, ganttSvg, simulate, type TaskGraph } from '../../src/npu-emu/index.js';

describe('ganttSvg', () => {
  it('draws one bar per non-empty task, one row per unit, and escapes names', () => {
    const g: TaskGraph = {
      name: 'a<b>',
      clockHz: 1e9,
      capacities: {},
      tasks: [
        { id: 0, name: 'load <K>', unit: 'cube.mte2', kind: 'transfer', cycles: 10, deps: [] },
        { id: 1, name: 'mm & co', unit: 'cube', kind: 'compute', cycles: 20, deps: [0] },
        { id: 2, name: 'flag', unit: 'sync.c2v', kind: 'sync', cycles: 0, deps: [1] },
      ],
    };
    const svg = ganttSvg(g, simulate(g));
    expect(svg.startsWith('<svg')).toBe(true);
    expect(svg.trim().endsWith('</svg>')).toBe(true);
    expect(svg.match(/<rect /g)).toHaveLength(2);
    expect(svg).toContain('load &lt;K&gt;');
    expect(svg).toContain('mm &amp; co');
    expect(svg).not.toContain('<K>');
    // Bars are placed by time: the matmul starts where the load ends (halfway… of 30 cycles: one third).
    const xs = [...svg.matchAll(/<rect x="([\d.]+)"[^>]*width="([\d.]+)"/g)].map((m) => [Number(m[1]), Number(m[2])]);
    expect(xs[1][0]).toBeCloseTo(xs[0][0] + xs[0][1], 1);
    expect(xs[1][1]).toBeCloseTo(2 * xs[0][1], 1);
  });

  it('cuts long runs to at most maxIntervals bars', () => {
    const g = buildSchedule(ascend910B, { batch: 1, heads: 2, seqQ: 512, seqK: 512, headDim: 128 }, { kind: 'unified' });
    const svg = ganttSvg(g, simulate(g), { maxIntervals: 50 });
    expect(svg.match(/<rect /g)!.length).toBeLessThanOrEqual(50);
    expect(svg).toContain('window');
  });
});
