/**
 * Autotuning of the fused kernel: per adapter and shape class, the fastest
 * (tier, tile) measured on that adapter. Tables are plain JSON, so they can be
 * persisted, shipped and imported; the runtime consults the table of its
 * adapter whenever an operator is created without an explicit tier or tile.
 */
import type { AttentionDType, AttentionProblem } from '../attention/problem.js';
import type { KernelTier } from '../attention/tiers.js';
import type { DeviceCapabilities } from '../runtime/capabilities.js';
import type { MatrixTileConfig } from '../tiling/matrixTile.js';
import type { TileConfig } from '../tiling/tileConfig.js';

export interface ShapeClass {
  dtype: AttentionDType;
  headDim: number;
  causal: boolean;
  /** max(Sq, Sk) rounded up to a power of two, clamped to [256, 16384]. */
  seqBucket: number;
}

export interface TunedEntry {
  shapeClass: ShapeClass;
  tier: KernelTier;
  tile: TileConfig | MatrixTileConfig;
  /** Median ms of the winner and of every candidate measured, for the record. */
  medianMs: number;
  candidates: Array<{ tier: KernelTier; tile: TileConfig | MatrixTileConfig; medianMs: number | null; error?: string }>;
}

export interface TuningTable {
  /** `vendor/device` of the adapter the table was measured on. */
  adapter: string;
  date: string;
  /** The measured shape: B, H used while tuning. */
  measuredWith: { batch: number; heads: number };
  entries: TunedEntry[];
}

/** The key a table is stored under for an adapter. */
export function adapterKey(caps: DeviceCapabilities): string {
  return `${caps.adapter.vendor}/${caps.adapter.device || caps.adapter.architecture}`;
}

export function seqBucket(seq: number): number {
  return Math.min(16384, Math.max(256, 2 ** Math.ceil(Math.log2(Math.max(1, seq)))));
}

export function shapeClassOf(p: Pick<AttentionProblem, 'dtype' | 'headDim' | 'causal' | 'seqQ' | 'seqK'>): ShapeClass {
  return { dtype: p.dtype, headDim: p.headDim, causal: p.causal, seqBucket: seqBucket(Math.max(p.seqQ, p.seqK)) };
}

export function shapeClassKey(c: ShapeClass): string {
  return `${c.dtype}-d${c.headDim}-${c.causal ? 'causal' : 'full'}-s${c.seqBucket}`;
}

/**
 * The tuned entry for a problem: the same dtype, head dim and causality, and
 * the nearest sequence bucket (in log2) that was measured.
 */
export function lookupTuned(table: TuningTable | undefined, p: Pick<AttentionProblem, 'dtype' | 'headDim' | 'causal' | 'seqQ' | 'seqK'>): TunedEntry | undefined {
  if (!table) return undefined;
  const want = shapeClassOf(p);
  let best: TunedEntry | undefined;
  let bestDistance = Infinity;
  for (const e of table.entries) {
    const c = e.shapeClass;
    if (c.dtype !== want.dtype || c.headDim !== want.headDim || c.causal !== want.causal) continue;
    const distance = Math.abs(Math.log2(c.seqBucket) - Math.log2(want.seqBucket));
    if (distance < bestDistance) {
      best = e;
      bestDistance = distance;
    }
  }
  return best;
}

/** Parse and check a table from JSON (a user's import or a shipped file). */
export function parseTuningTable(json: string | object): TuningTable {
  const t = (typeof json === 'string' ? JSON.parse(json) : json) as TuningTable;
  if (typeof t?.adapter !== 'string' || !Array.isArray(t.entries)) throw new TypeError('tuning table: expected { adapter, entries: [...] }');
  for (const [i, e] of t.entries.entries()) {
    if (!e?.shapeClass || typeof e.tier !== 'string' || !e.tile) throw new TypeError(`tuning table: entry ${i} lacks shapeClass, tier or tile`);
  }
  return t;
}

/**
 * `base` with `update`'s entries in place of those of the same shape class
 * (and any new classes added): re-tuning some classes keeps the others. Both
 * tables must be for the same adapter.
 */
export function mergeTuningTables(base: TuningTable, update: TuningTable): TuningTable {
  if (base.adapter !== update.adapter) throw new TypeError(`tuning tables of different adapters: ${base.adapter} and ${update.adapter}`);
  const byClass = new Map(base.entries.map((e) => [shapeClassKey(e.shapeClass), e]));
  for (const e of update.entries) byClass.set(shapeClassKey(e.shapeClass), e);
  return { adapter: base.adapter, date: update.date, measuredWith: update.measuredWith, entries: [...byClass.values()] };
}
