/**
 * The Q, K and V tiles of the Volta-style attention kernel in workgroup
 * memory, and the accesses its subgroups make to them, fed to the planner.
 *
 * Assumed kernel (one workgroup per Br query rows; each subgroup of 32
 * invocations plays a warp, quadpairs as in mma.m8n8k4):
 *   - Q: Br × D, K: Bc × D, V: Bc × D, f16, row-major (D contiguous), filled
 *     from global memory with 16-byte vectors, consecutive invocations taking
 *     consecutive vectors of a row;
 *   - S = Q·Kᵀ: A = Q (`.row`: a lane reads 4 consecutive d of one query row),
 *     B = Kᵀ (`.col`: a lane reads 4 consecutive d of one key row);
 *   - O = P·V: B = V (`.row`: a lane reads 4 consecutive d of one key row);
 *   - each warp owns 8·alongM query rows per instruction (QP grid), so Br needs
 *     Br / (8·alongM) warps; K and V fragments are read by every warp alike.
 * Reads are modelled for warp 0: other warps' Q rows differ by a multiple of
 * 8·alongM, which an XOR swizzle turns into the same XOR for every lane, so
 * their conflicts are the same.
 */

import { QP_GRID_32x8, voltaFragment, type Fragment, type QuadpairGrid } from './mmaLayouts.js';
import {
  countSegments,
  patternCost,
  rowMajorTile,
  searchSwizzle,
  tileFillPattern,
  type Access,
  type AccessPattern,
  type AccessStep,
  type PatternCost,
  type SegmentCount,
  type TileLayout,
} from './smemPlanner.js';

export interface VoltaTileConfig {
  br: number;
  bc: number;
  headDim: number;
  /** QP placement of every mma.m8n8k4; default 4×1 (32×8×4: QPs own whole rows, see fragmentConverter). */
  grid?: QuadpairGrid;
}

export type AttentionTile = 'Q' | 'K' | 'V';

const F16_BYTES = 2;
/** Elements per fill vector: 16-byte loads first; 8-byte ones when a swizzle needs 8-byte chunks. */
const FILL_VEC_OPTIONS = [8, 4] as const;

/** Subgroups (warps) per workgroup: each covers 8·alongM query rows. */
export function warpsPerWorkgroup(cfg: VoltaTileConfig): number {
  const rowsPerWarp = 8 * (cfg.grid ?? QP_GRID_32x8).alongM;
  if (cfg.br % rowsPerWarp !== 0) throw new RangeError(`Br ${cfg.br} is not a multiple of ${rowsPerWarp} rows per warp`);
  return cfg.br / rowsPerWarp;
}

/**
 * One warp instruction loading fragment `f`, with fragment element (r, c)
 * stored at tile element `place(r, c)`: each lane's elements are grouped into
 * runs of consecutive columns (vector accesses).
 */
export function fragmentAccessStep(f: Fragment, place: (r: number, c: number) => readonly [number, number], label?: string): AccessStep {
  const accesses: Access[] = [];
  f.elements.forEach((vals, lane) => {
    const cells = vals.map(([r, c]) => place(r, c)).sort((a, b) => a[0] - b[0] || a[1] - b[1]);
    let k = 0;
    while (k < cells.length) {
      const [row, col] = cells[k];
      let n = 1;
      while (k + n < cells.length && cells[k + n][0] === row && cells[k + n][1] === col + n) n++;
      accesses.push({ lane, row, col, elems: n });
      k += n;
    }
  });
  return { label, accesses };
}

/** Warp 0's reads of Q as the A operand (`.row`), one step per k-step of 4. */
export function qFragmentReads(cfg: VoltaTileConfig): AccessPattern {
  const f = voltaFragment('A.row', cfg.grid ?? QP_GRID_32x8);
  const steps: AccessStep[] = [];
  for (let k0 = 0; k0 < cfg.headDim; k0 += 4) steps.push(fragmentAccessStep(f, (r, c) => [r, k0 + c], `k0=${k0}`));
  return { name: 'Q A-fragment reads', steps };
}

/** Reads of K as the B operand of S = Q·Kᵀ (`.col`: B(k, n) = K[n][k]). */
export function kFragmentReads(cfg: VoltaTileConfig): AccessPattern {
  const grid = cfg.grid ?? QP_GRID_32x8;
  const f = voltaFragment('B.col', grid);
  const steps: AccessStep[] = [];
  for (let n0 = 0; n0 < cfg.bc; n0 += 8 * grid.alongN) {
    for (let k0 = 0; k0 < cfg.headDim; k0 += 4) steps.push(fragmentAccessStep(f, (r, c) => [n0 + c, k0 + r], `n0=${n0} k0=${k0}`));
  }
  return { name: 'K B-fragment reads', steps };
}

