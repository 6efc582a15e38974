/**
 * Plain JSON for the demo page: lane → element ownership maps of MMA
 * fragments, accumulator-reuse maps, and bank-conflict heatmaps of the
 * workgroup-memory tiles. Everything returned survives JSON.stringify / parse
 * unchanged (numbers, strings, booleans, arrays and plain objects only).
 */

import { ampereAccumulatorReuse, summarizeReuse, voltaAccumulatorReuse, type ReusePlan, type ReuseSummary } from './fragmentConverter.js';
import { planTile, fragmentReads, type AttentionTile, type TilePlan, type VoltaTileConfig } from './kernelTiles.js';
import {
  AMPERE_VARIANTS,
  ampereFragment,
  elementOwners,
  QP_GRID_16x16,
  QP_GRID_32x8,
  quadpair,
  VOLTA_VARIANTS,
  voltaFragment,
  type Fragment,
  type QuadpairGrid,
} from './mmaLayouts.js';
import { bankOf, describeSwizzle, patternCost, stepBankLoads, stepCost, type AccessPattern, type TileLayout } from './smemPlanner.js';

export interface OwnershipMapJson {
  name: string;
  operand: string;
  rows: number;
  cols: number;
  lanes: number;
  valuesPerLane: number;
  elementBits: number;
  /** Colour key per lane: its quadpair (Volta) or its group of 4 (Ampere's groupID). */
  laneGroup: number[];
  laneGroupKind: 'quadpair' | 'groupID';
  /** `cells[row][col]`: every [lane, value] holding the element. */
  cells: Array<Array<Array<[number, number]>>>;
  /** `laneElements[lane][value]` = [row, col]. */
  laneElements: Array<Array<[number, number]>>;
}

export function ownershipMap(f: Fragment, laneGroupKind: 'quadpair' | 'groupID' = 'quadpair'): OwnershipMapJson {
  return {
    name: f.name,
    operand: f.operand,
    rows: f.rows,
    cols: f.cols,
    lanes: f.lanes,
    valuesPerLane: f.valuesPerLane,
    elementBits: f.elementBits,
    laneGroup: Array.from({ length: f.lanes }, (_, l) => (laneGroupKind === 'quadpair' ? quadpair(l) : l >> 2)),
    laneGroupKind,
    cells: elementOwners(f).map((row) => row.map((os) => os.map((o): [number, number] => [o.lane, o.value]))),
    laneElements: f.elements.map((vals) => vals.map(([r, c]): [number, number] => [r, c])),
  };
}

export interface ConversionCellJson {
  /** Lane holding the element in the accumulator. */
  from: number;
  /** Lanes needing it as the A operand. */
  to: number[];
  /** Some consumer lane is not the owner. */
  moved: boolean;
}

export interface ConversionMapJson {
  summary: ReuseSummary;
  rows: number;
  cols: number;
  cells: ConversionCellJson[][];
  receivedPerLane: number[];
}

export function conversionMap(plan: ReusePlan): ConversionMapJson {
  const cells: ConversionCellJson[][] = Array.from({ length: plan.rows }, () => Array.from({ length: plan.cols }, () => ({ from: -1, to: [], moved: false })));
  for (const e of plan.entries) {
    const cell = cells[e.row][e.col];
    cell.from = e.sourceLane;
    if (!cell.to.includes(e.lane)) cell.to.push(e.lane);
    if (e.lane !== e.sourceLane) cell.moved = true;
  }
  for (const row of cells) for (const c of row) c.to.sort((a, b) => a - b);
  return { summary: summarizeReuse(plan), rows: plan.rows, cols: plan.cols, cells, receivedPerLane: [...plan.receivedPerLane] };
}

export interface BankHeatmapJson {
  tile: { rows: number; cols: number; elementBytes: number; pitch: number; swizzle: string };
  pattern: string;
  /** `bankOfElement[row][col]`: the bank of the element's word. */
  bankOfElement: number[][];
  /** The first `maxSteps` steps: distinct words per bank (32 numbers) for each phase. */
  steps: Array<{ label: string; phases: number[][]; wavefronts: number; ideal: number; degree: number }>;
  totals: { steps: number; wavefronts: number; ideal: number; maxDegree: number; conflictedSteps: number };
}

