// The WebAssembly SIMD decode kernel, run by real worker threads over the shared
// host cache, against the float64 reference: GQA, f32 and f16 storage, splits of
// long contexts, partial batches, windows, ragged lengths.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { normalizeProblem } from '../../src/attention/problem.js';
import { cpuAttention } from '../../src/reference/cpuAttention.js';
import { fromHalf, toHalf } from '../../src/offload/f16.js';
import { CpuAttentionPool } from '../../src/offload/cpuAttention.js';
import { HostKvCache, type HostKvCacheOptions } from '../../src/offload/hostKvCache.js';
import { nodeWorkerSpawner } from '../../src/offload/node.js';
import { maxAbsDiff, randn, rng } from '../helpers/gpu.js';
import { offloadModule } from './helpers.js';

let module: WebAssembly.Module;
const pools: CpuAttentionPool[] = [];
beforeAll(async () => {
  module = await offloadModule();
});
afterAll(async () => {
  for (const p of pools) await p.destroy();
});

async function setup(o: HostKvCacheOptions): Promise<{ cache: HostKvCache; pool: CpuAttentionPool }> {
  const cache = HostKvCache.create(o);
  const pool = await CpuAttentionPool.create(cache, { module, spawn: nodeWorkerSpawner });
  pools.push(pool);
  return { cache, pool };
}

/** Reference over what the cache holds (read back as f32, so f16 rounding is in both sides). */
function reference(cache: HostKvCache, layer: number, q: Float32Array, b: number, window?: number): Float64Array {
  const o = cache.options;
  const S = cache.lengths[layer][b];
  const k = new Float32Array(o.kvHeads * S * o.headDim);
  const v = new Float32Array(o.kvHeads * S * o.headDim);
  for (let h = 0; h < o.kvHeads; h++) {
    k.set(cache.read(layer, 'k', b, h), h * S * o.headDim);
    v.set(cache.read(layer, 'v', b, h), h * S * o.headDim);
  }
  const p = normalizeProblem({ q: { shape: [1, o.heads, 1, o.headDim] }, k: { shape: [1, o.kvHeads, S, o.headDim] }, v: { shape: [1, o.kvHeads, S, o.headDim] }, causal: true, window });
  return cpuAttention(p, q.subarray(b * o.heads * o.headDim, (b + 1) * o.heads * o.headDim), k, v);
}

describe('f16 conversion', () => {
  it('round-trips representable values and rounds to nearest even', () => {
    for (const x of [0, -0, 1, -2.5, 65504, 6.103515625e-5, 5.960464477539063e-8, 0.1]) expect(Math.abs(fromHalf(toHalf(x)) - x)).toBeLessThanOrEqual(Math.abs(x) * 2 ** -11);
    expect(toHalf(1 + 2 ** -11)).toBe(0x3c00); // tie → even
    expect(toHalf(1e6)).toBe(0x7c00);
    expect(Number.isNaN(fromHalf(toHalf(NaN)))).toBe(true);
  });
});

