// Split-KV decode vs the float64 reference: Sq 1..16, GQA groups 1/2/4/8, odd
// key lengths, BHSD/BSHD, f32 and f16 storage, several splits per sequence,
// both lane reductions (workgroup memory, SwiftShader's default here, and
// subgroup shuffles, forced: SwiftShader's subgroups of 4 give 4 lanes a row).
import { describe, expect, it } from 'vitest';
import { FlashDecode, type DecodeReduction } from '../../src/decode/flashDecode.js';
import { PagedKvCache } from '../../src/kvcache/pagedKvCache.js';
import type { TensorLayout } from '../../src/tiling/layout.js';
import { emptyBuffer, maxAbsDiff, randn, rng, sharedRuntime } from '../helpers/gpu.js';
import { fieldOf, quantize, readAs, referenceDecode, uploadAs } from './decodeHelpers.js';

interface Case {
  B: number;
  Hkv: number;
  G: number;
  Sq: number;
  Sk: number;
  D: number;
  dtype: 'f32' | 'f16';
  layout: TensorLayout;
  causal: boolean;
  /** Valid keys per sequence (≤ Sk); odd on purpose. */
  kvLengths: number[];
  targetWorkgroups: number;
  /** Lane reduction to force; default: the device's choice (workgroup memory on SwiftShader). */
  reduction?: DecodeReduction;
}

// Few distinct pipelines on purpose (SwiftShader compiles slowly): (D, dtype, row block) repeat across cases.
const cases: Case[] = [
  // D64 f32, row block 8
  { B: 1, Hkv: 2, G: 8, Sq: 1, Sk: 301, D: 64, dtype: 'f32', layout: 'BHSD', causal: true, kvLengths: [301], targetWorkgroups: 64 },
  { B: 2, Hkv: 1, G: 2, Sq: 16, Sk: 133, D: 64, dtype: 'f32', layout: 'BSHD', causal: true, kvLengths: [133, 21], targetWorkgroups: 64 },
  // Fewer keys than queries: the first queries of the causal block see nothing and output zeros.
  { B: 1, Hkv: 1, G: 1, Sq: 8, Sk: 40, D: 64, dtype: 'f32', layout: 'BHSD', causal: true, kvLengths: [5], targetWorkgroups: 4 },
  // D64 f32, row block 4
  { B: 2, Hkv: 2, G: 4, Sq: 1, Sk: 200, D: 64, dtype: 'f32', layout: 'BSHD', causal: true, kvLengths: [199, 77], targetWorkgroups: 64 },
  { B: 1, Hkv: 1, G: 1, Sq: 4, Sk: 95, D: 64, dtype: 'f32', layout: 'BHSD', causal: false, kvLengths: [93], targetWorkgroups: 8 },
  // D80 (8-dim chunks do not divide the workgroup evenly), row block 6
  { B: 1, Hkv: 1, G: 2, Sq: 3, Sk: 157, D: 80, dtype: 'f32', layout: 'BHSD', causal: true, kvLengths: [157], targetWorkgroups: 64 },
  // f16 storage: the benchmark's shape family (D128, G4, Sq1) and Sq > 1
  { B: 1, Hkv: 2, G: 4, Sq: 1, Sk: 261, D: 128, dtype: 'f16', layout: 'BHSD', causal: true, kvLengths: [261], targetWorkgroups: 64 },
  { B: 2, Hkv: 1, G: 8, Sq: 4, Sk: 150, D: 64, dtype: 'f16', layout: 'BSHD', causal: true, kvLengths: [149, 3], targetWorkgroups: 64 },
  // Subgroup shuffles: f16 D128 (4 words a lane), f32 D64 in two row blocks, D80 (5 words a lane,
  // row blocks of 3 padded to a vec4), Sq > 1 with a sequence shorter than its queries.
  { B: 1, Hkv: 2, G: 4, Sq: 1, Sk: 261, D: 128, dtype: 'f16', layout: 'BHSD', causal: true, kvLengths: [261], targetWorkgroups: 64, reduction: 'subgroup' },
  { B: 2, Hkv: 2, G: 4, Sq: 2, Sk: 200, D: 64, dtype: 'f32', layout: 'BSHD', causal: true, kvLengths: [199, 1], targetWorkgroups: 64, reduction: 'subgroup' },
  { B: 1, Hkv: 1, G: 2, Sq: 3, Sk: 157, D: 80, dtype: 'f32', layout: 'BHSD', causal: false, kvLengths: [131], targetWorkgroups: 64, reduction: 'subgroup' },
];

