/**
 * The benchmark suite behind `fastattn bench` (and the demo page): standard
 * attention vs FastAttention on the same inputs in the same run, reported as
 * median ms, TFLOP/s over unmasked FLOPs, speedup over standard attention and,
 * when ceilings are given, the fraction of the measured f32 FMA ceiling.
 */
import { attentionFlops } from '../attention/flops.js';
import type { AttentionOptions } from '../attention/problem.js';
import type { FastAttentionRuntime } from '../runtime/runtime.js';
import { BufferUsage } from '../runtime/usage.js';
import type { TileConfig } from '../tiling/tileConfig.js';
import { timeGpu, type Timing } from './timing.js';

export interface BenchCase {
  batch: number;
  heads: number;
  seq: number;
  headDim: number;
  causal: boolean;
}

export type BenchVariant = 'standard' | 'fused';

export interface BenchOptions {
  cases: BenchCase[];
  variants: BenchVariant[];
  tile?: TileConfig;
  samples?: number;
  minSampleMs?: number;
  /** Ceilings measured in the same run (peaks.mjs JSON), to report fractions of. */
  ceilings?: Record<string, unknown>;
  onProgress?: (done: number, total: number, row: BenchRow | null) => void;
}

export interface BenchRow {
  variant: BenchVariant;
  tier: string;
  shape: BenchCase;
  tile: TileConfig | null;
  timing: Timing;
  flops: number;
  tflops: number;
  /** standard ms / this ms, same inputs, same run; null when the baseline did not run (e.g. too large). */
  speedupVsStandard: number | null;
  /** tflops / f32 FMA ceiling of the same run, when given. */
  fractionOfF32Ceiling: number | null;
  note?: string;
}

export interface BenchReport {
  adapter: FastAttentionRuntime['capabilities']['adapter'];
  features: FastAttentionRuntime['capabilities']['features'];
  date: string;
  ceilings: Record<string, unknown> | null;
  rows: BenchRow[];
}

export function caseLabel(c: BenchCase): string {
  return `B${c.batch} H${c.heads} S${c.seq} D${c.headDim}${c.causal ? ' causal' : ''}`;
}

function filled(device: GPUDevice, elements: number, seed: number): GPUBuffer {
  const data = new Float32Array(elements);
  let x = seed;
  for (let i = 0; i < elements; i++) {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    data[i] = x / 2 ** 32 - 0.5;
  }
  const buffer = device.createBuffer({ size: data.byteLength, usage: BufferUsage.STORAGE | BufferUsage.COPY_DST });
  device.queue.writeBuffer(buffer, 0, data);
  return buffer;
}

export async function runBench(rt: FastAttentionRuntime, options: BenchOptions): Promise<BenchReport> {
  const rows: BenchRow[] = [];
  const timing = { samples: options.samples ?? 9, minSampleMs: options.minSampleMs ?? 100, maxBatch: 64 };
  const f32Ceiling = typeof options.ceilings?.f32_fma_tflops === 'number' ? (options.ceilings.f32_fma_tflops as number) : null;
  const total = options.cases.length * options.variants.length;
  let done = 0;
  for (const c of options.cases) {
    const shape = [c.batch, c.heads, c.seq, c.headDim] as const;
    const attn: AttentionOptions = { q: { shape }, k: { shape }, v: { shape }, causal: c.causal, tile: options.tile };
    const n = c.batch * c.heads * c.seq * c.headDim;
    const dev = rt.device;
    const bufs = { q: filled(dev, n, 1), k: filled(dev, n, 2), v: filled(dev, n, 3), o: dev.createBuffer({ size: n * 4, usage: BufferUsage.STORAGE }) };
    let standardMs: number | null = null;
    for (const variant of [...options.variants].sort((a) => (a === 'standard' ? -1 : 1))) {
      let row: BenchRow | null = null;
      if (variant === 'standard') {
        let op;
        try {
          op = await rt.createStandardAttention(attn);
        } catch (e) {
          // The baseline cannot hold S×S at this size: report it, do not hide it.
          row = null;
          rows.push({ variant, tier: 'f32 unfused', shape: c, tile: null, timing: { medianMs: NaN, minMs: NaN, maxMs: NaN, samples: 0, batch: 0 }, flops: 0, tflops: NaN, speedupVsStandard: null, fractionOfF32Ceiling: null, note: (e as Error).message });
        }
        if (op) {
          const t = await timeGpu(dev, (enc) => op.encode(enc, bufs), timing);
          standardMs = t.medianMs;
          const flops = attentionFlops(op.problem);
          const tflops = flops / t.medianMs / 1e9;
          row = { variant, tier: 'f32 unfused', shape: c, tile: null, timing: t, flops, tflops, speedupVsStandard: 1, fractionOfF32Ceiling: f32Ceiling ? tflops / f32Ceiling : null };
          op.destroy();
        }
      } else {
        const op = await rt.createPrefill(attn);
        const t = await timeGpu(dev, (enc) => op.encode(enc, bufs), timing);
        const flops = attentionFlops(op.problem);
        const tflops = flops / t.medianMs / 1e9;
        row = {
          variant,
          tier: 'f32 two-level tiled',
          shape: c,
          tile: op.tile,
          timing: t,
          flops,
          tflops,
          speedupVsStandard: standardMs !== null ? standardMs / t.medianMs : null,
          fractionOfF32Ceiling: f32Ceiling ? tflops / f32Ceiling : null,
        };
        op.destroy();
      }
      if (row) rows.push(row);
      options.onProgress?.(++done, total, row);
    }
    for (const b of Object.values(bufs)) b.destroy();
  }
  const caps = rt.capabilities;
  return { adapter: caps.adapter, features: caps.features, date: new Date().toISOString(), ceilings: options.ceilings ?? null, rows };
}

/** The table `fastattn bench` prints. */
export function formatBenchTable(report: BenchReport): string {
  const head = ['variant', 'shape', 'tile', 'ms (median)', 'TFLOP/s', 'speedup vs standard', '% of f32 FMA ceiling'];
  const body = report.rows.map((r) => [
    `${r.variant} (${r.tier})`,
    caseLabel(r.shape),
    r.tile ? `${r.tile.blockQ}x${r.tile.blockKV} ${r.tile.rowsPerThread}x${r.tile.threadsPerRow} c${r.tile.chunk} s${r.tile.kvStages}` : '-',
    Number.isFinite(r.timing.medianMs) ? r.timing.medianMs.toFixed(3) : (r.note ?? 'n/a'),
    Number.isFinite(r.tflops) ? r.tflops.toFixed(r.tflops < 1 ? 4 : 2) : '-',
    r.speedupVsStandard !== null ? `${r.speedupVsStandard.toFixed(2)}x` : '-',
    r.fractionOfF32Ceiling !== null ? `${(100 * r.fractionOfF32Ceiling).toFixed(1)}%` : '-',
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((row) => row[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i])).join('  ');
  const adapter = `${report.adapter.vendor} ${report.adapter.device || report.adapter.architecture} (${report.adapter.description})${report.adapter.isSoftware ? ' [software]' : ''}`;
  const ceiling = report.ceilings ? `\nceilings measured in this run: ${JSON.stringify(report.ceilings)}` : '';
  return [`adapter: ${adapter}${ceiling}`, line(head), line(widths.map((w) => '-'.repeat(w))), ...body.map(line)].join('\n');
}
