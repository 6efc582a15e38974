// Bad input to the decode operator and the paged cache: typed errors naming the
// field, thrown before anything is dispatched or recorded. The cases that need
// a compiled operator live next to the pipelines they share (decode.test.ts,
// test/kvcache/pagedKvCache.test.ts): SwiftShader compiles slowly.
import { describe, expect, it } from 'vitest';
import { chooseDecodeTiling, normalizeDecodeProblem } from '../../src/decode/flashDecode.js';
import { BufferError, ScaleError, ShapeError, TileConfigError, UnsupportedError } from '../../src/errors.js';
import { MAX_POOL_BUFFERS, PagedKvCache } from '../../src/kvcache/pagedKvCache.js';
import { sharedRuntime, upload } from '../helpers/gpu.js';
import { fieldOf } from './decodeHelpers.js';


const q = { shape: [1, 8, 1, 64] } as const;
const kv = { shape: [1, 2, 100, 64] } as const;

describe('decode validation', () => {
  it('rejects bad shapes, dtypes and scales with typed errors', () => {
    expect(() => normalizeDecodeProblem({ q: { shape: [1, 8, 17, 64] }, k: kv, v: kv })).toThrow(ShapeError);
    expect(fieldOf(() => normalizeDecodeProblem({ q: { shape: [1, 8, 17, 64] }, k: kv, v: kv }))).toBe('q.shape[2]');
    expect(fieldOf(() => normalizeDecodeProblem({ q: { shape: [1, 8, 1, 60] }, k: kv, v: kv }))).toBe('q.shape[3]');
    expect(fieldOf(() => normalizeDecodeProblem({ q: { shape: [1, 7, 1, 64] }, k: kv, v: kv }))).toBe('q.shape[1]');
    expect(fieldOf(() => normalizeDecodeProblem({ q, k: kv, v: { shape: [1, 2, 99, 64] } }))).toBe('v.shape[2]');
    expect(fieldOf(() => normalizeDecodeProblem({ q, k: { shape: [2, 2, 100, 64] }, v: { shape: [2, 2, 100, 64] } }))).toBe('k.shape[0]');
    expect(fieldOf(() => normalizeDecodeProblem({ q }))).toBe('cache');
    expect(() => normalizeDecodeProblem({ q, k: kv, v: kv, dtype: 'bf16' as 'f16' })).toThrow(UnsupportedError);
    expect(() => normalizeDecodeProblem({ q, k: kv, v: kv, scale: Number.NaN })).toThrow(ScaleError);
    expect(fieldOf(() => normalizeDecodeProblem({ q, k: { shape: kv.shape, layout: 'SBHD' as 'BHSD' }, v: kv }))).toBe('k.layout');
    const p = normalizeDecodeProblem({ q, k: kv, v: kv });
    const limits = { maxComputeWorkgroupStorageSize: 32768, maxComputeWorkgroupsPerDimension: 65535 };
    expect(() => chooseDecodeTiling(p, limits, { targetWorkgroups: 64, threads: 96 })).toThrow(TileConfigError);
    expect(fieldOf(() => chooseDecodeTiling(p, limits, { targetWorkgroups: 64, minSplitKeys: 0 }))).toBe('minSplitKeys');
    // The tiling fits the workgroup storage it was given, and splits stay within the workspace.
    const t = chooseDecodeTiling(p, limits, { targetWorkgroups: 64 });
    expect(t.workgroupStorageBytes).toBeLessThanOrEqual(32768);
    expect(t.maxSplits).toBe(Math.min(Math.ceil(100 / t.minSplitKeys), Math.ceil(64 / 2)));
  });



  it('paged: pool geometry beyond the bindable buffers, exhausted free list', async () => {
    const rt = await sharedRuntime();
    const dev = rt.device;
    const pageBytes = 2 * 1 * 16 * 32 * 4;
    expect(() => PagedKvCache.create(rt, { sequences: 1, headsKV: 1, headDim: 32, pageTokens: 16, totalPages: MAX_POOL_BUFFERS + 1, maxBufferBytes: pageBytes })).toThrow(BufferError);
    expect(fieldOf(() => PagedKvCache.create(rt, { sequences: 1, headsKV: 1, headDim: 32, pageTokens: 16, totalPages: 5, maxBufferBytes: pageBytes }))).toBe('totalPages');
    expect(fieldOf(() => PagedKvCache.create(rt, { sequences: 1, headsKV: 1, headDim: 32, pageTokens: 12 }))).toBe('pageTokens');
    expect(fieldOf(() => PagedKvCache.create(rt, { sequences: 1, headsKV: 1, headDim: 36 }))).toBe('headDim');
    expect(fieldOf(() => PagedKvCache.create(rt, { sequences: 1, headsKV: 1, headDim: 32, maxBufferBytes: 1e15 }))).toBe('maxBufferBytes');
    const cache = PagedKvCache.create(rt, { sequences: 2, headsKV: 1, headDim: 32, pageTokens: 16, maxTokensPerSequence: 64, totalPages: 4 });
    const src = upload(dev, new Float32Array(48 * 32));
    const enc = dev.createCommandEncoder();
    cache.append(enc, 0, { k: src, v: src, tokens: 40 });
    expect(() => cache.append(enc, 1, { k: src, v: src, tokens: 17 })).toThrow(BufferError);
    expect(fieldOf(() => cache.append(enc, 1, { k: src, v: src, tokens: 17 }))).toBe('cache.pages');
    expect(cache.length(1)).toBe(0);
    cache.append(enc, 1, { k: src, v: src, tokens: 16 });
    expect(cache.freePageCount).toBe(0);
    dev.queue.submit([enc.finish()]);
    cache.destroy();
  });
});
