// The standard-attention baseline must be right too: speedups are quoted against it.
import { describe, expect, it } from 'vitest';
import { cpuAttention } from '../../src/reference/cpuAttention.js';
import { emptyBuffer, maxAbsDiff, randn, readback, rng, sharedRuntime, upload } from '../helpers/gpu.js';

const cases = [
  { name: 'causal, GQA, BSHD', q: [1, 4, 70, 64], k: [1, 2, 70, 64], layout: 'BSHD', causal: true },
  { name: 'non-causal, Sq ≠ Sk', q: [2, 2, 33, 32], k: [2, 2, 91, 32], layout: 'BHSD', causal: false },
  { name: 'sliding window + padding, head chunks', q: [2, 3, 45, 80], k: [2, 3, 60, 80], layout: 'BHSD', causal: true, window: 9, kvLengths: [60, 17], maxScoreBytes: 45 * 60 * 4 },
  { name: 'head dim 256, fully masked rows', q: [1, 1, 20, 256], k: [1, 1, 8, 256], layout: 'BHSD', causal: true, kvLengths: [5] },
] as const;

describe('standard attention (baseline) matches the float64 reference', async () => {
  const rt = await sharedRuntime();
  it.each(cases.map((c) => [c.name, c]))('%s', async (_n, c) => {
    const kvLengths = 'kvLengths' in c ? [...c.kvLengths] : undefined;
    const op = await rt.createStandardAttention({
      q: { shape: c.q, layout: c.layout },
      k: { shape: c.k, layout: c.layout },
      v: { shape: c.k, layout: c.layout },
      causal: c.causal,
      window: 'window' in c ? c.window : undefined,
      kvLengths,
      maxScoreBytes: 'maxScoreBytes' in c ? c.maxScoreBytes : undefined,
    });
    const p = op.problem;
    const r = rng(5);
    const q = randn(p.elements.q, r);
    const k = randn(p.elements.k, r);
    const v = randn(p.elements.v, r);
    const o = emptyBuffer(rt.device, p.elements.o * 4);
    await op.run({ q: upload(rt.device, q), k: upload(rt.device, k), v: upload(rt.device, v), o });
    const out = await readback(rt.device, o);
    expect(maxAbsDiff(out, cpuAttention(p, q, k, v, kvLengths), p.elements.o)).toBeLessThanOrEqual(1e-4);
    if ('maxScoreBytes' in c) expect(op.headChunk).toBe(1);
    op.destroy();
  });
});
