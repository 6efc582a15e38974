// The fused prefill reading K/V through the paged KV cache (chunked prefill:
// S_q new queries against a cache that already holds a prefix), against the
// float64 reference on the same keys laid out contiguously; its bad-input
// errors; and the f16 range check (compiled into the f32 tier by
// `checkF16Range`, the same WGSL the f16 tier runs) with its status readback.
import { describe, expect, it } from 'vitest';
import { normalizeProblem, type AttentionOptions } from '../../src/attention/problem.js';
import { checkPagedKeys, MAX_PREFILL_POOL_BUFFERS, type PagedKvView } from '../../src/attention/flashAttentionPrefill.js';
import { BufferError, NumericOverflowError, ShapeError, UnsupportedError } from '../../src/errors.js';
import { NO_PAGE, PagedKvCache } from '../../src/kvcache/pagedKvCache.js';
import { cpuAttention } from '../../src/reference/cpuAttention.js';
import type { TensorLayout } from '../../src/tiling/layout.js';
import { rejects } from '../helpers/errors.js';
import { emptyBuffer, maxAbsDiff, randn, readback, rng, sharedRuntime, upload } from '../helpers/gpu.js';

const TOL = 1e-4;

interface PagedCase {
  seed: number;
  B: number;
  Hkv: number;
  G: number;
  D: number;
  Sq: number;
  /** Tokens already cached per sequence before the Sq new ones (chunked prefill). */
  prefix: number[];
  pageTokens: number;
  causal: boolean;
  window?: number;
  /** Shorter key lengths than the cache holds, per call. */
  trim: boolean;
  layoutQ: TensorLayout;
  layoutO: TensorLayout;
  /** Force the pool to split across two buffers. */
  twoPools: boolean;
}

/** Tokens a cache sequence can hold in these tests (fixed: page geometry specializes the pipeline, and SwiftShader compiles slowly). */
const MAX_TOKENS = 96;
/** (head dim, page size) pairs cycled through the cases: one pipeline each. */
const GEOMETRIES = [
  [32, 8],
  [32, 16],
  [32, 32],
  [64, 16],
] as const;

function makeCase(seed: number): PagedCase {
  const r = rng(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)];
  const B = 1 + Math.floor(r() * 2);
  const [D, pageTokens] = GEOMETRIES[seed % GEOMETRIES.length];
  const Sq = 1 + Math.floor(r() * 37);
  return {
    seed,
    B,
    Hkv: 2,
    G: pick([1, 2, 3]),
    D,
    Sq,
    prefix: Array.from({ length: B }, () => (r() < 0.2 ? 0 : Math.floor(r() * 45))),
    pageTokens,
    causal: r() < 0.7,
    window: r() < 0.2 ? 1 + Math.floor(r() * 30) : undefined,
    trim: r() < 0.2,
    layoutQ: r() < 0.5 ? 'BHSD' : 'BSHD',
    layoutO: r() < 0.5 ? 'BHSD' : 'BSHD',
    twoPools: seed % 3 !== 2,
  };
}

/** Random per-sequence K and V (`[H_kv, len, D]` each), appended in interleaved chunks so pages of a sequence scatter across the pool buffers. */
function fillCache(dev: GPUDevice, cache: PagedKvCache, lengths: number[], r: () => number): { k: Float32Array[]; v: Float32Array[] } {
  const { headsKV: H, headDim: D } = cache.geometry;
  const k = lengths.map((n) => randn(H * n * D, r));
  const v = lengths.map((n) => randn(H * n * D, r));
  const done = lengths.map(() => 0);
  const temps: GPUBuffer[] = [];
  while (done.some((d, b) => d < lengths[b])) {
    const enc = dev.createCommandEncoder();
    for (let b = 0; b < lengths.length; b++) {
      const tokens = Math.min(lengths[b] - done[b], 1 + Math.floor(r() * 20));
      if (tokens === 0) continue;
      const slice = (src: Float32Array) => {
        const out = new Float32Array(H * tokens * D);
        for (let h = 0; h < H; h++) out.set(src.subarray((h * lengths[b] + done[b]) * D, (h * lengths[b] + done[b] + tokens) * D), h * tokens * D);
        return out;
      };
      const kb = upload(dev, slice(k[b]));
      const vb = upload(dev, slice(v[b]));
      temps.push(kb, vb);
      cache.append(enc, b, { k: kb, v: vb, tokens });
      done[b] += tokens;
    }
    dev.queue.submit([enc.finish()]);
  }
  for (const t of temps) t.destroy();
  return { k, v };
}

