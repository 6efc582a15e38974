/**
 * Two-level tile configurations of the fused kernel and their fit on a device.
 *
 * Level 1 (workgroup): a workgroup owns `blockQ` query rows and walks its key
 * blocks one K/V span of `blockKV` keys per outer step.
 * Level 2 (invocation): the workgroup is (blockQ / rowsPerThread) row groups of
 * `threadsPerRow` invocations; each invocation owns a register tile of
 * rowsPerThread × (blockKV / threadsPerRow) scores and
 * rowsPerThread × 4·ceil(headDim / 4 / threadsPerRow) output accumulators. The
 * span reaches the registers through workgroup memory in `chunk`-deep slices
 * (head dims of Q and K, keys of V), double-buffered when `kvStages` = 2.
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
  /** Depth of the slices staged through workgroup memory: head dims of Q/K, keys of V (a multiple of 4). */
  chunk: number;
  /** 2 = double-buffered slices (load the next while computing on this one), 1 = single buffer. */
  kvStages: 1 | 2;
}

/** The device limits a tile configuration is checked against. */
export interface TileLimits {
  maxComputeWorkgroupStorageSize: number;
  maxComputeInvocationsPerWorkgroup: number;
  maxComputeWorkgroupSizeX: number;
  /** Estimated 32-bit registers one invocation may use before spilling; default {@link DEFAULT_REGISTER_BUDGET}. */
  registerBudget?: number;
}

/** Everything the kernel generator and the validator derive from a config and a head dim. */
export interface TileGeometry {
  threads: number;
  rowGroups: number;
  /** TN: scores per row per invocation. */
  colsPerThread: number;
  /** Output vec4 columns per row per invocation. */
  dims4PerThread: number;
  /** bMax of the M-mask: the largest block side. */
  maskBlock: number;
  workgroupStorageBytes: number;
  registersPerThread: number;
}

export const DEFAULT_REGISTER_BUDGET = 128;

function isPositiveInt(x: number): boolean {
  return Number.isInteger(x) && x > 0;
}

/**
 * Derive the geometry of a config (no device checks; see {@link checkTileConfig}).
 * `sliceBytes` is the element size staged in workgroup memory (2 on the f16 tier).
 * Mirrors the workgroup arrays of shaders/flashAttentionPrefill.wgsl.
 */
export function tileGeometry(tile: TileConfig, headDim: number, sliceBytes = 4): TileGeometry {
  const rowGroups = tile.blockQ / tile.rowsPerThread;
  const threads = rowGroups * tile.threadsPerRow;
  const colsPerThread = tile.blockKV / tile.threadsPerRow;
  const dims4PerThread = Math.ceil(headDim / 4 / tile.threadsPerRow);
  const chunk4 = tile.chunk / 4;
  // One buffer per stage holds a Q·Kᵀ slice (Q and K rows of chunk4 + 1 vec4) or a P·V slice (chunk keys of V).
  const stageVec4 = Math.max((tile.blockQ + tile.blockKV) * (chunk4 + 1), tile.chunk * (headDim / 4));
  // Row vectors: an invocation's rows 4 at a time, one padded pitch per key (P) and per lane (row scratch).
  const rowVectorPitch = rowGroups * Math.ceil(tile.rowsPerThread / 4) + 1;
  const bytes = tile.kvStages * stageVec4 * 4 * sliceBytes + (tile.blockKV + tile.threadsPerRow) * rowVectorPitch * 16;
  const qkLoads = Math.ceil(((tile.blockQ + tile.blockKV) * chunk4) / threads);
  const vLoads = Math.ceil((tile.chunk * headDim) / 4 / threads);
  // scores + accumulators + running max/sum per row; the prefetched slice (the Q·Kᵀ and
  // P·V ones are not live together); the larger operand set (K vec4s and a Q vec4, or P row
  // vectors and a V vec4); indexing.
  const registers =
    tile.rowsPerThread * (colsPerThread + 4 * dims4PerThread + 2) +
    4 * Math.max(qkLoads, vLoads) +
    Math.max(4 * colsPerThread + 4, 4 * Math.ceil(tile.rowsPerThread / 4) + 4) +
    dims4PerThread +
    16;
  return {
    threads,
    rowGroups,
    colsPerThread,
    dims4PerThread,
    maskBlock: Math.max(tile.blockQ, tile.blockKV),
    workgroupStorageBytes: bytes,
    registersPerThread: registers,
  };
}