describe('CPU decode attention (WASM SIMD, worker threads)', () => {
  for (const dtype of ['f32', 'f16'] as const) {
    it(`${dtype}: GQA 8 query heads over 2 KV heads, D 64, 2 sequences of different lengths, split key ranges`, async () => {
      const { cache, pool } = await setup({ layers: 2, batch: 2, heads: 8, kvHeads: 2, headDim: 64, capacity: 1400, dtype, threads: 2 });
      const r = rng(dtype === 'f32' ? 1 : 2);
      const S = [1300, 517];
      for (let layer = 0; layer < 2; layer++) {
        // prefill both sequences to the longer length in BSHD, then trim by re-writing the second
        const k = randn(2 * S[0] * 2 * 64, r);
        const v = randn(2 * S[0] * 2 * 64, r);
        cache.writeTokens(layer, k, v, S[0], 'BSHD');
        cache.lengths[layer][1] = S[1];
      }
      // the new token: append its K/V, then attend
      cache.append(1, randn(2 * 2 * 64, r), randn(2 * 2 * 64, r));
      const q = randn(2 * 8 * 64, r);
      const out = new Float32Array(q.length);
      await pool.attend(1, q, out);
      const tol = dtype === 'f32' ? 1e-4 : 2e-3;
      for (let b = 0; b < 2; b++) {
        const ref = reference(cache, 1, q, b);
        expect(maxAbsDiff(out.subarray(b * 8 * 64, (b + 1) * 8 * 64), ref)).toBeLessThan(tol);
      }
      expect(cache.lengths[1][0]).toBe(1301);
      expect(cache.lengths[1][1]).toBe(518);
    });
  }

  it('MHA D 128, one sequence, a batch range and a sliding window, large scores', async () => {
    const { cache, pool } = await setup({ layers: 1, batch: 3, heads: 4, kvHeads: 4, headDim: 128, capacity: 900, dtype: 'f32', threads: 2 });
    const r = rng(7);
    const k = randn(3 * 4 * 900 * 128, r).map((x) => 4 * x);
    const v = randn(3 * 4 * 900 * 128, r);
    cache.writeTokens(0, k, v, 900, 'BHSD');
    const q = randn(3 * 4 * 128, r);
    const out = new Float32Array(q.length).fill(123);
    await pool.attend(0, q, out, { batchStart: 1, batchCount: 1, window: 333 });
    expect(out[0]).toBe(123); // sequence 0 untouched
    expect(out[2 * 4 * 128]).toBe(123); // sequence 2 untouched
    const ref = reference(cache, 0, q, 1, 333);
    expect(maxAbsDiff(out.subarray(4 * 128, 8 * 128), ref)).toBeLessThan(1e-4);
  });

  it('an empty sequence gives zeros; bad calls are typed errors before any work', async () => {
    const { cache, pool } = await setup({ layers: 1, batch: 1, heads: 2, kvHeads: 1, headDim: 32, capacity: 16, dtype: 'f16', threads: 1 });
    const out = new Float32Array(64).fill(5);
    await pool.attend(0, new Float32Array(64).fill(1), out);
    expect(Array.from(out).every((x) => x === 0)).toBe(true);
    expect(() => pool.attend(1, new Float32Array(64), out)).toThrow(expect.objectContaining({ field: 'layer' }));
    expect(() => pool.attend(0, new Float32Array(8), out)).toThrow(expect.objectContaining({ field: 'q' }));
    expect(() => pool.attend(0, new Float32Array(64), out, { batchStart: 1 })).toThrow(expect.objectContaining({ field: 'batchStart' }));
    expect(() => HostKvCache.create({ layers: 1, batch: 1, heads: 2, kvHeads: 1, headDim: 36, capacity: 16, dtype: 'f32', threads: 1 })).toThrow(expect.objectContaining({ field: 'headDim' }));
    expect(() => HostKvCache.create({ layers: 1, batch: 1, heads: 3, kvHeads: 2, headDim: 32, capacity: 16, dtype: 'f32', threads: 1 })).toThrow(expect.objectContaining({ field: 'heads' }));
    expect(() => HostKvCache.create({ layers: 1, batch: 1, heads: 2, kvHeads: 1, headDim: 32, capacity: 16, dtype: 'bf16' as never, threads: 1 })).toThrow(expect.objectContaining({ field: 'dtype' }));
    expect(() => cache.append(0, new Float32Array(32), new Float32Array(32))).not.toThrow();
    expect(() => cache.writeTokens(0, new Float32Array(32 * 17), new Float32Array(32 * 17), 17, 'BSHD')).toThrow(expect.objectContaining({ field: 'tokens' }));
  });

  it('measures read and copy bandwidth through the same threads', async () => {
    const { pool } = await setup({ layers: 1, batch: 1, heads: 1, kvHeads: 1, headDim: 64, capacity: 8192, dtype: 'f32', threads: 2 });
    const bw = await pool.measureBandwidth(0, 1);
    expect(bw.bytes).toBe(4 * 2 ** 20);
    expect(bw.readGBs).toBeGreaterThan(0);
    expect(bw.copyGBs).toBeGreaterThan(0);
  });
});
