import { describe, expect, it } from 'vitest';
import {
  coalesce,
  complement,
  composition,
  concatLayouts,
  cosize,
  evaluate,
  filter,
  idx2crd,
  image,
  isInjective,
  layoutToString,
  leftInverse,
  logicalDivide,
  logicalProduct,
  makeLayout,
  mode,
  offsets,
  parseLayout,
  rightInverse,
  sameFunction,
  size,
  zippedDivide,
  type Layout,
} from '../../src/tiling/layoutAlgebra.js';
import { mulberry32 as rng } from '../../src/reference/random.js';

// Expected values are the worked examples of the CuTe docs
// (cutlass media/docs/cpp/cute/01_layout.md and 02_layout_algebra.md) or hand computations.

const L = parseLayout;
const str = layoutToString;

/** A random compact layout over powers of two whose modes are permuted: injective, divisibility-friendly. */
function randomPermutedCompact(next: () => number): Layout {
  const n = 1 + Math.floor(next() * 4);
  const shapes = Array.from({ length: n }, () => 2 ** (1 + Math.floor(next() * 2)));
  const order = shapes.map((_, i) => i).sort(() => next() - 0.5);
  const strides = new Array<number>(n);
  let acc = 1;
  for (const i of order) {
    strides[i] = acc;
    acc *= shapes[i];
  }
  return makeLayout(shapes, strides);
}

