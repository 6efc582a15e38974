/**
 * Thread-value layouts of warp MMA fragments: for every lane and every value
 * it holds, the (row, col) of the matrix element. Written from the PTX ISA's
 * fragment descriptions:
 *   - "Matrix Fragments for mma.m8n8k4 with .f16 floating point type"
 *     (PTX ISA §9.7.14.5.1 / §9.7.15.5.1 depending on the version; figures 46–52)
 *   - "Matrix Fragments for mma.m16n8k16 with floating point type" (§9.7.14.5.8; figures 79, 81, 83)
 *   https://docs.nvidia.com/cuda/parallel-thread-execution/index.html#warp-level-matrix-fragment-mma-884-f16
 * and cross-checked against CuTe's TV layouts (cutlass `include/cute/atom/mma_traits_sm70.hpp`,
 * `mma_traits_sm80.hpp`), a second, independent transcription of the same tables.
 *
 * Volta's m8n8k4 is executed by quadpairs (QP): QP q is lanes 4q..4q+3 (low group)
 * and 16+4q..16+4q+3 (high group); each QP computes its own, independent 8×8×4
 * product, so a warp computes four of them. A warp tile is a placement of the
 * four QP tiles (the default 2×2 placement gives the 16×16×4 warp tile).
 *
 * Coordinates: A is M×K, B is K×N, C/D is M×N; (row, col) in that orientation.
 */

import { evaluate, parseLayout, size, type IntTuple, type Layout } from '../tiling/layoutAlgebra.js';

export const WARP_SIZE = 32;

export type Operand = 'A' | 'B' | 'C';

/** (row, col) of one matrix element. */
export type ElementCoord = readonly [row: number, col: number];

/** Which element every (lane, value) of one warp holds, for one operand of one warp-level MMA tile. */
export interface Fragment {
  readonly name: string;
  readonly operand: Operand;
  readonly rows: number;
  readonly cols: number;
  readonly lanes: number;
  readonly valuesPerLane: number;
  /** 16 (two values per 32-bit register, low half first) or 32. */
  readonly elementBits: 16 | 32;
  /** `elements[lane][value]` = (row, col). */
  readonly elements: ReadonlyArray<ReadonlyArray<ElementCoord>>;
}

export interface FragmentSpec {
  name: string;
  operand: Operand;
  rows: number;
  cols: number;
  valuesPerLane: number;
  elementBits: 16 | 32;
  lanes?: number;
}

/** Materialize a fragment from a coordinate function (checked to stay inside the tile). */
export function makeFragment(spec: FragmentSpec, coord: (lane: number, value: number) => ElementCoord): Fragment {
  const lanes = spec.lanes ?? WARP_SIZE;
  const elements: ElementCoord[][] = [];
  for (let lane = 0; lane < lanes; lane++) {
    const row: ElementCoord[] = [];
    for (let v = 0; v < spec.valuesPerLane; v++) {
      const [r, c] = coord(lane, v);
      if (r < 0 || r >= spec.rows || c < 0 || c >= spec.cols) {
        throw new RangeError(`${spec.name}: lane ${lane} value ${v} maps to (${r}, ${c}) outside ${spec.rows}×${spec.cols}`);
      }
      row.push([r, c]);
    }
    elements.push(row);
  }
  return { name: spec.name, operand: spec.operand, rows: spec.rows, cols: spec.cols, lanes, valuesPerLane: spec.valuesPerLane, elementBits: spec.elementBits, elements };
}

// ---------------------------------------------------------------------------
// Volta: quadpairs and mma.m8n8k4
// ---------------------------------------------------------------------------

/** Quadpair of a lane (the PTX table "MMA computation q+1": lanes 4q..4q+3 and 16+4q..16+4q+3). */
export function quadpair(lane: number): number {
  return (lane >> 2) & 3;
}

/** Whether a lane is in the high group (lanes 16–31) of its quadpair. */
export function isHighGroup(lane: number): boolean {
  return lane >= 16;
}

/** Index 0..7 of a lane inside its quadpair: CuTe's logical thread id (SM70_QuadPair = (4,2):(1,16) maps it back). */
export function qpThread(lane: number): number {
  return (lane & 3) + (lane >= 16 ? 4 : 0);
}

/** Lane of thread `t` (0..7) of quadpair `q`. */
export function qpLane(q: number, t: number): number {
  return 4 * q + (t & 3) + (t >= 4 ? 16 : 0);
}

