/**
 * Where a prefill kernel spends its time: the kernel timed whole and with parts
 * of it taken out (`fastattn ablate`), for the subgroup-matrix kernel
 * (shaders/flashAttentionPrefillSubgroupMatrix.wgsl, f16) and the vector kernel
 * on the f32 tier (shaders/flashAttentionPrefill.wgsl). An ablated kernel
 * computes a wrong result, so it is only ever timed, and only through this module.
 *
 * Each ablation is a checked edit of the kernel file: its anchor text must
 * occur exactly once, so an edit of the kernel that moves an anchor fails the
 * GPU-free test of this module instead of silently timing the whole kernel
 * under an ablation's name.
 */
import { attentionFlops } from '../attention/flops.js';
import { FlashAttentionPrefill, PREFILL_KERNELS, type PrefillKernelSources } from '../attention/flashAttentionPrefill.js';
import type { AttentionDType } from '../attention/problem.js';
import type { FastAttentionRuntime } from '../runtime/runtime.js';
import type { KernelSource } from '../runtime/pipelineCache.js';
import { BufferUsage } from '../runtime/usage.js';
import { chooseMatrixTile, type MatrixTileConfig } from '../tiling/matrixTile.js';
import { chooseTileConfig, type TileConfig } from '../tiling/tileConfig.js';
import { lookupTuned } from '../tuning/tuning.js';
import { filledBuffer, tileLabel, type BenchCase } from './suite.js';
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

// Replacements keep every operand a run-time value (the block and slice indices), so the
// compiler cannot fold the FMAs they feed.
export const VECTOR_PREFILL_ABLATIONS = {
  'q-loads': {
    removes: "the Q operand loads from workgroup memory in Q·Kᵀ (each row's Q vec4 is a K vec4 already in registers)",
    edits: [{ anchor: 'let qv{i} = vec4f(slices[base + rowOf(rowGroup, {i}u) * PITCH4 + {c}u]);', replacement: 'let qv{i} = kv[{i}u % COLS_PER_THREAD].wzyx;' }],
  },
  'p-loads': {
    removes: 'the P loads from workgroup memory in P·V (P derived from the block and slice indices)',
    edits: [{ anchor: 'pv[{i4}] = pTile[(ks * CHUNK + {kk}u) * RV_PITCH4 + rv + {i4}u];', replacement: 'pv[{i4}] = vec4f(f32(kb + ks) + 0.1 * f32({kk}u));' }],
  },
  'v-loads': {
    removes: 'the V operand loads from workgroup memory in P·V (V derived from P)',
    edits: [{ anchor: 'let vx{t} = vec4f(slices[base + {kk}u * D4 + col4[{t}]]);', replacement: 'let vx{t} = pv[0] + vec4f(f32({t}u));' }],
  },
  'global-loads': {
    removes: 'the Q, K and V loads from storage (the staged values are derived from their indices; the stores to workgroup memory stay; q is no longer bound)',
    edits: [
      { anchor: 'vec4f(q[blk.qBase + (blk.qStart + r) * blk.qSeq + c4 + e % CHUNK4])', replacement: 'vec4f(f32(e & 7u) * 0.01)' },
      { anchor: '  return k[blk.kBase + key * blk.kSeq + c];', replacement: '  return Store4(f32(key & 7u) * 0.01);' },
      { anchor: '  return v[blk.vBase + key * blk.vSeq + c];', replacement: '  return Store4(f32(key & 7u) * 0.01);' },
    ],
  },
  softmax: {
    removes: 'the softmax: the row maxima and their barrier, exp2, the running sums and the rescale (P is S itself)',
    edits: [
      {
        anchor: '    var mx: array<vec4f, ROW4>;',
        upTo: "    // P's last reads",
        replacement: [
          '    var pRow: array<vec4f, ROW4 * COLS_PER_THREAD>;',
          '    //#for i in ROWS_PER_THREAD',
          '    //#for j in COLS_PER_THREAD',
          '    pRow[({i}u / 4u) * COLS_PER_THREAD + {j}u][{i}u % 4u] = s[{i}u * COLS_PER_THREAD + {j}u];',
          '    //#endfor',
          '    //#endfor',
          '',
        ].join('\n'),
      },
    ],
  },
  'slice-barriers': {
    removes: 'the barrier after each slice is stored (a single-buffered slice keeps the one before its store)',
    edits: [
      { anchor: "      workgroupBarrier();\n      // Prefetch the next slice: Q·Kᵀ's next", replacement: "      // Prefetch the next slice: Q·Kᵀ's next" },
      { anchor: 'workgroupBarrier(); // also publishes P', replacement: '' },
    ],
  },
} as const satisfies Record<string, Ablation>;

