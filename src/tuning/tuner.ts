/**
 * The tuner: for each shape class, time every candidate (tier, tile) on this
 * adapter with the same timing as the benchmarks, and keep the fastest.
 */
import type { KernelTier } from '../attention/tiers.js';
import { filledBuffer } from '../bench/suite.js';
import { timeGpu } from '../bench/timing.js';
import type { FastAttentionRuntime } from '../runtime/runtime.js';
import { BufferUsage } from '../runtime/usage.js';
import { checkMatrixTile, MATRIX_TILE_CANDIDATES, type MatrixTileConfig } from '../tiling/matrixTile.js';
import { checkTileConfig, TILE_CANDIDATES, type TileConfig } from '../tiling/tileConfig.js';
import { adapterKey, type ShapeClass, type TunedEntry, type TuningTable } from './tuning.js';

export interface TuneOptions {
  classes: ShapeClass[];
  batch?: number;
  heads?: number;
  /** Vector tiles to try (each on every vector tier that fits); default TILE_CANDIDATES. */
  tiles?: readonly TileConfig[];
  samples?: number;
  /** Tiers to time (default: every available tier that takes the dtype). */
  tiers?: readonly KernelTier[];
  onResult?: (entry: TunedEntry) => void;
}

export async function tune(rt: FastAttentionRuntime, options: TuneOptions): Promise<TuningTable> {
  const batch = options.batch ?? 1;
  const heads = options.heads ?? 8;
  const tiles = options.tiles ?? TILE_CANDIDATES;
  const available = new Set(rt.tiers.filter((t) => t.available && (options.tiers?.includes(t.tier) ?? true)).map((t) => t.tier));
  const entries: TunedEntry[] = [];
  for (const cls of options.classes) {
    const shape = [batch, heads, cls.seqBucket, cls.headDim] as const;
    const n = batch * heads * cls.seqBucket * cls.headDim;
    const bytes = cls.dtype === 'f16' ? 2 : 4;
    const dev = rt.device;
    const bufs = {
      q: filledBuffer(dev, n, 1, cls.dtype),
      k: filledBuffer(dev, n, 2, cls.dtype),
      v: filledBuffer(dev, n, 3, cls.dtype),
      o: dev.createBuffer({ size: Math.ceil((n * bytes) / 4) * 4, usage: BufferUsage.STORAGE }),
    };
    const candidates: Array<{ tier: KernelTier; tile: TileConfig | MatrixTileConfig }> = [];
    const vectorTiers: KernelTier[] = cls.dtype === 'f32' ? ['f32'] : ['f16'];
    for (const tier of vectorTiers) {
      if (!available.has(tier)) continue;
      for (const tile of tiles) {
        try {
          checkTileConfig(tile, cls.headDim, rt.tileLimits, tier === 'f32' ? 4 : 2);
          candidates.push({ tier, tile });
        } catch {
          // does not fit this device: not a candidate
        }
      }
    }
    if (cls.dtype === 'f16' && available.has('subgroup-matrix')) {
      for (const [subgroups, blockKV] of MATRIX_TILE_CANDIDATES) {
        const tile = { blockQ: 16 * subgroups, blockKV, subgroups };
        try {
          checkMatrixTile(tile, cls.headDim, rt.tileLimits);
          candidates.push({ tier: 'subgroup-matrix', tile });
        } catch {
          // does not fit this device: not a candidate
        }
      }
    }
    const measured: TunedEntry['candidates'] = [];
    for (const c of candidates) {
      try {
        const op = await rt.createPrefill({ q: { shape }, k: { shape }, v: { shape }, causal: cls.causal, dtype: cls.dtype, tier: c.tier, tile: c.tile });
        const t = await timeGpu(dev, (enc) => op.encode(enc, bufs), { samples: options.samples ?? 5, minSampleMs: 20, maxBatch: 64 });
        op.destroy();
        measured.push({ ...c, medianMs: t.medianMs });
      } catch (e) {
        measured.push({ ...c, medianMs: null, error: (e as Error).message });
      }
    }
    for (const b of Object.values(bufs)) b.destroy();
    const ok = measured.filter((m) => m.medianMs !== null);
    if (ok.length === 0) continue;
    const best = ok.reduce((a, b) => (b.medianMs! < a.medianMs! ? b : a));
    const entry: TunedEntry = { shapeClass: cls, tier: best.tier, tile: best.tile, medianMs: best.medianMs!, candidates: measured };
    entries.push(entry);
    options.onResult?.(entry);
  }
  return { adapter: adapterKey(rt.capabilities), date: new Date().toISOString(), measuredWith: { batch, heads }, entries };
}
