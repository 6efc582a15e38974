// The paged KV cache: pages spread over several pool buffers (forced small),
// appends that cross page boundaries without copying cached data or creating
// buffers, reservations (growth without data), and decode through the page
// table vs the float64 reference.
import { describe, expect, it } from 'vitest';
import { NO_PAGE, PagedKvCache } from '../../src/kvcache/pagedKvCache.js';
import { FlashDecode, normalizeDecodeProblem } from '../../src/decode/flashDecode.js';
import type { TensorLayout } from '../../src/tiling/layout.js';
import { emptyBuffer, maxAbsDiff, randn, rng, sharedRuntime, upload } from '../helpers/gpu.js';
import { fieldOf, quantize, readAs, referenceDecode, uploadAs } from '../decode/decodeHelpers.js';

interface PagedCase {
  pageTokens: number;
  dtype: 'f32' | 'f16';
  D: number;
  Hkv: number;
  G: number;
  Sq: number;
  /** Chunks appended per sequence, in order; the source layout alternates. */
  chunks: number[][];
  /** Pool buffer cap in pages, to spread the cache over several buffers. */
  pagesPerBuffer: number;
}

const cases: PagedCase[] = [
  { pageTokens: 16, dtype: 'f32', D: 32, Hkv: 2, G: 2, Sq: 4, chunks: [[37, 1, 1, 30], [5, 17, 1]], pagesPerBuffer: 3 },
  { pageTokens: 32, dtype: 'f32', D: 32, Hkv: 2, G: 2, Sq: 4, chunks: [[1, 64, 33], [31, 2]], pagesPerBuffer: 3 },
  { pageTokens: 16, dtype: 'f16', D: 64, Hkv: 1, G: 8, Sq: 1, chunks: [[50, 1, 15], [16, 16, 3]], pagesPerBuffer: 3 },
];

