/**
 * Two-level tile configurations of the fused kernel and their fit on a device.
 *
 * Level 1 (workgroup): `blockQ` query rows stay resident while the workgroup
 * streams K/V through workgroup memory `blockKV` rows at a time, with
 * `kvStages` = 2 for double buffering (the next span is stored while the current
 * one is used, one barrier fewer per step).
 * Level 2 (invocation): the workgroup is (blockQ / rowsPerThread) row groups of
 * `threadsPerRow` invocations; each invocation owns a register tile of
 * rowsPerThread × (blockKV / threadsPerRow) scores and
 * rowsPerThread × ceil(headDim / threadsPerRow) output accumulators.
 */
import { TileConfigError } from '../errors.js';

export interface TileConfig {
  /** Br: query rows per workgroup (level 1). */
  blockQ: number;
  /** Bc: K/V rows staged per outer step (level 1). */
  blockKV: number;
  /** TM: query rows per invocation (level 2). */
  rowsPerThread: number;
  /** C: invocations sharing a row group; each computes blockKV / C scores per row (level 2). */
  threadsPerRow: number;
  /** 2 = double-buffered K/V span, 1 = single buffer. */
  kvStages: 1 | 2;
}

/** The device limits a tile configuration is checked against. */
export interface TileLimits {
  maxComputeWorkgroupStorageSize: number;
  maxComputeInvocationsPerWorkgroup: number;
  maxComputeWorkgroupSizeX: number;
  /** Estimated 32-bit registers one invocation may use before spilling; default 128. */
  registerBudget?: number;
}

/** Everything the kernel generator and the validator derive from a config and a head dim. */
export interface TileGeometry {
  threads: number;
  rowGroups: number;
  /** TN: scores per row per invocation. */
  colsPerThread: number;
  /** TD: output columns per row per invocation. */
  dimsPerThread: number;
  /** Row pitch of the staged K tile, padded by one word so column reads hit distinct banks. */
  kPitch: number;
  /** bMax of the M-mask: the largest block side. */
  maskBlock: number;
  workgroupStorageBytes: number;
  registersPerThread: number;
}

export const DEFAULT_REGISTER_BUDGET = 128;

function isPositiveInt(x: number): boolean {
  return Number.isInteger(x) && x > 0;
}

/** Derive the geometry of a config (no device checks; see {@link checkTileConfig}). */
export function tileGeometry(tile: TileConfig, headDim: number): TileGeometry {
  const rowGroups = tile.blockQ / tile.rowsPerThread;
  const colsPerThread = tile.blockKV / tile.threadsPerRow;
  const dimsPerThread = Math.ceil(headDim / tile.threadsPerRow);
  const kPitch = headDim + 1;
  const words =
    tile.blockQ * headDim + // Q tile
    tile.kvStages * tile.blockKV * (kPitch + headDim) + // K and V spans
    tile.blockQ * tile.blockKV + // P tile
    tile.blockQ * tile.threadsPerRow; // row-reduction scratch
  // scores + accumulators + running max/sum/rescale per row + operands in flight + indexing
  const registers = tile.rowsPerThread * (colsPerThread + dimsPerThread + 3) + colsPerThread + dimsPerThread + 16;
  return {
    threads: rowGroups * tile.threadsPerRow,
    rowGroups,
    colsPerThread,
    dimsPerThread,
    kPitch,
    maskBlock: Math.max(tile.blockQ, tile.blockKV),
    workgroupStorageBytes: words * 4,
    registersPerThread: registers,
  };
}

/**
 * Throw a {@link TileConfigError} naming the first field that cannot work,
 * with the numbers, or return the geometry.
 */
