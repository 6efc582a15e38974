import { describe, expect, it } from 'vitest';
import { evaluate } from '../../src/tiling/layoutAlgebra.js';
import {
  AMPERE_VARIANTS,
  CUTE_TV_LAYOUTS,
  ampereFragment,
  elementOwners,
  fragmentFromTv,
  isHighGroup,
  isPartition,
  laneElements,
  m16n8k16Element,
  m8n8k4Element,
  QP_GRID_16x16,
  QP_GRID_32x8,
  qpLane,
  qpThread,
  quadpair,
  quadpairLanes,
  registerOf,
  tileFragment,
  VOLTA_VARIANTS,
  voltaFragment,
  type Fragment,
  type VoltaVariant,
} from '../../src/volta/mmaLayouts.js';

// Expectations come from the PTX ISA tables ("Matrix Fragments for mma.m8n8k4 with .f16 floating
// point type", "... mma.m16n8k16 with floating point type"), worked by hand, and from CuTe's TV
// layouts (mma_traits_sm70.hpp / mma_traits_sm80.hpp), an independent transcription.

describe('quadpairs', () => {
  it('the PTX table: MMA computation q+1 is lanes 4q..4q+3 (low) and 16+4q..16+4q+3 (high)', () => {
    expect(quadpairLanes(0)).toEqual([0, 1, 2, 3, 16, 17, 18, 19]);
    expect(quadpairLanes(1)).toEqual([4, 5, 6, 7, 20, 21, 22, 23]);
    expect(quadpairLanes(2)).toEqual([8, 9, 10, 11, 24, 25, 26, 27]);
    expect(quadpairLanes(3)).toEqual([12, 13, 14, 15, 28, 29, 30, 31]);
    for (let lane = 0; lane < 32; lane++) {
      expect(quadpairLanes(quadpair(lane))).toContain(lane);
      expect(qpLane(quadpair(lane), qpThread(lane))).toBe(lane);
      expect(isHighGroup(lane)).toBe(lane >= 16);
    }
  });
  it('CuTe SM70_QuadPair (4,2):(1,16) maps logical thread t to the lanes of QP 0', () => {
    for (let t = 0; t < 8; t++) expect(evaluate(CUTE_TV_LAYOUTS.SM70_QuadPair, t)).toBe(qpLane(0, t));
  });
});

describe('mma.m8n8k4 fragments (PTX formulas, worked by hand)', () => {
  const at = (v: VoltaVariant, lane: number) => [0, 1, 2, 3, 4, 5, 6, 7].slice(0, v.startsWith('C') ? 8 : 4).map((i) => m8n8k4Element(v, lane, i));
  it('A .row: lane 17 holds row 5, k = 0..3; lane 2 holds row 2', () => {
    expect(at('A.row', 17)).toEqual([[5, 0], [5, 1], [5, 2], [5, 3]]);
    expect(at('A.row', 2)).toEqual([[2, 0], [2, 1], [2, 2], [2, 3]]);
  });
  it('A .col: lane 18 holds column 2, rows 4..7', () => {
    expect(at('A.col', 18)).toEqual([[4, 2], [5, 2], [6, 2], [7, 2]]);
  });
  it('B .row: lane 21 holds k-row 1, n = 4..7', () => {
    expect(at('B.row', 21)).toEqual([[1, 4], [1, 5], [1, 6], [1, 7]]);
  });
  it('B .col: lane 3 holds n-column 3, k = 0..3', () => {
    expect(at('B.col', 3)).toEqual([[0, 3], [1, 3], [2, 3], [3, 3]]);
  });
  it('C .f16: lane 19 holds row 7, all 8 columns in order', () => {
    expect(at('C.f16', 19)).toEqual([0, 1, 2, 3, 4, 5, 6, 7].map((c) => [7, c]));
  });
  it('C .f32: lane 6 holds rows 0 and 2, columns 2,3,6,7 (X = (lane&1)+(i&2), col = (i&4)+(lane&2)+(i&1))', () => {
    expect(at('C.f32', 6)).toEqual([[0, 2], [0, 3], [2, 2], [2, 3], [0, 6], [0, 7], [2, 6], [2, 7]]);
  });
  it('C .f32: lane 21 (high group, odd) holds rows 5 and 7, columns 0,1,4,5', () => {
    expect(at('C.f32', 21)).toEqual([[5, 0], [5, 1], [7, 0], [7, 1], [5, 4], [5, 5], [7, 4], [7, 5]]);
  });
  it('each QP’s fragments cover its tile: A/B 8×4 once, C 8×8 once', () => {
    for (const v of VOLTA_VARIANTS) {
      for (let q = 0; q < 4; q++) {
        const seen = new Map<string, number>();
        for (const lane of quadpairLanes(q)) {
          for (let i = 0; i < (v.startsWith('C') ? 8 : 4); i++) {
            const key = m8n8k4Element(v, lane, i).join(',');
            seen.set(key, (seen.get(key) ?? 0) + 1);
          }
        }
        expect(seen.size).toBe(v.startsWith('C') ? 64 : 32);
        expect([...seen.values()].every((n) => n === 1)).toBe(true);
      }
    }
  });
});