/** The same keys as one contiguous BHSD tensor `[B, H_kv, Smax, D]` (zero past each length) for the reference. */
function contiguous(parts: Float32Array[], lengths: number[], H: number, S: number, D: number): Float32Array {
  const out = new Float32Array(parts.length * H * S * D);
  parts.forEach((part, b) => {
    for (let h = 0; h < H; h++) out.set(part.subarray(h * lengths[b] * D, (h + 1) * lengths[b] * D), ((b * H + h) * S) * D);
  });
  return out;
}

describe('prefill through the paged KV cache matches the float64 reference', async () => {
  const rt = await sharedRuntime();
  const cases = Array.from({ length: 12 }, (_, i) => makeCase(500 + i));
  let pools2 = 0;

  it.each(cases.map((c) => [`seed ${c.seed}: B${c.B} Hkv${c.Hkv} G${c.G} D${c.D} Sq${c.Sq} prefix ${c.prefix.join('/')} pages of ${c.pageTokens}${c.causal ? ' causal' : ''}${c.window ? ` w${c.window}` : ''}${c.trim ? ' trimmed' : ''}${c.twoPools ? ' 2 pools' : ''}`, c]))(
    '%s',
    async (_name, c) => {
      const dev = rt.device;
      const r = rng(c.seed * 13 + 5);
      const lengths = c.prefix.map((p) => p + c.Sq);
      const maxLen = Math.max(...lengths);
      const pageBytes = 2 * c.Hkv * c.pageTokens * c.D * 4;
      const maxPages = MAX_TOKENS / c.pageTokens;
      const cache = PagedKvCache.create(rt, {
        sequences: c.B,
        headsKV: c.Hkv,
        headDim: c.D,
        pageTokens: c.pageTokens,
        maxTokensPerSequence: MAX_TOKENS,
        maxBufferBytes: c.twoPools ? Math.max(1, Math.ceil((c.B * maxPages) / 2)) * pageBytes : undefined,
      });
      const { k, v } = fillCache(dev, cache, lengths, r);
      const kvLengths = c.trim ? lengths.map((n) => Math.max(0, n - Math.floor(r() * 6))) : undefined;
      const Hq = c.Hkv * c.G;
      const shapeQ = [c.B, Hq, c.Sq, c.D] as const;
      // D64 cases also run the f16 range check (normal data: nothing to flag), sharing their pipeline with the paged check test below.
      const checkF16Range = c.D === 64;
      const op = await rt.createPrefill({ q: { shape: shapeQ, layout: c.layoutQ }, o: { shape: shapeQ, layout: c.layoutO }, cache, causal: c.causal, window: c.window, checkF16Range });
      expect(op.checksF16Range).toBe(checkF16Range);
      expect(op.tier.tier).toBe('f32');
      expect(op.problem.paged).toBe(true);
      const q = randn(c.B * Hq * c.Sq * c.D, r);
      const bufs = { q: upload(dev, q), o: emptyBuffer(dev, q.length * 4) };
      await op.run(bufs, { kvLengths });
      const out = await readback(dev, bufs.o);

      const ref = normalizeProblem({
        q: { shape: shapeQ, layout: c.layoutQ },
        o: { shape: shapeQ, layout: c.layoutO },
        k: { shape: [c.B, c.Hkv, maxLen, c.D] },
        v: { shape: [c.B, c.Hkv, maxLen, c.D] },
        causal: c.causal,
        window: c.window,
      });
      const expected = cpuAttention(ref, q, contiguous(k, lengths, c.Hkv, maxLen, c.D), contiguous(v, lengths, c.Hkv, maxLen, c.D), kvLengths ?? lengths);
      const err = maxAbsDiff(out, expected, ref.elements.o);
      if (cache.pools.length === 2) pools2++;
      op.destroy();
      cache.destroy();
      for (const b of Object.values(bufs)) b.destroy();
      expect(err).toBeLessThanOrEqual(TOL);
    },
  );

  it('covered caches split across two pool buffers, several page sizes, GQA and Sq ≠ Sk', () => {
    expect(pools2).toBeGreaterThanOrEqual(4);
    expect(new Set(cases.map((c) => c.pageTokens)).size).toBe(3);
    expect(cases.some((c) => c.G > 1)).toBe(true);
    expect(cases.some((c) => c.prefix.some((p) => p > 0))).toBe(true);
  });
});