/** The 8 lanes of quadpair `q`, low group first. */
export function quadpairLanes(q: number): number[] {
  return Array.from({ length: 8 }, (_, t) => qpLane(q, t));
}

/**
 * m8n8k4 operand variants: A and B in either PTX layout qualifier (`.row` / `.col`),
 * the accumulator with `.f16` (four .f16x2 registers) or `.f32` (eight .f32 registers).
 */
export type VoltaVariant = 'A.row' | 'A.col' | 'B.row' | 'B.col' | 'C.f16' | 'C.f32';

export const VOLTA_VARIANTS: readonly VoltaVariant[] = ['A.row', 'A.col', 'B.row', 'B.col', 'C.f16', 'C.f32'];

/** Values per lane of an m8n8k4 fragment: 4 for A and B, 8 for C/D. */
export function m8n8k4ValuesPerLane(variant: VoltaVariant): number {
  return variant.startsWith('C') ? 8 : 4;
}

/**
 * (row, col) of value `i` of `lane` inside its own quadpair's tile (A 8×4, B 4×8, C 8×8),
 * transcribed from the PTX ISA formulas of figures 46–52.
 */
export function m8n8k4Element(variant: VoltaVariant, lane: number, i: number): ElementCoord {
  const hi = lane >= 16 ? 4 : 0;
  switch (variant) {
    case 'A.row': // Fig. 46: row = %laneid % 4 (+4 if ≥ 16), col = i
      return [(lane % 4) + hi, i];
    case 'A.col': // Fig. 47: row = i % 4 (+4 if ≥ 16), col = %laneid % 4
      return [(i % 4) + hi, lane % 4];
    case 'B.row': // Fig. 48: row = %laneid % 4, col = i (+4 if ≥ 16)
      return [lane % 4, i + hi];
    case 'B.col': // Fig. 49: row = i, col = %laneid % 4 (+4 if ≥ 16)
      return [i, (lane % 4) + hi];
    case 'C.f16': // Fig. 50: row = %laneid % 4 (+4 if ≥ 16), col = i
      return [(lane % 4) + hi, i];
    case 'C.f32': {
      // Figs. 51–52: row = X (+4 if ≥ 16), X = (%laneid & 0b1) + (i & 0b10);
      // col = (i & 0b100) + (%laneid & 0b10) + (i & 0b1)
      const x = (lane & 0b1) + (i & 0b10);
      return [x + hi, (i & 0b100) + (lane & 0b10) + (i & 0b1)];
    }
  }
}

/** Placement of the four quadpair tiles in a warp tile. */
export interface QuadpairGrid {
  /** QP tiles along M (rows of A and C). */
  alongM: number;
  /** QP tiles along N (cols of B and C); alongM · alongN = 4. */
  alongN: number;
  /**
   * How QP index q maps to (qm, qn): 'm-major' is q = qm + alongM·qn (CuTe's default
   * compact column-major atom layout of a TiledMMA); 'n-major' is q = qn + alongN·qm.
   */
  order?: 'm-major' | 'n-major';
}

/** CUTLASS/CuTe's Volta warp tile: 2×2 QP tiles → 16×16×4 per instruction. */
export const QP_GRID_16x16: QuadpairGrid = { alongM: 2, alongN: 2, order: 'm-major' };
/** All four QPs stacked along M → 32×8×4 per instruction: every QP owns whole rows of C. */
export const QP_GRID_32x8: QuadpairGrid = { alongM: 4, alongN: 1, order: 'm-major' };

/** (qm, qn) tile position of quadpair q. */
export function quadpairTile(q: number, grid: QuadpairGrid): [number, number] {
  if (grid.alongM * grid.alongN !== 4) throw new RangeError(`a quadpair grid must hold 4 QPs, got ${grid.alongM}×${grid.alongN}`);
  return grid.order === 'n-major' ? [Math.floor(q / grid.alongN), q % grid.alongN] : [q % grid.alongM, Math.floor(q / grid.alongM)];
}

function gridName(grid: QuadpairGrid): string {
  return `${8 * grid.alongM}x${8 * grid.alongN}x4`;
}

/**
 * The warp-level fragment of one m8n8k4 instruction: the four QP tiles placed by `grid`.
 * A is (8·alongM)×4 (QPs in the same M position hold the same A elements), B is
 * 4×(8·alongN), C is (8·alongM)×(8·alongN) and a partition of the tile.
 */
