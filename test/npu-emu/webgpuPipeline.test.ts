// The emulator's Cube/Vector schedules executed on WebGPU (SwiftShader in CI):
// every variant against the float64 reference, and the GPU's own counts of
// handoffs, sub-blocks and computed pairs against the emulator's task graph for
// the same shapes and tilings.
import { afterAll, describe, expect, it } from 'vitest';
import { cpuAttention } from '../../src/reference/cpuAttention.js';
import { NpuConfigError, emulatorCounts, planPhaseSteps, WebGpuCubeVectorPipeline, type CubeVectorOptions, type FlashTiling } from '../../src/npu-emu/index.js';
import { TileConfigError, UnsupportedError } from '../../src/errors.js';
import { rejects } from '../helpers/errors.js';
import { emptyBuffer, maxAbsDiff, randn, readback, rng, sharedRuntime, upload } from '../helpers/gpu.js';

const TOL = 1e-4;
const UNIFIED: Partial<FlashTiling> = { blockQ: 8, blockKV: 8, subKV: 8, vecRows: 8 };
const TWO_LEVEL: Partial<FlashTiling> = { blockQ: 8, blockKV: 16, subKV: 8, vecRows: 4 };

interface Case {
  name: string;
  shapeQ: [number, number, number, number];
  shapeK: [number, number, number, number];
  causal?: boolean;
  window?: number;
  kvLength?: number;
  layout?: 'BHSD' | 'BSHD';
}

const CASES: Case[] = [
  { name: 'causal Sq=Sk=37', shapeQ: [1, 2, 37, 32], shapeK: [1, 2, 37, 32], causal: true },
  { name: 'no mask Sq=20 Sk=29 BSHD', shapeQ: [1, 2, 20, 32], shapeK: [1, 2, 29, 32], layout: 'BSHD' },
  { name: 'causal+window GQA Sq=24 Sk=40', shapeQ: [2, 2, 24, 32], shapeK: [2, 1, 40, 32], causal: true, window: 9 },
  { name: 'padding kvLen=19 of 33', shapeQ: [1, 1, 21, 32], shapeK: [1, 1, 33, 32], kvLength: 19 },
  { name: 'causal Sq>Sk (rows with no key)', shapeQ: [1, 1, 30, 32], shapeK: [1, 1, 12, 32], causal: true },
];

const VARIANTS: [string, Pick<CubeVectorOptions, 'schedule' | 'tilingMask' | 'issue' | 'tiling'>][] = [
  ['unified+mask', { schedule: 'unified', tilingMask: true, tiling: UNIFIED }],
  ['unified', { schedule: 'unified', tilingMask: false, tiling: UNIFIED }],
  ['twoLevel+mask roles', { schedule: 'twoLevel', tilingMask: true, tiling: TWO_LEVEL, issue: 'roles' }],
  ['twoLevel+mask dispatches', { schedule: 'twoLevel', tilingMask: true, tiling: TWO_LEVEL, issue: 'dispatches' }],
  ['twoLevel roles', { schedule: 'twoLevel', tilingMask: false, tiling: TWO_LEVEL }],
];