/** Trip counts of the vector kernel's unrolled loops; the names are the WGSL consts they equal (a type, not an interface, so it is an `UnrollCounts`). */
export type VectorKernelCounts = {
  ROWS_PER_THREAD: number;
  COLS_PER_THREAD: number;
  DIMS4_PER_THREAD: number;
  /** Row vectors (4 rows each) per invocation. */
  ROW4: number;
  /** vec4 loads per invocation to stage one Q·Kᵀ slice, and one V slice. */
  QK_LOADS: number;
  V_LOADS: number;
  /** vec4 steps of head dims in one Q·Kᵀ slice, and keys in one P·V slice. */
  CHUNK4: number;
  CHUNK: number;
};

/**
 * The counts that shaders/flashAttentionPrefill.wgsl derives from its consts
 * (HEAD_DIM, BLOCK_Q, BLOCK_KV, ROWS_PER_THREAD, THREADS_PER_ROW, CHUNK), with
 * its u32 arithmetic; passed to the pipeline cache next to the consts, which
 * unrolls the kernel's `//#for` loops with them.
 */
export function vectorKernelCounts(tile: TileConfig, headDim: number): VectorKernelCounts {
  const div = (a: number, b: number) => Math.floor(a / b);
  const threads = div(tile.blockQ, tile.rowsPerThread) * tile.threadsPerRow;
  const d4 = div(headDim, 4);
  const chunk4 = div(tile.chunk, 4);
  return {
    ROWS_PER_THREAD: tile.rowsPerThread,
    COLS_PER_THREAD: div(tile.blockKV, tile.threadsPerRow),
    DIMS4_PER_THREAD: div(d4 + tile.threadsPerRow - 1, tile.threadsPerRow),
    ROW4: div(tile.rowsPerThread + 3, 4),
    QK_LOADS: div((tile.blockQ + tile.blockKV) * chunk4 + threads - 1, threads),
    V_LOADS: div(tile.chunk * d4 + threads - 1, threads),
    CHUNK4: chunk4,
    CHUNK: tile.chunk,
  };
}

/**
 * Throw a {@link TileConfigError} naming the first field that cannot work,
 * with the numbers, or return the geometry.
 */
export function checkTileConfig(tile: TileConfig, headDim: number, limits: TileLimits, sliceBytes = 4): TileGeometry {
  for (const key of ['blockQ', 'blockKV', 'rowsPerThread', 'threadsPerRow', 'chunk'] as const) {
    if (!isPositiveInt(tile[key])) throw new TileConfigError(`tile.${key}`, `must be a positive integer, got ${tile[key]}`, 'integers ≥ 1');
  }
  if (tile.kvStages !== 1 && tile.kvStages !== 2) throw new TileConfigError('tile.kvStages', `got ${tile.kvStages}`, '1 or 2');
  if (tile.blockQ % tile.rowsPerThread !== 0)
    throw new TileConfigError('tile.rowsPerThread', `${tile.rowsPerThread} does not divide blockQ = ${tile.blockQ}`, `divisors of ${tile.blockQ}`);
  if (tile.blockKV % tile.threadsPerRow !== 0)
    throw new TileConfigError('tile.threadsPerRow', `${tile.threadsPerRow} does not divide blockKV = ${tile.blockKV}`, `divisors of ${tile.blockKV}`);
  if (tile.chunk % 4 !== 0 || headDim % tile.chunk !== 0 || tile.blockKV % tile.chunk !== 0)
    throw new TileConfigError('tile.chunk', `${tile.chunk} must be a multiple of 4 dividing headDim ${headDim} and blockKV ${tile.blockKV}`, 'multiples of 4 dividing both');
  const g = tileGeometry(tile, headDim, sliceBytes);
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
      `needs ${g.workgroupStorageBytes} bytes of workgroup storage at headDim ${headDim} (${tile.kvStages} stage(s) of ${tile.chunk}-deep Q/K/V slices, P ${tile.blockQ}×${tile.blockKV})`,
      `at most ${limits.maxComputeWorkgroupStorageSize} bytes on this device`,
    );
  const budget = limits.registerBudget ?? DEFAULT_REGISTER_BUDGET;
  if (g.registersPerThread > budget)
    throw new TileConfigError(
      'tile',
      `needs an estimated ${g.registersPerThread} registers per invocation (rowsPerThread ${tile.rowsPerThread} × (${g.colsPerThread} scores + ${4 * g.dims4PerThread} outputs + 2) + staging and operands)`,
      `at most ${budget} (the register budget)`,
    );
  return g;
}

