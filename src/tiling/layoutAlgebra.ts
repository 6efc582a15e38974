/**
 * CuTe-style layout algebra: a layout is a (Shape, Stride) pair of congruent
 * nested integer tuples, i.e. a function from coordinates (or 1-D indices) to
 * integer offsets. Used to describe MMA thread-value layouts and tilings so
 * that the reasoning about which lane holds which element is executable.
 *
 * Definitions and worked examples follow the CuTe documentation:
 *   - NVIDIA CUTLASS, `media/docs/cpp/cute/01_layout.md` (layouts, coordinates, colexicographic order)
 *   - NVIDIA CUTLASS, `media/docs/cpp/cute/02_layout_algebra.md` (coalesce, composition,
 *     complement, logical divide, logical product), and `include/cute/layout.hpp`
 *     (`right_inverse`, `left_inverse` post-conditions).
 *
 * Only non-negative strides are supported where the docs' algorithms assume
 * them (complement, cosize); everything is plain numbers, no static/dynamic split.
 */

/** A nested tuple of integers: a shape, a stride or a coordinate. */
export type IntTuple = number | readonly IntTuple[];

/** A layout `shape:stride`; `shape` and `stride` are congruent (same nesting). */
export interface Layout {
  readonly shape: IntTuple;
  readonly stride: IntTuple;
}

/**
 * The second argument of composition and the divides: a layout (the 1-D,
 * function-composition case) or a tuple of tilers applied mode by mode.
 */
export type Tiler = Layout | readonly Tiler[];

/** Thrown when an operation's divisibility pre-condition does not hold (CuTe asserts them statically). */
export class LayoutAlgebraError extends Error {
  override name = 'LayoutAlgebraError';
}

export function isTuple(t: IntTuple): t is readonly IntTuple[] {
  return Array.isArray(t);
}

function isLayout(t: Tiler): t is Layout {
  return !Array.isArray(t);
}

/** Product of all leaves (the number of coordinates of a shape). */
export function product(t: IntTuple): number {
  return isTuple(t) ? t.reduce<number>((p, x) => p * product(x), 1) : t;
}

/** Number of top-level modes (1 for an integer). */
export function rank(t: IntTuple): number {
  return isTuple(t) ? t.length : 1;
}

/** Nesting depth: 0 for an integer. */
export function depth(t: IntTuple): number {
  return isTuple(t) ? 1 + Math.max(0, ...t.map(depth)) : 0;
}

/** Leaves in left-to-right order. */
export function flatten(t: IntTuple): number[] {
  return isTuple(t) ? t.flatMap(flatten) : [t];
}

/** Same nesting structure (leaf values may differ). */
export function congruent(a: IntTuple, b: IntTuple): boolean {
  if (isTuple(a) !== isTuple(b)) return false;
  if (!isTuple(a) || !isTuple(b)) return true;
  return a.length === b.length && a.every((x, i) => congruent(x, b[i]));
}

/** Column-major (left-to-right) compact strides of `shape`, starting at `start`. */
export function compactColMajor(shape: IntTuple, start = 1): IntTuple {
  let cur = start;
  const go = (s: IntTuple): IntTuple => {
    if (isTuple(s)) return s.map(go);
    const d = cur;
    cur *= s;
    return d;
  };
  return go(shape);
}

/** Row-major compact strides of a (possibly nested) shape: the last leaf has stride 1. */
export function compactRowMajor(shape: IntTuple): IntTuple {
  const leaves = flatten(shape);
  const strides = new Array<number>(leaves.length);
  let cur = 1;
  for (let i = leaves.length - 1; i >= 0; i--) {
    strides[i] = cur;
    cur *= leaves[i];
  }
  return unflatten(strides, shape);
}

/** Rebuild `leaves` with the nesting of `like`. */
function unflatten(leaves: readonly number[], like: IntTuple): IntTuple {
  let i = 0;
  const go = (t: IntTuple): IntTuple => (isTuple(t) ? t.map(go) : leaves[i++]);
  return go(like);
}

