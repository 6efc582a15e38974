/**
 * The problem and tile controls. Values are parsed as typed (no rounding, no
 * clamping) and validated by the library itself, so a bad value shows the
 * library's typed error (ShapeError, UnsupportedError, TileConfigError) with
 * the field and what is allowed.
 */
import { FastAttentionError } from '../../src/errors.js';
import { normalizeProblem, SUPPORTED_HEAD_DIMS, type AttentionDType } from '../../src/attention/problem.js';
import type { BenchCase, BenchVariant } from '../../src/bench/suite.js';
import { chooseTier, type KernelTier } from '../../src/attention/tiers.js';
import { IMPLEMENTED_TIERS } from '../../src/attention/flashAttentionPrefill.js';
import type { FastAttentionRuntime } from '../../src/runtime/runtime.js';
import { checkTileConfig, chooseTileConfig, type TileConfig } from '../../src/tiling/tileConfig.js';
import { $, clearError, el, fmtBytes, input, params, showError } from '../state.js';

export interface BenchConfig {
  cases: BenchCase[];
  /** `standard` and one `fused:<tier>` per kernel tier this device runs for the dtype. */
  variants: BenchVariant[];
  /** The fused tiers measured, with their reasons (from the library). */
  tiers: KernelTier[];
  seqs: number[];
  dims: number[];
  tile: TileConfig | undefined;
  samples: number;
  minSampleMs: number;
  dtype: AttentionDType;
}

const TILE_IDS = ['ctl-bq', 'ctl-bkv', 'ctl-tm', 'ctl-c', 'ctl-chunk', 'ctl-stages'] as const;

/** Which input a library error's field points at. */
const FIELD_INPUT: Array<[RegExp, string[]]> = [
  [/^[qkvo]\.shape\[0\]/, ['ctl-batch']],
  [/^[qkvo]\.shape\[1\]/, ['ctl-heads']],
  [/^[qkvo]\.shape\[2\]/, ['ctl-seq']],
  [/^[qkvo]\.shape\[3\]/, ['ctl-dim']],
  [/^dtype/, ['ctl-dtype']],
  [/^tile\.blockQ/, ['ctl-bq']],
  [/^tile\.blockKV/, ['ctl-bkv']],
  [/^tile\.rowsPerThread/, ['ctl-tm']],
  [/^tile\.threadsPerRow/, ['ctl-c']],
  [/^tile\.chunk/, ['ctl-chunk']],
  [/^tile\.kvStages/, ['ctl-stages']],
  [/^tile$/, [...TILE_IDS]],
  [/^samples/, ['ctl-samples']],
  [/^minSampleMs/, ['ctl-min-ms']],
];

const ALL_IDS = ['ctl-seq', 'ctl-dim', 'ctl-heads', 'ctl-batch', 'ctl-dtype', 'ctl-samples', 'ctl-min-ms', ...TILE_IDS];

/** `"64, 128"` → [64, 128]; anything that is not a number stays NaN so validation names it. */
function numbers(s: string): number[] {
  return s.split(',').map((x) => (x.trim() === '' ? NaN : Number(x.trim())));
}

/** A demo-only option (not a library argument) that is out of range: same shape as the library's errors. */
class OptionError extends FastAttentionError {
  static readonly displayName = 'OptionError';
  constructor(field: string, message: string, allowed: string) {
    super('shape', field, message, allowed);
  }
}

function markInvalid(e: unknown): void {
  for (const id of ALL_IDS) $(id).removeAttribute('aria-invalid');
  if (!(e instanceof FastAttentionError)) return;
  for (const [re, ids] of FIELD_INPUT) if (re.test(e.field)) ids.forEach((id) => $(id).setAttribute('aria-invalid', 'true'));
}

export function tileFromInputs(): TileConfig | undefined {
  if (input('ctl-tile-auto').checked) return undefined;
  const [blockQ, blockKV, rowsPerThread, threadsPerRow, chunk, kvStages] = TILE_IDS.map((id) => Number(input(id).value.trim() === '' ? NaN : input(id).value));
  return { blockQ, blockKV, rowsPerThread, threadsPerRow, chunk, kvStages: kvStages as 1 | 2 };
}

