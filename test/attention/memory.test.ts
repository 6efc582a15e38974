// The fast path holds no S×S buffer and allocates nothing per call; the
// ledger sees every buffer the runtime creates.
import { describe, expect, it } from 'vitest';
import { createNodeRuntime } from '../../src/node.js';
import { emptyBuffer, randn, rng, upload } from '../helpers/gpu.js';

describe('memory accounting', () => {
  it('the fused path creates no buffer of Sq×Sk elements and none per call', async () => {
    const rt = await createNodeRuntime();
    const S = 512;
    const D = 64;
    const shape = [1, 2, S, D] as const;
    const op = await rt.createPrefill({ q: { shape }, k: { shape }, v: { shape }, causal: true });
    const dev = rt.device;
    const r = rng(3);
    const bufs = { q: upload(dev, randn(2 * S * D, r)), k: upload(dev, randn(2 * S * D, r)), v: upload(dev, randn(2 * S * D, r)), o: emptyBuffer(dev, 2 * S * D * 4) };
    await op.run(bufs);
    const created = rt.ledger.createdCount;
    const bindGroups = rt.bindGroups.createdCount;
    const compiled = rt.pipelines.compiledCount;
    for (let i = 0; i < 5; i++) await op.run(bufs);
    expect(rt.ledger.createdCount).toBe(created);
    expect(rt.bindGroups.createdCount).toBe(bindGroups);
    expect(rt.pipelines.compiledCount).toBe(compiled);

    const entries = rt.ledger.entries();
    expect(entries.map((e) => e.owner).sort()).toEqual(['flashAttentionPrefill', 'flashAttentionPrefill', 'tilingMask']);
    for (const e of entries) expect(e.size).toBeLessThan(S * S * 4);
    const mask = entries.find((e) => e.owner === 'tilingMask')!;
    expect(mask.size).toBe(op.maskBytes);
    expect(rt.ledger.liveBytes).toBe(entries.reduce((n, e) => n + e.size, 0));

    // The baseline, by contrast, does hold S×S buffers, and the ledger shows them.
    const std = await rt.createStandardAttention({ q: { shape }, k: { shape }, v: { shape }, causal: true });
    const stdEntries = rt.ledger.entries().filter((e) => e.owner === 'standardAttention');
    expect(stdEntries.some((e) => e.size >= S * S * 4)).toBe(true);
    std.destroy();
    expect(rt.ledger.entries().filter((e) => e.owner === 'standardAttention')).toEqual([]);
    rt.destroy();
  });

  it('a second operator with the same shape reuses the compiled pipeline', async () => {
    const rt = await createNodeRuntime();
    const shape = [1, 1, 40, 32] as const;
    await rt.createPrefill({ q: { shape }, k: { shape }, v: { shape } });
    const n = rt.pipelines.compiledCount;
    await rt.createPrefill({ q: { shape }, k: { shape }, v: { shape }, causal: true });
    expect(rt.pipelines.compiledCount).toBe(n);
    rt.destroy();
  });
});
