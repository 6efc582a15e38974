import { describe, expect, it } from 'vitest';
import { TileConfigError } from '../../src/errors.js';
import { checkMatrixTile, chooseMatrixTile, MATRIX_TILE_CANDIDATES, matrixTileStorageBytes } from '../../src/tiling/matrixTile.js';

const H100 = { maxComputeWorkgroupStorageSize: 49152, maxComputeInvocationsPerWorkgroup: 1024, maxComputeWorkgroupSizeX: 1024 };

describe('subgroup-matrix tiles', () => {
  it('counts the kernel\'s padded workgroup arrays', () => {
    // K, V: 32 × (128 + 8) f16; S: 64 × (32 + 4) f32; P: 64 × (32 + 8) f16; four flag words.
    expect(matrixTileStorageBytes({ blockQ: 64, blockKV: 32, subgroups: 4 }, 128)).toBe(2 * 32 * 136 * 2 + 64 * 36 * 4 + 64 * 40 * 2 + 16);
  });

  it('takes eight subgroups over 32-key spans on an H100 (four at head dim 256), down to one subgroup on small devices', () => {
    for (const d of [32, 64, 80, 96, 128]) expect(chooseMatrixTile(d, H100)).toEqual({ blockQ: 128, blockKV: 32, subgroups: 8 });
    expect(chooseMatrixTile(256, H100)).toEqual({ blockQ: 64, blockKV: 32, subgroups: 4 });
    const small = { ...H100, maxComputeWorkgroupStorageSize: 16384 };
    const t = chooseMatrixTile(128, small);
    expect(matrixTileStorageBytes(t, 128)).toBeLessThanOrEqual(16384);
    expect(MATRIX_TILE_CANDIDATES.findIndex(([s, kv]) => s === t.subgroups && kv === t.blockKV)).toBeGreaterThan(0);
  });

  it('rejects tiles the kernel cannot run, naming the field', () => {
    const bad: Array<[object, string]> = [
      [{ blockQ: 64, blockKV: 32, subgroups: 0 }, 'tile.subgroups'],
      [{ blockQ: 16 * 17, blockKV: 32, subgroups: 17 }, 'tile.subgroups'],
      [{ blockQ: 48, blockKV: 32, subgroups: 4 }, 'tile.blockQ'],
      [{ blockQ: 64, blockKV: 24, subgroups: 4 }, 'tile.blockKV'],
      [{ blockQ: 256, blockKV: 64, subgroups: 16 }, 'tile'],
    ];
    for (const [tile, field] of bad) {
      const e = (() => {
        try {
          checkMatrixTile(tile as never, 128, H100);
        } catch (err) {
          return err;
        }
      })();
      expect(e).toBeInstanceOf(TileConfigError);
      expect((e as TileConfigError).field).toBe(field);
    }
    expect(() => chooseMatrixTile(128, { ...H100, maxComputeWorkgroupStorageSize: 4096 })).toThrow(TileConfigError);
  });
});