/** Bytes per element of the workgroup slices of a vector tier. */
export function sliceBytes(tier: KernelTier): number {
  return tier === 'f32' ? 4 : 2;
}

/**
 * Every fused tier this device runs for the dtype (the library's own choice
 * rules: f16 storage needs shader-f16; the f32 tier reads f32 storage only).
 */
export function fusedTiers(rt: FastAttentionRuntime, dtype: AttentionDType, dims: readonly number[]): KernelTier[] {
  for (const d of dims) chooseTier(rt.capabilities, IMPLEMENTED_TIERS, dtype, d); // throws the typed error, e.g. f16 without shader-f16
  const out: KernelTier[] = [];
  for (const a of rt.tiers) {
    if (!a.available) continue;
    try {
      for (const d of dims) chooseTier(rt.capabilities, IMPLEMENTED_TIERS, dtype, d, a.tier);
      out.push(a.tier);
    } catch {
      // this tier cannot take this dtype or head dim: not measured
    }
  }
  return out;
}

/** Read and validate the controls; throws the library's typed error for the first bad field. */
export function readConfig(rt: FastAttentionRuntime | null): BenchConfig {
  const seqs = numbers(input('ctl-seq').value);
  const dims = numbers(input('ctl-dim').value);
  const heads = Number(input('ctl-heads').value);
  const batch = Number(input('ctl-batch').value);
  const causalSel = ($('ctl-causal') as HTMLSelectElement).value;
  const dtype = ($('ctl-dtype') as HTMLSelectElement).value as AttentionDType;
  const causals = causalSel === 'both' ? [false, true] : [causalSel === 'true'];
  const cases: BenchCase[] = [];
  for (const headDim of dims) {
    for (const seq of seqs) {
      const shape = [batch, heads, seq, headDim] as const;
      normalizeProblem({ q: { shape }, k: { shape }, v: { shape }, dtype });
      for (const causal of causals) cases.push({ batch, heads, seq, headDim, causal });
    }
  }
  const samples = Number(input('ctl-samples').value);
  if (!Number.isInteger(samples) || samples < 1 || samples > 101) throw new OptionError('samples', `must be an integer in [1, 101], got ${input('ctl-samples').value}`, 'integers 1–101');
  const minSampleMs = Number(input('ctl-min-ms').value);
  if (!Number.isFinite(minSampleMs) || minSampleMs < 0 || minSampleMs > 10_000)
    throw new OptionError('minSampleMs', `must be a number of milliseconds in [0, 10000], got ${input('ctl-min-ms').value}`, '0–10000');
  const tiers = rt ? fusedTiers(rt, dtype, dims) : [];
  const tile = tileFromInputs();
  // The tile applies to the vector tiers (f32, f16 slices); the subgroup-matrix tier picks its own.
  if (tile && rt) for (const d of dims) for (const t of tiers) if (t !== 'subgroup-matrix') checkTileConfig(tile, d, rt.tileLimits, sliceBytes(t));
  const variants: BenchVariant[] = ['standard', ...tiers.map((t) => `fused:${t}` as const)];
  return { cases, variants, tiers, seqs, dims, tile, samples, minSampleMs, dtype };
}