export function voltaFragment(variant: VoltaVariant, grid: QuadpairGrid = QP_GRID_16x16): Fragment {
  const operand = variant[0] as Operand;
  const rows = operand === 'B' ? 4 : 8 * grid.alongM;
  const cols = operand === 'A' ? 4 : 8 * grid.alongN;
  const elementBits = variant === 'C.f32' ? 32 : 16;
  return makeFragment(
    { name: `m8n8k4.${variant} ${gridName(grid)}`, operand, rows, cols, valuesPerLane: m8n8k4ValuesPerLane(variant), elementBits },
    (lane, i) => {
      const [qm, qn] = quadpairTile(quadpair(lane), grid);
      const [r, c] = m8n8k4Element(variant, lane, i);
      return [operand === 'B' ? r : r + 8 * qm, operand === 'A' ? c : c + 8 * qn];
    },
  );
}

// ---------------------------------------------------------------------------
// Ampere: mma.m16n8k16 (.f16 inputs)
// ---------------------------------------------------------------------------

export type AmpereVariant = 'A' | 'B' | 'C.f16' | 'C.f32';

export const AMPERE_VARIANTS: readonly AmpereVariant[] = ['A', 'B', 'C.f16', 'C.f32'];

/** (row, col) of value `i` of `lane` for m16n8k16, from the PTX formulas of figures 79, 81 and 83. */
export function m16n8k16Element(variant: AmpereVariant, lane: number, i: number): ElementCoord {
  const groupID = lane >> 2;
  const tig = lane % 4; // threadID_in_group
  switch (variant) {
    case 'A': // row = groupID for a0,a1,a4,a5, else +8; col = 2·tig + (i&1), +8 for i ≥ 4
      return [groupID + ((i & 2) !== 0 ? 8 : 0), tig * 2 + (i & 1) + (i >= 4 ? 8 : 0)];
    case 'B': // row = 2·tig + (i&1), +8 for i ≥ 2; col = groupID
      return [tig * 2 + (i & 1) + (i >= 2 ? 8 : 0), groupID];
    case 'C.f16':
    case 'C.f32': // row = groupID for c0,c1, +8 for c2,c3; col = 2·tig + (i&1) — same for .f16 and .f32
      return [groupID + (i >= 2 ? 8 : 0), tig * 2 + (i & 1)];
  }
}

/** The warp fragment of one m16n8k16 instruction: A 16×16, B 16×8, C 16×8. */
export function ampereFragment(variant: AmpereVariant): Fragment {
  const operand = variant[0] as Operand;
  const dims: Record<Operand, [number, number]> = { A: [16, 16], B: [16, 8], C: [16, 8] };
  const [rows, cols] = dims[operand];
  return makeFragment(
    { name: `m16n8k16.${variant}`, operand, rows, cols, valuesPerLane: operand === 'A' ? 8 : 4, elementBits: variant === 'C.f32' ? 32 : 16 },
    (lane, i) => m16n8k16Element(variant, lane, i),
  );
}

// ---------------------------------------------------------------------------
// Tiling fragments over larger tiles
// ---------------------------------------------------------------------------

/**
 * Repeat a fragment `rowReps × colReps` times over a larger tile, as a warp
 * does when it issues that many instructions (n-steps of a C tile, k-steps of
 * an A tile). Instance (ri, ci) holds values `v + V·(ri + rowReps·ci)`.
 */
export function tileFragment(f: Fragment, rowReps: number, colReps: number, name = `${f.name} ×${rowReps}×${colReps}`): Fragment {
  const V = f.valuesPerLane;
  return makeFragment(
    { name, operand: f.operand, rows: f.rows * rowReps, cols: f.cols * colReps, valuesPerLane: V * rowReps * colReps, elementBits: f.elementBits, lanes: f.lanes },
    (lane, v) => {
      const inst = Math.floor(v / V);
      const ri = inst % rowReps;
      const ci = Math.floor(inst / rowReps);
      const [r, c] = f.elements[lane][v % V];
      return [r + ri * f.rows, c + ci * f.cols];
    },
  );
}

// ---------------------------------------------------------------------------
// Queries a kernel generator needs
// ---------------------------------------------------------------------------

export interface LaneValue {
  lane: number;
  value: number;
}

