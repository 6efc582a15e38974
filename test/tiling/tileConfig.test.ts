import { describe, expect, it } from 'vitest';
import { TileConfigError } from '../../src/errors.js';
import { checkTileConfig, chooseTileConfig, TILE_CANDIDATES, tileGeometry, vectorKernelCounts, type TileLimits } from '../../src/tiling/tileConfig.js';

const swiftshader: TileLimits = { maxComputeWorkgroupStorageSize: 32768, maxComputeInvocationsPerWorkgroup: 256, maxComputeWorkgroupSizeX: 256 };
const h100: TileLimits = { maxComputeWorkgroupStorageSize: 49152, maxComputeInvocationsPerWorkgroup: 1024, maxComputeWorkgroupSizeX: 1024 };
const browserDefault: TileLimits = { maxComputeWorkgroupStorageSize: 16384, maxComputeInvocationsPerWorkgroup: 256, maxComputeWorkgroupSizeX: 256 };

describe('tile configurations', () => {
  it('derives level-2 geometry', () => {
    const g = tileGeometry({ blockQ: 32, blockKV: 16, rowsPerThread: 2, threadsPerRow: 16, chunk: 8, kvStages: 2 }, 80);
    expect(g.threads).toBe(256);
    expect(g.colsPerThread).toBe(1);
    expect(g.dims4PerThread).toBe(2); // 20 vec4 columns over 16 invocations
    // 2 stages · max((Q 32 + K 16 rows) · (2 + 1) vec4, V 8 keys · 20 vec4) vec4 of 16 bytes, then P (16 keys) and
    // the row scratch (16 lanes), each one row vector per row group (2 rows round up to one vec4) plus one of padding.
    expect(g.workgroupStorageBytes).toBe(2 * Math.max(48 * 3, 8 * 20) * 16 + (16 + 16) * (16 + 1) * 16);
  });

  it('rejects configs that overflow workgroup storage, with the numbers', () => {
    const tile = { blockQ: 64, blockKV: 64, rowsPerThread: 4, threadsPerRow: 16, chunk: 16, kvStages: 2 as const };
    expect(() => checkTileConfig(tile, 128, swiftshader)).toThrow(TileConfigError);
    expect(() => checkTileConfig(tile, 128, swiftshader)).toThrow(/bytes of workgroup storage.*at most 32768/);
  });

  it('rejects too many invocations', () => {
    const tile = { blockQ: 64, blockKV: 32, rowsPerThread: 1, threadsPerRow: 32, chunk: 8, kvStages: 1 as const };
    expect(() => checkTileConfig(tile, 32, h100)).toThrow(/2048 invocations/);
  });

  it('rejects register tiles over the budget', () => {
    const tile = { blockQ: 32, blockKV: 64, rowsPerThread: 16, threadsPerRow: 2, chunk: 8, kvStages: 1 as const };
    expect(() => checkTileConfig(tile, 32, { ...h100, maxComputeWorkgroupStorageSize: 1 << 20 })).toThrow(/registers/);
  });

  it('rejects malformed fields by name', () => {
    const base = { blockQ: 32, blockKV: 32, rowsPerThread: 2, threadsPerRow: 16, chunk: 8, kvStages: 1 as const };
    expect(() => checkTileConfig({ ...base, blockQ: 0 }, 64, h100)).toThrow(/tile.blockQ/);
    expect(() => checkTileConfig({ ...base, rowsPerThread: 3 }, 64, h100)).toThrow(/tile.rowsPerThread/);
    expect(() => checkTileConfig({ ...base, threadsPerRow: 5 }, 64, h100)).toThrow(/tile.threadsPerRow/);
    expect(() => checkTileConfig({ ...base, kvStages: 3 as unknown as 1 }, 64, h100)).toThrow(/tile.kvStages/);
    expect(() => checkTileConfig({ ...base, chunk: 6 }, 64, h100)).toThrow(/tile.chunk/);
    expect(() => checkTileConfig({ ...base, chunk: 64 }, 32, h100)).toThrow(/tile.chunk/);
  });

  it('finds a default for every head dim on SwiftShader and an H100', () => {
    for (const limits of [swiftshader, h100])
      for (const d of [32, 64, 80, 96, 128, 256]) {
        const tile = chooseTileConfig(d, limits);
        expect(() => checkTileConfig(tile, d, limits)).not.toThrow();
      }
  });

  it('counts the vector kernel\'s unrolled loops as its consts do', () => {
    // 64×64, 4×16, 16-deep: 256 invocations stage (64 + 64) · 4 vec4 of Q/K (2 each) and 16 · 32 vec4 of V (2 each) at D = 128.
    expect(vectorKernelCounts({ blockQ: 64, blockKV: 64, rowsPerThread: 4, threadsPerRow: 16, chunk: 16, kvStages: 1 }, 128)).toEqual({
      ROWS_PER_THREAD: 4,
      COLS_PER_THREAD: 4,
      DIMS4_PER_THREAD: 2,
      ROW4: 1,
      QK_LOADS: 2,
      V_LOADS: 2,
      CHUNK4: 4,
      CHUNK: 16,
    });
    // Ragged rounds: 20 vec4 columns over 16 lanes; (32 + 16) · 2 = 96 Q/K vec4 and 8 · 20 = 160 V vec4 over 256 invocations.
    expect(vectorKernelCounts({ blockQ: 32, blockKV: 16, rowsPerThread: 2, threadsPerRow: 16, chunk: 8, kvStages: 2 }, 80)).toEqual({
      ROWS_PER_THREAD: 2,
      COLS_PER_THREAD: 1,
      DIMS4_PER_THREAD: 2,
      ROW4: 1,
      QK_LOADS: 1,
      V_LOADS: 1,
      CHUNK4: 2,
      CHUNK: 8,
    });
    // 5 rows: two row vectors, the second with one row; 6 row groups × 4 lanes = 24 invocations.
    expect(vectorKernelCounts({ blockQ: 30, blockKV: 20, rowsPerThread: 5, threadsPerRow: 4, chunk: 4, kvStages: 2 }, 32)).toEqual({
      ROWS_PER_THREAD: 5,
      COLS_PER_THREAD: 5,
      DIMS4_PER_THREAD: 2,
      ROW4: 2,
      QK_LOADS: 3,
      V_LOADS: 2,
      CHUNK4: 1,
      CHUNK: 4,
    });
    for (const tile of TILE_CANDIDATES)
      for (const d of [32, 64, 80, 128, 256]) {
        const c = vectorKernelCounts(tile, d);
        const g = tileGeometry(tile, d);
        expect([c.COLS_PER_THREAD, c.DIMS4_PER_THREAD]).toEqual([g.colsPerThread, g.dims4PerThread]);
        expect(c.QK_LOADS * g.threads).toBeGreaterThanOrEqual((tile.blockQ + tile.blockKV) * (tile.chunk / 4));
        expect((c.QK_LOADS - 1) * g.threads).toBeLessThan((tile.blockQ + tile.blockKV) * (tile.chunk / 4));
        expect(c.V_LOADS * g.threads).toBeGreaterThanOrEqual((tile.chunk * d) / 4);
        expect((c.V_LOADS - 1) * g.threads).toBeLessThan((tile.chunk * d) / 4);
      }
  });

  it('fits every head dim in the 16 KiB of a default browser device', () => {
    for (const d of [32, 64, 80, 96, 128, 256]) expect(() => chooseTileConfig(d, browserDefault)).not.toThrow();
  });
});
