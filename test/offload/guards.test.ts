// Bad input of the CPU-GPU cooperative path is a typed error before anything is
// allocated or any worker starts: a GPU budget too small even for L_gpu = 0, a
// context beyond host memory (or beyond one WebAssembly memory), shared memory
// missing (a page without cross-origin isolation). Also the helpers the Table-3
// benchmark uses: the 16K budget, the longest cooperative context, the split of
// a host cache over several WebAssembly memories.
import { afterEach, describe, expect, it, vi } from 'vitest';
import { FastAttentionError, UnsupportedError } from '../../src/errors.js';
import { CpuAttentionPool } from '../../src/offload/cpuAttention.js';
import { HostKvCache, MAX_HOST_CACHE_BYTES, splitHostKv } from '../../src/offload/hostKvCache.js';
import { budgetForGpuTokens, LLAMA2_7B, maxCooperativeContext, planOffload } from '../../src/offload/planner.js';

const GiB = 2 ** 30;
const common = { batch: 1, gpus: 1, prefillChunk: 4096 };
const err = (f: () => unknown): FastAttentionError => {
  try {
    f();
  } catch (e) {
    return e as FastAttentionError;
  }
  throw new Error('expected a throw');
};

describe('GPU budget', () => {
  it('the 16K budget: weights + vocabulary + intermediate + 32 layers × 16K of f16 KV; one more 1K offloads two layers', () => {
    // 13,657,186,304 (see planner.test.ts) + 32 · 268,435,456
    const budget = budgetForGpuTokens(LLAMA2_7B, 16384, common);
    expect(budget).toBe(13_657_186_304 + 32 * 268_435_456);
    expect(planOffload(LLAMA2_7B, { ...common, promptLength: 16384, outputLength: 0, gpuMemoryBytes: budget }).lGpu).toBe(32);
    // 17K: 8 GiB / 272 MiB = 30.1
    expect(planOffload(LLAMA2_7B, { ...common, promptLength: 17408, outputLength: 0, gpuMemoryBytes: budget }).lGpu).toBe(30);
  });

  it('a budget too small even for L_gpu = 0 is an UnsupportedError naming gpuMemoryBytes, also through maxCooperativeContext', () => {
    const e = err(() => maxCooperativeContext(LLAMA2_7B, { ...common, outputLength: 0, gpuMemoryBytes: 8 * GiB, hostMemoryBytes: 64 * GiB }));
    expect(e).toBeInstanceOf(UnsupportedError);
    expect(e.field).toBe('options.gpuMemoryBytes');
  });
});

