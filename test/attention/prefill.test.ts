// The fused kernel against the float64 CPU reference on randomized shapes:
// odd lengths, Sq ≠ Sk, causal or not, sliding windows, padding, GQA, both
// layouts per tensor, every supported head dim, and several two-level tile
// configurations. Runs real WGSL on dawn.node (SwiftShader in CI).
import { afterAll, describe, expect, it } from 'vitest';
import { SUPPORTED_HEAD_DIMS } from '../../src/attention/problem.js';
import { cpuAttention } from '../../src/reference/cpuAttention.js';
import type { TensorLayout } from '../../src/tiling/layout.js';
import { checkTileConfig, type TileConfig } from '../../src/tiling/tileConfig.js';
import { emptyBuffer, maxAbsDiff, randn, readback, rng, sharedRuntime, upload } from '../helpers/gpu.js';

/** Level-1 × level-2 shapes exercised: square and not, single and double buffered, odd sizes, threadsPerRow not dividing D. */
const TILES: Record<string, TileConfig> = {
  'q32 kv64 2x16 c8 double': { blockQ: 32, blockKV: 64, rowsPerThread: 2, threadsPerRow: 16, chunk: 8, kvStages: 2 },
  'q16 kv16 1x16 c16 single': { blockQ: 16, blockKV: 16, rowsPerThread: 1, threadsPerRow: 16, chunk: 16, kvStages: 1 },
  'q8 kv8 1x8 c4 single': { blockQ: 8, blockKV: 8, rowsPerThread: 1, threadsPerRow: 8, chunk: 4, kvStages: 1 },
  'q16 kv8 2x8 c8 double': { blockQ: 16, blockKV: 8, rowsPerThread: 2, threadsPerRow: 8, chunk: 8, kvStages: 2 },
  'q32 kv32 4x8 c16 single': { blockQ: 32, blockKV: 32, rowsPerThread: 4, threadsPerRow: 8, chunk: 16, kvStages: 1 },
  'q24 kv12 3x4 c4 double (odd)': { blockQ: 24, blockKV: 12, rowsPerThread: 3, threadsPerRow: 4, chunk: 4, kvStages: 2 },
  'q8 kv32 1x32 c8 single (C ∤ D/4)': { blockQ: 8, blockKV: 32, rowsPerThread: 1, threadsPerRow: 32, chunk: 8, kvStages: 1 },
};
const CASES = 210;
const TOL = 1e-4;

interface Case {
  seed: number;
  shapeQ: [number, number, number, number];
  shapeK: [number, number, number, number];
  layouts: { q: TensorLayout; k: TensorLayout; v: TensorLayout; o: TensorLayout };
  causal: boolean;
  window?: number;
  kvLengths?: number[];
  scale?: number;
  tileName: string;
}

function makeCase(seed: number, limits: Parameters<typeof checkTileConfig>[2]): Case {
  const r = rng(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)];
  const D = SUPPORTED_HEAD_DIMS[seed % SUPPORTED_HEAD_DIMS.length];
  const big = D >= 128;
  const B = 1 + Math.floor(r() * 2);
  const Hkv = 1 + Math.floor(r() * 2);
  const group = pick([1, 1, 2, 3]);
  const Sq = 1 + Math.floor(r() * (big ? 48 : 90));
  const Sk = r() < 0.3 ? Sq : Math.max(1, Sq + Math.floor(r() * (big ? 40 : 70)) - 10);
  const L = (): TensorLayout => (r() < 0.5 ? 'BHSD' : 'BSHD');
  const fitting = Object.keys(TILES).filter((name) => {
    try {
      checkTileConfig(TILES[name], D, limits);
      return true;
    } catch {
      return false;
    }
  });
  return {
    seed,
    shapeQ: [B, Hkv * group, Sq, D],
    shapeK: [B, Hkv, Sk, D],
    layouts: { q: L(), k: L(), v: L(), o: L() },
    causal: r() < 0.6,
    window: r() < 0.25 ? 1 + Math.floor(r() * 40) : undefined,
    kvLengths: r() < 0.25 ? Array.from({ length: B }, () => Math.floor(r() * (Sk + 1))) : undefined,
    scale: r() < 0.2 ? 0.05 + r() : undefined,
    tileName: fitting[seed % fitting.length],
  };
}

describe('FastAttention prefill matches the float64 reference', async () => {
  const rt = await sharedRuntime();
  const cases = Array.from({ length: CASES }, (_, i) => makeCase(1000 + i, rt.tileLimits));
  const worst = { err: 0, seed: -1 };
  const tilesUsed = new Set<string>();
  const dimsUsed = new Set<number>();

  it.each(cases.map((c) => [`seed ${c.seed}: q${c.shapeQ.join('x')} k${c.shapeK.join('x')} ${c.causal ? 'causal' : ''} ${c.window ? `w${c.window}` : ''} ${c.kvLengths ? 'varlen' : ''} [${c.tileName}]`, c]))(
    '%s',
    async (_name, c) => {
      const op = await rt.createPrefill({
        q: { shape: c.shapeQ, layout: c.layouts.q },
        k: { shape: c.shapeK, layout: c.layouts.k },
        v: { shape: c.shapeK, layout: c.layouts.v },
        o: { shape: c.shapeQ, layout: c.layouts.o },
        causal: c.causal,
        window: c.window,
        scale: c.scale,
        tile: TILES[c.tileName],
      });
      const p = op.problem;
      const r = rng(c.seed * 7 + 1);
      const q = randn(p.elements.q, r);
      const k = randn(p.elements.k, r);
      const v = randn(p.elements.v, r);
      const dev = rt.device;
      const bufs = { q: upload(dev, q), k: upload(dev, k), v: upload(dev, v), o: emptyBuffer(dev, p.elements.o * 4) };
      await op.run(bufs, { kvLengths: c.kvLengths });
      const out = await readback(dev, bufs.o);
      const ref = cpuAttention(p, q, k, v, c.kvLengths);
      const err = maxAbsDiff(out, ref, p.elements.o);
      for (const b of Object.values(bufs)) b.destroy();
      op.destroy();
      if (err > worst.err) Object.assign(worst, { err, seed: c.seed });
      tilesUsed.add(c.tileName);
      dimsUsed.add(c.shapeQ[3]);
      expect(err).toBeLessThanOrEqual(TOL);
    },
  );

  afterAll(() => {
    console.log(`prefill: ${CASES} cases, worst max abs error ${worst.err.toExponential(2)} (seed ${worst.seed}), tiles ${tilesUsed.size}, head dims ${[...dimsUsed].sort((a, b) => a - b).join(',')}`);
  });

  it('covered every head dim and at least 5 tile configurations', () => {
    expect(new Set(cases.map((c) => c.shapeQ[3]))).toEqual(new Set(SUPPORTED_HEAD_DIMS));
    expect(new Set(cases.map((c) => c.tileName)).size).toBeGreaterThanOrEqual(5);
  });
});