/** `shape:stride`; the stride defaults to compact column-major, as in CuTe's `make_layout(shape)`. */
export function makeLayout(shape: IntTuple, stride: IntTuple = compactColMajor(shape)): Layout {
  if (!congruent(shape, stride)) throw new LayoutAlgebraError(`shape ${tupleToString(shape)} and stride ${tupleToString(stride)} are not congruent`);
  return { shape, stride };
}

/** Concatenation `(L0, L1, ...)`: a layout whose modes are the given layouts. */
export function concatLayouts(...layouts: readonly Layout[]): Layout {
  return { shape: layouts.map((l) => l.shape), stride: layouts.map((l) => l.stride) };
}

/** Mode `i` of a layout as a layout (an integral layout is its own mode 0). */
export function mode(l: Layout, i: number): Layout {
  if (!isTuple(l.shape) || !isTuple(l.stride)) {
    if (i !== 0) throw new RangeError(`mode ${i} of a rank-1 layout`);
    return l;
  }
  if (i < 0 || i >= l.shape.length) throw new RangeError(`mode ${i} of a rank-${l.shape.length} layout`);
  return { shape: l.shape[i], stride: l.stride[i] };
}

/** Number of coordinates (CuTe `size`). */
export function size(l: Layout | IntTuple): number {
  return typeof l === 'object' && !Array.isArray(l) ? product((l as Layout).shape) : product(l as IntTuple);
}

/** (shape, stride) leaf pairs in order. */
export function leaves(l: Layout): Array<[number, number]> {
  const s = flatten(l.shape);
  const d = flatten(l.stride);
  return s.map((x, i) => [x, d[i]]);
}

/** One past the largest offset (CuTe `cosize`); strides must be non-negative. */
export function cosize(l: Layout): number {
  let hi = 0;
  for (const [s, d] of leaves(l)) {
    if (d < 0) throw new LayoutAlgebraError('cosize of a layout with a negative stride');
    hi += (s - 1) * d;
  }
  return hi + 1;
}

/** The natural (colexicographic) coordinate of 1-D index `i` in `shape` (CuTe `idx2crd`). */
export function idx2crd(i: number, shape: IntTuple): IntTuple {
  if (!isTuple(shape)) return i;
  let rest = i;
  return shape.map((s) => {
    const n = product(s);
    const c = idx2crd(rest % n, s);
    rest = Math.floor(rest / n);
    return c;
  });
}

/**
 * Offset of a coordinate (CuTe `crd2idx`). An integer coordinate against a
 * tuple shape is split colexicographically, so 1-D, 2-D and fully nested
 * coordinates of the same element all give the same offset.
 */
export function crd2idx(coord: IntTuple, shape: IntTuple, stride: IntTuple): number {
  if (isTuple(coord)) {
    if (!isTuple(shape) || !isTuple(stride) || shape.length !== coord.length) {
      throw new LayoutAlgebraError(`coordinate ${tupleToString(coord)} does not fit shape ${tupleToString(shape)}`);
    }
    let off = 0;
    for (let k = 0; k < coord.length; k++) off += crd2idx(coord[k], shape[k], stride[k]);
    return off;
  }
  if (!isTuple(shape)) return coord * (stride as number);
  const strides = stride as readonly IntTuple[];
  let rest = coord;
  let off = 0;
  for (let k = 0; k < shape.length; k++) {
    const n = product(shape[k]);
    off += crd2idx(rest % n, shape[k], strides[k]);
    rest = Math.floor(rest / n);
  }
  return off;
}

/** `L(coord)`: the offset of a 1-D index or a (nested) coordinate. */
export function evaluate(l: Layout, coord: IntTuple): number {
  return crd2idx(coord, l.shape, l.stride);
}

/** All offsets `L(0), ..., L(size-1)` in index order. */
export function offsets(l: Layout): number[] {
  const n = size(l);
  const out = new Array<number>(n);
  for (let i = 0; i < n; i++) out[i] = evaluate(l, i);
  return out;
}

