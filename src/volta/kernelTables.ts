/**
 * The generator behind shaders/voltaAttention.wgsl: WGSL index tables and
 * swizzle constants derived from the Volta layout functions of this folder,
 * never re-derived by hand.
 *
 *   - Fragment tables: every m8n8k4 fragment of the kernel (C of both GEMMs in
 *     the FP16 or FP32 accumulator layout, A `.row` of P·V) is split into a
 *     lane part and a value part, `coord(lane, v) = laneOffset(lane) + valueOffset(v)`;
 *     the split is checked against every (lane, value) of `voltaFragment`, so
 *     the shader indexes a 32-entry table once per lane and folds the value
 *     part at compile time.
 *   - Row sharing: which lanes hold parts of the same accumulator row (they
 *     must agree on the softmax running max, through workgroup memory).
 *   - P reuse: for the FP16 layout the A operand of P·V is read from the S
 *     accumulator registers at the source values of `voltaAccumulatorReuse`,
 *     which must be a zero-exchange plan.
 *   - Swizzles: the Q, K and V tiles (f32 in workgroup memory here, vec4 =
 *     16-byte chunks) planned by `searchSwizzle` against the fragment reads of
 *     kernelTiles.ts and the coalesced fill.
 */

import { voltaAccumulatorReuse, summarizeReuse, type ReuseSummary } from './fragmentConverter.js';
import { fragmentReads, type AttentionTile } from './kernelTiles.js';
import { QP_GRID_32x8, voltaFragment, WARP_SIZE, type Fragment } from './mmaLayouts.js';
import { describeSwizzle, patternCost, rowMajorTile, searchSwizzle, tileFillPattern, type TileLayout } from './smemPlanner.js';

/** Accumulator layout of both GEMMs: mma.m8n8k4 `.f16` (four f16x2 registers) or `.f32` (eight f32 registers). */
export type VoltaAccumulator = 'f16' | 'f32';

export const VOLTA_ACCUMULATORS: readonly VoltaAccumulator[] = ['f16', 'f32'];

/** Rows of the warp tile: the kernel uses QP_GRID_32x8, four quadpairs stacked along M. */
export const WARP_ROWS = 8 * QP_GRID_32x8.alongM;
/** Columns of one m8n8k4 C tile of the warp (one n-step). */
export const N_TILE = 8 * QP_GRID_32x8.alongN;
/** Values per lane of one m8n8k4 C fragment. */
export const C_VALUES = 8;
/** Bytes per element of the Q/K/V tiles in workgroup memory (f32 on every adapter; see voltaAttention.ts). */
export const TILE_ELEMENT_BYTES = 4;
/** Elements per swizzle chunk: one vec4f, so every operand read stays one 16-byte access. */
export const SWIZZLE_CHUNK = 4;
/** Swizzle masks the shader declares per tile (XOR into bits 0..2 of the vec4 chunk index). */
export const SWIZZLE_MASKS = 3;

/** A fragment split as `coord(lane, v) = (rowL[lane] + rowV[v], colL[lane] + colV[v])`. */
export interface SeparableFragment {
  rowL: number[];
  colL: number[];
  rowV: number[];
  colV: number[];
}

/** Split a fragment into lane and value parts, or throw if it is not separable. */
export function separateFragment(f: Fragment): SeparableFragment {
  const rowV = f.elements[0].map(([r]) => r - f.elements[0][0][0]);
  const colV = f.elements[0].map(([, c]) => c - f.elements[0][0][1]);
  const rowL = f.elements.map((vals) => vals[0][0]);
  const colL = f.elements.map((vals) => vals[0][1]);
  f.elements.forEach((vals, lane) =>
    vals.forEach(([r, c], v) => {
      if (r !== rowL[lane] + rowV[v] || c !== colL[lane] + colV[v]) {
        throw new RangeError(`${f.name}: lane ${lane} value ${v} at (${r}, ${c}) is not laneOffset + valueOffset`);
      }
    }),
  );
  return { rowL, colL, rowV, colV };
}

/** Distinct values of `xs` in order of first appearance, and the slot of each entry. */
function slots(xs: readonly number[]): { distinct: number[]; slotOf: number[] } {
  const distinct: number[] = [];
  const slotOf = xs.map((x) => {
    let i = distinct.indexOf(x);
    if (i < 0) i = distinct.push(x) - 1;
    return i;
  });
  return { distinct, slotOf };
}

/** Everything the shader needs about one accumulator layout, and the exchange it implies. */
export interface VoltaKernelLayout {
  accumulator: VoltaAccumulator;
  /** C fragment of one n-step (the S tile of 8 keys, or 8 output columns). */
  c: SeparableFragment;
  /** Distinct row offsets of a lane's C values (ROW_SLOTS of them) and the slot of each value. */
  rowSlots: number[];
  rowSlotOfValue: number[];
  /** Distinct column offsets (COL_SLOTS of them) and the slot of each value. */
  colSlots: number[];
  colSlotOfValue: number[];
  /** Lanes holding part of each accumulator row. */
  rowSharers: number;
  /** `sharerIndex[lane][slot]`: position of the lane among the lanes holding that row. */
  sharerIndex: number[][];
  /**
   * A `.row` operand of P·V from the S accumulator, per 8 keys: consumer value
   * (k-step (v >> 2), key v & 3) is producer value `pSource[v]` of the same lane.
   * Only meaningful (and only used) when `reuse.zeroExchange`.
   */
  pSource: number[];
  /** Accumulator → A operand plan for BLOCK_KV keys, summarized (from fragmentConverter). */
  reuse: ReuseSummary;
}

