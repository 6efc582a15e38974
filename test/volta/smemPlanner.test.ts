import { describe, expect, it } from 'vitest';
import {
  bankOf,
  countSegments,
  cuteSwizzle,
  cuteSwizzleOffset,
  describeSwizzle,
  elementOffset,
  lanesPerPhase,
  patternCost,
  rowMajorTile,
  searchSwizzle,
  stepCost,
  tileFillPattern,
  type AccessPattern,
  type TileLayout,
} from '../../src/volta/smemPlanner.js';

// Expected figures are hand computations under the documented bank model:
// 32 banks × 4 bytes; ≤4-byte accesses served per warp, 8-byte per half-warp, 16-byte per quarter-warp.

const lanes = Array.from({ length: 32 }, (_, l) => l);

/** 32×32 f32 tile read column by column: in step c, lane i reads element (i, c). */
function columnReads(): AccessPattern {
  return { name: 'columns', steps: lanes.map((c) => ({ label: `col ${c}`, accesses: lanes.map((i) => ({ lane: i, row: i, col: c, elems: 1 })) })) };
}
function rowReads(): AccessPattern {
  return { name: 'rows', steps: lanes.map((r) => ({ accesses: lanes.map((i) => ({ lane: i, row: r, col: i, elems: 1 })) })) };
}

describe('bank conflicts: known cases', () => {
  const naive = rowMajorTile(32, 32, 4);
  const xorTile: TileLayout = { ...naive, swizzle: { chunkElems: 1, masks: [1, 2, 4, 8, 16] } }; // col ^ row

  it('naive row-major 32×32 f32 read by columns: every step is a 32-way conflict', () => {
    const c = patternCost(naive, columnReads());
    expect(c.maxDegree).toBe(32);
    expect(c.perStep.every((s) => s.degree === 32 && s.wavefronts === 32 && s.ideal === 1)).toBe(true);
    expect(c.wavefronts).toBe(32 * 32);
    expect(c.ideal).toBe(32);
  });
  it('the swizzled tile (col ^ row) has none', () => {
    const c = patternCost(xorTile, columnReads());
    expect(c.maxDegree).toBe(1);
    expect(c.wavefronts).toBe(c.ideal);
    expect(c.conflictedSteps).toBe(0);
    // and row reads stay conflict-free
    expect(patternCost(xorTile, rowReads()).wavefronts).toBe(32);
  });
  it('a padded pitch of 33 words also removes them (classic padding)', () => {
    expect(patternCost(rowMajorTile(32, 32, 4, 1), columnReads()).maxDegree).toBe(1);
  });
  it('the search finds a conflict-free XOR swizzle for column reads', () => {
    const r = searchSwizzle(naive, [columnReads(), rowReads()]);
    expect(r.beforeWavefronts).toBe(32 * 32 + 32);
    expect(r.afterWavefronts).toBe(64);
    expect(r.conflictFree).toBe(true);
    // Five row bits must land on the five bank bits of a 4-byte chunk index.
    expect(r.best.swizzle?.masks.filter((m) => m !== 0).length).toBe(5);
  });
  it('broadcast: 32 lanes reading one word take one wavefront', () => {
    expect(stepCost(naive, { accesses: lanes.map((l) => ({ lane: l, row: 3, col: 5, elems: 1 })) })).toEqual({ wavefronts: 1, ideal: 1, degree: 1 });
  });
  it('stride-2 words: lanes i and i+16 share a bank → 2-way', () => {
    const s = stepCost(rowMajorTile(2, 64, 4), { accesses: lanes.map((l) => ({ lane: l, row: 0, col: 2 * l, elems: 1 })) });
    expect(s).toEqual({ wavefronts: 2, ideal: 1, degree: 2 });
  });
  it('8-byte accesses are served per half-warp: 256 contiguous bytes take 2 wavefronts, no conflict', () => {
    expect(lanesPerPhase(8)).toBe(16);
    expect(lanesPerPhase(16)).toBe(8);
    expect(lanesPerPhase(2)).toBe(32);
    const t = rowMajorTile(1, 128, 2);
    expect(stepCost(t, { accesses: lanes.map((l) => ({ lane: l, row: 0, col: 4 * l, elems: 4 })) })).toEqual({ wavefronts: 2, ideal: 2, degree: 1 });
  });
  it('f16 pairs share a word: 32 lanes reading 2 bytes each from one row touch 16 words, 1 wavefront', () => {
    expect(stepCost(rowMajorTile(1, 64, 2), { accesses: lanes.map((l) => ({ lane: l, row: 0, col: l, elems: 1 })) })).toEqual({ wavefronts: 1, ideal: 1, degree: 1 });
  });
});

