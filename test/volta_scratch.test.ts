import { it } from 'vitest';
import { planVoltaTiles } from '../src/volta/kernelTiles.js';
import { QP_GRID_16x16, QP_GRID_32x8 } from '../src/volta/mmaLayouts.js';
it('x', () => {
  for (const grid of [QP_GRID_32x8, QP_GRID_16x16]) for (const D of [64, 128]) {
    const t0 = performance.now();
    for (const p of planVoltaTiles({ br: 64, bc: 64, headDim: D, grid })) {
      console.log(`G${grid.alongM}x${grid.alongN} D=${D} ${p.tile} warps=${p.warps} sw=[${p.swizzle}] reads ${p.reads.before.wavefronts}/${p.reads.before.ideal} deg ${p.reads.before.maxDegree} -> ${p.reads.after.wavefronts} deg ${p.reads.after.maxDegree}; fill ${p.fill.before.wavefronts}/${p.fill.before.ideal} -> ${p.fill.after.wavefronts}; cf=${p.conflictFree} tried=${p.candidatesTried} glob ${p.global.coalesced.segments}/${p.global.coalesced.ideal} naive ${p.global.rowPerLane.segments}`);
    }
    console.log('ms', performance.now() - t0);
  }
});
