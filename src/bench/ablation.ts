/**
 * Where the subgroup-matrix prefill spends its time: the kernel timed whole and
 * with parts of it taken out (`fastattn ablate`). An ablated kernel computes a
 * wrong result, so it is only ever timed, and only through this module.
 *
 * Each ablation is a checked edit of the kernel file: its anchor text must
 * occur exactly once, so an edit of the kernel that moves an anchor fails the
 * GPU-free test of this module instead of silently timing the whole kernel
 * under an ablation's name.
 */
import { attentionFlops } from '../attention/flops.js';
import { FlashAttentionPrefill, flashAttentionPrefillMatrixKernel } from '../attention/flashAttentionPrefill.js';
import type { FastAttentionRuntime } from '../runtime/runtime.js';
import type { KernelSource } from '../runtime/pipelineCache.js';
import { BufferUsage } from '../runtime/usage.js';
import { chooseMatrixTile, type MatrixTileConfig } from '../tiling/matrixTile.js';
import { filledBuffer, type BenchCase } from './suite.js';
import { timeGpu, type Timing } from './timing.js';

/** Replace `anchor` (which occurs exactly once), or with `upTo` the text from `anchor` up to the next `upTo`, by `replacement`. */
interface Edit {
  anchor: string;
  upTo?: string;
  replacement: string;
}

interface Ablation {
  /** What the ablated kernel no longer does. */
  removes: string;
  edits: readonly Edit[];
}

const S_BARRIER = '    workgroupBarrier();\n\n    // Softmax for this';

export const MATRIX_PREFILL_ABLATIONS = {
  softmax: {
    removes: 'the softmax: the barrier after S is stored, the S loads, max, exp2, the P stores and the rescale check (S is still stored, so Q·Kᵀ stays live; P·V reads whatever P holds)',
    edits: [{ anchor: S_BARRIER, upTo: '    // O += P·V.', replacement: '    // (softmax ablated)\n' }],
  },
  'kv-loads': {
    removes: 'the K/V loads from storage for the next span (the staged words are derived from the previous ones, so the stores still happen)',
    edits: [{ anchor: '      w{i} = spanWord(tid + {i}u * THREADS, kStart + BLOCK_KV, kvLen, kBase, kSeq, vBase, vSeq);', replacement: '      w{i} = array<vec4u, 2>(w{i}[1] + vec4u(kb), w{i}[0]);' }],
  },
  'kv-stores': {
    removes: 'the K/V stores into workgroup memory (a store under a condition that never holds keeps the loaded words live)',
    edits: [
      {
        anchor: '      storeWord(false, e / D8, e % D8, w{i}[0]);\n      storeWord(true, e / D8, e % D8, w{i}[1]);',
        replacement: '      if (w{i}[0].x == 0x7fffffffu && w{i}[1].y == 0x7fffffffu) { kTile[e] = f16(w{i}[1].x); }',
      },
    ],
  },
  'rescale-check': {
    removes: 'the workgroup-uniform rescale check (its two barriers become the one barrier that publishes P) and the rescale itself',
    edits: [{ anchor: 'if (workgroupUniformLoad(&rescaleFlag[kb % 2u]) != 0u) {', replacement: 'workgroupBarrier();\n    if (false) {' }],
  },
  's-barrier': {
    removes: 'the barrier between storing S and reading it back in the softmax',
    edits: [{ anchor: S_BARRIER, replacement: '\n    // Softmax for this' }],
  },
  'span-barrier': {
    removes: "the barrier before a span's K/V are staged (the previous span's K, V and P consumed)",
    edits: [{ anchor: "    workgroupBarrier(); // the previous span's K, V, P and flag are consumed\n", replacement: '' }],
  },
} as const satisfies Record<string, Ablation>;

export type MatrixPrefillAblation = keyof typeof MATRIX_PREFILL_ABLATIONS;

/** The kernel's source with `ablations` applied; throws naming the ablation whose anchor is missing or not unique (including two ablations that edit the same text). */
export function ablateMatrixPrefill(code: string, ablations: readonly MatrixPrefillAblation[]): string {
  let out = code;
  for (const name of ablations) {
    const ablation: Ablation = MATRIX_PREFILL_ABLATIONS[name];
    if (!ablation) throw new Error(`unknown ablation ${JSON.stringify(name)} (allowed: ${Object.keys(MATRIX_PREFILL_ABLATIONS).join(', ')})`);
    for (const { anchor, upTo, replacement } of ablation.edits) {
      const count = out.split(anchor).length - 1;
      if (count !== 1) throw new Error(`ablation ${name}: its anchor occurs ${count} times in the kernel${ablations.length > 1 ? ' (after the ablations before it)' : ''}, not once: ${JSON.stringify(anchor.slice(0, 60))}`);
      const from = out.indexOf(anchor);
      const to = upTo === undefined ? from + anchor.length : out.indexOf(upTo, from + anchor.length);
      if (to < 0) throw new Error(`ablation ${name}: no ${JSON.stringify(upTo)} after its anchor`);
      out = out.slice(0, from) + replacement + out.slice(to);
    }
  }
  return out;
}

/** The ablated kernel as a kernel family of its own (its own name keeps its pipelines apart in the cache). */
export function ablatedMatrixKernel(ablations: readonly MatrixPrefillAblation[]): KernelSource {
  const base = flashAttentionPrefillMatrixKernel;
  if (ablations.length === 0) return base;
  return { name: `${base.name}~${ablations.join('+')}`, code: ablateMatrixPrefill(base.code, ablations) };
}