describe('paged prefill: bad input', async () => {
  const rt = await sharedRuntime();
  const D = 32;
  const cache = PagedKvCache.create(rt, { sequences: 2, headsKV: 2, headDim: D, pageTokens: 8, maxTokensPerSequence: MAX_TOKENS });
  const q: AttentionOptions['q'] = { shape: [2, 4, 5, D] };
  const enc = rt.device.createCommandEncoder();
  cache.append(enc, 0, { k: upload(rt.device, randn(2 * 12 * D, rng(1))), v: upload(rt.device, randn(2 * 12 * D, rng(2))), tokens: 12 });
  rt.device.queue.submit([enc.finish()]);

  it('a paged problem on a tier the device lacks names the missing feature', async () => {
    // Every tier reads pages; the software adapter has no subgroup matrices.
    const e = await rejects(rt.createPrefill({ q, cache, tier: 'subgroup-matrix' }), UnsupportedError, 'tier');
    expect(e.message).toMatch(/chromium-experimental-subgroup-matrix/);
  });
  it('both k/v and a cache, or neither', async () => {
    await rejects(rt.createPrefill({ q, cache, k: { shape: [2, 2, 16, D] }, v: { shape: [2, 2, 16, D] } }), ShapeError, 'cache');
    await rejects(rt.createPrefill({ q }), ShapeError, 'k');
  });
  it('cache geometry that disagrees with q', async () => {
    await rejects(rt.createPrefill({ q: { shape: [1, 4, 5, D] }, cache }), ShapeError, 'cache.sequences');
    await rejects(rt.createPrefill({ q: { shape: [2, 4, 5, 64] }, cache }), ShapeError, 'cache.headDim');
    await rejects(rt.createPrefill({ q: { shape: [2, 3, 5, D] }, cache }), ShapeError, 'q.shape[1]');
  });
  it('a dtype other than the cache’s', async () => {
    const f16 = PagedKvCache.create(rt, { sequences: 2, headsKV: 2, headDim: D, dtype: 'f16', pageTokens: 8, maxTokensPerSequence: 16 });
    const e = await rejects(rt.createPrefill({ q, cache: f16 }), UnsupportedError, 'dtype');
    expect(e.allowed).toBe('f16');
    f16.destroy();
  });
  it(`a cache of more than ${MAX_PREFILL_POOL_BUFFERS} pool buffers`, async () => {
    const pageBytes = 2 * 2 * 8 * D * 4;
    const big = PagedKvCache.create(rt, { sequences: 2, headsKV: 2, headDim: D, pageTokens: 8, maxTokensPerSequence: 24, maxBufferBytes: 2 * pageBytes });
    expect(big.pools.length).toBe(3);
    await rejects(rt.createPrefill({ q, cache: big }), UnsupportedError, 'cache');
    big.destroy();
  });
  it('operators that read contiguous K/V reject a cache instead of ignoring it', async () => {
    await rejects(rt.createStandardAttention({ q, cache }), UnsupportedError, 'cache');
  });
  it('contiguous k/v given to a paged operator, and key lengths beyond the cache’s', async () => {
    const op = await rt.createPrefill({ q, cache, causal: true });
    const bufs = { q: emptyBuffer(rt.device, 2 * 4 * 5 * D * 4), o: emptyBuffer(rt.device, 2 * 4 * 5 * D * 4) };
    await rejects(() => op.encode(rt.device.createCommandEncoder(), { ...bufs, k: bufs.q }), ShapeError, 'buffers.k');
    const e = await rejects(() => op.encode(rt.device.createCommandEncoder(), bufs, { kvLengths: [13, 0] }), ShapeError, 'kvLengths[0]');
    expect(e.allowed).toBe('integers in [0, 12]');
    await rejects(() => op.encode(rt.device.createCommandEncoder(), bufs, { kvLengths: [1] }), ShapeError, 'kvLengths');
    // Sequence 1 is empty: its rows see no key and give 0; sequence 0 reads its 12 keys.
    await op.run(bufs);
    op.destroy();
  });

  // The cache keeps its table consistent; these views model a corrupted one, which must never reach the GPU.
  const view = (pages: number[][], lengths: number[], pools = cache.pools): PagedKvView => ({
    geometry: cache.geometry,
    pools,
    lengths: Uint32Array.from(lengths),
    capacityTokens: cache.capacityTokens,
    pageOf: (s: number, i: number) => (i < pages[s].length ? pages[s][i] : NO_PAGE),
  });
  it('a page-table entry with no page below the sequence length', async () => {
    const e = await rejects(() => checkPagedKeys(view([[0, NO_PAGE], []], [12, 0]), [12, 0]), BufferError, 'cache.pageTable[0][1]');
    expect(e.message).toMatch(/no page for keys \[8, 12\)/);
    await rejects(() => checkPagedKeys(view([[0], []], [12, 0]), [12, 0]), BufferError, 'cache.pageTable[0][1]');
    // Keys past the call's length need no page.
    expect(() => checkPagedKeys(view([[0, NO_PAGE], []], [12, 0]), [8, 0])).not.toThrow();
  });
  it('a page outside the pool buffers, and a length beyond capacity', async () => {
    await rejects(() => checkPagedKeys(view([[0, cache.geometry.totalPages], []], [12, 0]), [12, 0]), BufferError, 'cache.pageTable[0][1]');
    await rejects(() => checkPagedKeys(view([[0, -1], []], [12, 0]), [12, 0]), BufferError, 'cache.pageTable[0][1]');
    await rejects(() => checkPagedKeys(view([[0], []], [MAX_TOKENS + 1, 0]), [0, 0]), ShapeError, 'cache.lengths[0]');
  });
});