export function checkTileConfig(tile: TileConfig, headDim: number, limits: TileLimits): TileGeometry {
  for (const key of ['blockQ', 'blockKV', 'rowsPerThread', 'threadsPerRow'] as const) {
    if (!isPositiveInt(tile[key])) throw new TileConfigError(`tile.${key}`, `must be a positive integer, got ${tile[key]}`, 'integers ≥ 1');
  }
  if (tile.kvStages !== 1 && tile.kvStages !== 2) throw new TileConfigError('tile.kvStages', `got ${tile.kvStages}`, '1 or 2');
  if (tile.blockQ % tile.rowsPerThread !== 0)
    throw new TileConfigError('tile.rowsPerThread', `${tile.rowsPerThread} does not divide blockQ = ${tile.blockQ}`, `divisors of ${tile.blockQ}`);
  if (tile.blockKV % tile.threadsPerRow !== 0)
    throw new TileConfigError('tile.threadsPerRow', `${tile.threadsPerRow} does not divide blockKV = ${tile.blockKV}`, `divisors of ${tile.blockKV}`);
  const g = tileGeometry(tile, headDim);
  const maxThreads = Math.min(limits.maxComputeInvocationsPerWorkgroup, limits.maxComputeWorkgroupSizeX);
  if (g.threads > maxThreads)
    throw new TileConfigError(
      'tile',
      `needs ${g.threads} invocations per workgroup ((blockQ / rowsPerThread) × threadsPerRow = ${g.rowGroups} × ${tile.threadsPerRow})`,
      `at most ${maxThreads} on this device`,
    );
  if (g.workgroupStorageBytes > limits.maxComputeWorkgroupStorageSize)
    throw new TileConfigError(
      'tile',
      `needs ${g.workgroupStorageBytes} bytes of workgroup storage at headDim ${headDim} (Q ${tile.blockQ}×${headDim}, ${tile.kvStages} K/V stage(s) of ${tile.blockKV} rows, P ${tile.blockQ}×${tile.blockKV})`,
      `at most ${limits.maxComputeWorkgroupStorageSize} bytes on this device`,
    );
  const budget = limits.registerBudget ?? DEFAULT_REGISTER_BUDGET;
  if (g.registersPerThread > budget)
    throw new TileConfigError(
      'tile',
      `needs an estimated ${g.registersPerThread} registers per invocation (rowsPerThread ${tile.rowsPerThread} × (${g.colsPerThread} scores + ${g.dimsPerThread} outputs + 3) + operands)`,
      `at most ${budget} (the register budget)`,
    );
  return g;
}

/**
 * Candidate configurations, best first on a GPU; the first that fits a device
 * is the default (the tuner of the fast-path work replaces this list per adapter).
 */
export const TILE_CANDIDATES: readonly TileConfig[] = [
  { blockQ: 64, blockKV: 32, rowsPerThread: 4, threadsPerRow: 16, kvStages: 2 },
  { blockQ: 32, blockKV: 32, rowsPerThread: 2, threadsPerRow: 16, kvStages: 2 },
  { blockQ: 32, blockKV: 16, rowsPerThread: 2, threadsPerRow: 16, kvStages: 2 },
  { blockQ: 32, blockKV: 32, rowsPerThread: 2, threadsPerRow: 16, kvStages: 1 },
  { blockQ: 32, blockKV: 16, rowsPerThread: 2, threadsPerRow: 16, kvStages: 1 },
  { blockQ: 16, blockKV: 16, rowsPerThread: 1, threadsPerRow: 16, kvStages: 1 },
  { blockQ: 16, blockKV: 8, rowsPerThread: 1, threadsPerRow: 8, kvStages: 1 },
  { blockQ: 8, blockKV: 8, rowsPerThread: 1, threadsPerRow: 8, kvStages: 1 },
];

/** The first candidate that fits; throws the last candidate's error when none does. */
export function chooseTileConfig(headDim: number, limits: TileLimits, candidates: readonly TileConfig[] = TILE_CANDIDATES): TileConfig {
  let lastError: unknown;
  for (const c of candidates) {
    try {
      checkTileConfig(c, headDim, limits);
      return c;
    } catch (e) {
      lastError = e;
    }
  }
  throw lastError;
}
