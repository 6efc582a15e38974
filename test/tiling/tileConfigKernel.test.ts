// The tile candidates (where they fit this device) and level-2 shapes beyond
// them run through the fused kernel against the float64 reference: 8 rows per
// invocation (two row vectors), row counts that are not a multiple of 4 (partly
// filled row vectors), 16 invocations per row group with 16-deep slices, one or
// two stages. Tiles of more than 4 rows exceed the default register budget, so
// those shapes run on a runtime created with a larger one (as a caller tuning
// for a GPU with 255 registers per invocation would).
import { afterAll, describe, expect, it } from 'vitest';
import { createNodeRuntime } from '../../src/node.js';
import type { FastAttentionRuntime } from '../../src/runtime/runtime.js';
import { cpuAttention } from '../../src/reference/cpuAttention.js';
import type { TensorLayout } from '../../src/tiling/layout.js';
import { checkTileConfig, TILE_CANDIDATES, type TileConfig } from '../../src/tiling/tileConfig.js';
import { emptyBuffer, maxAbsDiff, randn, readback, rng, sharedRuntime, upload } from '../helpers/gpu.js';

const TOL = 1e-4;

const LEVEL2_SHAPES: TileConfig[] = [
  { blockQ: 64, blockKV: 64, rowsPerThread: 8, threadsPerRow: 16, chunk: 16, kvStages: 1 },
  { blockQ: 32, blockKV: 64, rowsPerThread: 8, threadsPerRow: 16, chunk: 16, kvStages: 2 },
  { blockQ: 64, blockKV: 32, rowsPerThread: 8, threadsPerRow: 16, chunk: 8, kvStages: 2 },
  { blockQ: 16, blockKV: 16, rowsPerThread: 8, threadsPerRow: 8, chunk: 4, kvStages: 2 },
  { blockQ: 30, blockKV: 20, rowsPerThread: 5, threadsPerRow: 4, chunk: 4, kvStages: 2 },
  { blockQ: 24, blockKV: 24, rowsPerThread: 6, threadsPerRow: 8, chunk: 8, kvStages: 1 },
];

interface Case {
  D: number;
  B: number;
  hkv: number;
  group: number;
  sq: number;
  sk: number;
  causal: boolean;
  window?: number;
  varlen: boolean;
  layout: TensorLayout;
}

// Small problems (SwiftShader is slow at barriers) that still cross several key
// blocks with a ragged tail; each tile gets one, rotating: plain, masked (causal,
// window, padding, GQA, BSHD), causal Sq = Sk, and window + padding + GQA.
const PROBLEMS: Case[] = [
  { D: 64, B: 1, hkv: 1, group: 1, sq: 19, sk: 83, causal: false, varlen: false, layout: 'BHSD' },
  { D: 128, B: 2, hkv: 1, group: 2, sq: 13, sk: 70, causal: true, window: 29, varlen: true, layout: 'BSHD' },
  { D: 80, B: 1, hkv: 1, group: 1, sq: 37, sk: 37, causal: true, varlen: false, layout: 'BHSD' },
  { D: 32, B: 1, hkv: 1, group: 3, sq: 11, sk: 90, causal: false, window: 17, varlen: true, layout: 'BSHD' },
];

function fits(tile: TileConfig, headDim: number, rt: FastAttentionRuntime): boolean {
  try {
    checkTileConfig(tile, headDim, rt.tileLimits);
    return true;
  } catch {
    return false;
  }
}

function tileName(t: TileConfig): string {
  return `q${t.blockQ} kv${t.blockKV} ${t.rowsPerThread}x${t.threadsPerRow} c${t.chunk} s${t.kvStages}`;
}

describe('tile candidates and their register-tile shapes match the float64 reference', async () => {
  const shared = await sharedRuntime();
  const wide = await createNodeRuntime({ registerBudget: 255 });
  afterAll(() => wide.destroy());
  // The leading candidates (4-row tiles); the 1- and 2-row fallbacks have the level-2 shapes of test/attention/prefill.test.ts.
  const leaders = TILE_CANDIDATES.filter((t) => t.rowsPerThread >= 4);
  const tiles: Array<[TileConfig, FastAttentionRuntime]> = [...LEVEL2_SHAPES.map((t) => [t, wide] as [TileConfig, FastAttentionRuntime]), ...leaders.map((t) => [t, shared] as [TileConfig, FastAttentionRuntime])];
  const runs: Array<[string, TileConfig, Case, FastAttentionRuntime]> = [];
  tiles.forEach(([tile, rt], ti) => {
    // The first problem (rotating) that fits this device at its head dim.
    for (let n = 0; n < PROBLEMS.length; n++) {
      const c = PROBLEMS[(ti + n) % PROBLEMS.length];
      if (!fits(tile, c.D, rt)) continue;
      runs.push([`${tileName(tile)} D${c.D} q${c.sq} k${c.sk}${c.causal ? ' causal' : ''}${c.window ? ` w${c.window}` : ''}${c.varlen ? ' varlen' : ''}`, tile, c, rt]);
      break;
    }
  });

  it('runs at least one problem for every level-2 shape', () => {
    for (const t of LEVEL2_SHAPES) expect(runs.some(([, tile]) => tile === t)).toBe(true);
  });

  it('runs every leading candidate that fits this device at some head dim', () => {
    const fitting = leaders.filter((t) => PROBLEMS.some((c) => fits(t, c.D, shared)));
    expect(fitting.length).toBeGreaterThanOrEqual(3);
    for (const t of fitting) expect(runs.some(([, tile]) => tile === t)).toBe(true);
  });

  it.each(runs)('%s', async (_name, tile, c, rt) => {
    const shapeQ: [number, number, number, number] = [c.B, c.hkv * c.group, c.sq, c.D];
    const shapeK: [number, number, number, number] = [c.B, c.hkv, c.sk, c.D];
    const op = await rt.createPrefill({
      q: { shape: shapeQ, layout: c.layout },
      k: { shape: shapeK, layout: c.layout },
      v: { shape: shapeK },
      o: { shape: shapeQ, layout: c.layout },
      causal: c.causal,
      window: c.window,
      tier: 'f32',
      tile,
    });
    const p = op.problem;
    const r = rng(c.D * 1000 + c.sq + tile.blockQ * 7 + tile.rowsPerThread);
    const q = randn(p.elements.q, r);
    const k = randn(p.elements.k, r);
    const v = randn(p.elements.v, r);
    const kvLengths = c.varlen ? Array.from({ length: c.B }, (_, b) => Math.max(0, c.sk - 11 - 23 * b)) : undefined;
    const dev = rt.device;
    const bufs = { q: upload(dev, q), k: upload(dev, k), v: upload(dev, v), o: emptyBuffer(dev, p.elements.o * 4) };
    await op.run(bufs, { kvLengths });
    const out = await readback(dev, bufs.o);
    const ref = cpuAttention(p, q, k, v, kvLengths);
    const err = maxAbsDiff(out, ref, p.elements.o);
    for (const b of Object.values(bufs)) b.destroy();
    op.destroy();
    expect(err).toBeLessThanOrEqual(TOL);
  });
});
