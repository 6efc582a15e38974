/**
 * WebGPU wall time of the NPU emulator's schedules next to the emulator's
 * predictions for the same shapes, in one run:
 *  - attention prefill as the Cube/Vector pipeline: unified vs two-level tiling
 *    (two-level issued as workgroup roles of one dispatch and as independent
 *    dispatches), with and without the tiling-mask; the library's fused kernel
 *    alongside; GPU-counted handoffs vs the emulator's syncs;
 *  - the tensor-parallel layer on 8 logical devices: baseline vs tiling-AllReduce.
 * Writes one JSON file (never edited by hand):
 *   node dist/benchNpuOverlap.js [--out-dir DIR] [--peaks peaks.json] [--quick]
 * Build: EXTRA_ENTRY=scripts/benchNpuOverlap.ts EXTRA_NAME=benchNpuOverlap node scripts/build.mjs benchNpuOverlap
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { createNodeRuntime } from '../src/node.js';
import { timeGpu, type Timing } from '../src/bench/timing.js';
import { cpuAttention } from '../src/reference/cpuAttention.js';
import { BufferUsage, MapMode } from '../src/runtime/usage.js';
import {
  ascend910B,
  emulatorCounts,
  simulateAttention,
  simulateTilingAllReduce,
  WebGpuCubeVectorPipeline,
  WebGpuTensorParallelLayer,
  type AllReduceAlgorithm,
  type CubeVectorOptions,
  type FlashTiling,
  type LayerConfig,
} from '../src/npu-emu/index.js';
import type { FastAttentionRuntime } from '../src/runtime/runtime.js';

const { values } = parseArgs({
  options: {
    'out-dir': { type: 'string', default: 'bench/results' },
    peaks: { type: 'string' },
    quick: { type: 'boolean', default: false },
  },
});
const quick = values.quick;

interface Variant {
  label: string;
  schedule: 'unified' | 'twoLevel';
  tilingMask: boolean;
  issue: 'roles' | 'dispatches';
  tiling?: Partial<FlashTiling>;
}

// Emulator defaults (unified 128×128, two-level 128×512 / 128 / 32); on a software adapter much smaller.
const SMALL_U: Partial<FlashTiling> = { blockQ: 16, blockKV: 16, subKV: 16, vecRows: 16 };
const SMALL_T: Partial<FlashTiling> = { blockQ: 16, blockKV: 64, subKV: 16, vecRows: 8 };
const VARIANTS: Variant[] = [
  { label: 'unified', schedule: 'unified', tilingMask: false, issue: 'roles' },
  { label: 'unified+mask', schedule: 'unified', tilingMask: true, issue: 'roles' },
  { label: 'unified-pipelined+mask', schedule: 'unified', tilingMask: true, issue: 'roles', tiling: { gmStages: 2 } },
  { label: 'twoLevel', schedule: 'twoLevel', tilingMask: false, issue: 'roles' },
  { label: 'twoLevel+mask', schedule: 'twoLevel', tilingMask: true, issue: 'roles' },
  { label: 'twoLevel+mask (independent dispatches)', schedule: 'twoLevel', tilingMask: true, issue: 'dispatches' },
];

function filled(rt: FastAttentionRuntime, data: Float32Array<ArrayBuffer>): GPUBuffer {
  const b = rt.device.createBuffer({ size: data.byteLength, usage: BufferUsage.STORAGE | BufferUsage.COPY_DST | BufferUsage.COPY_SRC });
  rt.device.queue.writeBuffer(b, 0, data);
  return b;
}

function random(n: number, seed: number): Float32Array<ArrayBuffer> {
  const out = new Float32Array(n);
  let x = seed >>> 0;
  for (let i = 0; i < n; i++) {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    out[i] = (x / 2 ** 32 - 0.5) * 2;
  }
  return out;
}

async function read(rt: FastAttentionRuntime, b: GPUBuffer): Promise<Float32Array> {
  const s = rt.device.createBuffer({ size: b.size, usage: BufferUsage.MAP_READ | BufferUsage.COPY_DST });
  const e = rt.device.createCommandEncoder();
  e.copyBufferToBuffer(b, 0, s, 0, b.size);
  rt.device.queue.submit([e.finish()]);
  await s.mapAsync(MapMode.READ);
  const out = new Float32Array(s.getMappedRange().slice(0));
  s.destroy();
  return out;
}

function maxAbs(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

const timingOptions = { samples: quick ? 3 : 5, minSampleMs: quick ? 5 : 30, maxBatch: 32 };
const round = (x: number, d = 4): number => Math.round(x * 10 ** d) / 10 ** d;

async function main(): Promise<void> {
  const rt = await createNodeRuntime();
  const software = rt.capabilities.adapter.isSoftware;
  const tilingFor = (v: Variant): Partial<FlashTiling> | undefined => (software ? { ...(v.schedule === 'unified' ? SMALL_U : SMALL_T), ...v.tiling } : v.tiling);

  // 1. Correctness on the device itself: every variant vs the float64 reference on a small causal problem.
  const checks: Record<string, number | string> = {};
  {
    const shape = [1, 2, 200, 128] as const;
    const base = { q: { shape }, k: { shape }, v: { shape }, causal: true };
    const n = shape[0] * shape[1] * shape[2] * shape[3];
    const q = random(n, 1), k = random(n, 2), v = random(n, 3);
    const bufs = { q: filled(rt, q), k: filled(rt, k), v: filled(rt, v), o: filled(rt, new Float32Array(n)) };
    let ref: Float64Array | undefined;
    for (const vr of VARIANTS) {
      try {
        const op = await WebGpuCubeVectorPipeline.create(rt, { ...base, schedule: vr.schedule, tilingMask: vr.tilingMask, issue: vr.issue, tiling: tilingFor(vr) });
        ref ??= cpuAttention(op.problem, q, k, v);
        await op.run(bufs);
        checks[vr.label] = maxAbs(await read(rt, bufs.o), ref);
        op.destroy();
      } catch (e) {
        checks[vr.label] = `error: ${(e as Error).message}`;
      }
    }
  }

  // 2. Attention timings next to the emulator.
  const shapes = quick ? [{ batch: 1, heads: 2, seq: 128, headDim: 64 }] : [{ batch: 1, heads: 16, seq: 1024, headDim: 128 }, { batch: 1, heads: 16, seq: 4096, headDim: 128 }];
  const attention: Record<string, unknown>[] = [];
  for (const s of shapes) {
    for (const causal of [false, true]) {
      const shape = [s.batch, s.heads, s.seq, s.headDim] as const;
      const n = s.batch * s.heads * s.seq * s.headDim;
      const bufs = { q: filled(rt, random(n, 11)), k: filled(rt, random(n, 12)), v: filled(rt, random(n, 13)), o: filled(rt, new Float32Array(n)) };
      const base = { q: { shape }, k: { shape }, v: { shape }, causal };
      const fused = await rt.createPrefill(base);
      const fusedTiming = await timeGpu(rt.device, (e) => fused.encode(e, bufs), timingOptions);
      await fused.run(bufs);
      const fusedOut = await read(rt, bufs.o);
      const rows: Record<string, unknown>[] = [];
      const ms: Record<string, number> = {};
      const emuUs: Record<string, number> = {};
      for (const vr of VARIANTS) {
        const opts: CubeVectorOptions = { ...base, schedule: vr.schedule, tilingMask: vr.tilingMask, issue: vr.issue, tiling: tilingFor(vr) };
        try {
          const op = await WebGpuCubeVectorPipeline.create(rt, opts);
          const timing: Timing = await timeGpu(rt.device, (e) => op.encode(e, bufs), timingOptions);
          op.resetCounters();
          await op.run(bufs);
          const counters = await op.readCounters();
          const diffVsFused = maxAbs(await read(rt, bufs.o), fusedOut);
          const emu = simulateAttention(ascend910B, op.emulatorProblem, op.scheduleOptions);
          const counts = emulatorCounts(op.emulatorProblem, op.scheduleOptions);
          ms[vr.label] = timing.medianMs;
          emuUs[vr.label] = emu.latencySeconds * 1e6;
          rows.push({
            variant: vr.label,
            tiling: op.tiling,
            issue: op.issue,
            dispatches: op.dispatchCount,
            workspaceBytes: op.workspaceBytes,
            webgpuMedianMs: round(timing.medianMs),
            timing,
            gpuCounters: counters,
            emulatorSyncsOneCore: counts.syncs,
            handoffsMatchEmulator: counters.handoffs === counts.syncs,
            maxAbsDiffVsFusedKernel: diffVsFused,
            emulatorLatencyMicros910B: round(emu.latencySeconds * 1e6, 2),
            emulatorSyncsBusiestCore910B: emu.summary.syncs,
          });
          op.destroy();
        } catch (e) {
          rows.push({ variant: vr.label, error: (e as Error).message });
        }
      }
      const ratio = (a: string, b: string, t: Record<string, number>): number | null => (t[a] && t[b] ? round(t[a] / t[b]) : null);
      attention.push({
        shape: s,
        causal,
        fusedKernelMedianMs: round(fusedTiming.medianMs),
        variants: rows,
        ratios: {
          twoLevelVsUnified: { webgpu: ratio('unified+mask', 'twoLevel+mask', ms), emulator910B: ratio('unified+mask', 'twoLevel+mask', emuUs) },
          twoLevelVsUnifiedPipelined: { webgpu: ratio('unified-pipelined+mask', 'twoLevel+mask', ms), emulator910B: ratio('unified-pipelined+mask', 'twoLevel+mask', emuUs) },
          unifiedPipelinedVsUnified: { webgpu: ratio('unified+mask', 'unified-pipelined+mask', ms), emulator910B: ratio('unified+mask', 'unified-pipelined+mask', emuUs) },
          rolesVsIndependentDispatches: { webgpu: ratio('twoLevel+mask (independent dispatches)', 'twoLevel+mask', ms) },
          tilingMaskTwoLevel: { webgpu: ratio('twoLevel', 'twoLevel+mask', ms), emulator910B: ratio('twoLevel', 'twoLevel+mask', emuUs) },
          tilingMaskUnified: { webgpu: ratio('unified', 'unified+mask', ms), emulator910B: ratio('unified', 'unified+mask', emuUs) },
          fusedKernelVsTwoLevel: { webgpu: ms['twoLevel+mask'] ? round(ms['twoLevel+mask'] / fusedTiming.medianMs) : null },
        },
      });
      fused.destroy();
      Object.values(bufs).forEach((b) => b.destroy());
    }
  }

  // 3. Tensor-parallel layer, 8 logical devices: baseline vs tiling-AllReduce.
  const layers: LayerConfig[] = quick
    ? [{ name: 'small (hidden 256, 4 heads)', hidden: 256, heads: 4, headDim: 64, seqLen: 256, causal: true }]
    : [1024, 4096].map((seqLen) => ({ name: 'hidden 2048, 16 heads × 128', hidden: 2048, heads: 16, headDim: 128, seqLen, causal: true }));
  const devices = quick ? 4 : 8;
  const allReduce: Record<string, unknown>[] = [];
  for (const layer of layers) {
    for (const algorithm of ['ring', 'tree'] as AllReduceAlgorithm[]) {
      try {
        const tp = await WebGpuTensorParallelLayer.create(rt, { layer, devices, algorithm, granularity: quick ? 64 : 128 });
        const K = layer.heads * layer.headDim;
        const n = layer.seqLen * K;
        const w = random(K * layer.hidden, 21).map((x) => x / Math.sqrt(K));
        tp.setInputs({ q: random(n, 22), k: random(n, 23), v: random(n, 24), w });
        const base = await timeGpu(rt.device, (e) => tp.encode(e, 'baseline'), timingOptions);
        await tp.run('baseline');
        const yBase = await tp.readOutput(devices - 1);
        const tiled = await timeGpu(rt.device, (e) => tp.encode(e, 'tiled'), timingOptions);
        await tp.run('tiled');
        const yTiled = await tp.readOutput(0);
        const emu = simulateTilingAllReduce(ascend910B, layer, { devices, algorithm, blocks: [...tp.blocks] });
        // A fixed 4-way split as well, so a one-block choice still leaves a tiled measurement.
        const quarter = layer.seqLen / 4;
        const equal = await WebGpuTensorParallelLayer.create(rt, { layer, devices, algorithm, blocks: [quarter, quarter, quarter, quarter] });
        equal.setInputs({ q: random(n, 22), k: random(n, 23), v: random(n, 24), w });
        const equalTiming = await timeGpu(rt.device, (e) => equal.encode(e, 'tiled'), timingOptions);
        const emuEqual = simulateTilingAllReduce(ascend910B, layer, { devices, algorithm, blocks: [quarter, quarter, quarter, quarter] });
        equal.destroy();
        allReduce.push({
          layer,
          devices,
          algorithm,
          blocks: tp.blocks,
          dispatches: { baseline: tp.dispatchCount('baseline'), tiled: tp.dispatchCount('tiled') },
          webgpuMs: { baseline: round(base.medianMs), tiled: round(tiled.medianMs) },
          timing: { baseline: base, tiled },
          webgpuTiledSpeedup: round(base.medianMs / tiled.medianMs),
          emulator910B: { baselineMicros: round(emu.baselineSeconds * 1e6, 1), tiledMicros: round(emu.tiledSeconds * 1e6, 1), speedup: round(emu.speedup), baselineCommFraction: round(emu.baselineCommFraction) },
          maxAbsDiffTiledVsBaseline: maxAbs(yTiled, yBase),
          equalQuarters: { webgpuMs: round(equalTiming.medianMs), webgpuSpeedup: round(base.medianMs / equalTiming.medianMs), emulator910BSpeedup: round(emuEqual.speedup), timing: equalTiming },
        });
        tp.destroy();
      } catch (e) {
        allReduce.push({ layer, devices, algorithm, error: (e as Error).message });
      }
    }
  }

  const ceilings = values.peaks ? (JSON.parse(readFileSync(values.peaks, 'utf8').trim().split('\n').filter((l) => l.startsWith('{')).pop()!) as Record<string, unknown>) : null;
  const report = {
    bench: 'npu-overlap',
    adapter: rt.capabilities.adapter,
    date: new Date().toISOString(),
    ceilings,
    notes: [
      'webgpu*: wall time per call (median of samples, each sample = batch of calls in one command buffer), same run for every ratio',
      'emulator910B: simulateAttention / simulateTilingAllReduce on ascend910B for the same shapes and tilings (predicted NPU time, not a GPU prediction)',
      'handoffsMatchEmulator: GPU atomic counters of SM+PV+UPD phases vs sync tasks of the emulator task graph on a one-core copy of the machine',
      'twoLevel+mask runs the Cube stage of block s and the Vector stages of blocks s-1, s-3 as workgroup roles of one dispatch; "(independent dispatches)" issues the same phases as separate dispatches on the single queue',
    ],
    checksMaxAbsErrorVsFloat64: checks,
    attention,
    allReduce,
  };
  const name = `npu-overlap-${`${rt.capabilities.adapter.vendor}-${rt.capabilities.adapter.architecture}`.replace(/[^A-Za-z0-9]+/g, '-')}-${report.date.replace(/[:.]/g, '-')}.json`;
  mkdirSync(values['out-dir']!, { recursive: true });
  const path = join(values['out-dir']!, name);
  writeFileSync(path, `${JSON.stringify(report, null, 2)}\n`);
  console.log(path);
  rt.destroy();
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error(e);
    process.exit(1);
  },
);