describe('cross-check against CuTe TV layouts', () => {
  const cases: Array<[VoltaVariant, keyof typeof CUTE_TV_LAYOUTS, number, number, boolean]> = [
    ['A.row', 'SM70_8x4_Row', 8, 4, false],
    ['A.col', 'SM70_8x4_Col', 8, 4, false],
    // CuTe B layouts are (N,K): B .col is K-major like A .row, B .row like A .col.
    ['B.col', 'SM70_8x4_Row', 8, 4, true],
    ['B.row', 'SM70_8x4_Col', 8, 4, true],
    ['C.f16', 'SM70_8x8_16b', 8, 8, false],
    ['C.f32', 'SM70_8x8_32b', 8, 8, false],
  ];
  for (const [variant, name, dim0, dim1, transpose] of cases) {
    it(`m8n8k4 ${variant} = CuTe ${name}`, () => {
      const cute = fragmentFromTv(CUTE_TV_LAYOUTS[name], { name, operand: variant[0] as 'A', dim0, dim1, elementBits: 16, transpose });
      for (let t = 0; t < 8; t++) {
        const lane = evaluate(CUTE_TV_LAYOUTS.SM70_QuadPair, t);
        cute.elements[t].forEach((rc, v) => expect(m8n8k4Element(variant, lane, v)).toEqual(rc));
      }
    });
  }
  const ampere: Array<[(typeof AMPERE_VARIANTS)[number], keyof typeof CUTE_TV_LAYOUTS, number, number, boolean]> = [
    ['A', 'SM80_16x8x16_A', 16, 16, false],
    ['B', 'SM80_16x8x16_B', 8, 16, true],
    ['C.f16', 'SM80_16x8_Row', 16, 8, false],
    ['C.f32', 'SM80_16x8_Row', 16, 8, false],
  ];
  for (const [variant, name, dim0, dim1, transpose] of ampere) {
    it(`m16n8k16 ${variant} = CuTe ${name}`, () => {
      const cute = fragmentFromTv(CUTE_TV_LAYOUTS[name], { name, operand: variant[0] as 'A', dim0, dim1, elementBits: 16, transpose });
      expect(cute.lanes).toBe(32);
      expect(ampereFragment(variant).elements).toEqual(cute.elements);
    });
  }
});

describe('mma.m16n8k16 fragments (PTX formulas, worked by hand)', () => {
  it('A: lane 5 (groupID 1, tig 1) holds rows 1 and 9, columns 2,3 and 10,11', () => {
    expect([0, 1, 2, 3, 4, 5, 6, 7].map((i) => m16n8k16Element('A', 5, i))).toEqual([
      [1, 2], [1, 3], [9, 2], [9, 3], [1, 10], [1, 11], [9, 10], [9, 11],
    ]);
  });
  it('B: lane 30 (groupID 7, tig 2) holds column 7, rows 4,5,12,13', () => {
    expect([0, 1, 2, 3].map((i) => m16n8k16Element('B', 30, i))).toEqual([[4, 7], [5, 7], [12, 7], [13, 7]]);
  });
  it('C: f16 and f32 accumulators place elements identically', () => {
    for (let lane = 0; lane < 32; lane++) for (let i = 0; i < 4; i++) expect(m16n8k16Element('C.f16', lane, i)).toEqual(m16n8k16Element('C.f32', lane, i));
    expect([0, 1, 2, 3].map((i) => m16n8k16Element('C.f32', 13, i))).toEqual([[3, 2], [3, 3], [11, 2], [11, 3]]);
  });
  it('every operand is a partition of its tile', () => {
    for (const v of AMPERE_VARIANTS) expect(isPartition(ampereFragment(v))).toBe(true);
  });
});

describe('Volta warp tiles', () => {
  it('16×16×4: 4 QPs placed 2×2, QP q at (q % 2, q / 2) (CuTe’s column-major atom layout)', () => {
    const c = voltaFragment('C.f16', QP_GRID_16x16);
    expect([c.rows, c.cols]).toEqual([16, 16]);
    expect(isPartition(c)).toBe(true);
    expect(c.elements[4][0]).toEqual([8, 0]); // QP1: rows 8..15, cols 0..7
    expect(c.elements[8][0]).toEqual([0, 8]); // QP2: rows 0..7, cols 8..15
    expect(c.elements[31][7]).toEqual([15, 15]); // QP3 high group: row 15
  });
  it('16×16×4: A (16×4) and B (4×16) are each held twice (two QPs share every row / column)', () => {
    for (const v of ['A.row', 'A.col', 'B.row', 'B.col'] as const) {
      const f = voltaFragment(v, QP_GRID_16x16);
      expect(f.rows * f.cols).toBe(64);
      for (const row of elementOwners(f)) for (const owners of row) expect(owners.length).toBe(2);
    }
    // A row 9 is held by QP1 (lane 5) and QP3 (lane 13).
    const a = elementOwners(voltaFragment('A.row', QP_GRID_16x16));
    expect(a[9][0].map((o) => o.lane)).toEqual([5, 13]);
  });
  it('32×8×4: all QPs along M; B is held by all four', () => {
    const c = voltaFragment('C.f32', QP_GRID_32x8);
    expect([c.rows, c.cols]).toEqual([32, 8]);
    expect(isPartition(c)).toBe(true);
    const b = elementOwners(voltaFragment('B.col', QP_GRID_32x8));
    expect(b[0][0].map((o) => o.lane)).toEqual([0, 4, 8, 12]);
  });
  it('tileFragment repeats instances: value v + V·instance', () => {
    const t = tileFragment(voltaFragment('C.f16', QP_GRID_32x8), 1, 2);
    expect([t.rows, t.cols, t.valuesPerLane]).toEqual([32, 16, 16]);
    expect(isPartition(t)).toBe(true);
    expect(laneElements(t, 0)[9]).toEqual({ value: 9, row: 0, col: 9 });
  });
  it('registers: 16-bit values pair up, 32-bit values do not', () => {
    const f: Fragment = voltaFragment('C.f16');
    expect([0, 1, 2, 3, 4, 5, 6, 7].map((v) => registerOf(f, v))).toEqual([0, 0, 1, 1, 2, 2, 3, 3]);
    expect(registerOf(voltaFragment('C.f32'), 5)).toBe(5);
  });
});