/** Sorted distinct offsets: the layout's image (codomain actually reached). */
export function image(l: Layout): number[] {
  return [...new Set(offsets(l))].sort((a, b) => a - b);
}

/** No two coordinates share an offset. */
export function isInjective(l: Layout): boolean {
  return new Set(offsets(l)).size === size(l);
}

/** Same function of 1-D indices (same size and the same offset everywhere). */
export function sameFunction(a: Layout, b: Layout): boolean {
  const n = size(a);
  if (n !== size(b)) return false;
  for (let i = 0; i < n; i++) if (evaluate(a, i) !== evaluate(b, i)) return false;
  return true;
}

export function tupleToString(t: IntTuple): string {
  return isTuple(t) ? `(${t.map(tupleToString).join(',')})` : String(t);
}

/** CuTe's print format, e.g. `(4,2):(1,4)`. */
export function layoutToString(l: Layout): string {
  return `${tupleToString(l.shape)}:${tupleToString(l.stride)}`;
}

/** Parse `shape:stride` in CuTe's notation (`_` static markers allowed), e.g. `((2,2),3):((24,2),8)`. */
export function parseLayout(text: string): Layout {
  const clean = text.replace(/[_\s]/g, '');
  const colon = topLevelColon(clean);
  if (colon < 0) throw new LayoutAlgebraError(`no ':' in layout "${text}"`);
  return makeLayout(parseTuple(clean.slice(0, colon)), parseTuple(clean.slice(colon + 1)));
}

function topLevelColon(s: string): number {
  let d = 0;
  for (let i = 0; i < s.length; i++) {
    if (s[i] === '(') d++;
    else if (s[i] === ')') d--;
    else if (s[i] === ':' && d === 0) return i;
  }
  return -1;
}

/** Parse a nested tuple such as `(4,(2,3))`. */
export function parseTuple(text: string): IntTuple {
  let pos = 0;
  const s = text.replace(/[_\s]/g, '');
  const parse = (): IntTuple => {
    if (s[pos] === '(') {
      pos++;
      const items: IntTuple[] = [];
      while (s[pos] !== ')') {
        items.push(parse());
        if (s[pos] === ',') pos++;
        else if (s[pos] !== ')') throw new LayoutAlgebraError(`bad tuple "${text}"`);
      }
      pos++;
      return items;
    }
    const m = /^-?\d+/.exec(s.slice(pos));
    if (!m) throw new LayoutAlgebraError(`bad tuple "${text}"`);
    pos += m[0].length;
    return Number(m[0]);
  };
  const t = parse();
  if (pos !== s.length) throw new LayoutAlgebraError(`trailing text in "${text}"`);
  return t;
}

/** Layout from leaf lists: `1:0` when empty, integral when one leaf, a flat tuple otherwise. */
function fromLeaves(shapes: readonly number[], strides: readonly number[]): Layout {
  if (shapes.length === 0) return { shape: 1, stride: 0 };
  if (shapes.length === 1) return { shape: shapes[0], stride: strides[0] };
  return { shape: [...shapes], stride: [...strides] };
}

/**
 * Coalesce (02_layout_algebra "Coalesce"): the simplest depth ≤ 1 layout with
 * the same 1-D function and size. Size-1 modes are dropped and `s0:d0 ++ s1:s0·d0`
 * merges to `s0·s1:d0`. With `profile`, coalesces each mode where the profile
 * has an integer and keeps the profile's tuple structure above it (by-mode coalesce).
 */
export function coalesce(l: Layout, profile?: IntTuple): Layout {
  if (profile !== undefined && isTuple(profile)) {
    if (!isTuple(l.shape)) throw new LayoutAlgebraError('profile deeper than the layout');
    if (profile.length !== l.shape.length) throw new LayoutAlgebraError('profile rank differs from the layout rank');
    const modes = profile.map((p, i) => coalesce(mode(l, i), p));
    return concatLayouts(...modes);
  }
  const shapes: number[] = [];
  const strides: number[] = [];
  for (const [s, d] of leaves(l)) {
    if (s === 1) continue;
    const n = shapes.length;
    if (n > 0 && d === shapes[n - 1] * strides[n - 1]) shapes[n - 1] *= s;
    else {
      shapes.push(s);
      strides.push(d);
    }
  }
  return fromLeaves(shapes, strides);
}

