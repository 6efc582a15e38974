// The tuner measures candidates on the real adapter; operators then use the winners.
import { describe, expect, it } from 'vitest';
import { createNodeRuntime } from '../../src/node.js';
import { tune } from '../../src/tuning/tuner.js';
import { lookupTuned, mergeTuningTables, parseTuningTable, seqBucket, shapeClassKey, type TuningTable } from '../../src/tuning/tuning.js';
import { SHIPPED_TUNING } from '../../src/tuning/shipped.js';

const entry = (seqBucket: number, ms: number) => ({
  shapeClass: { dtype: 'f32' as const, headDim: 64, causal: true, seqBucket },
  tier: 'f32' as const,
  tile: { blockQ: 16, blockKV: 16, rowsPerThread: 1, threadsPerRow: 16, chunk: 8, kvStages: 1 as const },
  medianMs: ms,
  candidates: [],
});

describe('tuning tables', () => {
  it('buckets sequence lengths by powers of two within [256, 16384]', () => {
    expect([1, 256, 257, 1000, 4096, 5000, 100000].map(seqBucket)).toEqual([256, 256, 512, 1024, 4096, 8192, 16384]);
    expect(shapeClassKey({ dtype: 'f16', headDim: 128, causal: true, seqBucket: 4096 })).toBe('f16-d128-causal-s4096');
  });

  it('looks up the nearest measured bucket of the same dtype, head dim and causality', () => {
    const table: TuningTable = { adapter: 'x/y', date: '', measuredWith: { batch: 1, heads: 1 }, entries: [entry(1024, 1), entry(8192, 2)] };
    expect(lookupTuned(table, { dtype: 'f32', headDim: 64, causal: true, seqQ: 900, seqK: 900 })?.medianMs).toBe(1);
    expect(lookupTuned(table, { dtype: 'f32', headDim: 64, causal: true, seqQ: 16000, seqK: 16000 })?.medianMs).toBe(2);
    expect(lookupTuned(table, { dtype: 'f32', headDim: 64, causal: false, seqQ: 900, seqK: 900 })).toBeUndefined();
    expect(lookupTuned(table, { dtype: 'f32', headDim: 128, causal: true, seqQ: 900, seqK: 900 })).toBeUndefined();
  });

  it('rejects malformed tables', () => {
    expect(() => parseTuningTable('{"entries": []}')).toThrow(/adapter/);
    expect(() => parseTuningTable({ adapter: 'a', entries: [{ tier: 'f32' }] })).toThrow(/entry 0/);
  });

  it('merges a partial re-tune into a table, class by class', () => {
    const base: TuningTable = { adapter: 'x/y', date: 'a', measuredWith: { batch: 1, heads: 1 }, entries: [entry(1024, 1), entry(8192, 2)] };
    const update: TuningTable = { adapter: 'x/y', date: 'b', measuredWith: { batch: 1, heads: 32 }, entries: [entry(8192, 3), entry(4096, 4)] };
    const merged = mergeTuningTables(base, update);
    expect(merged.entries.map((e) => [e.shapeClass.seqBucket, e.medianMs])).toEqual([[1024, 1], [8192, 3], [4096, 4]]);
    expect(merged.date).toBe('b');
    expect(() => mergeTuningTables(base, { ...update, adapter: 'x/z' })).toThrow(/different adapters/);
  });

  it('shipped tables parse', () => {
    for (const t of SHIPPED_TUNING) expect(t.entries.length).toBeGreaterThan(0);
  });
});

describe('tuner on the software adapter', () => {
  it('measures the candidates and the runtime then uses the winner', async () => {
    const rt = await createNodeRuntime();
    const tiles = [
      { blockQ: 16, blockKV: 16, rowsPerThread: 1, threadsPerRow: 16, chunk: 8, kvStages: 1 as const },
      { blockQ: 32, blockKV: 32, rowsPerThread: 2, threadsPerRow: 16, chunk: 8, kvStages: 2 as const },
    ];
    const table = await tune(rt, { classes: [{ dtype: 'f32', headDim: 32, causal: true, seqBucket: 256 }], heads: 1, tiles, samples: 1 });
    expect(table.entries).toHaveLength(1);
    const e = table.entries[0];
    expect(e.candidates).toHaveLength(2);
    const times = e.candidates.map((c) => c.medianMs!);
    expect(times.every((t) => t > 0)).toBe(true);
    expect(e.medianMs).toBe(Math.min(...times));
    rt.tuning = table;
    const shape = [1, 1, 200, 32] as const;
    const op = await rt.createPrefill({ q: { shape }, k: { shape }, v: { shape }, causal: true });
    expect(op.tile).toEqual(e.tile);
    expect(op.tier.reason).toMatch(/^tuned for f32-d32-causal-s256/);
    // An explicit tile still wins over the table.
    const forced = await rt.createPrefill({ q: { shape }, k: { shape }, v: { shape }, causal: true, tile: tiles[0] });
    expect(forced.tile).toEqual(tiles[0]);
    rt.destroy();
  });
});
