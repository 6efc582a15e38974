// The cooperative decode step end to end on a real WebGPU device (SwiftShader in
// CI): GPU projections, q/k/v read back, CPU attention in WASM worker threads,
// results written back. Three executions of the same seeded model must agree:
// all layers on the GPU, offloaded layers attended on the CPU (cooperative, one
// or two micro-batches, f32 or f16 host cache), and classical offloading (cache
// uploaded per step). Every CPU attention result is checked against the float64
// reference over what the host cache holds.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { normalizeProblem } from '../../src/attention/problem.js';
import { cpuAttention } from '../../src/reference/cpuAttention.js';
import { OffloadDecoder, type OffloadDecoderOptions } from '../../src/offload/decoder.js';
import { nodeWorkerSpawner } from '../../src/offload/node.js';
import type { FastAttentionRuntime } from '../../src/runtime/runtime.js';
import type { TileConfig } from '../../src/tiling/tileConfig.js';
import { maxAbsDiff, randn, rng, sharedRuntime } from '../helpers/gpu.js';
import { offloadModule } from './helpers.js';

// Small tiles: SwiftShader compiles the default 64×64 kernel slowly.
const TILE: TileConfig = { blockQ: 8, blockKV: 8, rowsPerThread: 1, threadsPerRow: 8, chunk: 4, kvStages: 1 };
const SHAPE = { layers: 3, batch: 2, heads: 4, kvHeads: 2, headDim: 32, hidden: 32, capacity: 40, threads: 2, seed: 11, tile: TILE };
const PROMPT = 24;
let rt: FastAttentionRuntime;
let module: WebAssembly.Module;
const decoders: OffloadDecoder[] = [];
const checks: { layer: number; err: number; tol: number }[] = [];

beforeAll(async () => {
  rt = await sharedRuntime();
  module = await offloadModule();
});
afterAll(async () => {
  for (const d of decoders) await d.destroy();
});

/** Compare a CPU attention result with the float64 reference over the host cache, as the hook sees it. */
function checker(tol: number): OffloadDecoderOptions['onCpuAttention'] {
  let decoder: OffloadDecoder | undefined;
  const hook: NonNullable<OffloadDecoderOptions['onCpuAttention']> & { bind?: (d: OffloadDecoder) => void } = (layer, q, out, b0, nb) => {
    const c = decoder!.cache;
    const o = c.options;
    for (let b = b0; b < b0 + nb; b++) {
      const S = c.lengths[layer][b];
      const k = new Float32Array(o.kvHeads * S * o.headDim);
      const v = new Float32Array(o.kvHeads * S * o.headDim);
      for (let h = 0; h < o.kvHeads; h++) {
        k.set(c.read(layer, 'k', b, h), h * S * o.headDim);
        v.set(c.read(layer, 'v', b, h), h * S * o.headDim);
      }
      const p = normalizeProblem({ q: { shape: [1, o.heads, 1, o.headDim] }, k: { shape: [1, o.kvHeads, S, o.headDim] }, v: { shape: [1, o.kvHeads, S, o.headDim] } });
      const span = o.heads * o.headDim;
      const ref = cpuAttention(p, q.subarray(b * span, (b + 1) * span), k, v);
      checks.push({ layer, err: maxAbsDiff(out.subarray(b * span, (b + 1) * span), ref), tol });
    }
  };
  hook.bind = (d: OffloadDecoder) => (decoder = d);
  return hook;
}

async function make(extra: Partial<OffloadDecoderOptions> & Pick<OffloadDecoderOptions, 'lCpu' | 'hostDtype'>, tol = 1e-4): Promise<OffloadDecoder> {
  const hook = checker(tol) as ReturnType<typeof checker> & { bind: (d: OffloadDecoder) => void };
  const d = await OffloadDecoder.create(rt, { ...SHAPE, module, spawn: nodeWorkerSpawner, onCpuAttention: hook, ...extra });
  hook.bind(d);
  decoders.push(d);
  return d;
}

describe('cooperative decode vs GPU-only vs classical offloading', () => {
  it('agree step after step; CPU attention matches the float64 reference; no buffers per step', async () => {

    const gpu = await make({ lCpu: 0, hostDtype: 'f32' });
    const coop = await make({ lCpu: 3, hostDtype: 'f32', microBatches: 2 });
    const half = await make({ lCpu: 2, hostDtype: 'f16' }, 2e-3);
    const r = rng(5);
    const prompt = randn(SHAPE.batch * PROMPT * SHAPE.hidden, r);
    for (const d of [gpu, coop, half]) {
      const t = await d.prefill(prompt, PROMPT);
      expect(t.hostMs).toBeGreaterThanOrEqual(t.gpuMs);
    }
    expect(Array.from(coop.cache.lengths[2])).toEqual([PROMPT, PROMPT]);

    const created = rt.ledger.createdCount;
    // step 1: cooperative (two micro-batches) and cooperative f16 against all-GPU
    const x1 = randn(SHAPE.batch * SHAPE.hidden, r);
    const ref1 = await gpu.step(x1, 'cooperative'); // no offloaded layers: all on the GPU
    const out1 = await coop.step(x1, 'cooperative');
    const h1 = await half.step(x1, 'cooperative');
    expect(maxAbsDiff(out1, ref1)).toBeLessThan(1e-4);
    expect(maxAbsDiff(h1, ref1)).toBeLessThan(2e-2); // f16 K/V in two of three layers
    expect(maxAbsDiff(h1, ref1)).toBeGreaterThan(0); // ... which does change the result
    // step 2: classical offloading on the same cache
    const x2 = randn(SHAPE.batch * SHAPE.hidden, r);
    const ref2 = await gpu.step(x2, 'classical');
    const out2 = await coop.step(x2, 'classical');
    expect(maxAbsDiff(out2, ref2)).toBeLessThan(1e-4);
    await expect(half.step(x2, 'classical')).rejects.toMatchObject({ field: 'mode' });
    // step 3: cooperative again, after the classical step appended through the read-back path
    const x3 = randn(SHAPE.batch * SHAPE.hidden, r);
    expect(maxAbsDiff(await coop.step(x3, 'cooperative'), await gpu.step(x3, 'cooperative'))).toBeLessThan(1e-4);
    expect(Array.from(coop.cache.lengths[0])).toEqual([PROMPT + 3, PROMPT + 3]);
    expect(rt.ledger.createdCount).toBe(created);

    // 3 layers × 2 steps × 2 sequences (coop) + 2 layers × 1 step × 2 sequences (f16)
    expect(checks.length).toBe(3 * 2 * 2 + 2 * 2);
    for (const c of checks) expect(c.err).toBeLessThan(c.tol);
  });

  it('rejects bad options before allocating', async () => {
    const base = { ...SHAPE, module, spawn: nodeWorkerSpawner, hostDtype: 'f32' as const };
    await expect(OffloadDecoder.create(rt, { ...base, lCpu: 4 })).rejects.toMatchObject({ field: 'lCpu' });
    await expect(OffloadDecoder.create(rt, { ...base, lCpu: 1, microBatches: 3 as never })).rejects.toMatchObject({ field: 'microBatches' });
    await expect(OffloadDecoder.create(rt, { ...base, lCpu: 1, batch: 1, microBatches: 2 })).rejects.toMatchObject({ field: 'microBatches' });
    await expect(OffloadDecoder.create(rt, { ...base, lCpu: 1, headDim: 20 })).rejects.toMatchObject({ field: 'headDim' });
  });
});