/** Drop stride-0 and size-1 modes, then coalesce (CuTe `filter`): the layout of the distinct image. */
export function filter(l: Layout): Layout {
  const kept = leaves(l).filter(([s, d]) => s !== 1 && d !== 0);
  return coalesce(fromLeaves(kept.map((x) => x[0]), kept.map((x) => x[1])));
}

/** `A ∘ (s:d)` for an integral right operand, `A` coalesced to leaves (the docs' "divide out d, mod out s"). */
function composeLeaf(a: ReadonlyArray<[number, number]>, s: number, d: number): Layout {
  if (s === 1) return { shape: 1, stride: 0 };
  if (d === 0) return { shape: s, stride: 0 };
  const shapes: number[] = [];
  const strides: number[] = [];
  let restS = s;
  let restD = d;
  for (let i = 0; i < a.length && restS > 1; i++) {
    const [ai, bi] = a[i];
    if (i === a.length - 1) {
      // The last mode is unbounded: the composition may read past size(A), as in CuTe.
      shapes.push(restS);
      strides.push(bi * restD);
      restS = 1;
      break;
    }
    if (restD >= ai) {
      if (restD % ai !== 0) throw new LayoutAlgebraError(`stride divisibility: ${restD} vs shape ${ai}`);
      restD /= ai;
      continue;
    }
    if (ai % restD !== 0) throw new LayoutAlgebraError(`stride divisibility: shape ${ai} vs ${restD}`);
    const avail = ai / restD;
    const take = Math.min(avail, restS);
    if (restS % take !== 0) throw new LayoutAlgebraError(`shape divisibility: ${restS} vs ${avail}`);
    shapes.push(take);
    strides.push(bi * restD);
    restS /= take;
    restD = 1;
  }
  return coalesce(fromLeaves(shapes, strides));
}

/**
 * Functional composition `R = A ∘ B`, `R(i) = A(B(i))`, with `R` compatible
 * with `B` (02_layout_algebra "Composition"). A tuple tiler composes mode by
 * mode (`<B0, B1>` applied to modes 0 and 1 of `A`; further modes of `A` are kept).
 */
export function composition(a: Layout, b: Tiler): Layout {
  if (!isLayout(b)) {
    const r = rank(a.shape);
    if (b.length > r) throw new LayoutAlgebraError(`tiler of rank ${b.length} for a rank-${r} layout`);
    const modes: Layout[] = [];
    for (let i = 0; i < r; i++) modes.push(i < b.length ? composition(mode(a, i), b[i]) : mode(a, i));
    return concatLayouts(...modes);
  }
  const flatA = leaves(coalesce(a));
  const go = (s: IntTuple, d: IntTuple): Layout => {
    if (isTuple(s)) {
      const parts = s.map((si, i) => go(si, (d as readonly IntTuple[])[i]));
      return concatLayouts(...parts);
    }
    return composeLeaf(flatA, s, d as number);
  };
  return go(b.shape, b.stride);
}

/**
 * Complement of `A` with respect to `cotarget` (02_layout_algebra "Complement"):
 * the ordered layout `R` of size ≈ cotarget / size(A) whose image is disjoint
 * from A's and that "repeats" A to fill [0, cotarget). Requires each sorted
 * stride to be divisible by the extent covered before it.
 */
export function complement(a: Layout, cotarget: number = cosize(a)): Layout {
  const modes = leaves(filter(a)).sort((x, y) => x[1] - y[1] || x[0] - y[0]);
  const shapes: number[] = [];
  const strides: number[] = [];
  let curr = 1;
  for (const [s, d] of modes) {
    if (d < 0) throw new LayoutAlgebraError('complement of a layout with a negative stride');
    if (d % curr !== 0) throw new LayoutAlgebraError(`complement: stride ${d} not divisible by ${curr}`);
    shapes.push(d / curr);
    strides.push(curr);
    curr = s * d;
  }
  shapes.push(Math.ceil(cotarget / curr));
  strides.push(curr);
  return coalesce(fromLeaves(shapes, strides));
}