/**
 * Candidate configurations, best first on a GPU; the first that fits a device
 * is the default, and the tuner (src/tuning/) times all of them per adapter.
 * The first four (without the third) are in the order of the H100 sweep at
 * S = 4096, D = 128 (bench/results/bench-f32-h100-sweep1-*): 64×64 blocks of 4×4
 * score tiles over 16-deep slices lead. The third, one 32-deep stage, measured
 * level with them once the steps within a slice were unrolled; the tuner picks. Tiles of 8 rows per invocation measured slower there and
 * exceed the default register budget, so they are not candidates; the smaller
 * tiles are fallbacks for devices with less workgroup storage.
 */
export const TILE_CANDIDATES: readonly TileConfig[] = [
  { blockQ: 64, blockKV: 64, rowsPerThread: 4, threadsPerRow: 16, chunk: 16, kvStages: 1 },
  { blockQ: 64, blockKV: 64, rowsPerThread: 4, threadsPerRow: 16, chunk: 16, kvStages: 2 },
  { blockQ: 64, blockKV: 64, rowsPerThread: 4, threadsPerRow: 16, chunk: 32, kvStages: 1 },
  { blockQ: 64, blockKV: 64, rowsPerThread: 4, threadsPerRow: 16, chunk: 8, kvStages: 2 },
  { blockQ: 32, blockKV: 64, rowsPerThread: 4, threadsPerRow: 16, chunk: 16, kvStages: 2 },
  { blockQ: 64, blockKV: 64, rowsPerThread: 4, threadsPerRow: 16, chunk: 8, kvStages: 1 },
  { blockQ: 32, blockKV: 64, rowsPerThread: 2, threadsPerRow: 16, chunk: 8, kvStages: 2 },
  { blockQ: 32, blockKV: 64, rowsPerThread: 2, threadsPerRow: 16, chunk: 8, kvStages: 1 },
  { blockQ: 32, blockKV: 32, rowsPerThread: 2, threadsPerRow: 16, chunk: 8, kvStages: 2 },
  { blockQ: 16, blockKV: 32, rowsPerThread: 1, threadsPerRow: 16, chunk: 8, kvStages: 1 },
  { blockQ: 16, blockKV: 16, rowsPerThread: 1, threadsPerRow: 16, chunk: 8, kvStages: 1 },
  { blockQ: 8, blockKV: 16, rowsPerThread: 1, threadsPerRow: 8, chunk: 4, kvStages: 1 },
];

/** The first candidate that fits; throws the last candidate's error when none does. */
export function chooseTileConfig(headDim: number, limits: TileLimits, candidates: readonly TileConfig[] = TILE_CANDIDATES, sliceBytes = 4): TileConfig {
  let lastError: unknown;
  for (const c of candidates) {
    try {
      checkTileConfig(c, headDim, limits, sliceBytes);
      return c;
    } catch (e) {
      lastError = e;
    }
  }
  throw lastError;
}