describe('host memory', () => {
  const budget = budgetForGpuTokens(LLAMA2_7B, 16384, common);

  it('the longest cooperative context is bound by host memory', () => {
    // 56 GiB: 128K needs L_cpu 28 × 2 GiB = 56 GiB exactly; 129K: L_gpu 3, 29 × 2.016 GiB > 56
    const p = maxCooperativeContext(LLAMA2_7B, { ...common, outputLength: 0, gpuMemoryBytes: budget, hostMemoryBytes: 56 * GiB });
    expect(p.options.promptLength).toBe(131072);
    expect([p.lGpu, p.lCpu]).toEqual([4, 28]);
    expect(p.hostKvBytes).toBe(56 * GiB);
    const beyond = err(() => planOffload(LLAMA2_7B, { ...common, promptLength: 131072 + 1024, outputLength: 0, gpuMemoryBytes: budget, hostMemoryBytes: 56 * GiB }));
    expect(beyond.field).toBe('options.hostMemoryBytes');
  });

  it('a context beyond host memory is a typed error before anything is allocated', () => {
    // 1 layer of 8 KV heads × 128 × 64K tokens, f32: 512 MiB + workspace
    const o = { layers: 1, batch: 1, heads: 32, kvHeads: 8, headDim: 128, capacity: 65536, dtype: 'f32' as const, threads: 2 };
    const e = err(() => HostKvCache.create({ ...o, hostMemoryBytes: 256 * 2 ** 20 }));
    expect(e).toBeInstanceOf(UnsupportedError);
    expect(e.field).toBe('capacity');
    expect(err(() => splitHostKv({ ...o, layers: 4, hostMemoryBytes: GiB })).field).toBe('capacity');
    expect(err(() => HostKvCache.create({ ...o, hostMemoryBytes: -1 })).field).toBe('hostMemoryBytes');
  });

  it('beyond one WebAssembly memory: a typed error for one cache; splitHostKv packs layers, then splits KV heads', () => {
    const layer = { batch: 1, heads: 32, kvHeads: 32, headDim: 128, dtype: 'f32' as const, threads: 16 };
    // 256K × 32 KV heads × 128 × 4 B × 2 = 8 GiB for one layer
    expect(err(() => HostKvCache.bytesFor({ ...layer, layers: 1, capacity: 262144 })).field).toBe('capacity');
    const heads = splitHostKv({ ...layer, layers: 1, capacity: 262144 });
    expect(heads.map((p) => [p.kvHead0, p.kvHeads, p.heads])).toEqual([[0, 8, 8], [8, 8, 8], [16, 8, 8], [24, 8, 8]]); // 16 heads: 4 GiB + workspace, too big
    for (const p of heads) expect(p.bytes).toBeLessThanOrEqual(MAX_HOST_CACHE_BYTES);
    // 16K: 512 MiB per layer → 7 layers per 4 GiB memory
    const layers = splitHostKv({ ...layer, layers: 16, capacity: 16384 });
    expect(layers.map((p) => [p.layer0, p.layers])).toEqual([[0, 7], [7, 7], [14, 2]]);
    expect(splitHostKv({ ...layer, layers: 0, capacity: 16 })).toEqual([]);
  });

  it('an allocation the host refuses is a typed error, not a RangeError', () => {
    const Real = WebAssembly.Memory;
    vi.stubGlobal('WebAssembly', { ...WebAssembly, Memory: class { constructor() { throw new RangeError('WebAssembly.Memory(): could not allocate memory'); } } });
    try {
      const e = err(() => HostKvCache.create({ layers: 1, batch: 1, heads: 2, kvHeads: 2, headDim: 8, capacity: 16, dtype: 'f32', threads: 1 }));
      expect(e).toBeInstanceOf(UnsupportedError);
      expect(e.field).toBe('capacity');
      expect(e.message).toContain('could not allocate');
    } finally {
      vi.unstubAllGlobals();
    }
    expect(WebAssembly.Memory).toBe(Real);
  });
});

describe('shared memory missing', () => {
  afterEach(() => vi.unstubAllGlobals());
  const o = { layers: 1, batch: 1, heads: 2, kvHeads: 2, headDim: 8, capacity: 16, dtype: 'f32' as const, threads: 2 };

  it('no SharedArrayBuffer: HostKvCache.create throws UnsupportedError(SharedArrayBuffer)', () => {
    vi.stubGlobal('SharedArrayBuffer', undefined);
    const e = err(() => HostKvCache.create(o));
    expect(e).toBeInstanceOf(UnsupportedError);
    expect(e.field).toBe('SharedArrayBuffer');
  });

  it('a page without cross-origin isolation: the cache and the pool refuse before any worker starts', async () => {
    const cache = HostKvCache.create(o); // made while shared memory is usable
    vi.stubGlobal('crossOriginIsolated', false);
    expect(err(() => HostKvCache.create(o)).message).toContain('cross-origin isolated');
    const spawn = vi.fn();
    const module = new WebAssembly.Module(new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0]));
    await expect(CpuAttentionPool.create(cache, { module, spawn })).rejects.toMatchObject({ field: 'SharedArrayBuffer' });
    expect(spawn).not.toHaveBeenCalled();
  });
});
