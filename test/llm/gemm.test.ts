import { describe, expect, it } from 'vitest';
import { sharedRuntime } from '../helpers/gpu.js';
import { checkGemms } from '../../src/llm/gemmCheck.js';

describe('LLM prefill GEMM kernels vs float64', () => {
  it('tiled GEMM with f32 and packed-f16 activations, plain and accumulating, partial tiles', async () => {
    const rt = await sharedRuntime();
    const bytes = rt.ledger.liveBytes;
    // M and N not multiples of the 32×32 tile; K two matrix-BK steps.
    const r = await checkGemms(rt, { M: 37, N: 40, K: 128, reps: 1, sampleRows: 37 });
    const tiled = r.cases.filter((c) => c.kind === 'tiled');
    expect(tiled.map((c) => c.aF16).sort()).toEqual([false, true]);
    for (const c of tiled) {
      expect(c.maxAbsVsCpu).toBeLessThan(1e-4);
      expect(c.maxAbsVsCpuAccumulate).toBeLessThan(1e-4);
    }
    // Every buffer the check made is released.
    expect(rt.ledger.liveBytes).toBe(bytes);
  });
});
