import { describe, expect, it } from 'vitest';
import { sharedRuntime, readback, randn, rng, maxAbsDiff } from '../helpers/gpu.js';
import { BufferUsage } from '../../src/runtime/usage.js';
import { normalizeProblem } from '../../src/attention/problem.js';
import { cpuAttention } from '../../src/reference/cpuAttention.js';
import { encodeRunnerAttention, layerBytes, planRunnerAttention, type RunnerShape } from '../../src/llm/examples/embedAttention.js';
import { SOFTWARE_ATTENTION_TILE } from '../../src/llm/runner.js';

describe('embedding guide example: a foreign runner hands its device, buffers and encoder over', () => {
  it('decode attention on layer 1 of a layer-major cache equals the CPU reference, with no buffer copied', async () => {
    const device = (await sharedRuntime()).device; // stands in for the runner's own device
    const shape: RunnerShape = { maxBatch: 2, capacity: 64, headsQ: 4, headsKV: 2, headDim: 32, seqQ: 1 };
    const layers = 2;
    const r = rng(21);
    const per = layerBytes(shape) / 4;
    const kData = randn(per * layers, r);
    const vData = randn(per * layers, r);
    const qRows = shape.maxBatch * shape.seqQ * shape.headsQ * shape.headDim;
    const activationOffset = 256;
    const qData = randn(activationOffset / 4 + qRows, r);
    const make = (data: Float32Array<ArrayBuffer> | null, bytes: number): GPUBuffer => {
      const b = device.createBuffer({ size: bytes, usage: BufferUsage.STORAGE | BufferUsage.COPY_DST | BufferUsage.COPY_SRC });
      if (data) device.queue.writeBuffer(b, 0, data);
      return b;
    };
    const bufs = { q: make(qData, qData.byteLength), o: make(null, qData.byteLength), kCache: make(kData, kData.byteLength), vCache: make(vData, vData.byteLength), activationOffset };
    const { runtime, op } = await planRunnerAttention(device, shape, SOFTWARE_ATTENTION_TILE);
    const kvLengths = [37, 64];
    const encoder = device.createCommandEncoder(); // the runner's encoder
    const before = runtime.ledger.createdCount;
    encodeRunnerAttention(op, encoder, shape, bufs, 1, kvLengths);
    expect(runtime.ledger.createdCount).toBe(before);
    device.queue.submit([encoder.finish()]);
    const o = (await readback(device, bufs.o)).subarray(activationOffset / 4, activationOffset / 4 + qRows);

    const p = normalizeProblem({
      q: { shape: [shape.maxBatch, shape.headsQ, shape.seqQ, shape.headDim], layout: 'BSHD' },
      k: { shape: [shape.maxBatch, shape.headsKV, shape.capacity, shape.headDim], layout: 'BSHD' },
      v: { shape: [shape.maxBatch, shape.headsKV, shape.capacity, shape.headDim], layout: 'BSHD' },
      causal: true,
    });
    const ref = cpuAttention(p, qData.subarray(activationOffset / 4), kData.subarray(per), vData.subarray(per), kvLengths);
    expect(maxAbsDiff(o, ref)).toBeLessThan(1e-4);
    op.destroy();
    runtime.destroy(); // frees the operator's own buffers, never the adopted device
    // The runner's device and buffers outlive the adopted runtime.
    expect(Array.from((await readback(device, bufs.kCache, 16)))).toEqual(Array.from(kData.subarray(0, 4)));
    for (const b of [bufs.q, bufs.o, bufs.kCache, bufs.vCache]) b.destroy();
  });
});
