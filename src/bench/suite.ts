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
import type { MatrixTileConfig } from '../tiling/matrixTile.js';
import type { AttentionDType } from '../attention/problem.js';
import type { KernelTier } from '../attention/tiers.js';
import { Float16Array } from '@petamoriken/float16';
import { timeGpu, type Timing } from './timing.js';

export interface BenchCase {
  batch: number;
  heads: number;
  seq: number;
  headDim: number;
  causal: boolean;
}

/** `standard`, `fused` (the default tier for the dtype) or `fused:<tier>`. */
export type BenchVariant = 'standard' | 'fused' | `fused:${KernelTier}`;

export interface BenchOptions {
  cases: BenchCase[];
  variants: BenchVariant[];
  /** Storage type of Q/K/V/O for every variant; default f32. */
  dtype?: AttentionDType;
  tile?: TileConfig | MatrixTileConfig;
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
  tile: TileConfig | MatrixTileConfig | null;
  timing: Timing;
  flops: number;
  tflops: number;
  /** standard ms / this ms, same inputs, same run; null when the baseline did not run (e.g. too large). */
  speedupVsStandard: number | null;
  /** tflops / the ceiling of this row's units measured in the same run (f32 FMA, f16 FMA, or subgroup-matrix f16→f32), when given. */
  fractionOfCeiling: number | null;
  /** Which ceiling `fractionOfCeiling` refers to. */
  ceiling: string | null;
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

/**
 * A storage buffer of deterministic values in [-0.5, 0.5), stored as `dtype`.
 * A block of at most 2^20 values is generated and repeated: converting every
 * element of a 16K-token tensor to f16 in JavaScript took minutes, and the
 * kernels' speed does not depend on the values.
 */
export function filledBuffer(device: GPUDevice, elements: number, seed: number, dtype: AttentionDType): GPUBuffer {
  const block = Math.min(elements, FILL_BLOCK);
  const data = dtype === 'f16' ? new Float16Array(elements) : new Float32Array(elements);
  let x = seed;
  for (let i = 0; i < block; i++) {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    data[i] = x / 2 ** 32 - 0.5;
  }
  const raw = dtype === 'f16' ? new Uint16Array(data.buffer as ArrayBuffer) : (data as Float32Array);
  for (let i = block; i < elements; i += block) raw.copyWithin(i, 0, Math.min(block, elements - i));
  const buffer = device.createBuffer({ size: Math.ceil(data.byteLength / 4) * 4, usage: BufferUsage.STORAGE | BufferUsage.COPY_DST });
  device.queue.writeBuffer(buffer, 0, data.buffer as ArrayBuffer);
  return buffer;
}

const FILL_BLOCK = 1 << 20;

export async function runBench(rt: FastAttentionRuntime, options: BenchOptions): Promise<BenchReport> {
  const rows: BenchRow[] = [];
  const timing = { samples: options.samples ?? 9, minSampleMs: options.minSampleMs ?? 100, maxBatch: 64 };
  // The units each tier runs on: scalar f32 FMA, f16 storage with f32 FMA math, or tensor cores.
  const ceilingOf = (tier: string): [string | null, number | null] => {
    const name = tier === 'subgroup-matrix' ? 'subgroup_matrix_f16_f32_16x16x16_tflops' : 'f32_fma_tflops';
    const value = options.ceilings?.[name];
    return typeof value === 'number' ? [name, value] : [null, null];
  };
  const total = options.cases.length * options.variants.length;
  let done = 0;
  for (const c of options.cases) {
    const shape = [c.batch, c.heads, c.seq, c.headDim] as const;
    const dtype = options.dtype ?? 'f32';
    const attn: AttentionOptions = { q: { shape }, k: { shape }, v: { shape }, causal: c.causal, tile: options.tile, dtype };
    const n = c.batch * c.heads * c.seq * c.headDim;
    const dev = rt.device;
    const bytes = dtype === 'f16' ? 2 : 4;
    const bufs = { q: filledBuffer(dev, n, 1, dtype), k: filledBuffer(dev, n, 2, dtype), v: filledBuffer(dev, n, 3, dtype), o: dev.createBuffer({ size: Math.ceil((n * bytes) / 4) * 4, usage: BufferUsage.STORAGE }) };
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
          rows.push({ variant, tier: `${dtype} unfused`, shape: c, tile: null, timing: { medianMs: NaN, minMs: NaN, maxMs: NaN, samples: 0, batch: 0 }, flops: 0, tflops: NaN, speedupVsStandard: null, fractionOfCeiling: null, ceiling: null, note: (e as Error).message });
        }
        if (op) {
          const t = await timeGpu(dev, (enc) => op.encode(enc, bufs), timing);
          standardMs = t.medianMs;
          const flops = attentionFlops(op.problem);
          const tflops = flops / t.medianMs / 1e9;
          const [ceiling, peak] = ceilingOf('f32');
          row = { variant, tier: `${dtype} unfused`, shape: c, tile: null, timing: t, flops, tflops, speedupVsStandard: 1, fractionOfCeiling: peak ? tflops / peak : null, ceiling };
          op.destroy();
        }
      } else {
        const requested = variant.startsWith('fused:') ? (variant.slice(6) as KernelTier) : undefined;
        const op = await rt.createPrefill({ ...attn, tier: requested, tile: requested === 'subgroup-matrix' ? undefined : attn.tile });
        const t = await timeGpu(dev, (enc) => op.encode(enc, bufs), timing);
        const flops = attentionFlops(op.problem);
        const tflops = flops / t.medianMs / 1e9;
        const [ceiling, peak] = ceilingOf(op.tier.tier);
        row = {
          variant,
          tier: `${op.tier.tier} tier, ${dtype}`,
          shape: c,
          tile: op.tile,
          timing: t,
          flops,
          tflops,
          speedupVsStandard: standardMs !== null ? standardMs / t.medianMs : null,
          fractionOfCeiling: peak ? tflops / peak : null,
          ceiling,
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

/** A tile as the tables print it: `64x64 4x16 c32 s1` (vector tiers) or `128x32 8 subgroups`. */
export function tileLabel(t: TileConfig | MatrixTileConfig | null): string {
  if (!t) return '-';
  if ('subgroups' in t) return `${t.blockQ}x${t.blockKV} ${t.subgroups} subgroups`;
  return `${t.blockQ}x${t.blockKV} ${t.rowsPerThread}x${t.threadsPerRow} c${t.chunk} s${t.kvStages}`;
}

/** The table `fastattn bench` prints. */
export function formatBenchTable(report: BenchReport): string {
  const head = ['variant', 'shape', 'tile', 'ms (median)', 'TFLOP/s', 'speedup vs standard', '% of ceiling'];
  const body = report.rows.map((r) => [
    `${r.variant} (${r.tier})`,
    caseLabel(r.shape),
    tileLabel(r.tile),
    Number.isFinite(r.timing.medianMs) ? r.timing.medianMs.toFixed(3) : (r.note ?? 'n/a'),
    Number.isFinite(r.tflops) ? r.tflops.toFixed(r.tflops < 1 ? 4 : 2) : '-',
    r.speedupVsStandard !== null ? `${r.speedupVsStandard.toFixed(2)}x` : '-',
    r.fractionOfCeiling !== null ? `${(100 * r.fractionOfCeiling).toFixed(1)}% ${r.ceiling === 'f32_fma_tflops' ? 'f32 FMA' : 'tensor'}` : '-',
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((row) => row[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i])).join('  ');
  const adapter = `${report.adapter.vendor} ${report.adapter.device || report.adapter.architecture} (${report.adapter.description})${report.adapter.isSoftware ? ' [software]' : ''}`;
  const ceiling = report.ceilings ? `\nceilings measured in this run: ${JSON.stringify(report.ceilings)}` : '';
  return [`adapter: ${adapter}${ceiling}`, line(head), line(widths.map((w) => '-'.repeat(w))), ...body.map(line)].join('\n');
}