/**
 * Logical divide `A ⊘ B = A ∘ (B, B*)` with `B*` the complement of B under
 * size(A) (02_layout_algebra "Division"): mode 0 is the tile, mode 1 walks the
 * tiles. A tuple tiler divides mode by mode.
 */
export function logicalDivide(a: Layout, b: Tiler): Layout {
  if (!isLayout(b)) {
    const r = rank(a.shape);
    if (b.length > r) throw new LayoutAlgebraError(`tiler of rank ${b.length} for a rank-${r} layout`);
    const modes: Layout[] = [];
    for (let i = 0; i < r; i++) modes.push(i < b.length ? logicalDivide(mode(a, i), b[i]) : mode(a, i));
    return concatLayouts(...modes);
  }
  return composition(a, concatLayouts(b, complement(b, size(a))));
}

/** Zipped divide for a tuple tiler: `((tile modes...), (rest modes..., untouched modes...))`. */
export function zippedDivide(a: Layout, tiler: readonly Tiler[]): Layout {
  const ld = logicalDivide(a, tiler);
  const r = rank(ld.shape);
  const tiles: Layout[] = [];
  const rests: Layout[] = [];
  for (let i = 0; i < r; i++) {
    const m = mode(ld, i);
    if (i < tiler.length) {
      tiles.push(mode(m, 0));
      rests.push(mode(m, 1));
    } else rests.push(m);
  }
  return concatLayouts(concatLayouts(...tiles), concatLayouts(...rests));
}

/**
 * Logical product `A ⊗ B = (A, A* ∘ B)` with `A*` the complement of A under
 * size(A)·cosize(B) (02_layout_algebra "Product"): B's layout of copies of A.
 */
export function logicalProduct(a: Layout, b: Layout): Layout {
  return concatLayouts(a, composition(complement(a, size(a) * cosize(b)), b));
}

/**
 * Right inverse (cute/layout.hpp `right_inverse`): the layout `R` with
 * `A(R(i)) = i` for all `i < size(R)`, covering the longest contiguous prefix
 * [0, size(R)) of A's image. Follows the strides from 1: each mode whose
 * stride equals the extent reached so far extends the inverse.
 */
export function rightInverse(a: Layout): Layout {
  const flat = leaves(coalesce(a));
  const colStride: number[] = [];
  let acc = 1;
  for (const [s] of flat) {
    colStride.push(acc);
    acc *= s;
  }
  const shapes: number[] = [];
  const strides: number[] = [];
  const used = new Set<number>();
  let next = 1;
  for (;;) {
    const i = flat.findIndex(([s, d], k) => !used.has(k) && s > 1 && Math.abs(d) === next);
    if (i < 0) break;
    used.add(i);
    const [s, d] = flat[i];
    shapes.push(s);
    strides.push(Math.sign(d) * colStride[i]);
    next = s * Math.abs(d);
  }
  return fromLeaves(shapes, strides);
}

/**
 * Left inverse (cute/layout.hpp `left_inverse`) of an injective layout:
 * `R(A(i)) = i` for all `i < size(A)`; computed as the right inverse of `(A, A*)`.
 */
export function leftInverse(a: Layout): Layout {
  return rightInverse(concatLayouts(a, complement(a)));
}

/** Structural equality of two layouts (same nesting, shapes and strides). */
export function layoutEquals(a: Layout, b: Layout): boolean {
  return tupleEquals(a.shape, b.shape) && tupleEquals(a.stride, b.stride);
}

export function tupleEquals(a: IntTuple, b: IntTuple): boolean {
  if (isTuple(a) !== isTuple(b)) return false;
  if (!isTuple(a) || !isTuple(b)) return a === b;
  return a.length === b.length && a.every((x, i) => tupleEquals(x, b[i]));
}