describe('layouts: evaluation and size', () => {
  it('(4,2):(1,4) is the 4×2 column-major layout', () => {
    const a = L('(4,2):(1,4)');
    for (let i = 0; i < 4; i++) for (let j = 0; j < 2; j++) expect(evaluate(a, [i, j])).toBe(i + 4 * j);
    expect(offsets(a)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    expect(size(a)).toBe(8);
    expect(cosize(a)).toBe(8);
  });

  it('(4,2):(2,1) is row-major: 1-D index runs down the columns (colexicographic)', () => {
    const a = L('(4,2):(2,1)');
    expect(offsets(a)).toEqual([0, 2, 4, 6, 1, 3, 5, 7]);
    expect(evaluate(a, [3, 1])).toBe(7);
  });

  it('hierarchical coordinates of the docs example (4,(2,2)):(2,(1,8))', () => {
    // 01_layout.md: 1-D, 2-D and natural coordinates name the same element.
    const a = L('(4,(2,2)):(2,(1,8))');
    expect(evaluate(a, 13)).toBe(evaluate(a, [1, 3]));
    expect(evaluate(a, [1, 3])).toBe(evaluate(a, [1, [1, 1]]));
    expect(evaluate(a, [1, [1, 1]])).toBe(1 * 2 + 1 * 1 + 1 * 8);
    expect(idx2crd(13, a.shape)).toEqual([1, [1, 1]]);
    expect(size(a)).toBe(16);
    expect(cosize(a)).toBe(3 * 2 + 1 + 8 + 1);
  });

  it('parses and prints CuTe notation', () => {
    expect(str(L('(_5,(_2,_2)):(_16,(_80,_4))'))).toBe('(5,(2,2)):(16,(80,4))');
    expect(() => L('(2,3):(1)')).toThrow();
  });
});

describe('coalesce', () => {
  it('docs example (2,(1,6)):(1,(6,2)) → 12:1', () => {
    expect(str(coalesce(L('(2,(1,6)):(1,(6,2))')))).toBe('12:1');
  });
  it('by-mode coalesce keeps rank: (2,6):(1,2)', () => {
    expect(str(coalesce(L('(2,(1,6)):(1,(6,2))'), [1, 1]))).toBe('(2,6):(1,2)');
  });
  it('the four binary cases', () => {
    expect(str(coalesce(L('(3,1):(2,5)')))).toBe('3:2');
    expect(str(coalesce(L('(1,3):(5,2)')))).toBe('3:2');
    expect(str(coalesce(L('(3,4):(2,6)')))).toBe('12:2');
    expect(str(coalesce(L('(3,4):(2,5)')))).toBe('(3,4):(2,5)');
  });
  it('preserves the function and size on random layouts', () => {
    const next = rng(7);
    for (let t = 0; t < 200; t++) {
      const shapes = Array.from({ length: 1 + Math.floor(next() * 4) }, () => 1 + Math.floor(next() * 4));
      const strides = shapes.map(() => Math.floor(next() * 12));
      const a = makeLayout(shapes, strides);
      expect(sameFunction(coalesce(a), a)).toBe(true);
    }
  });
  it('filter drops stride-0 and size-1 modes', () => {
    expect(str(filter(L('(2,3,1,4):(1,0,7,3)')))).toBe('(2,4):(1,3)');
    // Leaves that chain after filtering merge: 2:1 then 4:2 is 8:1.
    expect(str(filter(L('(2,3,1,4):(1,0,7,2)')))).toBe('8:1');
  });
});

describe('composition', () => {
  it('docs worked example (6,2):(8,2) ∘ (4,3):(3,1) = ((2,2),3):((24,2),8)', () => {
    const a = L('(6,2):(8,2)');
    const b = L('(4,3):(3,1)');
    const r = composition(a, b);
    expect(str(r)).toBe('((2,2),3):((24,2),8)');
    // The docs' table R(0..11).
    expect(offsets(r)).toEqual([0, 24, 2, 26, 8, 32, 10, 34, 16, 40, 18, 42]);
  });
  it('docs example 2: 20:2 ∘ (5,4):(4,1) = (5,4):(8,2)', () => {
    expect(str(composition(L('20:2'), L('(5,4):(4,1)')))).toBe('(5,4):(8,2)');
  });
  it('docs example 3: (10,2):(16,4) ∘ (5,4):(1,5) = (5,(2,2)):(16,(80,4))', () => {
    expect(str(composition(L('(10,2):(16,4)'), L('(5,4):(1,5)')))).toBe('(5,(2,2)):(16,(80,4))');
  });
  it('docs strided example (3,6,2,8):(w,x,y,z) ∘ 16:9 = (2,2,4):(3x,y,z) up to a size-1 mode', () => {
    const [w, x, y, z] = [1000, 100, 10, 1];
    const r = composition(makeLayout([3, 6, 2, 8], [w, x, y, z]), L('16:9'));
    expect(str(r)).toBe(`(2,2,4):(${3 * x},${y},${z})`);
  });
  it('by-mode tiler <3:4, 8:2> on (12,(4,8)):(59,(13,1)) = (3,(2,4)):(236,(26,1))', () => {
    const r = composition(L('(12,(4,8)):(59,(13,1))'), [L('3:4'), L('8:2')]);
    expect(str(r)).toBe('(3,(2,4)):(236,(26,1))');
  });
  it('shape tiler (3,8) on the same layout = (3,(4,2)):(59,(13,1))', () => {
    const r = composition(L('(12,(4,8)):(59,(13,1))'), [L('3:1'), L('8:1')]);
    expect(str(r)).toBe('(3,(4,2)):(59,(13,1))');
  });
  it('post-condition R(i) = A(B(i)) on random layouts', () => {
    const next = rng(11);
    for (let t = 0; t < 300; t++) {
      const a = randomPermutedCompact(next);
      const b = randomPermutedCompact(next);
      if (size(b) > size(a)) continue;
      const r = composition(a, b);
      expect(size(r)).toBe(size(b));
      for (let i = 0; i < size(b); i++) expect(evaluate(r, i)).toBe(evaluate(a, evaluate(b, i)));
    }
  });
  it('rejects compositions that break stride divisibility', () => {
    // (6,2):(8,2) does not coalesce; stride 4 neither divides nor is divided by 6.
    expect(() => composition(L('(6,2):(8,2)'), L('2:4'))).toThrow();
  });
});

describe('complement', () => {
  // The six examples of 02_layout_algebra "Complement Examples".
  const cases: Array<[string, number, string]> = [
    ['4:1', 24, '6:4'],
    ['6:4', 24, '4:1'],
    ['(4,6):(1,4)', 24, '1:0'],
    ['4:2', 24, '(2,3):(1,8)'],
    ['(2,4):(1,6)', 24, '3:2'],
    ['(2,2):(1,6)', 24, '(3,2):(2,12)'],
  ];
  for (const [a, m, expected] of cases) {
    it(`complement(${a}, ${m}) = ${expected}`, () => {
      const r = complement(L(a), m);
      expect(str(r)).toBe(expected);
      // Post-conditions: disjoint images (apart from 0), (A, R) injective and covering ≥ cotarget.
      const ia = new Set(image(L(a)));
      for (let i = 1; i < size(r); i++) expect(ia.has(evaluate(r, i))).toBe(false);
      const both = concatLayouts(L(a), r);
      expect(isInjective(both)).toBe(true);
      expect(cosize(both)).toBeGreaterThanOrEqual(m);
    });
  }
  it('is ordered (strictly increasing offsets) on random layouts', () => {
    const next = rng(3);
    for (let t = 0; t < 100; t++) {
      const a = randomPermutedCompact(next);
      const sub = composition(a, makeLayout(2, 2 ** Math.floor(next() * 2)));
      const r = complement(sub, 64);
      const off = offsets(r);
      for (let i = 1; i < off.length; i++) expect(off[i]).toBeGreaterThan(off[i - 1]);
    }
  });
});

describe('logical divide and product', () => {
  it('1-D divide: (4,2,3):(2,1,8) ⊘ 4:2 = ((2,2),(2,3)):((4,1),(2,8))', () => {
    expect(str(logicalDivide(L('(4,2,3):(2,1,8)'), L('4:2')))).toBe('((2,2),(2,3)):((4,1),(2,8))');
  });
  it('2-D divide: (9,(4,8)):(59,(13,1)) ⊘ <3:3, (2,4):(1,8)>', () => {
    const a = L('(9,(4,8)):(59,(13,1))');
    const r = logicalDivide(a, [L('3:3'), L('(2,4):(1,8)')]);
    // Hand computation: complement(3:3, 9) = 3:1, complement((2,4):(1,8), 32) = 4:2,
    // and (4,8):(13,1) ∘ 4:2 = (2,2):(26,1).
    expect(str(r)).toBe('((3,3),((2,4),(2,2))):((177,59),((13,2),(26,1)))');
    // The docs: the tile (first mode of each mode) is (3,(2,4)):(177,(13,2)), i.e. the composition.
    const tile = concatLayouts(mode(mode(r, 0), 0), mode(mode(r, 1), 0));
    expect(str(tile)).toBe('(3,(2,4)):(177,(13,2))');
    expect(sameFunction(tile, composition(a, [L('3:3'), L('(2,4):(1,8)')]))).toBe(true);
  });
  it('zipped divide gathers tiles in mode 0: shape ((3,8),(3,4))', () => {
    const zd = zippedDivide(L('(9,(4,8)):(59,(13,1))'), [L('3:3'), L('(2,4):(1,8)')]);
    expect(size(mode(zd, 0))).toBe(24);
    expect(size(mode(zd, 1))).toBe(12);
    expect(sameFunction(mode(zd, 0), composition(L('(9,(4,8)):(59,(13,1))'), [L('3:3'), L('(2,4):(1,8)')]))).toBe(true);
  });
  it('1-D product: (2,2):(4,1) ⊗ 6:1 = ((2,2),(2,3)):((4,1),(2,8))', () => {
    expect(str(logicalProduct(L('(2,2):(4,1)'), L('6:1')))).toBe('((2,2),(2,3)):((4,1),(2,8))');
  });
  it('product with B = (4,2):(2,1) repeats the tile 8 times injectively', () => {
    const r = logicalProduct(L('(2,2):(4,1)'), L('(4,2):(2,1)'));
    expect(size(r)).toBe(32);
    expect(isInjective(r)).toBe(true);
    expect(sameFunction(mode(r, 0), L('(2,2):(4,1)'))).toBe(true);
  });
  it('a divide is a permutation of the divided layout’s image', () => {
    const next = rng(5);
    for (let t = 0; t < 100; t++) {
      const a = randomPermutedCompact(next);
      const tile = makeLayout(2, 1);
      if (size(a) % 2) continue;
      const d = logicalDivide(a, tile);
      expect(size(d)).toBe(size(a));
      expect(image(d)).toEqual(image(a));
    }
  });
});

describe('inverses', () => {
  it('right inverse of row-major (4,2):(2,1) is (2,4):(4,1)', () => {
    expect(str(rightInverse(L('(4,2):(2,1)')))).toBe('(2,4):(4,1)');
  });
  it('right inverse of a column-major layout is the identity 8:1', () => {
    expect(str(rightInverse(L('(4,2):(1,4)')))).toBe('8:1');
  });
  it('right inverse of a layout that misses offset 1 is trivial', () => {
    expect(size(rightInverse(L('4:2')))).toBe(1);
  });
  it('right inverse of the partial image (4,2):(1,8) covers only [0,4)', () => {
    const r = rightInverse(L('(4,2):(1,8)'));
    expect(str(r)).toBe('4:1');
  });
  it('composition with the right inverse is the identity on [0, size(R))', () => {
    const next = rng(17);
    for (let t = 0; t < 200; t++) {
      const a = randomPermutedCompact(next);
      const r = rightInverse(a);
      expect(size(r)).toBe(size(a)); // compact: image is [0, size)
      const id = composition(a, r);
      for (let i = 0; i < size(r); i++) expect(evaluate(id, i)).toBe(i);
    }
  });
  it('left inverse undoes an injective, non-compact layout: R(A(i)) = i', () => {
    for (const text of ['(4,2):(2,1)', '(2,3):(3,1)', '((2,2),3):((1,6),2)', '4:2', '(2,2):(1,6)']) {
      const a = L(text);
      const r = leftInverse(a);
      for (let i = 0; i < size(a); i++) expect(evaluate(r, evaluate(a, i))).toBe(i);
    }
  });
});