describe('split-KV decode vs float64 reference', () => {
  for (const [n, c] of cases.entries()) {
    it(`case ${n}: B${c.B} Hkv${c.Hkv}×G${c.G} Sq${c.Sq} kv[${c.kvLengths}] D${c.D} ${c.dtype} ${c.layout}${c.causal ? ' causal' : ''}${c.reduction ? ` ${c.reduction}` : ''}`, async () => {
      const rt = await sharedRuntime();
      const dev = rt.device;
      const Hq = c.Hkv * c.G;
      const qShape = [c.B, Hq, c.Sq, c.D] as const;
      const kShape = [c.B, c.Hkv, c.Sk, c.D] as const;
      const op = await FlashDecode.create(rt, {
        q: { shape: qShape, layout: c.layout },
        k: { shape: kShape, layout: c.layout },
        v: { shape: kShape, layout: c.layout },
        causal: c.causal,
        dtype: c.dtype,
        targetWorkgroups: c.targetWorkgroups,
        minSplitKeys: 1,
        reduction: c.reduction,
      });
      if (c.reduction) expect(op.tiling.reduction).toBe(c.reduction);
      const r = rng(1000 + n);
      const q = quantize(randn(c.B * Hq * c.Sq * c.D, r), c.dtype);
      const k = quantize(randn(c.B * c.Hkv * c.Sk * c.D, r), c.dtype);
      const v = quantize(randn(c.B * c.Hkv * c.Sk * c.D, r), c.dtype);
      const bytes = c.dtype === 'f16' ? 2 : 4;
      const o = emptyBuffer(dev, q.length * bytes);
      await op.run({ q: uploadAs(dev, q, c.dtype), k: uploadAs(dev, k, c.dtype), v: uploadAs(dev, v, c.dtype), o }, { kvLengths: c.kvLengths });
      // The keys really were split (so the combine pass is exercised) whenever there is more than one tile.
      if (Math.max(...c.kvLengths) > 2 * op.tiling.blockN && c.targetWorkgroups >= 64) expect(op.lastSplits.splits).toBeGreaterThan(1);
      const got = await readAs(dev, o, q.length, c.dtype);
      const { out } = referenceDecode({ B: c.B, Hq, Hkv: c.Hkv, Sq: c.Sq, Sk: c.Sk, D: c.D }, { q: c.layout, k: c.layout, o: c.layout }, c.causal, q, k, v, c.kvLengths);
      expect(maxAbsDiff(got, out)).toBeLessThanOrEqual(c.dtype === 'f16' ? 2e-3 : 1e-4);
      op.destroy();
    });
  }

  it('subgroup shuffles through the page table (f16, two pool buffers)', async () => {
    const rt = await sharedRuntime();
    const dev = rt.device;
    const [B, Hkv, G, Sq, D, pageTokens] = [2, 1, 4, 1, 128, 16];
    const Hq = Hkv * G;
    const lengths = [70, 33];
    const pageBytes = 2 * Hkv * pageTokens * D * 2;
    const cache = PagedKvCache.create(rt, { sequences: B, headsKV: Hkv, headDim: D, dtype: 'f16', pageTokens, maxTokensPerSequence: 80, totalPages: 8, maxBufferBytes: 4 * pageBytes });
    expect(cache.pools.length).toBe(2);
    // Same pipeline family as the f16 D128 subgroup case above, paged.
    const op = await FlashDecode.create(rt, { q: { shape: [B, Hq, Sq, D] }, cache, dtype: 'f16', targetWorkgroups: 32, minSplitKeys: 1, reduction: 'subgroup' });
    const r = rng(4242);
    const q = quantize(randn(B * Hq * Sq * D, r), 'f16');
    const kHost = new Float32Array(B * Hkv * 80 * D);
    const vHost = new Float32Array(B * Hkv * 80 * D);
    const enc = dev.createCommandEncoder();
    for (let b = 0; b < B; b++) {
      const k = quantize(randn(lengths[b] * Hkv * D, r), 'f16');
      const v = quantize(randn(lengths[b] * Hkv * D, r), 'f16');
      kHost.set(k, b * Hkv * 80 * D);
      vHost.set(v, b * Hkv * 80 * D);
      cache.append(enc, b, { k: uploadAs(dev, k, 'f16'), v: uploadAs(dev, v, 'f16'), tokens: lengths[b] });
    }
    dev.queue.submit([enc.finish()]);
    const o = emptyBuffer(dev, q.length * 2);
    await op.run({ q: uploadAs(dev, q, 'f16'), o });
    expect(op.lastSplits.splits).toBeGreaterThan(1);
    const got = await readAs(dev, o, q.length, 'f16');
    const { out } = referenceDecode({ B, Hq, Hkv, Sq, Sk: 80, D }, { q: 'BHSD', k: 'BHSD', o: 'BHSD' }, true, q, kHost, vHost, lengths);
    expect(maxAbsDiff(got, out)).toBeLessThanOrEqual(2e-3);
    op.destroy();
    cache.destroy();
  });

  it('mixed layouts (BSHD q/o, BHSD k/v), custom scale, zero-length sequence', async () => {
    const rt = await sharedRuntime();
    const dev = rt.device;
    const [B, Hkv, G, Sq, Sk, D] = [2, 2, 2, 2, 90, 64];
    const Hq = Hkv * G;
    const op = await FlashDecode.create(rt, {
      q: { shape: [B, Hq, Sq, D], layout: 'BSHD' },
      k: { shape: [B, Hkv, Sk, D] },
      v: { shape: [B, Hkv, Sk, D] },
      o: { shape: [B, Hq, Sq, D], layout: 'BSHD' },
      scale: 0.3,
      targetWorkgroups: 32,
      minSplitKeys: 1,
    });
    const r = rng(77);
    const q = randn(B * Hq * Sq * D, r);
    const k = randn(B * Hkv * Sk * D, r);
    const v = randn(B * Hkv * Sk * D, r);
    const o = emptyBuffer(dev, q.length * 4);
    const kvLengths = [0, 89];
    await op.run({ q: uploadAs(dev, q, 'f32'), k: uploadAs(dev, k, 'f32'), v: uploadAs(dev, v, 'f32'), o }, { kvLengths });
    const got = await readAs(dev, o, q.length, 'f32');
    const { normalizeProblem } = await import('../../src/attention/problem.js');
    const { cpuAttention } = await import('../../src/reference/cpuAttention.js');
    const p = normalizeProblem({
      q: { shape: [B, Hq, Sq, D], layout: 'BSHD' },
      k: { shape: [B, Hkv, Sk, D] },
      v: { shape: [B, Hkv, Sk, D] },
      o: { shape: [B, Hq, Sq, D], layout: 'BSHD' },
      causal: true,
      scale: 0.3,
    });
    const want = cpuAttention(p, q, k, v, kvLengths);
    expect(maxAbsDiff(got, want)).toBeLessThanOrEqual(1e-4);
    // Sequence 0 has no keys: its rows are exactly zero.
    for (let i = 0; i < Sq; i++) for (let h = 0; h < Hq; h++) for (let d = 0; d < D; d++) expect(got[(i * Hq + h) * D + d]).toBe(0);
    op.destroy();
  });

  it('repeated calls allocate nothing and reuse pipelines and bind groups', async () => {
    const rt = await sharedRuntime();
    const dev = rt.device;
    const shape = [1, 4, 1, 64] as const;
    const kShape = [1, 1, 128, 64] as const;
    const op = await FlashDecode.create(rt, { q: { shape }, k: { shape: kShape }, v: { shape: kShape }, targetWorkgroups: 16, minSplitKeys: 1 });
    const r = rng(5);
    const bufs = { q: uploadAs(dev, randn(4 * 64, r), 'f32'), k: uploadAs(dev, randn(128 * 64, r), 'f32'), v: uploadAs(dev, randn(128 * 64, r), 'f32'), o: emptyBuffer(dev, 4 * 64 * 4) };
    await op.run(bufs, { kvLengths: [100] });
    const created = rt.ledger.createdCount;
    const groups = rt.bindGroups.createdCount;
    const compiled = rt.pipelines.compiledCount;
    for (const len of [101, 102, 128, 100]) await op.run(bufs, { kvLengths: [len] });
    expect(rt.ledger.createdCount).toBe(created);
    expect(rt.bindGroups.createdCount).toBe(groups);
    expect(rt.pipelines.compiledCount).toBe(compiled);
    const mine = rt.ledger.entries().filter((e) => e.owner === 'flashDecode');
    expect(mine.map((e) => e.label).sort()).toEqual(['flashDecode.params', 'flashDecode.unusedBinding', 'flashDecode.workspace']);
    expect(mine.find((e) => e.label === 'flashDecode.workspace')!.size).toBe(op.tiling.workspaceBytes);
    op.destroy();
    expect(rt.ledger.entries().filter((e) => e.owner === 'flashDecode')).toEqual([]);
  });
  it('rejects bad buffers and kv lengths at encode, before recording anything', async () => {
    const rt = await sharedRuntime();
    const dev = rt.device;
    // Same pipeline as case 3 (D64, f32, 4 rows per block).
    const op = await FlashDecode.create(rt, { q: { shape: [1, 8, 1, 64] }, k: { shape: [1, 2, 100, 64] }, v: { shape: [1, 2, 100, 64] }, targetWorkgroups: 8 });
    const bufs = { q: emptyBuffer(dev, 8 * 64 * 4), o: emptyBuffer(dev, 8 * 64 * 4), k: emptyBuffer(dev, 2 * 100 * 64 * 4), v: emptyBuffer(dev, 2 * 100 * 64 * 4) };
    const enc = dev.createCommandEncoder();
    expect(fieldOf(() => op.encode(enc, bufs, { kvLengths: [101] }))).toBe('kvLengths[0]');
    expect(fieldOf(() => op.encode(enc, bufs, { kvLengths: [1, 2] }))).toBe('kvLengths');
    expect(fieldOf(() => op.encode(enc, { ...bufs, k: emptyBuffer(dev, 64) }))).toBe('buffers.k.size');
    expect(fieldOf(() => op.encode(enc, { ...bufs, v: undefined }))).toBe('buffers.v');
    const noStorage = dev.createBuffer({ size: 8 * 64 * 4, usage: 0x0008 });
    expect(fieldOf(() => op.encode(enc, { ...bufs, o: noStorage }))).toBe('buffers.o.usage');
    // Nothing was recorded: the encoder finishes with no pass.
    expect(() => enc.finish()).not.toThrow();
    op.destroy();
  });
});
