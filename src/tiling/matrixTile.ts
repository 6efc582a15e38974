/**
 * Tiles of the subgroup-matrix tier: one subgroup of 32 invocations per 16
 * query rows, K/V spans of `blockKV` keys, 16×16×16 matrix steps inside.
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

/** Workgroup bytes: Q (f16) and O (f32) of 16 × D, S (f32) and P (f16) of 16 × blockKV, K and V (f16) of blockKV × D. */
export function matrixTileStorageBytes(t: MatrixTileConfig, headDim: number): number {
  return t.subgroups * 16 * (headDim * 6 + t.blockKV * 6) + t.blockKV * headDim * 4;
}

export function checkMatrixTile(t: MatrixTileConfig, headDim: number, limits: TileLimits): void {
  if (t.subgroups !== 1) throw new TileConfigError('tile.subgroups', `got ${t.subgroups}`, '1 (matrix offsets must be workgroup-uniform)');
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
 * One subgroup per workgroup (the matrix builtins need workgroup-uniform
 * offsets), with the longest K/V span (64, 32 or 16 keys) that fits.
 */
export function chooseMatrixTile(headDim: number, limits: TileLimits): MatrixTileConfig {
  let last: unknown;
  for (const blockKV of [64, 32, 16]) {
    const t = { blockQ: 16, blockKV, subgroups: 1 };
    try {
      checkMatrixTile(t, headDim, limits);
      return t;
    } catch (e) {
      last = e;
    }
  }
  throw last;
}
