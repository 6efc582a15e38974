/**
 * Tiles of the subgroup-matrix tier: `subgroups` subgroups of 32 invocations
 * per workgroup, each owning 16 query rows and sharing one staged K/V span of
 * `blockKV` keys; 16×16×16 matrix steps inside.
 */
import { TileConfigError } from '../errors.js';
import type { TileLimits } from './tileConfig.js';

export interface MatrixTileConfig {
  /** Query rows per workgroup: 16 per subgroup. */
  blockQ: number;
  /** Keys per outer step (a multiple of 16). */
  blockKV: number;
  /** Subgroups per workgroup. */
  subgroups: number;
}

export const MATRIX_SUBGROUP_SIZE = 32;

/** Most subgroups per workgroup the kernel is written for (query rows = 16 × subgroups ≤ 256). */
export const MAX_MATRIX_SUBGROUPS = 16;

/**
 * Workgroup bytes, with the kernel's padded pitches: K and V (f16) of
 * blockKV × (D + 8), S (f32) of blockQ × (blockKV + 4), P (f16) of
 * blockQ × (blockKV + 8), and four flag words. Q and O live in registers.
 */
export function matrixTileStorageBytes(t: MatrixTileConfig, headDim: number): number {
  return 2 * t.blockKV * (headDim + 8) * 2 + t.blockQ * (t.blockKV + 4) * 4 + t.blockQ * (t.blockKV + 8) * 2 + 16;
}

export function checkMatrixTile(t: MatrixTileConfig, headDim: number, limits: TileLimits): void {
  if (!Number.isInteger(t.subgroups) || t.subgroups < 1 || t.subgroups > MAX_MATRIX_SUBGROUPS)
    throw new TileConfigError('tile.subgroups', `got ${t.subgroups}`, `integers 1..${MAX_MATRIX_SUBGROUPS}`);
  if (t.blockQ !== 16 * t.subgroups) throw new TileConfigError('tile.blockQ', `${t.blockQ} ≠ 16 × subgroups (${t.subgroups})`, `${16 * t.subgroups}`);
  if (!Number.isInteger(t.blockKV) || t.blockKV <= 0 || t.blockKV % 16 !== 0)
    throw new TileConfigError('tile.blockKV', `got ${t.blockKV}`, 'positive multiples of 16');
  if (headDim % 32 !== 0 && headDim % 16 !== 0) throw new TileConfigError('tile', `head dim ${headDim} is not a multiple of 16`, 'multiples of 16');
  const threads = t.subgroups * MATRIX_SUBGROUP_SIZE;
  const maxThreads = Math.min(limits.maxComputeInvocationsPerWorkgroup, limits.maxComputeWorkgroupSizeX);
  if (threads > maxThreads) throw new TileConfigError('tile.subgroups', `needs ${threads} invocations`, `at most ${maxThreads}`);
  const bytes = matrixTileStorageBytes(t, headDim);
  if (bytes > limits.maxComputeWorkgroupStorageSize)
    throw new TileConfigError('tile', `needs ${bytes} bytes of workgroup storage at headDim ${headDim}`, `at most ${limits.maxComputeWorkgroupStorageSize} bytes on this device`);
}

/**
 * Trip counts of the kernel's unrolled loops: 16-column tiles of the head dim
 * (D16) and of a span (KV16), a span's columns per invocation in the softmax
 * (HALF_KV: two invocations per row), the 16-byte K/V words each
 * invocation stages per span (WORDS_PER_THREAD), and the rounds in which Q is
 * staged through the K tile (Q_ROUNDS of min(blockQ, blockKV) rows) with the
 * words each invocation loads per round (Q_WORDS).
 */
export function matrixKernelCounts(t: MatrixTileConfig, headDim: number): { D16: number; KV16: number; HALF_KV: number; WORDS_PER_THREAD: number; Q_ROUNDS: number; Q_WORDS: number } {
  const threads = t.subgroups * MATRIX_SUBGROUP_SIZE;
  const qRound = Math.min(t.blockQ, t.blockKV);
  return {
    D16: headDim / 16,
    KV16: t.blockKV / 16,
    HALF_KV: t.blockKV / 2,
    WORDS_PER_THREAD: Math.ceil((t.blockKV * headDim) / 8 / threads),
    Q_ROUNDS: Math.ceil(t.blockQ / qRound),
    Q_WORDS: Math.ceil((qRound * headDim) / 8 / threads),
  };
}

/** Untuned candidates, best first (more subgroups share a staged K/V span; longer spans mean fewer barriers per key). */
export const MATRIX_TILE_CANDIDATES: readonly (readonly [subgroups: number, blockKV: number])[] = [
  [8, 32],
  [4, 32],
  [2, 64],
  [2, 32],
  [1, 32],
  [1, 16],
];

/** The first candidate that fits this device at this head dim. */
export function chooseMatrixTile(headDim: number, limits: TileLimits): MatrixTileConfig {
  let last: unknown;
  for (const [subgroups, blockKV] of MATRIX_TILE_CANDIDATES) {
    const t = { blockQ: 16 * subgroups, blockKV, subgroups };
    try {
      checkMatrixTile(t, headDim, limits);
      return t;
    } catch (e) {
      last = e;
    }
  }
  throw last;
}
