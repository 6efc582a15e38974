// The Volta-path kernel, both accumulator layouts, against the float64 CPU
// reference on dawn.node (SwiftShader in CI: subgroups of 4; the kernel plays
// its 32-lane warps with workgroup memory on every adapter, so nothing here is
// adapter-specific). Odd sequence lengths, Sq ≠ Sk, causal or not, padding
// (kvLengths), GQA and both memory layouts, at D = 64 and 128.
//
// SwiftShader compiles these pipelines slowly (seconds each), so every case
// reuses one of four pipelines (2 layouts × 2 head dims), created concurrently.
import { describe, expect, it } from 'vitest';
import { cpuAttention } from '../../src/reference/cpuAttention.js';
import type { TensorLayout } from '../../src/tiling/layout.js';
import type { VoltaAccumulator } from '../../src/volta/kernelTables.js';
import { VoltaAttention, type VoltaKernelConfig } from '../../src/volta/voltaAttention.js';
import { emptyBuffer, maxAbsDiff, randn, readback, rng, sharedRuntime, upload } from '../helpers/gpu.js';

const TOL = 1e-4;
/** One config per head dim that fits SwiftShader's 32 KiB for both layouts. */
const CONFIGS: Record<number, VoltaKernelConfig> = { 64: { warps: 1, blockKV: 16 }, 128: { warps: 1, blockKV: 8 } };

interface Case {
  name: string;
  shapeQ: [number, number, number, number];
  shapeK: [number, number, number, number];
  causal: boolean;
  layout?: TensorLayout;
  kvLengths?: number[];
}

const CASES: Case[] = [
  { name: 'D64 S=64 causal (tile multiple)', shapeQ: [1, 2, 64, 64], shapeK: [1, 2, 64, 64], causal: true },
  { name: 'D64 S=77 (odd: partial query and key blocks)', shapeQ: [1, 1, 77, 64], shapeK: [1, 1, 77, 64], causal: false },
  { name: 'D64 Sq=40 Sk=57 causal, GQA 2:1, kvLengths [57, 30]', shapeQ: [2, 2, 40, 64], shapeK: [2, 1, 57, 64], causal: true, kvLengths: [57, 30] },
  { name: 'D64 Sq=45 Sk=20 causal (rows that see no key)', shapeQ: [1, 1, 45, 64], shapeK: [1, 1, 20, 64], causal: true },
  { name: 'D64 S=33 causal, BSHD', shapeQ: [1, 2, 33, 64], shapeK: [1, 2, 33, 64], causal: true, layout: 'BSHD' },
  { name: 'D128 S=50 causal', shapeQ: [1, 1, 50, 128], shapeK: [1, 1, 50, 128], causal: true },
  { name: 'D128 S=37', shapeQ: [1, 2, 37, 128], shapeK: [1, 2, 37, 128], causal: false },
];

describe('Volta-path kernel matches the float64 reference', async () => {
  const rt = await sharedRuntime();
  const make = (accumulator: VoltaAccumulator, c: Case) =>
    VoltaAttention.create(rt, {
      accumulator,
      q: { shape: c.shapeQ, layout: c.layout },
      k: { shape: c.shapeK, layout: c.layout },
      v: { shape: c.shapeK, layout: c.layout },
      o: { shape: c.shapeQ, layout: c.layout },
      causal: c.causal,
      config: CONFIGS[c.shapeQ[3]],
    });
  // Compile the four pipelines at once (Dawn compiles asynchronous pipelines in parallel).
  const before = rt.pipelines.compiledCount;
  const ops = await Promise.all((['f16', 'f32'] as const).flatMap((a) => CASES.map((c) => make(a, c))));

  it('every case reuses one of 2 layouts × 2 head dims: four pipelines in all', () => {
    expect(rt.pipelines.compiledCount - before).toBe(4);
  });

  it('encode checks buffers before dispatching', () => {
    const small = rt.device.createBuffer({ size: 64, usage: 0x80 /* STORAGE */ });
    expect(() => ops[0].encode(rt.device.createCommandEncoder(), { q: small, k: small, v: small, o: small })).toThrow(/buffers\.q\.size/);
    small.destroy();
  });

  it.each(ops.map((op, i) => [`${op.accumulator} ${CASES[i % CASES.length].name}`, op, CASES[i % CASES.length]] as const))('%s', async (_n, op, c) => {
    const p = op.problem;
    const r = rng(p.seqQ * 131 + p.headDim + (op.accumulator === 'f32' ? 7 : 0));
    const q = randn(p.elements.q, r);
    const k = randn(p.elements.k, r);
    const v = randn(p.elements.v, r);
    const dev = rt.device;
    const o = emptyBuffer(dev, p.elements.o * 4);
    // NaN canaries: every output element must be written.
    dev.queue.writeBuffer(o, 0, new Float32Array(p.elements.o).fill(Number.NaN));
    const bufs = { q: upload(dev, q), k: upload(dev, k), v: upload(dev, v), o };
    await op.run(bufs, { kvLengths: c.kvLengths });
    const got = await readback(dev, o, p.elements.o * 4);
    const want = cpuAttention(p, q, k, v, c.kvLengths);
    expect(maxAbsDiff(got, want)).toBeLessThanOrEqual(TOL);
    for (const b of Object.values(bufs)) b.destroy();
  });
});