/** Reads of V as the B operand of O = P·V (`.row`: B(k, n) = V[k][n]). */
export function vFragmentReads(cfg: VoltaTileConfig): AccessPattern {
  const grid = cfg.grid ?? QP_GRID_32x8;
  const f = voltaFragment('B.row', grid);
  const steps: AccessStep[] = [];
  for (let n0 = 0; n0 < cfg.headDim; n0 += 8 * grid.alongN) {
    for (let k0 = 0; k0 < cfg.bc; k0 += 4) steps.push(fragmentAccessStep(f, (r, c) => [k0 + r, n0 + c], `n0=${n0} k0=${k0}`));
  }
  return { name: 'V B-fragment reads', steps };
}

/** Rows of a tile: Br for Q, Bc for K and V. */
export function tileRows(cfg: VoltaTileConfig, tile: AttentionTile): number {
  return tile === 'Q' ? cfg.br : cfg.bc;
}

/** Fill of a tile from global memory by the whole workgroup, `vecElems`-element vectors (default 8 = 16 bytes). */
export function tileFill(cfg: VoltaTileConfig, tile: AttentionTile, order: 'coalesced' | 'row-per-lane' = 'coalesced', vecElems = 8): AccessPattern {
  return tileFillPattern(`${tile} fill (${order}, ${vecElems * F16_BYTES} B)`, tileRows(cfg, tile), cfg.headDim, vecElems, 32 * warpsPerWorkgroup(cfg), order);
}

export function fragmentReads(cfg: VoltaTileConfig, tile: AttentionTile): AccessPattern {
  return tile === 'Q' ? qFragmentReads(cfg) : tile === 'K' ? kFragmentReads(cfg) : vFragmentReads(cfg);
}

export interface TilePlan {
  tile: AttentionTile;
  rows: number;
  cols: number;
  warps: number;
  /** The chosen layout and its description. */
  layout: TileLayout;
  swizzle: string;
  /** Bytes per invocation per fill instruction (global load and workgroup store). */
  fillVectorBytes: number;
  reads: { before: PatternCost; after: PatternCost };
  fill: { before: PatternCost; after: PatternCost };
  conflictFree: boolean;
  candidatesTried: number;
  /** 128-byte segments of the global loads (BHSD: rows D·2 bytes apart). */
  global: { coalesced: SegmentCount; rowPerLane: SegmentCount };
}

/** Plan one tile: bank conflicts of the plain row-major layout vs the best XOR swizzle, and global coalescing. */
export function planTile(cfg: VoltaTileConfig, tile: AttentionTile): TilePlan {
  const rows = tileRows(cfg, tile);
  const base = rowMajorTile(rows, cfg.headDim, F16_BYTES);
  const reads = fragmentReads(cfg, tile);
  const baseFill = tileFill(cfg, tile);
  // Wide fills first; narrower ones only when the wide fill leaves conflicts
  // (a 16-byte store split into 8-byte chunks can collide where 8-byte stores would not).
  let chosen: { fill: AccessPattern; vec: number; search: ReturnType<typeof searchSwizzle> } | undefined;
  let tried = 0;
  for (const vec of FILL_VEC_OPTIONS) {
    const fill = tileFill(cfg, tile, 'coalesced', vec);
    const search = searchSwizzle(base, [reads, fill]);
    tried += search.candidatesTried;
    if (!chosen || search.afterWavefronts - search.idealWavefronts < chosen.search.afterWavefronts - chosen.search.idealWavefronts) chosen = { fill, vec, search };
    if (search.conflictFree) break;
  }
  const { fill, vec, search } = chosen as NonNullable<typeof chosen>;
  const g = { baseByte: 0, rowPitchBytes: cfg.headDim * F16_BYTES, elementBytes: F16_BYTES };
  return {
    tile,
    rows,
    cols: cfg.headDim,
    warps: warpsPerWorkgroup(cfg),
    layout: search.best,
    swizzle: search.swizzle,
    fillVectorBytes: vec * F16_BYTES,
    reads: { before: patternCost(base, reads), after: patternCost(search.best, reads) },
    fill: { before: patternCost(base, baseFill), after: patternCost(search.best, fill) },
    conflictFree: search.conflictFree,
    candidatesTried: tried,
    global: { coalesced: countSegments(g, fill), rowPerLane: countSegments(g, tileFill(cfg, tile, 'row-per-lane', vec)) },
  };
}

/** Q, K and V plans of one configuration. */
export function planVoltaTiles(cfg: VoltaTileConfig): TilePlan[] {
  return (['Q', 'K', 'V'] as const).map((t) => planTile(cfg, t));
}
