// Bad input to the decode operator and the paged cache: typed errors naming the
// field, thrown before anything is dispatched or recorded. The cases that need
// a compiled operator live next to the pipelines they share (decode.test.ts,
// test/kvcache/pagedKvCache.test.ts): SwiftShader compiles slowly.
import { describe, expect, it } from 'vitest';
import { chooseDecodeSplit, chooseDecodeTiling, decodeComputeUnits, decodeKernelVariant, decodeStorageBytes, normalizeDecodeProblem, selectWgslSections } from '../../src/decode/flashDecode.js';
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
    expect(() => chooseDecodeTiling(p, limits, { computeUnits: 32, threads: 96 })).toThrow(TileConfigError);
    expect(fieldOf(() => chooseDecodeTiling(p, limits, { computeUnits: 32, minSplitKeys: 0 }))).toBe('minSplitKeys');
    expect(fieldOf(() => chooseDecodeTiling(p, limits, { computeUnits: 0 }))).toBe('computeUnits');
    expect(fieldOf(() => chooseDecodeTiling(p, limits, { computeUnits: 32, wordsPerLane: 3 }))).toBe('wordsPerLane');
    expect(fieldOf(() => chooseDecodeTiling(p, limits, { computeUnits: 32, keysPerSlot: 3 }))).toBe('keysPerSlot');
  });

  it('tiling: whole key rows per lane group, rows within the register budget, storage within the limit', () => {
    const shape = (o: Partial<Parameters<typeof chooseDecodeTiling>[0]>) => ({ batch: 1, headsKV: 8, groupSize: 4, seqQ: 1, seqK: 32768, headDim: 128, dtype: 'f16' as const, ...o });
    const h100 = { maxComputeWorkgroupStorageSize: 49152, maxComputeWorkgroupsPerDimension: 65535 };
    const t = chooseDecodeTiling(shape({}), h100, { computeUnits: 132 });
    // f16 D128: 16 words a row, one per lane; 128 invocations by default for f16: 8 slots × 8 keys per step.
    expect([t.lanes, t.wordsPerLane, t.slots, t.keysPerSlot, t.blockN, t.threads]).toEqual([16, 1, 8, 8, 64, 128]);
    expect(chooseDecodeTiling(shape({ dtype: 'f32' }), h100, { computeUnits: 132 }).threads).toBe(256);
    expect([t.rowBlock, t.rowBlocks]).toEqual([4, 1]);
    expect(t.workgroupStorageBytes).toBe(decodeStorageBytes(t, 128));
    expect(t.workgroupStorageBytes).toBeLessThanOrEqual(49152);
    // f32 rows cost half the registers: 16 rows (Sq 4) in 2 blocks of 8.
    const f32 = chooseDecodeTiling(shape({ dtype: 'f32', seqQ: 4 }), h100, { computeUnits: 132 });
    expect([f32.lanes, f32.rowBlock, f32.rowBlocks]).toEqual([32, 8, 2]);
    // D80 f16: 10 words a row → 10 lanes, 12 slots (120 invocations).
    const d80 = chooseDecodeTiling(shape({ headDim: 80 }), h100, { computeUnits: 132 });
    expect([d80.lanes, d80.slots, d80.threads]).toEqual([10, 12, 120]);
    // Short of workgroup memory, fewer keys per slot.
    const small = chooseDecodeTiling(shape({ dtype: 'f32', seqQ: 2 }), { ...h100, maxComputeWorkgroupStorageSize: 16384 }, { computeUnits: 4 });
    expect(small.keysPerSlot).toBeLessThan(8);
    expect(small.workgroupStorageBytes).toBeLessThanOrEqual(16384);
    // The workspace holds every split the policy may choose.
    expect(t.maxSplits).toBe(Math.min(Math.ceil(32768 / t.minSplitKeys), Math.ceil((4 * 132 * 2) / 8)));
    expect(t.workspaceBytes).toBe(32 * t.maxSplits * 33 * 16);
  });

  it('reduction: workgroup memory by default; subgroup shuffles on request, lanes narrowed to a power of two within the subgroup', () => {
    const shape = (o: Partial<Parameters<typeof chooseDecodeTiling>[0]>) => ({ batch: 1, headsKV: 8, groupSize: 4, seqQ: 1, seqK: 32768, headDim: 128, dtype: 'f16' as const, ...o });
    const h100 = { maxComputeWorkgroupStorageSize: 49152, maxComputeWorkgroupsPerDimension: 65535 };
    // Subgroups of 32 cover the 16 lanes of an f16 row and the 32 of an f32 row: no narrowing, 2 keys a slot.
    const t = chooseDecodeTiling(shape({}), h100, { computeUnits: 132, subgroupMinSize: 32, reduction: 'subgroup' });
    expect([t.reduction, t.lanes, t.wordsPerLane, t.slots, t.keysPerSlot, t.threads]).toEqual(['subgroup', 16, 1, 8, 2, 128]);
    expect(chooseDecodeTiling(shape({ dtype: 'f32' }), h100, { computeUnits: 132, subgroupMinSize: 32, reduction: 'subgroup' }).lanes).toBe(32);
    // The default, with or without the feature: workgroup memory, 8 keys a slot.
    const wg = chooseDecodeTiling(shape({}), h100, { computeUnits: 132 });
    expect([wg.reduction, wg.lanes, wg.keysPerSlot]).toEqual(['workgroup', 16, 8]);
    expect(chooseDecodeTiling(shape({}), h100, { computeUnits: 132, subgroupMinSize: 32 }).reduction).toBe('workgroup');
    // Subgroups of 8 narrower than the 16 lanes of a row: 2 words a lane when the shuffles are asked for.
    expect(chooseDecodeTiling(shape({}), h100, { computeUnits: 132, subgroupMinSize: 8, reduction: 'subgroup' }).lanes).toBe(8);
    // Forced onto subgroups of 4: 4 words a lane (32 dims), 4 lanes a row; rows stay in fours.
    const sg4 = chooseDecodeTiling(shape({}), h100, { computeUnits: 4, subgroupMinSize: 4, reduction: 'subgroup', threads: 64 });
    expect([sg4.lanes, sg4.wordsPerLane, sg4.slots, sg4.rowBlock]).toEqual([4, 4, 16, 4]);
    // The shuffle variant needs no partials buffer: only the slot merge (8 slots × 128 f32) and the slot statistics (vec4s).
    expect(t.workgroupStorageBytes).toBe(4 * 8 * 128 + 16 * 2 * 8);
    // D80 f16 has 10 lanes a row, not a power of two: the shuffles get 2 lanes of 5 words.
    expect(chooseDecodeTiling(shape({ headDim: 80 }), h100, { computeUnits: 132, subgroupMinSize: 32, reduction: 'subgroup' }).lanes).toBe(2);
    expect(wg.workgroupStorageBytes).toBe(decodeStorageBytes(wg, 128));
    expect(wg.workgroupStorageBytes).toBeGreaterThan(t.workgroupStorageBytes);
    // Typed errors: no subgroups, an explicit lane split wider than the subgroup, an unknown reduction.
    expect(() => chooseDecodeTiling(shape({}), h100, { computeUnits: 4, reduction: 'subgroup' })).toThrow(UnsupportedError);
    expect(fieldOf(() => chooseDecodeTiling(shape({}), h100, { computeUnits: 4, reduction: 'subgroup' }))).toBe('reduction');
    expect(fieldOf(() => chooseDecodeTiling(shape({}), h100, { computeUnits: 4, subgroupMinSize: 4, reduction: 'subgroup', wordsPerLane: 1 }))).toBe('wordsPerLane');
    expect(fieldOf(() => chooseDecodeTiling(shape({}), h100, { computeUnits: 4, reduction: 'shuffle' as 'subgroup' }))).toBe('reduction');
  });

  it('native f16 and subgroup reductions are refused with typed errors where the device lacks them', async () => {
    const rt = await sharedRuntime();
    const { FlashDecode } = await import('../../src/decode/flashDecode.js');
    const opts = { q: { shape: [1, 4, 1, 64] as const }, k: { shape: [1, 1, 64, 64] as const }, v: { shape: [1, 1, 64, 64] as const }, dtype: 'f16' as const };
    if (!rt.capabilities.features.shaderF16) {
      await expect(FlashDecode.create(rt, { ...opts, nativeF16: true })).rejects.toThrow(UnsupportedError);
      await expect(FlashDecode.create(rt, { ...opts, nativeF16: true }).catch((e: { field?: string }) => e.field)).resolves.toBe('nativeF16');
    }
    if (!rt.capabilities.features.subgroups) await expect(FlashDecode.create(rt, { ...opts, reduction: 'subgroup' })).rejects.toThrow(UnsupportedError);
  });

  it('shader sections: one branch per flag, line numbers kept, malformed sections rejected', () => {
    const src = ['a', '//#if X', 'x1', '//#if Y', 'xy', '//#endif', '//#else', 'notx', '//#endif', 'b'].join('\n');
    expect(selectWgslSections(src, { X: true, Y: true }).split('\n')).toEqual(['a', '', 'x1', '', 'xy', '', '', '', '', 'b']);
    expect(selectWgslSections(src, { X: true, Y: false }).split('\n')).toEqual(['a', '', 'x1', '', '', '', '', '', '', 'b']);
    expect(selectWgslSections(src, { X: false, Y: true }).split('\n')).toEqual(['a', '', '', '', '', '', '', 'notx', '', 'b']);
    expect(() => selectWgslSections(src, { X: true })).toThrow(/no such flag/);
    expect(() => selectWgslSections('//#if X\nx', { X: true })).toThrow(/not closed/);
    expect(() => selectWgslSections('x\n//#endif', {})).toThrow(/without/);
    expect(() => selectWgslSections('//#if X\n//#else\n//#else\n//#endif', { X: true })).toThrow(/second/);
    // The decode kernel: the core variant references neither f16 types nor subgroup builtins; each feature brings its enable.
    const core = decodeKernelVariant({ nativeF16: false, subgroups: false });
    expect(core.enables).toEqual([]);
    expect(core.kernel.code).not.toMatch(/f16>|subgroupShuffle/);
    expect(core.kernel.code).toMatch(/unpack2x16float/);
    const full = decodeKernelVariant({ nativeF16: true, subgroups: true });
    expect(full.enables).toEqual(['f16', 'subgroups']);
    expect(full.kernel.code).toMatch(/bitcast<vec4<f16>>/);
    expect(full.kernel.code).toMatch(/subgroupShuffleXor/);
    expect(full.kernel.code).not.toMatch(/workgroupBarrier\(\);\s*for \(var e = tid; e < STEP/);
    expect(new Set([core.kernel.name, full.kernel.name, decodeKernelVariant({ nativeF16: true, subgroups: false }).kernel.name]).size).toBe(3);
  });

  it('split policy: fills every compute unit, splits are whole steps, ties to fewer splits', () => {
    const base = { baseWorkgroups: 8, computeUnits: 132, workgroupsPerUnit: 2, stepKeys: 64, minSplitKeys: 128, maxSplits: 132 };
    const s32k = chooseDecodeSplit({ ...base, maxKv: 32768 });
    expect(s32k.splitLen % 64).toBe(0);
    expect(s32k.splits * s32k.splitLen).toBeGreaterThanOrEqual(32768);
    expect((s32k.splits - 1) * s32k.splitLen).toBeLessThan(32768);
    // 8 × 32 = 256 workgroups: two per unit on 132 units, the fewest that saturate them.
    expect(s32k).toEqual({ splits: 32, splitLen: 1024 });
    // Longer sequences keep the workgroup count and lengthen the splits.
    expect(chooseDecodeSplit({ ...base, maxKv: 131072 }).splitLen).toBeGreaterThan(s32k.splitLen);
    // Short sequences stop at the minimum split length.
    expect(chooseDecodeSplit({ ...base, maxKv: 1000 })).toEqual({ splits: 8, splitLen: 128 });
    expect(chooseDecodeSplit({ ...base, maxKv: 100 })).toEqual({ splits: 1, splitLen: 128 });
    expect(chooseDecodeSplit({ ...base, maxKv: 0 })).toEqual({ splits: 1, splitLen: 64 });
    // Enough base workgroups already: no split.
    expect(chooseDecodeSplit({ ...base, baseWorkgroups: 512, maxKv: 4096 }).splits).toBe(1);
    // Never beyond the workspace.
    expect(chooseDecodeSplit({ ...base, maxSplits: 5, maxKv: 131072 }).splits).toBeLessThanOrEqual(5);
    // More compute units, more splits.
    expect(chooseDecodeSplit({ ...base, computeUnits: 16, maxKv: 32768 }).splits).toBeLessThan(s32k.splits);
  });

  it('compute units by adapter name', () => {
    const a = (device: string, isSoftware = false) => ({ vendor: 'nvidia', device, description: '', isSoftware });
    expect(decodeComputeUnits(a('nvidia-h100-80gb-hbm3'))).toBe(132);
    expect(decodeComputeUnits(a('nvidia-h100-pcie'))).toBe(114);
    expect(decodeComputeUnits(a('nvidia-a100-sxm4-40gb'))).toBe(108);
    expect(decodeComputeUnits(a('swiftshader-device', true))).toBe(4);
    expect(decodeComputeUnits(a('some-gpu'))).toBe(32);
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
