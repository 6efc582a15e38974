/**
 * Accumulator reuse: can the C/D fragment of `S = Q·Kᵀ` feed the A operand of
 * `O = P·V` in registers? Element (m, k) of the second GEMM's A tile is
 * element (m, n = k) of the first GEMM's accumulator tile, so for every
 * (lane, value) of the consumer we look up which lane holds that element in
 * the producer. A lane receives a value whenever that lane is another one
 * (a subgroup shuffle in WGSL, a shuffle or a workgroup-memory round trip on a GPU).
 *
 * Works for any pair of fragments over the same rows × cols tile; the producer
 * must be a partition (accumulators are: every element lives in one lane).
 */

import {
  ampereFragment,
  elementOwners,
  isPartition,
  QP_GRID_16x16,
  registerOf,
  tileFragment,
  voltaFragment,
  type Fragment,
  type QuadpairGrid,
} from './mmaLayouts.js';

/** Where one consumer value comes from. */
export interface ReuseEntry {
  lane: number;
  value: number;
  row: number;
  col: number;
  sourceLane: number;
  sourceValue: number;
}

export interface ReusePlan {
  producer: string;
  consumer: string;
  rows: number;
  cols: number;
  lanes: number;
  /** One entry per consumer (lane, value), lane-major. */
  entries: ReuseEntry[];
  /** Values each lane must receive from other lanes. */
  receivedPerLane: number[];
  /** Distinct other lanes each lane receives from. */
  sourceLanesPerLane: number[][];
  totalReceived: number;
  maxReceivedPerLane: number;
  /** No lane needs a value it does not already hold. */
  zeroExchange: boolean;
  /**
   * Zero exchange and, with a 16-bit producer, every consumer register is one
   * producer register unchanged (a pure register renaming, no pack/convert).
   */
  registerRenameOnly: boolean;
}

/** Which lane must hold which element, and what each lane must receive, to use `producer` (C of GEMM 1) as `consumer` (A of GEMM 2). */
export function planAccumulatorReuse(producer: Fragment, consumer: Fragment): ReusePlan {
  if (producer.rows !== consumer.rows || producer.cols !== consumer.cols) {
    throw new RangeError(`producer ${producer.rows}×${producer.cols} and consumer ${consumer.rows}×${consumer.cols} tiles differ`);
  }
  if (producer.lanes !== consumer.lanes) throw new RangeError('producer and consumer have different lane counts');
  if (!isPartition(producer)) throw new RangeError(`${producer.name} is not a partition of its tile`);
  const owners = elementOwners(producer);
  const entries: ReuseEntry[] = [];
  const receivedPerLane = new Array<number>(consumer.lanes).fill(0);
  const sources: Array<Set<number>> = Array.from({ length: consumer.lanes }, () => new Set<number>());
  consumer.elements.forEach((vals, lane) =>
    vals.forEach(([row, col], value) => {
      const { lane: sourceLane, value: sourceValue } = owners[row][col][0];
      entries.push({ lane, value, row, col, sourceLane, sourceValue });
      if (sourceLane !== lane) {
        receivedPerLane[lane]++;
        sources[lane].add(sourceLane);
      }
    }),
  );
  const totalReceived = receivedPerLane.reduce((a, b) => a + b, 0);
  return {
    producer: producer.name,
    consumer: consumer.name,
    rows: consumer.rows,
    cols: consumer.cols,
    lanes: consumer.lanes,
    entries,
    receivedPerLane,
    sourceLanesPerLane: sources.map((s) => [...s].sort((a, b) => a - b)),
    totalReceived,
    maxReceivedPerLane: Math.max(0, ...receivedPerLane),
    zeroExchange: totalReceived === 0,
    registerRenameOnly: totalReceived === 0 && isRegisterRename(producer, consumer, entries),
  };
}

/** Every 16-bit consumer register (values 2r, 2r+1) is one 16-bit producer register with the same halves. */
function isRegisterRename(producer: Fragment, consumer: Fragment, entries: readonly ReuseEntry[]): boolean {
  if (producer.elementBits !== 16 || consumer.elementBits !== 16) return false;
  const byLaneValue = new Map(entries.map((e) => [e.lane * consumer.valuesPerLane + e.value, e]));
  for (let lane = 0; lane < consumer.lanes; lane++) {
    for (let v = 0; v < consumer.valuesPerLane; v += 2) {
      const lo = byLaneValue.get(lane * consumer.valuesPerLane + v) as ReuseEntry;
      const hi = byLaneValue.get(lane * consumer.valuesPerLane + v + 1) as ReuseEntry;
      if (lo.sourceValue % 2 !== 0 || hi.sourceValue !== lo.sourceValue + 1) return false;
      if (registerOf(producer, lo.sourceValue) !== registerOf(producer, hi.sourceValue)) return false;
    }
  }
  return true;
}

export interface VoltaReuseOptions {
  /** QP placement of both GEMMs (the A operand only depends on its M placement); default 2×2 (16×16×4). */
  grid?: QuadpairGrid;
  /** Key columns of the S tile converted at once; a multiple of 8·grid.alongN and of 4. Default 16. */
  keys?: number;
  /** PTX layout of the second GEMM's A operand; default `.row` (each lane holds 4 consecutive k of one row). */
  consumerLayout?: 'A.row' | 'A.col';
}

/** Volta: S accumulator (f16 or f32) of m8n8k4 instructions reused as the m8n8k4 A operand of P·V. */
export function voltaAccumulatorReuse(accumulator: 'f16' | 'f32', options: VoltaReuseOptions = {}): ReusePlan {
  const grid = options.grid ?? QP_GRID_16x16;
  const keys = options.keys ?? 16;
  const cTile = 8 * grid.alongN;
  if (keys % cTile !== 0 || keys % 4 !== 0) throw new RangeError(`keys ${keys} must be a multiple of ${cTile} and of 4`);
  const producer = tileFragment(voltaFragment(`C.${accumulator}`, grid), 1, keys / cTile);
  const consumer = tileFragment(voltaFragment(options.consumerLayout ?? 'A.row', grid), 1, keys / 4);
  return planAccumulatorReuse(producer, consumer);
}

/** Ampere: S accumulator of m16n8k16 (n-tiles side by side) reused as the m16n8k16 A operand of P·V. */
export function ampereAccumulatorReuse(accumulator: 'f16' | 'f32', keys = 16): ReusePlan {
  if (keys % 16 !== 0) throw new RangeError(`keys ${keys} must be a multiple of 16`);
  const producer = tileFragment(ampereFragment(`C.${accumulator}`), 1, keys / 8);
  const consumer = tileFragment(ampereFragment('A'), 1, keys / 16);
  return planAccumulatorReuse(producer, consumer);
}

/** Compact numbers for a report or a demo legend. */
export interface ReuseSummary {
  producer: string;
  consumer: string;
  tile: string;
  totalReceived: number;
  maxReceivedPerLane: number;
  minReceivedPerLane: number;
  consumerValuesPerLane: number;
  zeroExchange: boolean;
  registerRenameOnly: boolean;
}

export function summarizeReuse(plan: ReusePlan): ReuseSummary {
  return {
    producer: plan.producer,
    consumer: plan.consumer,
    tile: `${plan.rows}x${plan.cols}`,
    totalReceived: plan.totalReceived,
    maxReceivedPerLane: plan.maxReceivedPerLane,
    minReceivedPerLane: Math.min(...plan.receivedPerLane),
    consumerValuesPerLane: plan.entries.length / plan.lanes,
    zeroExchange: plan.zeroExchange,
    registerRenameOnly: plan.registerRenameOnly,
  };
}