export type VectorPrefillAblation = keyof typeof VECTOR_PREFILL_ABLATIONS;

/** What `fastattn ablate` takes apart, per tier: the kernel family and file, its ablations, the sets timed by default, the storage type, and the ceiling (a key of peaks.mjs) it is compared with. */
export const ABLATION_TARGETS = {
  'subgroup-matrix': {
    family: 'matrix',
    ablations: MATRIX_PREFILL_ABLATIONS as Record<MatrixPrefillAblation, Ablation>,
    // Each part alone, then the staging and the softmax together.
    defaultSets: [
      [],
      ['softmax'],
      ['kv-loads'],
      ['kv-stores'],
      ['kv-loads', 'kv-stores'],
      ['rescale-check', 's-barrier', 'span-barrier'],
      ['softmax', 'kv-loads', 'kv-stores'],
    ] as readonly (readonly MatrixPrefillAblation[])[],
    dtype: 'f16',
    ceiling: 'subgroup_matrix_f16_f32_16x16x16_tflops',
  },
  f32: {
    family: 'vector',
    ablations: VECTOR_PREFILL_ABLATIONS as Record<VectorPrefillAblation, Ablation>,
    // Each part alone, then every workgroup-memory operand load, then those with the global loads and the softmax.
    defaultSets: [
      [],
      ['q-loads'],
      ['p-loads'],
      ['v-loads'],
      ['global-loads'],
      ['softmax'],
      ['slice-barriers'],
      ['q-loads', 'p-loads', 'v-loads'],
      ['q-loads', 'p-loads', 'v-loads', 'global-loads', 'softmax'],
    ] as readonly (readonly VectorPrefillAblation[])[],
    dtype: 'f32',
    ceiling: 'f32_fma_tflops',
  },
} as const satisfies Record<string, { family: keyof PrefillKernelSources; ablations: Record<string, Ablation>; defaultSets: readonly (readonly string[])[]; dtype: AttentionDType; ceiling: string }>;

export type AblationTier = keyof typeof ABLATION_TARGETS;
/** The names of `tier`'s ablations. */
export type AblationOf<T extends AblationTier> = keyof (typeof ABLATION_TARGETS)[T]['ablations'];