/**
 * Derive the kernel's tables for one accumulator layout from `voltaFragment`
 * and `voltaAccumulatorReuse` (QP_GRID_32x8: every quadpair owns 8 whole rows
 * of the warp's 32).
 */
export function voltaKernelLayout(accumulator: VoltaAccumulator, blockKV = 16): VoltaKernelLayout {
  const grid = QP_GRID_32x8;
  const cf = voltaFragment(`C.${accumulator}`, grid);
  const c = separateFragment(cf);
  const rs = slots(c.rowV);
  const cs = slots(c.colV);
  // Lanes holding each row of the warp tile.
  const holders: number[][] = Array.from({ length: cf.rows }, () => []);
  cf.elements.forEach((vals, lane) => {
    for (const r of new Set(vals.map(([row]) => row))) holders[r].push(lane);
  });
  const rowSharers = holders[0].length;
  if (holders.some((h) => h.length !== rowSharers)) throw new RangeError(`${cf.name}: rows are held by different numbers of lanes`);
  const sharerIndex = cf.elements.map((_, lane) => rs.distinct.map((dr) => holders[c.rowL[lane] + dr].indexOf(lane)));

  const plan8 = voltaAccumulatorReuse(accumulator, { grid, keys: N_TILE });
  const pSource = plan8.entries.filter((e) => e.lane === 0).map((e) => e.sourceValue);
  if (plan8.zeroExchange) {
    // The shader reads P from its own registers at the same value for every lane, in the row of its only C slot.
    for (const e of plan8.entries) {
      if (e.sourceValue !== pSource[e.value]) throw new RangeError(`${plan8.producer}: the P source of value ${e.value} depends on the lane`);
    }
    if (rs.distinct.length !== 1) throw new RangeError(`${cf.name}: a zero-exchange layout with ${rs.distinct.length} rows per lane`);
  }
  const reuse = summarizeReuse(voltaAccumulatorReuse(accumulator, { grid, keys: blockKV }));
  return {
    accumulator,
    c,
    rowSlots: rs.distinct,
    rowSlotOfValue: rs.slotOf,
    colSlots: cs.distinct,
    colSlotOfValue: cs.slotOf,
    rowSharers,
    sharerIndex,
    pSource,
    reuse,
  };
}

const GEN_BEGIN = '// ---- BEGIN GENERATED: fragment tables';
const GEN_END = '// ---- END GENERATED ----';

function u32Array(xs: readonly number[]): string {
  return `array<u32, ${xs.length}>(${xs.map((x) => `${x}u`).join(', ')})`;
}

/** The generated section of voltaAttention.wgsl for one accumulator layout. */
export function generateFragmentTables(layout: VoltaKernelLayout): string {
  const L = layout;
  const lines = [
    `${GEN_BEGIN} (src/volta/kernelTables.ts, accumulator ${L.accumulator}) ----`,
    `const ACC_F32: bool = ${L.accumulator === 'f32'};`,
    `// C fragment (S of 8 keys, or O of 8 columns): (C_ROW_L[lane] + C_ROW_V[v], C_COL_L[lane] + C_COL_V[v]).`,
    `const C_ROW_L = ${u32Array(L.c.rowL)};`,
    `const C_COL_L = ${u32Array(L.c.colL)};`,
    `const C_ROW_V = ${u32Array(L.c.rowV)};`,
    `const C_COL_V = ${u32Array(L.c.colV)};`,
    `const ROW_SLOTS: u32 = ${L.rowSlots.length}u;`,
    `const COL_SLOTS: u32 = ${L.colSlots.length}u;`,
    `const SLOT_ROW_V = ${u32Array(L.rowSlots)};`,
    `const SLOT_COL_V = ${u32Array(L.colSlots)};`,
    `const ROW_SLOT_V = ${u32Array(L.rowSlotOfValue)};`,
    `const COL_SLOT_V = ${u32Array(L.colSlotOfValue)};`,
    `// Lanes holding parts of one row, and each lane's position among them (per row slot).`,
    `const ROW_SHARERS: u32 = ${L.rowSharers}u;`,
    `const SHARER_L = ${u32Array(L.sharerIndex.flat())};`,
    `// A operand of P·V per 8 keys: value (k-step, key) = (v >> 2, v & 3) is S value P_SRC_V[v] (zero-exchange layouts only).`,
    `const P_SRC_V = ${u32Array(L.pSource)};`,
    GEN_END,
  ];
  return lines.join('\n');
}