export function bankHeatmap(t: TileLayout, pattern: AccessPattern, maxSteps = 8): BankHeatmapJson {
  const cost = patternCost(t, pattern);
  return {
    tile: { rows: t.rows, cols: t.cols, elementBytes: t.elementBytes, pitch: t.pitch, swizzle: describeSwizzle(t.swizzle, t.pitch) },
    pattern: pattern.name,
    bankOfElement: Array.from({ length: t.rows }, (_, r) => Array.from({ length: t.cols }, (_, c) => bankOf(t, r, c))),
    steps: pattern.steps.slice(0, maxSteps).map((s, i) => ({ label: s.label ?? `step ${i}`, phases: stepBankLoads(t, s), ...stepCost(t, s) })),
    totals: { steps: cost.steps, wavefronts: cost.wavefronts, ideal: cost.ideal, maxDegree: cost.maxDegree, conflictedSteps: cost.conflictedSteps },
  };
}

export interface TileDemoJson {
  headDim: number;
  tile: AttentionTile;
  swizzle: string;
  fillVectorBytes: number;
  conflictFree: boolean;
  readsBefore: BankHeatmapJson;
  readsAfter: BankHeatmapJson;
  fill: { before: { wavefronts: number; ideal: number; maxDegree: number }; after: { wavefronts: number; ideal: number; maxDegree: number } };
  globalSegments: { coalesced: number; coalescedIdeal: number; rowPerLane: number };
}

function tileDemo(cfg: VoltaTileConfig, plan: TilePlan, maxSteps: number): TileDemoJson {
  const reads = fragmentReads(cfg, plan.tile);
  const base: TileLayout = { ...plan.layout, swizzle: undefined };
  const brief = (c: { wavefronts: number; ideal: number; maxDegree: number }) => ({ wavefronts: c.wavefronts, ideal: c.ideal, maxDegree: c.maxDegree });
  return {
    headDim: cfg.headDim,
    tile: plan.tile,
    swizzle: plan.swizzle,
    fillVectorBytes: plan.fillVectorBytes,
    conflictFree: plan.conflictFree,
    readsBefore: bankHeatmap(base, reads, maxSteps),
    readsAfter: bankHeatmap(plan.layout, reads, maxSteps),
    fill: { before: brief(plan.fill.before), after: brief(plan.fill.after) },
    globalSegments: { coalesced: plan.global.coalesced.segments, coalescedIdeal: plan.global.coalesced.ideal, rowPerLane: plan.global.rowPerLane.segments },
  };
}

export interface VoltaDemoOptions {
  headDims?: readonly number[];
  br?: number;
  bc?: number;
  /** QP placement of the kernel; default 4×1 (QPs own whole rows). */
  grid?: QuadpairGrid;
  /** Steps per heatmap. */
  maxSteps?: number;
}

export interface VoltaDemoJson {
  fragments: OwnershipMapJson[];
  conversions: Array<{ arch: 'volta' | 'ampere'; accumulator: 'f16' | 'f32'; grid: string; map: ConversionMapJson }>;
  tiles: TileDemoJson[];
}

/** Everything the demo draws, for Br × Bc tiles at each head dimension. */
export function voltaDemoData(options: VoltaDemoOptions = {}): VoltaDemoJson {
  const grid = options.grid ?? QP_GRID_32x8;
  const fragments = [
    ...VOLTA_VARIANTS.map((v) => ownershipMap(voltaFragment(v, QP_GRID_16x16))),
    ...AMPERE_VARIANTS.map((v) => ownershipMap(ampereFragment(v), 'groupID')),
  ];
  const conversions: VoltaDemoJson['conversions'] = [];
  for (const accumulator of ['f16', 'f32'] as const) {
    for (const g of [QP_GRID_32x8, QP_GRID_16x16]) {
      conversions.push({ arch: 'volta', accumulator, grid: `${8 * g.alongM}x${8 * g.alongN}x4`, map: conversionMap(voltaAccumulatorReuse(accumulator, { grid: g })) });
    }
    conversions.push({ arch: 'ampere', accumulator, grid: '16x8x16', map: conversionMap(ampereAccumulatorReuse(accumulator)) });
  }
  const tiles: TileDemoJson[] = [];
  for (const headDim of options.headDims ?? [64, 128]) {
    const cfg: VoltaTileConfig = { br: options.br ?? 64, bc: options.bc ?? 64, headDim, grid };
    for (const t of ['Q', 'K', 'V'] as const) tiles.push(tileDemo(cfg, planTile(cfg, t), options.maxSteps ?? 8));
  }
  return { fragments, conversions, tiles };
}
