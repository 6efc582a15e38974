/**
 * The tuner: for each shape class, time every candidate (tier, tile) on this
 * adapter with the same timing as the benchmarks, and keep the fastest.
 */
import { Float16Array } from '@petamoriken/float16';
import type { AttentionDType } from '../attention/problem.js';
import type { KernelTier } from '../attention/tiers.js';
import { timeGpu } from '../bench/timing.js';
import type { FastAttentionRuntime } from '../runtime/runtime.js';
import { BufferUsage } from '../runtime/usage.js';
import { chooseMatrixTile, type MatrixTileConfig } from '../tiling/matrixTile.js';
import { checkTileConfig, TILE_CANDIDATES, type TileConfig } from '../tiling/tileConfig.js';
import { adapterKey, type ShapeClass, type TunedEntry, type TuningTable } from './tuning.js';

export interface TuneOptions {
  classes: ShapeClass[];
  batch?: number;
  heads?: number;
  /** Vector tiles to try (each on every vector tier that fits); default TILE_CANDIDATES. */
  tiles?: readonly TileConfig[];
  samples?: number;
  onResult?: (entry: TunedEntry) => void;
}

function randomBuffer(device: GPUDevice, elements: number, dtype: AttentionDType, seed: number): GPUBuffer {
  const data = dtype === 'f16' ? new Float16Array(elements) : new Float32Array(elements);
  let x = seed;
  for (let i = 0; i < elements; i++) {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    data[i] = x / 2 ** 32 - 0.5;
  }
  const b = device.createBuffer({ size: Math.ceil(data.byteLength / 4) * 4, usage: BufferUsage.STORAGE | BufferUsage.COPY_DST });
  device.queue.writeBuffer(b, 0, data.buffer as ArrayBuffer);
  return b;
}

export async function tune(rt: FastAttentionRuntime, options: TuneOptions): Promise<TuningTable> {
  const batch = options.batch ?? 1;
  const heads = options.heads ?? 8;
  const tiles = options.tiles ?? TILE_CANDIDATES;
  const available = new Set(rt.tiers.filter((t) => t.available).map((t) => t.tier));
  const entries: TunedEntry[] = [];
  for (const cls of options.classes) {
    const shape = [batch, heads, cls.seqBucket, cls.headDim] as const;
    const n = batch * heads * cls.seqBucket * cls.headDim;
    const bytes = cls.dtype === 'f16' ? 2 : 4;
    const dev = rt.device;
    const bufs = {
      q: randomBuffer(dev, n, cls.dtype, 1),
      k: randomBuffer(dev, n, cls.dtype, 2),
      v: randomBuffer(dev, n, cls.dtype, 3),
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
    if (cls.dtype === 'f16' && available.has('subgroup-matrix')) candidates.push({ tier: 'subgroup-matrix', tile: chooseMatrixTile(cls.headDim, rt.tileLimits) });
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