/** Replace the generated section of the shader source. */
export function withFragmentTables(source: string, layout: VoltaKernelLayout): string {
  const begin = source.indexOf(GEN_BEGIN);
  const end = source.indexOf(GEN_END);
  if (begin < 0 || end < begin) throw new Error('voltaAttention.wgsl has no generated fragment-table section');
  return source.slice(0, begin) + generateFragmentTables(layout) + source.slice(end + GEN_END.length);
}

/** The generated section currently in a shader source (to check the committed defaults). */
export function fragmentTablesIn(source: string): string {
  const begin = source.indexOf(GEN_BEGIN);
  const end = source.indexOf(GEN_END);
  if (begin < 0 || end < begin) throw new Error('voltaAttention.wgsl has no generated fragment-table section');
  return source.slice(begin, end + GEN_END.length);
}

// ---------------------------------------------------------------------------
// Swizzles of the Q, K and V tiles
// ---------------------------------------------------------------------------

export interface VoltaTileSwizzle {
  tile: AttentionTile;
  rows: number;
  layout: TileLayout;
  /** Masks for the shader (always SWIZZLE_MASKS entries, 0 = unused bit). */
  masks: number[];
  swizzle: string;
  /** Wavefronts of the planned accesses (fragment reads + fill), row-major vs swizzled, and the conflict-free ideal. */
  wavefronts: { rowMajor: number; swizzled: number; ideal: number };
}

const swizzleCache = new Map<string, VoltaTileSwizzle>();

/**
 * Plan one tile of `rows` × headDim f32 elements: the XOR swizzle (16-byte
 * chunks) with the fewest bank wavefronts over the warp's m8n8k4 fragment
 * reads (kernelTiles.ts) and the coalesced vec4 fill by `warps`·32 invocations.
 */
export function planVoltaSwizzle(tile: AttentionTile, warps: number, blockKV: number, headDim: number): VoltaTileSwizzle {
  const key = `${tile}:${warps}:${blockKV}:${headDim}`;
  const hit = swizzleCache.get(key);
  if (hit) return hit;
  const cfg = { br: WARP_ROWS * warps, bc: blockKV, headDim, grid: QP_GRID_32x8 };
  const rows = tile === 'Q' ? cfg.br : cfg.bc;
  const base = rowMajorTile(rows, headDim, TILE_ELEMENT_BYTES);
  const reads = fragmentReads(cfg, tile);
  const fill = tileFillPattern(`${tile} fill (vec4f)`, rows, headDim, SWIZZLE_CHUNK, WARP_SIZE * warps);
  const search = searchSwizzle(base, [reads, fill], { chunkElems: [SWIZZLE_CHUNK] });
  const masks = [...(search.best.swizzle?.masks ?? [])];
  if (masks.length > SWIZZLE_MASKS) throw new RangeError(`swizzle of ${tile} uses ${masks.length} chunk bits, the shader has ${SWIZZLE_MASKS}`);
  while (masks.length < SWIZZLE_MASKS) masks.push(0);
  const plan: VoltaTileSwizzle = {
    tile,
    rows,
    layout: search.best,
    masks,
    swizzle: describeSwizzle(search.best.swizzle, search.best.pitch),
    wavefronts: {
      rowMajor: search.beforeWavefronts,
      swizzled: [reads, fill].reduce((a, p) => a + patternCost(search.best, p).wavefronts, 0),
      ideal: search.idealWavefronts,
    },
  };
  swizzleCache.set(key, plan);
  return plan;
}

/** Exchange counts of the accumulator → A-operand conversion, per lane and per key block, for a report. */
export interface VoltaExchangeCounts {
  accumulator: VoltaAccumulator;
  /** From fragmentConverter: values a lane receives from other lanes per 8 keys (max over lanes). */
  receivedPerLanePer8Keys: number;
  /** Same, per key block of `blockKV` keys. */
  receivedPerLanePerBlock: number;
  /** Warp total per key block. */
  receivedPerWarpPerBlock: number;
  zeroExchange: boolean;
  registerRenameOnly: boolean;
  /** Other lanes holding part of each accumulator row (they exchange the running max every block). */
  rowPartnerLanes: number;
}

export function voltaExchangeCounts(accumulator: VoltaAccumulator, blockKV: number): VoltaExchangeCounts {
  const per8 = voltaAccumulatorReuse(accumulator, { grid: QP_GRID_32x8, keys: N_TILE });
  const block = voltaAccumulatorReuse(accumulator, { grid: QP_GRID_32x8, keys: blockKV });
  const layout = voltaKernelLayout(accumulator, blockKV);
  return {
    accumulator,
    receivedPerLanePer8Keys: per8.maxReceivedPerLane,
    receivedPerLanePerBlock: block.maxReceivedPerLane,
    receivedPerWarpPerBlock: block.totalReceived,
    zeroExchange: block.zeroExchange,
    registerRenameOnly: block.registerRenameOnly,
    rowPartnerLanes: layout.rowSharers - 1,
  };
}