/** The sets `fastattn ablate` times by default: each part alone, then the staging and the softmax together. */
export const DEFAULT_ABLATION_SETS: readonly (readonly MatrixPrefillAblation[])[] = [
  [],
  ['softmax'],
  ['kv-loads'],
  ['kv-stores'],
  ['kv-loads', 'kv-stores'],
  ['rescale-check', 's-barrier', 'span-barrier'],
  ['softmax', 'kv-loads', 'kv-stores'],
];

export interface AblationRow {
  ablations: MatrixPrefillAblation[];
  timing: Timing;
  tflops: number;
  /** Whole kernel's median ms / this row's, same inputs, same run. */
  speedupVsWhole: number;
  fractionOfCeiling: number | null;
}

export interface AblationReport {
  adapter: FastAttentionRuntime['capabilities']['adapter'];
  date: string;
  shape: BenchCase;
  tile: MatrixTileConfig;
  ceilings: Record<string, unknown> | null;
  /** What each ablation removes. */
  ablations: Record<MatrixPrefillAblation, string>;
  rows: AblationRow[];
}

export interface AblationOptions {
  shape: BenchCase;
  /** The first set is `[]`: the whole kernel, the baseline of `speedupVsWhole`. Default {@link DEFAULT_ABLATION_SETS}. */
  sets?: readonly (readonly MatrixPrefillAblation[])[];
  /** Default: the tier's default tile for the head dim (an explicit tier takes no tuned tile). */
  tile?: MatrixTileConfig;
  samples?: number;
  ceilings?: Record<string, unknown>;
  onRow?: (row: AblationRow) => void;
}

/** Time the whole subgroup-matrix prefill and each ablation set on the same f16 inputs, in one run. */
export async function runAblation(rt: FastAttentionRuntime, options: AblationOptions): Promise<AblationReport> {
  const c = options.shape;
  const shape = [c.batch, c.heads, c.seq, c.headDim] as const;
  const attn = { q: { shape }, k: { shape }, v: { shape }, causal: c.causal, dtype: 'f16', tier: 'subgroup-matrix' } as const;
  const sets = options.sets ?? DEFAULT_ABLATION_SETS;
  if (sets[0]?.length !== 0) throw new Error('runAblation: the first set must be [] (the whole kernel, the baseline of every row)');
  const tile = options.tile ?? chooseMatrixTile(c.headDim, rt.tileLimits);
  const n = c.batch * c.heads * c.seq * c.headDim;
  const dev = rt.device;
  const bufs = { q: filledBuffer(dev, n, 1, 'f16'), k: filledBuffer(dev, n, 2, 'f16'), v: filledBuffer(dev, n, 3, 'f16'), o: dev.createBuffer({ size: Math.ceil((n * 2) / 4) * 4, usage: BufferUsage.STORAGE }) };
  const ceiling = options.ceilings?.subgroup_matrix_f16_f32_16x16x16_tflops;
  const rows: AblationRow[] = [];
  try {
    for (const set of sets) {
      const op = await FlashAttentionPrefill.create(rt, { ...attn, tile }, ablatedMatrixKernel(set));
      try {
        const timing = await timeGpu(dev, (enc) => op.encode(enc, bufs), { samples: options.samples ?? 9, minSampleMs: 100, maxBatch: 64 });
        const tflops = attentionFlops(op.problem) / timing.medianMs / 1e9;
        const wholeMs = rows.length ? rows[0].timing.medianMs : timing.medianMs;
        const row = { ablations: [...set], timing, tflops, speedupVsWhole: wholeMs / timing.medianMs, fractionOfCeiling: typeof ceiling === 'number' ? tflops / ceiling : null };
        rows.push(row);
        options.onRow?.(row);
      } finally {
        op.destroy();
      }
    }
  } finally {
    for (const b of Object.values(bufs)) b.destroy();
  }
  const ablations = Object.fromEntries(Object.entries(MATRIX_PREFILL_ABLATIONS).map(([k, v]) => [k, v.removes])) as Record<MatrixPrefillAblation, string>;
  return { adapter: rt.capabilities.adapter, date: new Date().toISOString(), shape: c, tile, ceilings: options.ceilings ?? null, ablations, rows };
}

/** The table `fastattn ablate` prints and writes beside its JSON. */
export function formatAblationTable(report: AblationReport): string {
  const s = report.shape;
  const head = ['kernel', 'ms (median)', 'TFLOP/s', 'vs whole kernel', '% of tensor ceiling'];
  const body = report.rows.map((r) => [
    r.ablations.length ? `without ${r.ablations.join(', ')}` : 'whole kernel',
    r.timing.medianMs.toFixed(3),
    r.tflops.toFixed(1),
    `${r.speedupVsWhole.toFixed(2)}x`,
    r.fractionOfCeiling !== null ? `${(100 * r.fractionOfCeiling).toFixed(1)}%` : '-',
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((row) => row[i].length)));
  const line = (cells: string[]) => cells.map((x, i) => x.padEnd(widths[i])).join('  ');
  const legend = Object.entries(report.ablations).map(([k, v]) => `  ${k}: ${v}`);
  return [
    `adapter: ${report.adapter.vendor} ${report.adapter.device || report.adapter.architecture}`,
    `subgroup-matrix prefill, f16, B${s.batch} H${s.heads} S${s.seq} D${s.headDim}${s.causal ? ' causal' : ''}, tile ${report.tile.blockQ}x${report.tile.blockKV} ${report.tile.subgroups} subgroups`,
    report.ceilings ? `ceilings measured in this run: ${JSON.stringify(report.ceilings)}` : 'no ceilings measured',
    line(head),
    line(widths.map((w) => '-'.repeat(w))),
    ...body.map(line),
    'ablations (timing only: an ablated kernel computes a wrong result):',
    ...legend,
  ].join('\n');
}