/** Describe the tile(s) the benchmark will use, or show why the controls are invalid. */
function refresh(rt: FastAttentionRuntime | null): void {
  const box = $('controls-error');
  const geo = $('tile-geometry');
  const auto = input('ctl-tile-auto').checked;
  for (const id of TILE_IDS) input(id).disabled = auto;
  if (auto && rt) {
    // Show the automatic tile of the first head dim, as a starting point for manual tiles.
    try {
      const t = chooseTileConfig(Number(input('ctl-dim').value.split(',')[0]), rt.tileLimits);
      TILE_IDS.forEach((id, i) => (input(id).value = String([t.blockQ, t.blockKV, t.rowsPerThread, t.threadsPerRow, t.chunk, t.kvStages][i])));
    } catch {
      // an invalid head dim: readConfig below reports it
    }
  }
  try {
    const cfg = readConfig(rt);
    clearError(box);
    markInvalid(null);
    if (!rt) {
      geo.textContent = '';
      return;
    }
    const L = rt.tileLimits;
    const vector = cfg.tiers.find((t) => t !== 'subgroup-matrix') ?? 'f32';
    const bytes = sliceBytes(vector);
    const lines = cfg.dims.map((d) => {
      const t = cfg.tile ?? chooseTileConfig(d, L, undefined, bytes);
      const g = checkTileConfig(t, d, L, bytes);
      return `D${d} (${vector} tier): ${cfg.tile ? '' : 'auto '}${t.blockQ}×${t.blockKV}, ${t.rowsPerThread}×${t.threadsPerRow}, chunk ${t.chunk}, ${t.kvStages} stage(s) → ${g.threads} invocations (max ${Math.min(L.maxComputeInvocationsPerWorkgroup, L.maxComputeWorkgroupSizeX)}), ` +
        `${fmtBytes(g.workgroupStorageBytes)} workgroup storage (max ${fmtBytes(L.maxComputeWorkgroupStorageSize)}), ~${g.registersPerThread} registers (budget ${L.registerBudget ?? 128}), M-mask bMax ${g.maskBlock}`;
    });
    geo.replaceChildren(...lines.map((l) => el('div', {}, l)));
  } catch (e) {
    showError(box, e);
    markInvalid(e);
    geo.textContent = '';
  }
}

/** Fill the controls from the URL (?seq=64,128&dim=32&heads=1&causal=both&dtype=f32&tile=auto|Q,KV,TM,C,CHUNK,STAGES&samples=5&minSampleMs=50). */
export function initControls(getRt: () => FastAttentionRuntime | null, onChange: () => void): void {
  const dl = $('dims');
  for (const d of SUPPORTED_HEAD_DIMS) dl.append(el('option', { value: String(d) }));
  const set = (id: string, key: string) => {
    const v = params.get(key);
    if (v !== null) ($(id) as HTMLInputElement).value = v;
  };
  set('ctl-seq', 'seq');
  set('ctl-dim', 'dim');
  set('ctl-heads', 'heads');
  set('ctl-batch', 'batch');
  set('ctl-causal', 'causal');
  set('ctl-dtype', 'dtype');
  set('ctl-samples', 'samples');
  set('ctl-min-ms', 'minSampleMs');
  const tile = params.get('tile');
  if (tile && tile !== 'auto') {
    input('ctl-tile-auto').checked = false;
    tile.split(',').forEach((v, i) => {
      if (TILE_IDS[i]) input(TILE_IDS[i]).value = v;
    });
  }
  const form = $('controls');
  const update = () => {
    refresh(getRt());
    onChange();
  };
  form.addEventListener('input', update);
  form.addEventListener('change', update);
  refresh(getRt());
}

/** Re-validate against the runtime's limits once it exists; defaults that suit the adapter unless the URL set them. */
export function controlsReady(rt: FastAttentionRuntime): void {
  if (!rt.capabilities.adapter.isSoftware) {
    if (!params.has('seq')) input('ctl-seq').value = '512,1024,2048,4096';
    if (!params.has('dim')) input('ctl-dim').value = '64';
    if (!params.has('heads')) input('ctl-heads').value = '8';
  }
  refresh(rt);
}

/** Validate now and show the error (if any) in the controls; returns the config or null. */
export function validateAndShow(rt: FastAttentionRuntime | null, extraBox?: HTMLElement): BenchConfig | null {
  const box = $('controls-error');
  try {
    const cfg = readConfig(rt);
    clearError(box);
    markInvalid(null);
    if (extraBox) clearError(extraBox);
    return cfg;
  } catch (e) {
    showError(box, e);
    if (extraBox) showError(extraBox, e);
    markInvalid(e);
    return null;
  }
}