describe('WebGPU Cube/Vector pipeline', async () => {
  const rt = await sharedRuntime();
  const device = rt.device;
  const created: WebGpuCubeVectorPipeline[] = [];
  afterAll(() => created.forEach((op) => op.destroy()));

  const grid = CASES.flatMap((c) => VARIANTS.map(([vn, v]) => [`${c.name} · ${vn}`, c, v] as const));
  it.each(grid)('%s: equals the float64 reference and the emulator counts', async (_n, c, v) => {
    const r = rng(c.shapeQ.join('') .length * 7919 + c.shapeK[2]);
    const layout = c.layout ?? 'BHSD';
    const opts: CubeVectorOptions = {
      q: { shape: c.shapeQ, layout }, k: { shape: c.shapeK, layout }, v: { shape: c.shapeK, layout },
      causal: c.causal, window: c.window, kvLength: c.kvLength, ...v,
    };
    const op = await WebGpuCubeVectorPipeline.create(rt, opts);
    created.push(op);
    const p = op.problem;
    const q = randn(p.elements.q, r);
    const k = randn(p.elements.k, r);
    const vv = randn(p.elements.v, r);
    const bufs = { q: upload(device, q), k: upload(device, k), v: upload(device, vv), o: emptyBuffer(device, p.elements.o * 4) };
    // Poison the output so rows the schedule forgets cannot pass as zeros.
    device.queue.writeBuffer(bufs.o, 0, new Float32Array(p.elements.o).fill(Number.NaN));
    await op.run(bufs);
    const out = await readback(device, bufs.o, p.elements.o * 4);
    const kvLengths = c.kvLength !== undefined ? new Array(p.batch).fill(c.kvLength) : undefined;
    const ref = cpuAttention(p, q, k, vv, kvLengths);
    expect(maxAbsDiff(out, ref)).toBeLessThanOrEqual(TOL);

    const gpu = await op.readCounters();
    const emu = emulatorCounts(op.emulatorProblem, op.scheduleOptions);
    expect(gpu.handoffs).toBe(emu.syncs);
    expect(gpu.qk).toBe(emu.levelOneBlocks);
    expect(gpu.subBlocks).toBe(emu.subBlocks);
    expect(p.batch * p.headsQ * p.seqQ * p.seqK - gpu.pairs).toBe(emu.skippedPairs);
    expect(gpu.fullSubBlocks + gpu.partialSubBlocks).toBe(gpu.subBlocks);
    if (!op.tilingMask && (c.causal || c.window || c.kvLength)) expect(gpu.fullSubBlocks).toBe(0);
    Object.values(bufs).forEach((b) => b.destroy());
  });

  it('a second run gives the same output and doubles the counters (no state leaks between runs)', async () => {
    const op = await WebGpuCubeVectorPipeline.create(rt, { q: { shape: [1, 1, 19, 32] }, k: { shape: [1, 1, 19, 32] }, v: { shape: [1, 1, 19, 32] }, causal: true, schedule: 'twoLevel', tiling: TWO_LEVEL });
    created.push(op);
    const r = rng(5);
    const n = op.problem.elements.q;
    const bufs = { q: upload(device, randn(n, r)), k: upload(device, randn(n, r)), v: upload(device, randn(n, r)), o: emptyBuffer(device, n * 4) };
    await op.run(bufs);
    const first = await readback(device, bufs.o, n * 4);
    const c1 = await op.readCounters();
    await op.run(bufs);
    const second = await readback(device, bufs.o, n * 4);
    const c2 = await op.readCounters();
    expect(Array.from(second)).toEqual(Array.from(first));
    expect(c2.handoffs).toBe(2 * c1.handoffs);
    op.resetCounters();
    expect((await op.readCounters()).handoffs).toBe(0);
  });

  it('two-level issues one dispatch per step (roles) and unified four per block', async () => {
    const base = { q: { shape: [1, 1, 32, 32] as const }, k: { shape: [1, 1, 64, 32] as const }, v: { shape: [1, 1, 64, 32] as const }, causal: true };
    const uni = await WebGpuCubeVectorPipeline.create(rt, { ...base, schedule: 'unified', tiling: UNIFIED });
    const roles = await WebGpuCubeVectorPipeline.create(rt, { ...base, schedule: 'twoLevel', tiling: TWO_LEVEL, issue: 'roles' });
    const disp = await WebGpuCubeVectorPipeline.create(rt, { ...base, schedule: 'twoLevel', tiling: TWO_LEVEL, issue: 'dispatches' });
    created.push(uni, roles, disp);
    // Causal, Sq=32 of Sk=64: the last row block sees all 64 keys = 8 unified blocks, 4 two-level ones.
    expect(uni.dispatchCount).toBe(4 * 8);
    expect(roles.dispatchCount).toBe(4 + 3);
    expect(disp.dispatchCount).toBe(4 * 4);
    expect(roles.steps).toEqual(disp.steps);
  });

  it('planPhaseSteps keeps every phase after its producer and at most four blocks in flight', () => {
    for (const stages of [1, 2] as const) {
      for (const n of [0, 1, 2, 5]) {
        const steps = planPhaseSteps(n, stages);
        const at = { qk: [] as number[], sm: [] as number[], pv: [] as number[], upd: [] as number[] };
        steps.forEach((s, i) => (['qk', 'sm', 'pv', 'upd'] as const).forEach((k) => s[k] >= 0 && (at[k][s[k]] = i)));
        if (n === 0) {
          expect(steps).toEqual([{ qk: -1, sm: -1, pv: -1, upd: 0 }]);
          continue;
        }
        for (let j = 0; j < n; j++) {
          expect(at.sm[j]).toBeGreaterThan(at.qk[j]);
          expect(at.pv[j]).toBeGreaterThan(at.sm[j]);
          expect(at.upd[j]).toBeGreaterThan(at.pv[j]);
          if (j > 0) expect(at.sm[j]).toBeGreaterThan(at.sm[j - 1]);
          // Workspaces: block j+gmStages reuses block j's S, P and Ob only after j consumed them.
          if (j + stages < n) {
            expect(at.qk[j + stages]).toBeGreaterThan(at.sm[j]);
            expect(at.sm[j + stages]).toBeGreaterThan(at.pv[j]);
            expect(at.pv[j + stages]).toBeGreaterThan(at.upd[j]);
          }
        }
        expect(steps.length).toBe(stages === 1 ? 4 * n : n + 3);
      }
    }
  });

  it('rejects bad options with typed errors before any dispatch', async () => {
    const base = { q: { shape: [1, 1, 16, 32] as const }, k: { shape: [1, 1, 16, 32] as const }, v: { shape: [1, 1, 16, 32] as const } };
    const err = async (o: Partial<CubeVectorOptions>) => {
      try {
        await WebGpuCubeVectorPipeline.create(rt, { ...base, schedule: 'unified', ...o } as CubeVectorOptions);
      } catch (e) {
        return e as Error & { field: string; allowed: string };
      }
      throw new Error('expected a throw');
    };
    expect((await err({ schedule: 'standard' as never })).field).toBe('schedule');
    expect((await err({ issue: 'queues' as never })).field).toBe('issue');
    expect((await err({ kvLength: 17 })).field).toBe('kvLength');
    const sub = await err({ tiling: { blockKV: 16, subKV: 5 } });
    expect(sub).toBeInstanceOf(NpuConfigError);
    expect(sub.field).toBe('tiling.subKV');
    const vec = await err({ tiling: { blockQ: 512, vecRows: 512 } });
    expect(vec).toBeInstanceOf(TileConfigError);
  });

  it('rejects f16 storage (the kernel reads f32) before creating a buffer or a pipeline; f32 is accepted', async () => {
    const desc = { shape: [1, 1, 16, 32] as const };
    const base = { q: desc, k: desc, v: desc, schedule: 'twoLevel', tiling: TWO_LEVEL } as const;
    const buffers = rt.ledger.createdCount;
    const compiled = rt.pipelines.compiledCount;
    for (const dtype of ['f16', 'bf16']) {
      const e = await rejects(WebGpuCubeVectorPipeline.create(rt, { ...base, dtype: dtype as never }), UnsupportedError, 'dtype');
      expect(e.allowed).toBe('f32');
      expect(e.message).toContain(JSON.stringify(dtype));
    }
    expect(rt.ledger.createdCount).toBe(buffers);
    expect(rt.pipelines.compiledCount).toBe(compiled);
    const op = await WebGpuCubeVectorPipeline.create(rt, { ...base, dtype: 'f32' });
    expect(op.problem.dtype).toBe('f32');
    op.destroy();
  });

  it('rejects the fused kernel\'s tier, tile and checkF16Range: true (none of which it has) before creating a buffer or a pipeline', async () => {
    const desc = { shape: [1, 1, 16, 32] as const };
    const base = { q: desc, k: desc, v: desc, schedule: 'twoLevel', tiling: TWO_LEVEL } as const;
    const buffers = rt.ledger.createdCount;
    const compiled = rt.pipelines.compiledCount;
    for (const tier of ['f32', 'f16', 'subgroup-matrix']) {
      const e = await rejects(WebGpuCubeVectorPipeline.create(rt, { ...base, tier } as never), UnsupportedError, 'tier');
      expect(e.allowed).toBe('omit tier');
      expect(e.message).toContain(JSON.stringify(tier));
    }
    const tile = await rejects(WebGpuCubeVectorPipeline.create(rt, { ...base, tile: { blockQ: 16, blockKV: 16, rowsPerThread: 1, threadsPerRow: 4, chunk: 16, kvStages: 1 } } as never), UnsupportedError, 'tile');
    expect(tile.allowed).toContain('tiling');
    for (const checkF16Range of [true, 'yes']) {
      const e = await rejects(WebGpuCubeVectorPipeline.create(rt, { ...base, checkF16Range } as never), UnsupportedError, 'checkF16Range');
      expect(e.allowed).toMatch(/^false or omitted/);
    }
    // A paged cache is refused too (normalizeProblem without allowCache), not read as contiguous K/V.
    await rejects(WebGpuCubeVectorPipeline.create(rt, { ...base, cache: {} } as never), UnsupportedError, 'cache');
    expect(rt.ledger.createdCount).toBe(buffers);
    expect(rt.pipelines.compiledCount).toBe(compiled);
    // Asking for no check is what it does: accepted.
    const op = await WebGpuCubeVectorPipeline.create(rt, { ...base, checkF16Range: false });
    op.destroy();
  });
});