/** (value, row, col) of every value a lane holds. */
export function laneElements(f: Fragment, lane: number): Array<{ value: number; row: number; col: number }> {
  return f.elements[lane].map(([row, col], value) => ({ value, row, col }));
}

/** `owners[row][col]`: every (lane, value) holding that element (several when the operand is replicated). */
export function elementOwners(f: Fragment): LaneValue[][][] {
  const owners: LaneValue[][][] = Array.from({ length: f.rows }, () => Array.from({ length: f.cols }, () => []));
  f.elements.forEach((vals, lane) => vals.forEach(([r, c], value) => owners[r][c].push({ lane, value })));
  return owners;
}

/** Whether every element of the tile is held by exactly one (lane, value). */
export function isPartition(f: Fragment): boolean {
  return elementOwners(f).every((row) => row.every((o) => o.length === 1));
}

/** 32-bit register index of a value (two 16-bit values share one register, low half first). */
export function registerOf(f: Fragment, value: number): number {
  return f.elementBits === 16 ? value >> 1 : value;
}

// ---------------------------------------------------------------------------
// CuTe TV layouts, for cross-checking the PTX transcription
// ---------------------------------------------------------------------------

/**
 * CuTe's (thread, value) → column-major (M, N|K) index layouts, copied from
 * cutlass `mma_traits_sm70.hpp` and `mma_traits_sm80.hpp`. B layouts index (N, K),
 * i.e. they are transposed with respect to this module's K×N B tiles.
 */
export const CUTE_TV_LAYOUTS = {
  /** Logical QP thread t → lane. */
  SM70_QuadPair: parseLayout('(4,2):(1,16)'),
  /** (T8,V4) → (M8,K4): A `.row` (and B `.col`, as (N8,K4)). */
  SM70_8x4_Row: parseLayout('(8,4):(1,8)'),
  /** (T8,V4) → (M8,K4): A `.col` (and B `.row`, as (N8,K4)). */
  SM70_8x4_Col: parseLayout('((4,2),4):((8,4),1)'),
  /** (T8,V8) → (M8,N8): f16 accumulator. */
  SM70_8x8_16b: parseLayout('(8,8):(1,8)'),
  /** (T8,V8) → (M8,N8): f32 accumulator. */
  SM70_8x8_32b: parseLayout('((2,2,2),(2,2,2)):((1,16,4),(8,2,32))'),
  /** (T32,V8) → (M16,K16): m16n8k16 A. */
  SM80_16x8x16_A: parseLayout('((4,8),(2,2,2)):((32,1),(16,8,128))'),
  /** (T32,V4) → (N8,K16): m16n8k16 B. */
  SM80_16x8x16_B: parseLayout('((4,8),(2,2)):((16,1),(8,64))'),
  /** (T32,V4) → (M16,N8): m16n8k16 C/D (SM80_16x8_Row). */
  SM80_16x8_Row: parseLayout('((4,8),(2,2)):((32,1),(16,8))'),
} as const;

export interface TvFragmentSpec {
  name: string;
  operand: Operand;
  /** Extent of the layout's first (column-major) coordinate: M for A and C, N for CuTe's B. */
  dim0: number;
  dim1: number;
  elementBits: 16 | 32;
  /** CuTe B layouts are (N,K): transpose to this module's (K,N). */
  transpose?: boolean;
}

/**
 * A fragment from a CuTe TV layout, indexed by CuTe's logical thread id (map it
 * to a lane with the atom's ThrID, e.g. SM70_QuadPair): thread t, value v hold
 * the element at column-major index `tv(t, v)` of a dim0 × dim1 tile.
 */
export function fragmentFromTv(tv: Layout, spec: TvFragmentSpec): Fragment {
  const nThr = size(Array.isArray(tv.shape) ? (tv.shape as readonly IntTuple[])[0] : tv.shape);
  const nVal = size(tv) / nThr;
  const [rows, cols] = spec.transpose ? [spec.dim1, spec.dim0] : [spec.dim0, spec.dim1];
  return makeFragment({ name: spec.name, operand: spec.operand, rows, cols, valuesPerLane: nVal, elementBits: spec.elementBits, lanes: nThr }, (t, v) => {
    const idx = evaluate(tv, [t, v]);
    const a = idx % spec.dim0;
    const b = Math.floor(idx / spec.dim0);
    return spec.transpose ? [b, a] : [a, b];
  });
}