describe('paged KV cache + decode', () => {
  for (const [n, c] of cases.entries()) {
    it(`case ${n}: pages of ${c.pageTokens}, ${c.dtype}, D${c.D}, G${c.G}, Sq${c.Sq}, appends ${JSON.stringify(c.chunks)}`, async () => {
      const rt = await sharedRuntime();
      const dev = rt.device;
      const B = c.chunks.length;
      const Hq = c.Hkv * c.G;
      const bytes = c.dtype === 'f16' ? 2 : 4;
      const pageBytes = 2 * c.Hkv * c.pageTokens * c.D * bytes;
      const maxTokens = 128;
      const cache = PagedKvCache.create(rt, {
        sequences: B,
        headsKV: c.Hkv,
        headDim: c.D,
        dtype: c.dtype,
        pageTokens: c.pageTokens,
        maxTokensPerSequence: maxTokens,
        totalPages: 10,
        maxBufferBytes: c.pagesPerBuffer * pageBytes,
      });
      expect(cache.pools.length).toBe(Math.ceil(10 / c.pagesPerBuffer));
      const op = await FlashDecode.create(rt, { q: { shape: [B, Hq, c.Sq, c.D] }, cache, dtype: c.dtype, targetWorkgroups: 32, minSplitKeys: 1 });

      // Host copy of every sequence's keys/values, BHSD [B, Hkv, maxTokens, D], for the reference.
      const r = rng(500 + n);
      const kHost = new Float32Array(B * c.Hkv * maxTokens * c.D);
      const vHost = new Float32Array(B * c.Hkv * maxTokens * c.D);
      const created = rt.ledger.createdCount;
      let flip = 0;
      for (let round = 0; round < Math.max(...c.chunks.map((x) => x.length)); round++) {
        const enc = dev.createCommandEncoder();
        for (let b = 0; b < B; b++) {
          const tokens = c.chunks[b][round];
          if (tokens === undefined) continue;
          const layout: TensorLayout = flip++ % 2 ? 'BSHD' : 'BHSD';
          const k = quantize(randn(tokens * c.Hkv * c.D, r), c.dtype);
          const v = quantize(randn(tokens * c.Hkv * c.D, r), c.dtype);
          const start = cache.length(b);
          for (let t = 0; t < tokens; t++)
            for (let h = 0; h < c.Hkv; h++) {
              const from = (layout === 'BHSD' ? h * tokens + t : t * c.Hkv + h) * c.D;
              const to = ((b * c.Hkv + h) * maxTokens + start + t) * c.D;
              kHost.set(k.subarray(from, from + c.D), to);
              vHost.set(v.subarray(from, from + c.D), to);
            }
          cache.append(enc, b, { k: uploadAs(dev, k, c.dtype), v: uploadAs(dev, v, c.dtype), tokens, layout });
          expect(cache.length(b)).toBe(start + tokens);
        }
        dev.queue.submit([enc.finish()]);
      }
      // Appending created no buffer: the data went into pages allocated at creation.
      expect(rt.ledger.createdCount).toBe(created);
      const lengths = c.chunks.map((x) => x.reduce((a, y) => a + y, 0));
      expect([...cache.lengths]).toEqual(lengths);
      // The cache really spans several pool buffers.
      const pools = new Set(cache.pagesOf(0).concat(cache.pagesOf(1)).map((p) => Math.floor(p / cache.geometry.pagesPerBuffer)));
      expect(pools.size).toBeGreaterThan(1);

      const q = quantize(randn(B * Hq * c.Sq * c.D, r), c.dtype);
      const o = emptyBuffer(dev, q.length * bytes);
      const qBuf = uploadAs(dev, q, c.dtype);
      await op.run({ q: qBuf, o });
      const shape = { B, Hq, Hkv: c.Hkv, Sq: c.Sq, Sk: maxTokens, D: c.D };
      const layouts = { q: 'BHSD', k: 'BHSD', o: 'BHSD' } as const;
      const tol = c.dtype === 'f16' ? 2e-3 : 1e-4;
      const want = referenceDecode(shape, layouts, true, q, kHost, vHost, lengths).out;
      expect(maxAbsDiff(await readAs(dev, o, q.length, c.dtype), want)).toBeLessThanOrEqual(tol);

      // A shorter view of the same cache (kvLengths below the cached lengths).
      const shorter = lengths.map((x) => x - 3);
      await op.run({ q: qBuf, o }, { kvLengths: shorter });
      const want2 = referenceDecode(shape, layouts, true, q, kHost, vHost, shorter).out;
      expect(maxAbsDiff(await readAs(dev, o, q.length, c.dtype), want2)).toBeLessThanOrEqual(tol);
      op.destroy();
      cache.destroy();
    });
  }

  it('release returns pages; assignPages rebuilds a sequence from an explicit page list', async () => {
    const rt = await sharedRuntime();
    const dev = rt.device;
    const [Hkv, G, D, P] = [2, 2, 32, 16];
    const cache = PagedKvCache.create(rt, { sequences: 2, headsKV: Hkv, headDim: D, pageTokens: P, maxTokensPerSequence: 64, totalPages: 8, maxBufferBytes: 2 * 2 * Hkv * P * D * 4 });
    const op = await FlashDecode.create(rt, { q: { shape: [2, Hkv * G, 4, D] }, cache, targetWorkgroups: 32, minSplitKeys: 1 });
    const r = rng(9);
    const tokens = 40;
    const k = randn(Hkv * tokens * D, r);
    const v = randn(Hkv * tokens * D, r);
    let enc = dev.createCommandEncoder();
    cache.append(enc, 1, { k: uploadAs(dev, k, 'f32'), v: uploadAs(dev, v, 'f32'), tokens });
    dev.queue.submit([enc.finish()]);
    const pages = cache.pagesOf(1);
    expect(pages.length).toBe(3);
    expect(cache.freePageCount).toBe(5);
    // Move sequence 1's pages to sequence 0 (no data copied), then decode both (sequence 1 now empty).
    cache.release(1);
    expect(cache.freePageCount).toBe(8);
    cache.assignPages(0, pages, tokens);
    expect(cache.pagesOf(0)).toEqual(pages);
    expect(cache.freePageCount).toBe(5);
    const q = randn(2 * Hkv * G * 4 * D, r);
    const o = emptyBuffer(dev, q.length * 4);
    await op.run({ q: uploadAs(dev, q, 'f32'), o });
    const kHost = new Float32Array(2 * Hkv * 64 * D);
    const vHost = new Float32Array(2 * Hkv * 64 * D);
    for (let h = 0; h < Hkv; h++) {
      kHost.set(k.subarray(h * tokens * D, (h + 1) * tokens * D), h * 64 * D);
      vHost.set(v.subarray(h * tokens * D, (h + 1) * tokens * D), h * 64 * D);
    }
    const want = referenceDecode({ B: 2, Hq: Hkv * G, Hkv, Sq: 4, Sk: 64, D }, { q: 'BHSD', k: 'BHSD', o: 'BHSD' }, true, q, kHost, vHost, [tokens, 0]).out;
    expect(maxAbsDiff(await readAs(dev, o, q.length, 'f32'), want)).toBeLessThanOrEqual(1e-4);
    // Appending after a reassignment continues in the last page.
    enc = dev.createCommandEncoder();
    cache.append(enc, 0, { k: uploadAs(dev, randn(Hkv * 10 * D, r), 'f32'), v: uploadAs(dev, randn(Hkv * 10 * D, r), 'f32'), tokens: 10 });
    dev.queue.submit([enc.finish()]);
    expect(cache.pagesOf(0).slice(0, 3)).toEqual(pages);
    expect(cache.pagesOf(0).length).toBe(4);
    expect([0, 1, 2, 3, 4].map((i) => cache.pageOf(0, i))).toEqual([...cache.pagesOf(0), NO_PAGE]);
    op.destroy();
    cache.destroy();
  });
  it('reserve grows sequences in place: free-list pages, only the new table entries uploaded, no copy, no buffer', async () => {
    const rt = await sharedRuntime();
    const dev = rt.device;
    // The geometry of the test above (same decode pipeline): 16-token pages, 4 per sequence, 2 pages per pool buffer.
    const [Hkv, G, D, P, maxTokens] = [2, 2, 32, 16, 64];
    const cache = PagedKvCache.create(rt, { sequences: 2, headsKV: Hkv, headDim: D, pageTokens: P, maxTokensPerSequence: maxTokens, totalPages: 7, maxBufferBytes: 2 * 2 * Hkv * P * D * 4 });
    expect(cache.pools.length).toBe(4);
    const op = await FlashDecode.create(rt, { q: { shape: [2, Hkv * G, 4, D] }, cache, targetWorkgroups: 32, minSplitKeys: 1 });
    const created = rt.ledger.createdCount;
    // Page-table uploads, recorded by wrapping the queue's writeBuffer (reserve must send only the entries it changed).
    const tableWrites: Array<[number, number]> = [];
    const queue = dev.queue;
    const writeBuffer = queue.writeBuffer;
    queue.writeBuffer = function (this: GPUQueue, ...args: Parameters<GPUQueue['writeBuffer']>) {
      const [buffer, offset, data, dataOffset, size] = args;
      if (buffer === cache.pageTable) tableWrites.push([offset, (size ?? (data as Uint32Array).length - (dataOffset ?? 0)) * 4]);
      return writeBuffer.apply(this, args);
    } as GPUQueue['writeBuffer'];
    const stride = cache.geometry.maxPagesPerSequence;
    try {
      expect(cache.reserve(1, 5)).toBe(0);
      expect(cache.length(1)).toBe(5);
      expect(cache.pagesOf(1)).toHaveLength(1);
      expect(cache.freePageCount).toBe(6);
      expect(tableWrites).toEqual([[stride * 4, 4]]);
      // Inside the current page: no page taken, nothing uploaded.
      expect(cache.reserve(1, 11)).toBe(5);
      expect(cache.reserve(1, 0)).toBe(16);
      expect(tableWrites).toHaveLength(1);
      expect(cache.reserve(1, 1)).toBe(16);
      expect(cache.pagesOf(1)).toHaveLength(2);
      expect(tableWrites[1]).toEqual([(stride + 1) * 4, 4]);
      // Three pages at once: one upload of three entries.
      expect(cache.reserve(0, 40)).toBe(0);
      expect(tableWrites[2]).toEqual([0, 12]);
      expect(cache.freePageCount).toBe(2);
      const pages = new Set([...cache.pagesOf(0), ...cache.pagesOf(1)]);
      expect(pages.size).toBe(5);
      // Over more than one pool buffer, so the uploaded entries carry pool indices too.
      expect(new Set([...pages].map((p) => Math.floor(p / cache.geometry.pagesPerBuffer))).size).toBeGreaterThan(1);
    } finally {
      queue.writeBuffer = writeBuffer;
    }

    // The caller fills the reserved slots itself (here: queue writes at byteOffset), then appends continue after them.
    const r = rng(31);
    const kHost = new Float32Array(2 * Hkv * maxTokens * D);
    const vHost = new Float32Array(2 * Hkv * maxTokens * D);
    for (let b = 0; b < 2; b++)
      for (let pos = 0; pos < cache.length(b); pos++)
        for (let h = 0; h < Hkv; h++) {
          const page = cache.pagesOf(b)[Math.floor(pos / P)];
          const at = ((b * Hkv + h) * maxTokens + pos) * D;
          for (const [host, isV] of [[kHost, false], [vHost, true]] as const) {
            const row = randn(D, r);
            host.set(row, at);
            const { pool, offset } = cache.byteOffset(page, isV, h, pos % P);
            dev.queue.writeBuffer(cache.pools[pool], offset, row);
          }
        }
    const extra = 10;
    const k = randn(Hkv * extra * D, r);
    const v = randn(Hkv * extra * D, r);
    for (let h = 0; h < Hkv; h++) {
      kHost.set(k.subarray(h * extra * D, (h + 1) * extra * D), (h * maxTokens + 40) * D);
      vHost.set(v.subarray(h * extra * D, (h + 1) * extra * D), (h * maxTokens + 40) * D);
    }
    const enc = dev.createCommandEncoder();
    cache.append(enc, 0, { k: uploadAs(dev, k, 'f32'), v: uploadAs(dev, v, 'f32'), tokens: extra });
    dev.queue.submit([enc.finish()]);
    expect(cache.length(0)).toBe(50);
    expect(cache.pagesOf(0)).toHaveLength(4);
    expect(cache.freePageCount).toBe(1);
    const lengths = [50, 17];
    const q = randn(2 * Hkv * G * 4 * D, r);
    const o = emptyBuffer(dev, q.length * 4);
    await op.run({ q: uploadAs(dev, q, 'f32'), o });
    const want = referenceDecode({ B: 2, Hq: Hkv * G, Hkv, Sq: 4, Sk: maxTokens, D }, { q: 'BHSD', k: 'BHSD', o: 'BHSD' }, true, q, kHost, vHost, lengths).out;
    expect(maxAbsDiff(await readAs(dev, o, q.length, 'f32'), want)).toBeLessThanOrEqual(1e-4);

    // Failures name the field and the limit, and change nothing.
    const error = (f: () => unknown) => {
      try {
        f();
      } catch (e) {
        return e as { field: string; allowed: string };
      }
      throw new Error('expected an error');
    };
    let e = error(() => cache.reserve(0, 15));
    expect([e.field, e.allowed]).toEqual(['tokens', 'at most 14']);
    e = error(() => cache.reserve(1, 40));
    expect(e.field).toBe('cache.pages');
    expect(e.allowed).toBe(`at most ${1 * P + (2 * P - 17)} more tokens`);
    expect(fieldOf(() => cache.reserve(2, 1))).toBe('seq');
    expect(fieldOf(() => cache.reserve(0, -1))).toBe('tokens');
    expect(fieldOf(() => cache.reserve(0, 1.5))).toBe('tokens');
    expect([...cache.lengths]).toEqual(lengths);
    expect(cache.freePageCount).toBe(1);
    // Released pages go back to the free list and serve the next reservation.
    cache.release(1);
    expect(cache.freePageCount).toBe(3);
    expect(cache.reserve(1, 40)).toBe(0);
    expect(cache.freePageCount).toBe(0);
    expect(rt.ledger.createdCount).toBe(created);
    op.destroy();
    cache.destroy();
  });

  it('paged: kv length beyond the cache, cache/dtype mismatches, page table out of range', async () => {
    const rt = await sharedRuntime();
    const dev = rt.device;
    // Same pipeline as case 0 (paged, D32, f32, 8 rows per block).
    const q = { shape: [1, 4, 4, 32] } as const;
    const kv = { shape: [1, 2, 100, 32] } as const;
    const cache = PagedKvCache.create(rt, { sequences: 1, headsKV: 2, headDim: 32, pageTokens: 16, maxTokensPerSequence: 64, totalPages: 6 });
    expect(fieldOf(() => normalizeDecodeProblem({ q, cache, k: kv, v: kv }))).toBe('cache');
    expect(fieldOf(() => normalizeDecodeProblem({ q, cache, dtype: 'f16' }))).toBe('dtype');
    expect(fieldOf(() => normalizeDecodeProblem({ q: { shape: [2, 4, 4, 32] }, cache }))).toBe('cache.sequences');
    expect(fieldOf(() => normalizeDecodeProblem({ q: { shape: [1, 4, 4, 64] }, cache }))).toBe('cache.headDim');
    const op = await FlashDecode.create(rt, { q, cache, targetWorkgroups: 32, minSplitKeys: 1 });
    const enc = dev.createCommandEncoder();
    const src = upload(dev, new Float32Array(2 * 20 * 32));
    cache.append(enc, 0, { k: src, v: src, tokens: 20 });
    const bufs = { q: emptyBuffer(dev, 16 * 32 * 4), o: emptyBuffer(dev, 16 * 32 * 4) };
    expect(fieldOf(() => op.encode(enc, bufs, { kvLengths: [21] }))).toBe('kvLengths[0]');
    expect(() => op.encode(enc, bufs, { kvLengths: [21] })).toThrow(/cache holds 20/);
    expect(fieldOf(() => op.encode(enc, { ...bufs, k: src, v: src }))).toBe('buffers.k');
    // Page table entries must name existing, free, distinct pages.
    expect(fieldOf(() => cache.assignPages(0, [0, 6], 20))).toBe('pages[1]');
    expect(fieldOf(() => cache.assignPages(0, [3, 3], 20))).toBe('pages[1]');
    expect(fieldOf(() => cache.assignPages(0, [4, 5], 40))).toBe('length');
    expect(fieldOf(() => cache.assignPages(0, [4, 5, 1, 2, 3], 70))).toBe('pages');
    // Appends past the sequence capacity or the free pages, bad sources and sequences.
    expect(fieldOf(() => cache.append(enc, 0, { k: src, v: src, tokens: 45 }))).toBe('tokens');
    expect(fieldOf(() => cache.append(enc, 1, { k: src, v: src, tokens: 1 }))).toBe('seq');
    expect(fieldOf(() => cache.append(enc, 0, { k: emptyBuffer(dev, 64), v: src, tokens: 20 }))).toBe('k.size');
    const noCopy = dev.createBuffer({ size: 2 * 20 * 32 * 4, usage: 0x0080 });
    expect(fieldOf(() => cache.append(enc, 0, { k: src, v: noCopy, tokens: 1 }))).toBe('v.usage');
    expect(cache.length(0)).toBe(20);
    dev.queue.submit([enc.finish()]);
    op.destroy();
    cache.destroy();
  });
});
