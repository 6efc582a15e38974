/**
 * Benchmark of the Volta-path kernel: the FP16- and FP32-accumulator layouts
 * and the main fused kernel (`runtime.createPrefill`, f32 storage) on the same
 * inputs in the same run, at S = 2K, 4K, 8K and D = 64, 128 (B = 1, H = 8),
 * non-causal and causal; plus a correctness check of both variants against
 * the float64 reference on this adapter, and the exchange counts of the
 * accumulator → A-operand conversion from fragmentConverter.
 *
 *   EXTRA_ENTRY=scripts/benchVolta.ts EXTRA_NAME=benchVolta node scripts/build.mjs benchVolta
 *   node .gpu/peaks.mjs > peaks.json && node dist/benchVolta.js --peaks peaks.json [--dir DIR | --out FILE]
 *
 * Without --out the results go to DIR (default bench/results)/volta-<adapter>-<time>.json.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import { attentionFlops } from '../src/attention/flops.js';
import type { AttentionProblem } from '../src/attention/problem.js';
import { timeGpu, type Timing } from '../src/bench/timing.js';
import { createNodeRuntime } from '../src/node.js';
import { cpuAttention } from '../src/reference/cpuAttention.js';
import { BufferUsage, MapMode } from '../src/runtime/usage.js';
import { VOLTA_ACCUMULATORS, voltaExchangeCounts, type VoltaAccumulator } from '../src/volta/kernelTables.js';
import { chooseVoltaConfig, VoltaAttention } from '../src/volta/voltaAttention.js';

const { values } = parseArgs({
  options: {
    peaks: { type: 'string' },
    out: { type: 'string' },
    dir: { type: 'string', default: join('bench', 'results') },
    seqs: { type: 'string', default: '2048,4096,8192' },
    dims: { type: 'string', default: '64,128' },
    heads: { type: 'string', default: '8' },
    samples: { type: 'string', default: '7' },
    'min-sample-ms': { type: 'string', default: '60' },
  },
});

const rt = await createNodeRuntime();
const dev = rt.device;
/** The ceilings JSON of peaks.mjs: its last line that is a JSON object (Dawn may print shader warnings before it). */
function readCeilings(path: string): Record<string, unknown> {
  const lines = readFileSync(path, 'utf8').split('\n').filter((l) => l.trim().startsWith('{'));
  for (const line of lines.reverse()) {
    try {
      return JSON.parse(line) as Record<string, unknown>;
    } catch {
      // not the JSON line
    }
  }
  throw new Error(`${path} holds no JSON object`);
}
const ceilings = values.peaks ? readCeilings(values.peaks) : null;
const f32Ceiling = typeof ceilings?.f32_fma_tflops === 'number' ? ceilings.f32_fma_tflops : null;
const timing = { samples: Number(values.samples), minSampleMs: Number(values['min-sample-ms']), maxBatch: 32 };
const seqs = values.seqs!.split(',').map(Number);
const dims = values.dims!.split(',').map(Number);
const heads = Number(values.heads);

function filled(elements: number, seed: number): { buffer: GPUBuffer; data: Float32Array<ArrayBuffer> } {
  const data = new Float32Array(elements);
  let x = seed >>> 0;
  for (let i = 0; i < elements; i++) {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    data[i] = (x / 2 ** 32 - 0.5) * 3;
  }
  const buffer = dev.createBuffer({ size: data.byteLength, usage: BufferUsage.STORAGE | BufferUsage.COPY_DST | BufferUsage.COPY_SRC });
  dev.queue.writeBuffer(buffer, 0, data);
  return { buffer, data };
}

async function readback(buffer: GPUBuffer, bytes: number): Promise<Float32Array> {
  const staging = dev.createBuffer({ size: bytes, usage: BufferUsage.MAP_READ | BufferUsage.COPY_DST });
  const enc = dev.createCommandEncoder();
  enc.copyBufferToBuffer(buffer, 0, staging, 0, bytes);
  dev.queue.submit([enc.finish()]);
  await staging.mapAsync(MapMode.READ);
  const out = new Float32Array(staging.getMappedRange().slice(0));
  staging.destroy();
  return out;
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    if (!(d <= m)) m = Number.isNaN(d) ? Infinity : d;
  }
  return m;
}

// ---- correctness on this adapter: both variants vs float64, odd S, both head dims, causal and not ----
interface CheckRow {
  accumulator: VoltaAccumulator;
  shape: number[];
  causal: boolean;
  config: { warps: number; blockKV: number };
  maxAbsErr: number;
  tolerance: number;
  pass: boolean;
}
const checks: CheckRow[] = [];
for (const D of dims) {
  for (const causal of [false, true]) {
    const shape = [1, 2, 301, D] as const;
    const n = shape[0] * shape[1] * shape[2] * shape[3];
    const q = filled(n, 11 + D);
    const k = filled(n, 12 + D);
    const v = filled(n, 13 + D);
    const o = dev.createBuffer({ size: n * 4, usage: BufferUsage.STORAGE | BufferUsage.COPY_SRC });
    let want: Float64Array | null = null;
    for (const accumulator of VOLTA_ACCUMULATORS) {
      const op = await VoltaAttention.create(rt, { accumulator, q: { shape }, k: { shape }, v: { shape }, causal });
      want ??= cpuAttention(op.problem, q.data, k.data, v.data);
      await op.run({ q: q.buffer, k: k.buffer, v: v.buffer, o });
      const err = maxAbsDiff(await readback(o, n * 4), want);
      checks.push({ accumulator, shape: [...shape], causal, config: op.config, maxAbsErr: err, tolerance: 1e-4, pass: err <= 1e-4 });
      op.destroy();
    }
    for (const b of [q.buffer, k.buffer, v.buffer, o]) b.destroy();
  }
}