/** `tier`'s kernel file with `ablations` applied; throws naming the ablation whose anchor is missing or not unique (including two ablations that edit the same text). */
export function ablateSource<T extends AblationTier>(tier: T, code: string, ablations: readonly AblationOf<T>[]): string {
  const table: Record<string, Ablation> = ABLATION_TARGETS[tier].ablations;
  let out = code;
  for (const name of ablations as readonly string[]) {
    const ablation = table[name];
    if (!ablation) throw new Error(`unknown ${tier} ablation ${JSON.stringify(name)} (allowed: ${Object.keys(table).join(', ')})`);
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

/** `tier`'s kernel with `ablations` applied, as a kernel family of its own (its own name keeps its pipelines apart in the cache). */
export function ablatedKernel<T extends AblationTier>(tier: T, ablations: readonly AblationOf<T>[]): KernelSource {
  const base = PREFILL_KERNELS[ABLATION_TARGETS[tier].family];
  if (ablations.length === 0) return base;
  return { name: `${base.name}~${ablations.join('+')}`, code: ablateSource(tier, base.code, ablations) };
}

export interface AblationRow {
  ablations: string[];
  timing: Timing;
  tflops: number;
  /** Whole kernel's median ms / this row's, same inputs, same run. */
  speedupVsWhole: number;
  fractionOfCeiling: number | null;
}

export interface AblationReport {
  adapter: FastAttentionRuntime['capabilities']['adapter'];
  date: string;
  tier: AblationTier;
  dtype: AttentionDType;
  shape: BenchCase;
  tile: MatrixTileConfig | TileConfig;
  ceilings: Record<string, unknown> | null;
  /** The ceiling (a key of `ceilings`) that `fractionOfCeiling` divides by. */
  ceiling: string;
  /** What each ablation removes. */
  ablations: Record<string, string>;
  rows: AblationRow[];
}

export interface AblationOptions {
  /** The kernel taken apart; default 'subgroup-matrix'. */
  tier?: AblationTier;
  shape: BenchCase;
  /** Names from the tier's ablations; the first set is `[]`: the whole kernel, the baseline of `speedupVsWhole`. Default: the tier's `defaultSets`. */
  sets?: readonly (readonly string[])[];
  /** Default: this adapter's tuned tile for the shape class when it was tuned on this tier, else the tier's default tile for the head dim. */
  tile?: MatrixTileConfig | TileConfig;
  samples?: number;
  ceilings?: Record<string, unknown>;
  onRow?: (row: AblationRow) => void;
}

/** The tile `runAblation` takes by default (see {@link AblationOptions.tile}). */
export function ablationTile(rt: FastAttentionRuntime, tier: AblationTier, shape: BenchCase): MatrixTileConfig | TileConfig {
  const { dtype } = ABLATION_TARGETS[tier];
  const tuned = lookupTuned(rt.tuning, { dtype, headDim: shape.headDim, causal: shape.causal, seqQ: shape.seq, seqK: shape.seq });
  if (tuned?.tier === tier) return tuned.tile;
  return tier === 'subgroup-matrix' ? chooseMatrixTile(shape.headDim, rt.tileLimits) : chooseTileConfig(shape.headDim, rt.tileLimits);
}

/** Time the whole prefill kernel of `tier` and each ablation set on the same inputs, in one run. */
export async function runAblation(rt: FastAttentionRuntime, options: AblationOptions): Promise<AblationReport> {
  const tier = options.tier ?? 'subgroup-matrix';
  const target = ABLATION_TARGETS[tier];
  const c = options.shape;
  const shape = [c.batch, c.heads, c.seq, c.headDim] as const;
  const attn = { q: { shape }, k: { shape }, v: { shape }, causal: c.causal, dtype: target.dtype, tier } as const;
  const sets = options.sets ?? target.defaultSets;
  if (sets[0]?.length !== 0) throw new Error('runAblation: the first set must be [] (the whole kernel, the baseline of every row)');
  // Every set's kernel is built before anything is timed: a bad name fails at once.
  const kernels = sets.map((set) => ablatedKernel(tier, set as readonly AblationOf<typeof tier>[]));
  const tile = options.tile ?? ablationTile(rt, tier, c);
  const n = c.batch * c.heads * c.seq * c.headDim;
  const dev = rt.device;
  const bytes = target.dtype === 'f16' ? 2 : 4;
  const bufs = {
    q: filledBuffer(dev, n, 1, target.dtype),
    k: filledBuffer(dev, n, 2, target.dtype),
    v: filledBuffer(dev, n, 3, target.dtype),
    o: dev.createBuffer({ size: Math.ceil((n * bytes) / 4) * 4, usage: BufferUsage.STORAGE }),
  };
  const ceiling = options.ceilings?.[target.ceiling];
  const rows: AblationRow[] = [];
  try {
    for (const [i, set] of sets.entries()) {
      const op = await FlashAttentionPrefill.create(rt, { ...attn, tile }, { ...PREFILL_KERNELS, [target.family]: kernels[i] });
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
  const ablations = Object.fromEntries(Object.entries(target.ablations as Record<string, Ablation>).map(([k, v]) => [k, v.removes]));
  return { adapter: rt.capabilities.adapter, date: new Date().toISOString(), tier, dtype: target.dtype, shape: c, tile, ceilings: options.ceilings ?? null, ceiling: target.ceiling, ablations, rows };
}

/** The table `fastattn ablate` prints and writes beside its JSON. */
export function formatAblationTable(report: AblationReport): string {
  const s = report.shape;
  const head = ['kernel', 'ms (median)', 'TFLOP/s', 'vs whole kernel', '% of ceiling'];
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
    `${report.tier} prefill, ${report.dtype}, B${s.batch} H${s.heads} S${s.seq} D${s.headDim}${s.causal ? ' causal' : ''}, tile ${tileLabel(report.tile)}`,
    report.ceilings ? `ceiling: ${report.ceiling}; all measured in this run: ${JSON.stringify(report.ceilings)}` : 'no ceilings measured',
    line(head),
    line(widths.map((w) => '-'.repeat(w))),
    ...body.map(line),
    'ablations (timing only: an ablated kernel computes a wrong result):',
    ...legend,
  ].join('\n');
}