describe('swizzled addresses', () => {
  it('CuTe Swizzle<3,3,3> on an 8×64 f16 tile matches the raw-offset definition', () => {
    const t: TileLayout = { ...rowMajorTile(8, 64, 2), swizzle: cuteSwizzle(3, 3, 3, 64) };
    for (let r = 0; r < 8; r++) for (let c = 0; c < 64; c++) expect(elementOffset(t, r, c)).toBe(cuteSwizzleOffset(3, 3, 3, r * 64 + c));
    expect(describeSwizzle(t.swizzle, 64)).toContain('Swizzle<3,3,3>');
  });
  it('a swizzle permutes the elements of each row (a bijection on the tile)', () => {
    const t: TileLayout = { ...rowMajorTile(64, 64, 2), swizzle: { chunkElems: 4, masks: [1, 2, 8, 16] } };
    const seen = new Set<number>();
    for (let r = 0; r < 64; r++) {
      for (let c = 0; c < 64; c++) {
        const o = elementOffset(t, r, c);
        expect(Math.floor(o / 64)).toBe(r);
        seen.add(o);
      }
    }
    expect(seen.size).toBe(64 * 64);
  });
  it('keeps chunk contents contiguous (vector accesses stay vectors)', () => {
    const t: TileLayout = { ...rowMajorTile(16, 64, 2), swizzle: { chunkElems: 4, masks: [1, 2] } };
    for (let r = 0; r < 16; r++) for (let c = 0; c < 64; c += 4) for (let e = 1; e < 4; e++) expect(elementOffset(t, r, c + e)).toBe(elementOffset(t, r, c) + e);
  });
  it('bankOf: element (r, c) of a 32-wide f32 row-major tile is in bank c; swizzled, in bank c ^ r', () => {
    const t = rowMajorTile(32, 32, 4);
    const s: TileLayout = { ...t, swizzle: { chunkElems: 1, masks: [1, 2, 4, 8, 16] } };
    expect(bankOf(t, 7, 5)).toBe(5);
    expect(bankOf(s, 7, 5)).toBe(5 ^ 7);
  });
  it('rejects swizzles that leave the row', () => {
    expect(() => patternCost({ ...rowMajorTile(8, 8, 4), swizzle: { chunkElems: 2, masks: [1, 2, 4] } }, rowReads())).toThrow(RangeError);
    expect(() => cuteSwizzle(3, 3, 1, 64)).toThrow(RangeError);
  });
});

describe('global coalescing', () => {
  const g = { baseByte: 0, rowPitchBytes: 256, elementBytes: 4 };
  it('32 lanes × 4 consecutive bytes, aligned: one 128-byte segment', () => {
    const p: AccessPattern = { name: 'row', steps: [{ accesses: lanes.map((l) => ({ lane: l, row: 0, col: l, elems: 1 })) }] };
    expect(countSegments(g, p)).toEqual({ segments: 1, ideal: 1, perStep: [1] });
    expect(countSegments({ ...g, baseByte: 4 }, p).segments).toBe(2); // misaligned by one word
  });
  it('one row per lane: 32 segments for 128 bytes', () => {
    const p: AccessPattern = { name: 'col', steps: [{ accesses: lanes.map((l) => ({ lane: l, row: l, col: 0, elems: 1 })) }] };
    expect(countSegments(g, p)).toEqual({ segments: 32, ideal: 1, perStep: [32] });
  });
  it('a coalesced 16-byte fill of a 64×64 f16 tile by 64 invocations: 4 segments per warp load; row-per-lane: 32', () => {
    const gt = { baseByte: 0, rowPitchBytes: 128, elementBytes: 2 };
    const fill = tileFillPattern('fill', 64, 64, 8, 64);
    expect(fill.steps.length).toBe(16);
    const c = countSegments(gt, fill);
    expect(c.perStep.every((n) => n === 4)).toBe(true);
    expect(c.segments).toBe(c.ideal);
    const naive = countSegments(gt, tileFillPattern('naive', 64, 64, 8, 64, 'row-per-lane'));
    expect(naive.perStep.every((n) => n === 32)).toBe(true);
  });
});