// ---- timings ----
interface Row {
  variant: 'volta-f16-acc' | 'volta-f32-acc' | 'main-fused';
  shape: { batch: number; heads: number; seq: number; headDim: number; causal: boolean };
  config: unknown;
  timing: Timing;
  flops: number;
  tflops: number;
  /** main-fused ms / this ms, same inputs, same run. */
  speedupVsMain: number | null;
  fractionOfF32Ceiling: number | null;
}
const rows: Row[] = [];
const ratios: Array<{ shape: Row['shape']; f32AccOverF16Acc: number; f16AccOverMain: number; f32AccOverMain: number }> = [];
for (const D of dims) {
  for (const S of seqs) {
    for (const causal of [false, true]) {
      const shape = [1, heads, S, D] as const;
      const n = shape[0] * shape[1] * shape[2] * shape[3];
      const bufs = { q: filled(n, 1).buffer, k: filled(n, 2).buffer, v: filled(n, 3).buffer, o: dev.createBuffer({ size: n * 4, usage: BufferUsage.STORAGE }) };
      const attn = { q: { shape }, k: { shape }, v: { shape }, causal };
      const label = { batch: 1, heads, seq: S, headDim: D, causal };
      const main = await rt.createPrefill(attn);
      const mainT = await timeGpu(dev, (enc) => main.encode(enc, bufs), timing);
      const record = (variant: Row['variant'], problem: AttentionProblem, config: unknown, t: Timing): Row => {
        const flops = attentionFlops(problem);
        const tflops = flops / t.medianMs / 1e9;
        const row = { variant, shape: label, config, timing: t, flops, tflops, speedupVsMain: mainT.medianMs / t.medianMs, fractionOfF32Ceiling: f32Ceiling ? tflops / f32Ceiling : null };
        rows.push(row);
        console.error(`${variant.padEnd(14)} S=${S} D=${D}${causal ? ' causal' : ''}: ${t.medianMs.toFixed(3)} ms, ${tflops.toFixed(2)} TFLOP/s`);
        return row;
      };
      const m = main as unknown as { tile?: unknown; tier?: unknown };
      record('main-fused', main.problem, { tile: m.tile ?? null, tier: m.tier ?? null }, mainT);
      main.destroy();
      const ms: Record<string, number> = {};
      for (const accumulator of VOLTA_ACCUMULATORS) {
        const op = await VoltaAttention.create(rt, { ...attn, accumulator });
        const t = await timeGpu(dev, (enc) => op.encode(enc, bufs), timing);
        record(`volta-${accumulator}-acc`, op.problem, { ...op.config, workgroupStorageBytes: op.workgroupStorageBytes, swizzles: op.swizzles.map((s) => `${s.tile}: ${s.swizzle}`) }, t);
        ms[accumulator] = t.medianMs;
        op.destroy();
      }
      ratios.push({ shape: label, f32AccOverF16Acc: ms.f32 / ms.f16, f16AccOverMain: ms.f16 / mainT.medianMs, f32AccOverMain: ms.f32 / mainT.medianMs });
      for (const b of Object.values(bufs)) b.destroy();
    }
  }
}

const exchange = dims.map((D) => {
  const cfg = chooseVoltaConfig(D, rt.tileLimits);
  return { headDim: D, config: cfg, counts: VOLTA_ACCUMULATORS.map((a) => voltaExchangeCounts(a, cfg.blockKV)) };
});
const caps = rt.capabilities;
const report = {
  benchmark: 'volta-path kernel (scripts/benchVolta.ts)',
  adapter: caps.adapter,
  features: caps.features,
  date: new Date().toISOString(),
  ceilings,
  timingOptions: timing,
  notes: [
    'Both Volta variants: f32 storage and arithmetic, 32 invocations of the workgroup per emulated warp, all cross-lane traffic through workgroup memory (no subgroup operations).',
    'main-fused: runtime.createPrefill with f32 storage (its default tier for f32), same inputs, same run.',
    'TFLOP/s count 4·D per unmasked (query, key) pair.',
  ],
  checks,
  exchange,
  rows,
  ratios,
};
const slug = `${caps.adapter.vendor}-${caps.adapter.architecture || caps.adapter.device}`.toLowerCase().replace(/[^a-z0-9]+/g, '-');
const out = values.out ?? join(values.dir!, `volta-${slug}-${report.date.replace(/[:.]/g, '-')}.json`);
mkdirSync(dirname(out), { recursive: true });
writeFileSync(out, `${JSON.stringify(report, null, 2)}\n`);
console.error(`results written to ${out}; checks ${checks.every((c) => c.pass) ? 'passed' : 'FAILED'}`);
rt.destroy();
process.exit(0);