describe('f16 range check (checkF16Range on the f32 tier: the f16 tier’s WGSL)', async () => {
  const rt = await sharedRuntime();
  const dev = rt.device;
  const D = 32;
  const shape = [1, 2, 9, D] as const;
  const n = 2 * 9 * D;
  const data = (seed: number) => ({ q: randn(n, rng(seed)), k: randn(n, rng(seed + 1)), v: randn(n, rng(seed + 2)) });
  const run = async (op: Awaited<ReturnType<typeof rt.createPrefill>>, d: ReturnType<typeof data>, kvLengths?: number[]) => {
    const bufs = { q: upload(dev, d.q), k: upload(dev, d.k), v: upload(dev, d.v), o: emptyBuffer(dev, n * 4) };
    try {
      await op.run(bufs, { kvLengths });
      return undefined;
    } catch (e) {
      return e;
    } finally {
      for (const b of Object.values(bufs)) b.destroy();
    }
  };

  it('flags q once q · scale · log2 e leaves the f16 range, even if q itself fits', async () => {
    const op = await rt.createPrefill({ q: { shape }, k: { shape }, v: { shape }, scale: 1, checkF16Range: true });
    expect(op.checksF16Range).toBe(true);
    const d = data(10);
    d.q[5] = 50000; // 50000 · log2 e ≈ 72135 > 65504
    const e = (await run(op, d)) as NumericOverflowError;
    expect(e).toBeInstanceOf(NumericOverflowError);
    expect(e.code).toBe('numeric-overflow');
    expect(e.field).toBe('q');
    expect(e.tensors).toEqual(['q']);
    expect(e.allowed).toMatch(/q · scale · log2 e\| ≤ 65504/);
    // run() consumed the flags.
    expect(await op.readStatus()).toEqual({ overflow: [] });
    d.q[5] = 45000; // 45000 · log2 e ≈ 64921: fits
    expect(await run(op, d)).toBeUndefined();
    op.destroy();
  });

  it('flags k and v that are not finite or exceed 65504, and only keys the call reads', async () => {
    const op = await rt.createPrefill({ q: { shape }, k: { shape }, v: { shape }, checkF16Range: true });
    const d = data(20);
    d.k[3 * D + 1] = Infinity;
    d.v[2 * D] = -70000;
    const e = (await run(op, d)) as NumericOverflowError;
    expect(e.tensors).toEqual(['k', 'v']);
    expect(e.field).toBe('k');
    const nan = data(21);
    nan.v[D + 3] = Number.NaN;
    expect(((await run(op, nan)) as NumericOverflowError).tensors).toEqual(['v']);
    const edge = data(22);
    edge.k[0] = 65504;
    edge.v[0] = -65504;
    expect(await run(op, edge)).toBeUndefined();
    // A huge key past kvLengths is never staged, so it is not reported.
    const tail = data(23);
    tail.k[8 * D] = 1e9;
    expect(await run(op, tail, [8])).toBeUndefined();
    expect(((await run(op, tail)) as NumericOverflowError).tensors).toEqual(['k']);
    op.destroy();
  });

  it('readStatus reports flags of encoded work and clears them; encode allocates nothing', async () => {
    const op = await rt.createPrefill({ q: { shape }, k: { shape }, v: { shape }, checkF16Range: true });
    const d = data(30);
    d.v[7] = 1e6;
    const bufs = { q: upload(dev, d.q), k: upload(dev, d.k), v: upload(dev, d.v), o: emptyBuffer(dev, n * 4) };
    const created = rt.ledger.createdCount;
    for (let i = 0; i < 3; i++) {
      const enc = dev.createCommandEncoder();
      op.encode(enc, bufs);
      dev.queue.submit([enc.finish()]);
    }
    expect(rt.ledger.createdCount).toBe(created);
    expect(await op.readStatus()).toEqual({ overflow: ['v'] });
    expect(await op.readStatus()).toEqual({ overflow: [] });
    for (const b of Object.values(bufs)) b.destroy();
    op.destroy();
  });

  it('the f32 tier does not check by default, and the ledger holds the status buffers until destroy', async () => {
    const before = rt.ledger.entries().length;
    const op = await rt.createPrefill({ q: { shape }, k: { shape }, v: { shape } });
    expect(op.checksF16Range).toBe(false);
    // params and the 16-byte status word; no readback buffer.
    const mine = rt.ledger.entries().slice(before);
    expect(mine.map((e) => e.owner)).toEqual(['flashAttentionPrefill', 'flashAttentionPrefill']);
    const d = data(40);
    d.q[0] = 1e30;
    expect(await run(op, d)).toBeUndefined();
    expect(await op.readStatus()).toEqual({ overflow: [] });
    op.destroy();
    expect(rt.ledger.entries().length).toBe(before);
    const checking = await rt.createPrefill({ q: { shape }, k: { shape }, v: { shape }, checkF16Range: true });
    expect(rt.ledger.entries().slice(before).map((e) => e.label)).toEqual(['flashAttentionPrefill.params', 'flashAttentionPrefill.status', 'flashAttentionPrefill.statusReadback']);
    checking.destroy();
    expect(rt.ledger.entries().length).toBe(before);
  });

  it('checks paged reads too', async () => {
    // The geometry of the D64 correctness cases above (same pipeline).
    const [Dp, pageTokens] = GEOMETRIES[3];
    const cache = PagedKvCache.create(rt, { sequences: 1, headsKV: 2, headDim: Dp, pageTokens, maxTokensPerSequence: MAX_TOKENS });
    const v = randn(2 * 10 * Dp, rng(50));
    v[(10 + 9) * Dp + 2] = 9e4; // head 1, token 9
    const enc = dev.createCommandEncoder();
    const kb = upload(dev, randn(2 * 10 * Dp, rng(51)));
    const vb = upload(dev, v);
    cache.append(enc, 0, { k: kb, v: vb, tokens: 10 });
    dev.queue.submit([enc.finish()]);
    const op = await rt.createPrefill({ q: { shape: [1, 2, 3, Dp] }, cache, checkF16Range: true });
    const bufs = { q: upload(dev, randn(2 * 3 * Dp, rng(52))), o: emptyBuffer(dev, 2 * 3 * Dp * 4) };
    await expect(op.run(bufs)).rejects.toThrow(NumericOverflowError);
    await op.run(bufs, { kvLengths: [9] });
    op.destroy();
    cache.destroy();
    for (const b of [kb, vb, ...Object.values(bufs)]) b.destroy();
  });

  it('rejects a checkF16Range that is not a boolean', () =>
    rejects(rt.createPrefill({ q: { shape }, k: { shape }, v: { shape }, checkF16Range: 1 as unknown as boolean }), UnsupportedError, 'checkF16Range'));
});
