/**
 * Pure planning for split-KV decode: the kernel's block shape for a problem on
 * a device ({@link chooseDecodeTiling}) and how a call's keys are split across
 * workgroups ({@link chooseDecodeSplit}). No GPU objects here, so every rule has
 * unit tests of its own.
 */
import { ShapeError, TileConfigError, UnsupportedError } from '../errors.js';
import type { KvDType } from '../kvcache/pagedKvCache.js';

/** Invocations per workgroup of the split kernel: choices (an upper bound: a whole number of key rows is used). */
export const DECODE_THREADS = [64, 128, 256] as const;
// Per storage type, from the H100 variant sweep of scripts/benchDecode.ts at S_k = 32K, S_q = 1
// (bench/results/decode-nvidia-h100-80gb-hbm3-2026-11-24T10-39-46-000Z.md): f16 rows are half as
// long, and 128 invocations read 79.6% of copy bandwidth where 256 read 66.0%; f32 keeps 256.
const DEFAULT_THREADS: Record<DecodeShape['dtype'], number> = { f16: 128, f32: 256 };
/** Keys per key slot per step: choices. */
export const DECODE_KEYS_PER_SLOT = [1, 2, 4, 8] as const;
/**
 * Default keys per slot per step, per reduction (the fastest of each in the H100
 * sweep, bench/results/decode-nvidia-h100-80gb-hbm3-2026-11-24T07-19-18-825Z.json):
 * the workgroup-memory reduction amortises its two barriers over long steps.
 */
const DEFAULT_KEYS_PER_SLOT: Record<DecodeReduction, number> = { subgroup: 2, workgroup: 8 };
/** Most lanes sharing one key row. */
const MAX_LANES = 32;
/** Most f32 registers one invocation spends on its Q rows and accumulators (2 · rows · dims per lane, rows in fours). */
const ROW_REGISTER_BUDGET = 64;

/**
 * How the lanes of a key row sum their partial dot products: subgroup shuffles
 * (no barrier in the key loop; needs the `subgroups` feature and lanes ≤ the
 * smallest subgroup size) or workgroup memory (any device; two barriers a step).
 */
export type DecodeReduction = 'subgroup' | 'workgroup';
export const DECODE_REDUCTIONS = ['subgroup', 'workgroup'] as const;

/**
 * Resident workgroups one compute unit needs before its share of memory
 * bandwidth is saturated; the split policy never plans fewer per unit.
 */
export const DEFAULT_WORKGROUPS_PER_UNIT = 2;

/** What the tiling needs to know about a decode problem. */
export interface DecodeShape {
  batch: number;
  headsKV: number;
  groupSize: number;
  seqQ: number;
  /** Key capacity: S_k (contiguous) or the cache's tokens per sequence. */
  seqK: number;
  headDim: number;
  dtype: KvDType;
}

export interface DecodeTilingOptions {
  /** Compute units (SMs, CUs) of the device; see {@link decodeComputeUnits}. */
  computeUnits: number;
  /** Resident workgroups per unit needed to saturate it; default {@link DEFAULT_WORKGROUPS_PER_UNIT}. */
  workgroupsPerUnit?: number;
  /** Fewest keys per split; default 2 steps. */
  minSplitKeys?: number;
  /** Upper bound on invocations per workgroup (64, 128 or 256); default 128 for f16, 256 for f32. */
  threads?: number;
  /** 16-byte words of a key row per lane (divides the row's words; fewer lanes with more); default: fewest with ≤ 32 lanes (and ≤ the subgroup size for the subgroup reduction). */
  wordsPerLane?: number;
  /** Keys per key slot per step (1, 2, 4, 8); default 2 (subgroup reduction) or 8 (workgroup memory), fewer if workgroup memory is short. */
  keysPerSlot?: number;
  /**
   * Smallest subgroup size of the device when it has the `subgroups` feature
   * (4 when unknown: WebGPU's minimum); 0 or absent without the feature.
   */
  subgroupMinSize?: number;
  /**
   * Lane reduction; default `workgroup`: on an H100 it measured 1.7× faster than
   * the shuffle reduction (bench/results/decode-nvidia-h100-80gb-hbm3-2026-11-24T07-19-18-825Z.json,
   * before the shuffle stages were unrolled by hand; re-measure before changing the default).
   */
  reduction?: DecodeReduction;
  /** Load the next step's K/V before computing the current one; default true. */
  prefetch?: boolean;
}

/** The kernel's block shape for one problem on one device. */
export interface DecodeTiling {
  /** Invocations per workgroup (lanes × slots). */
  threads: number;
  /** How the lanes of a key row sum their partial dots. */
  reduction: DecodeReduction;
  /** Lanes per key row, 16-byte words per lane. */
  lanes: number;
  wordsPerLane: number;
  /** Key slots per workgroup, keys per slot per step. */
  slots: number;
  keysPerSlot: number;
  /** Keys per step (slots × keysPerSlot); splits are multiples of it. */
  blockN: number;
  prefetch: boolean;
  /** Query rows per workgroup, and row blocks per KV head. */
  rowBlock: number;
  rowBlocks: number;
  /** Workspace capacity in splits per query row. */
  maxSplits: number;
  minSplitKeys: number;
  computeUnits: number;
  workgroupsPerUnit: number;
  workgroupStorageBytes: number;
  workspaceBytes: number;
}

/** How one call splits its keys: `splits` slices of `splitLen` keys (the last may be shorter). */
export interface DecodeSplit {
  splits: number;
  splitLen: number;
}

/**
 * Workgroup memory of the split kernel (mirrors the `var<workgroup>` declarations
 * of shaders/flashDecode.wgsl that the variant uses; all are vec4 arrays, rows in groups of four).
 */
export function decodeStorageBytes(t: { lanes: number; slots: number; keysPerSlot: number; rowBlock: number; reduction: DecodeReduction }, headDim: number): number {
  const step = t.slots * t.keysPerSlot;
  const rows4 = 4 * Math.ceil(t.rowBlock / 4);
  const merge = t.slots * headDim;
  // f32 `part` (partials, or only the slot merge with shuffles) and `scores` (workgroup memory only); vec4 slot statistics.
  const floats = t.reduction === 'subgroup' ? merge : Math.max(t.lanes * (step * rows4 + 1), merge) + step * rows4;
  return 4 * floats + 16 * 2 * t.slots * (rows4 / 4);
}

function isPow2(n: number): boolean {
  return n > 0 && (n & (n - 1)) === 0;
}

function oneOf(field: string, value: number, allowed: readonly number[]): number {
  if (!allowed.includes(value)) throw new TileConfigError(field, `${value} is not supported`, allowed.join(', '));
  return value;
}

/** Pick lanes, slots, keys per step, the row block and the workspace size for a problem on a device. */
export function chooseDecodeTiling(
  p: DecodeShape,
  limits: { maxComputeWorkgroupStorageSize: number; maxComputeWorkgroupsPerDimension: number },
  options: DecodeTilingOptions,
): DecodeTiling {
  const maxThreads = oneOf('threads', options.threads ?? DEFAULT_THREADS[p.dtype], DECODE_THREADS);
  const computeUnits = options.computeUnits;
  if (!Number.isInteger(computeUnits) || computeUnits < 1) throw new ShapeError('computeUnits', `must be a positive integer, got ${computeUnits}`, 'integers ≥ 1');
  const perUnit = options.workgroupsPerUnit ?? DEFAULT_WORKGROUPS_PER_UNIT;
  if (!Number.isInteger(perUnit) || perUnit < 1) throw new ShapeError('workgroupsPerUnit', `must be a positive integer, got ${perUnit}`, 'integers ≥ 1');
  const epw = p.dtype === 'f16' ? 8 : 4;
  const words = p.headDim / epw;
  const divisors = Array.from({ length: words }, (_, i) => i + 1).filter((c) => words % c === 0);
  const sgMin = options.subgroupMinSize ?? 0;
  if (options.reduction !== undefined && !(DECODE_REDUCTIONS as readonly string[]).includes(options.reduction))
    throw new UnsupportedError('reduction', `${JSON.stringify(options.reduction)} is not a reduction`, DECODE_REDUCTIONS.join(', '));
  if (options.reduction === 'subgroup' && sgMin < 1) throw new UnsupportedError('reduction', 'the device has no subgroups feature', 'workgroup');
  // Fewest words per lane such that a row has at most `maxLanes` lanes (a power of two for the shuffle butterfly).
  const fewestWords = (maxLanes: number, pow2 = false) => divisors.find((c) => words / c <= maxLanes && (!pow2 || isPow2(words / c)));
  const naturalCw = options.wordsPerLane ?? fewestWords(MAX_LANES)!;
  if (!divisors.includes(naturalCw)) throw new TileConfigError('wordsPerLane', `${naturalCw} does not divide the ${words} words of a key row`, divisors.join(', '));
  const naturalLanes = words / naturalCw;
  const reduction: DecodeReduction = options.reduction ?? 'workgroup';
  let cw = naturalCw;
  if (reduction === 'subgroup' && (naturalLanes > sgMin || !isPow2(naturalLanes))) {
    const fits = divisors.filter((c) => words / c <= sgMin && isPow2(words / c));
    if (options.wordsPerLane !== undefined)
      throw new TileConfigError('wordsPerLane', `${naturalLanes} lanes per key row: the subgroup reduction needs a power of two ≤ the subgroup size ${sgMin}`, fits.join(', '));
    cw = fewestWords(sgMin, true)!;
  }
  const lanes = words / cw;
  if (lanes > maxThreads) throw new TileConfigError('wordsPerLane', `${lanes} lanes per key row exceed ${maxThreads} invocations`, divisors.filter((c) => words / c <= maxThreads).join(', '));
  const slots = Math.floor(maxThreads / lanes);
  const dimsPerLane = cw * epw;
  // Rows per workgroup: as many as the register budget allows (in fours: the
  // kernel keeps four rows per vec4), spread evenly over the row blocks.
  const rows = p.groupSize * p.seqQ;
  const maxRows = 4 * Math.max(1, Math.floor(ROW_REGISTER_BUDGET / (8 * dimsPerLane)));
  const rowBlocks = Math.ceil(rows / maxRows);
  const rowBlock = Math.ceil(rows / rowBlocks);
  const wantKu = options.keysPerSlot === undefined ? DEFAULT_KEYS_PER_SLOT[reduction] : oneOf('keysPerSlot', options.keysPerSlot, DECODE_KEYS_PER_SLOT);
  // Fewer keys per slot until the step's partials fit workgroup memory.
  let keysPerSlot = 0;
  for (const ku of DECODE_KEYS_PER_SLOT.filter((k) => k <= wantKu).reverse()) {
    if (decodeStorageBytes({ lanes, slots, keysPerSlot: ku, rowBlock, reduction }, p.headDim) <= limits.maxComputeWorkgroupStorageSize) {
      keysPerSlot = ku;
      break;
    }
  }
  if (keysPerSlot === 0)
    throw new TileConfigError('threads', `no step of ${slots} key slots fits ${limits.maxComputeWorkgroupStorageSize} bytes of workgroup storage for ${rowBlock} rows of head dim ${p.headDim}`, 'fewer threads, or a device with more workgroup storage');
  const blockN = slots * keysPerSlot;
  const minSplitKeys = options.minSplitKeys ?? 2 * blockN;
  if (!Number.isInteger(minSplitKeys) || minSplitKeys <= 0) throw new ShapeError('minSplitKeys', `must be a positive integer, got ${minSplitKeys}`, 'integers ≥ 1');
  const maxG = limits.maxComputeWorkgroupsPerDimension;
  if (p.headsKV > maxG) throw new ShapeError('q.shape[1]', `${p.headsKV} KV heads exceed ${maxG} workgroups`, `at most ${maxG}`);
  if (p.batch > maxG) throw new ShapeError('q.shape[0]', `batch ${p.batch} exceeds ${maxG} workgroups`, `at most ${maxG}`);
  if (p.groupSize * p.headsKV * p.seqQ > maxG) throw new ShapeError('q.shape[1]', `${p.groupSize * p.headsKV * p.seqQ} query rows per sequence exceed ${maxG} workgroups`, `at most ${maxG}`);
  if (rowBlocks > maxG) throw new ShapeError('q.shape[2]', `${rowBlocks} row blocks exceed ${maxG} workgroups`, `at most ${maxG}`);
  const base = p.batch * p.headsKV * rowBlocks;
  // More splits than 4 rounds of the device's workgroup slots never pay (see chooseDecodeSplit).
  const maxSplits = Math.max(1, Math.min(Math.ceil(p.seqK / Math.max(minSplitKeys, blockN)), Math.ceil((4 * computeUnits * perUnit) / base), Math.floor(maxG / rowBlocks)));
  return {
    threads: lanes * slots,
    reduction,
    lanes,
    wordsPerLane: cw,
    slots,
    keysPerSlot,
    blockN,
    prefetch: options.prefetch ?? true,
    rowBlock,
    rowBlocks,
    maxSplits,
    minSplitKeys,
    computeUnits,
    workgroupsPerUnit: perUnit,
    workgroupStorageBytes: decodeStorageBytes({ lanes, slots, keysPerSlot, rowBlock, reduction }, p.headDim),
    workspaceBytes: p.batch * p.groupSize * p.headsKV * p.seqQ * maxSplits * (p.headDim / 4 + 1) * 16,
  };
}

/** Slices the combine pass loads at a time per invocation (its `UNROLL` const and unrolled loop count). */
export const DECODE_COMBINE_UNROLL = 4;

/** The specialization constants of shaders/flashDecode.wgsl (its `const` block) for one operator. */
export type DecodeKernelConsts = {
  HEAD_DIM: number;
  F16: boolean;
  PAGED: boolean;
  POOLS: number;
  EPW: number;
  CW: number;
  LANES: number;
  SLOTS: number;
  KU: number;
  ROWS: number;
  PREFETCH: boolean;
  SUBGROUPS: boolean;
  UNROLL: number;
};

/** The kernel's constants for a problem, its tiling and the number of KV pool buffers bound (1 for contiguous K/V). */
export function decodeKernelConsts(
  p: Pick<DecodeShape, 'headDim' | 'dtype'> & { paged: boolean },
  t: Pick<DecodeTiling, 'wordsPerLane' | 'lanes' | 'slots' | 'keysPerSlot' | 'rowBlock' | 'prefetch' | 'reduction'>,
  pools: number,
): DecodeKernelConsts {
  const f16 = p.dtype === 'f16';
  return {
    HEAD_DIM: p.headDim,
    F16: f16,
    PAGED: p.paged,
    POOLS: pools,
    EPW: f16 ? 8 : 4,
    CW: t.wordsPerLane,
    LANES: t.lanes,
    SLOTS: t.slots,
    KU: t.keysPerSlot,
    ROWS: t.rowBlock,
    PREFETCH: t.prefetch,
    SUBGROUPS: t.reduction === 'subgroup',
    UNROLL: DECODE_COMBINE_UNROLL,
  };
}

/**
 * Trip counts of the kernel's `//#for` loops (unrolled by the pipeline cache), from
 * the same formulas as its const block: keys per slot (KU), words per lane (CW),
 * row groups of four (R4 = ⌈ROWS / 4⌉) and their rows (ROWS4 = 4·R4), vec4s of
 * dims per lane (DV = CW · EPW / 4) and dims per lane (DV4 = 4·DV), and the
 * combine pass's slices per load round (UNROLL).
 */
export type DecodeKernelCounts = {
  KU: number;
  CW: number;
  R4: number;
  ROWS4: number;
  DV: number;
  DV4: number;
  UNROLL: number;
};

export function decodeKernelCounts(c: Pick<DecodeKernelConsts, 'EPW' | 'CW' | 'KU' | 'ROWS' | 'UNROLL'>): DecodeKernelCounts {
  for (const name of ['EPW', 'CW', 'KU', 'ROWS', 'UNROLL'] as const) {
    if (!Number.isInteger(c[name]) || c[name] < 1) throw new RangeError(`decode kernel const ${name} = ${c[name]} is not a positive integer`);
  }
  if (c.EPW % 4 !== 0) throw new RangeError(`decode kernel const EPW = ${c.EPW} is not a multiple of 4`);
  const R4 = Math.ceil(c.ROWS / 4);
  const DV = (c.CW * c.EPW) / 4;
  return { KU: c.KU, CW: c.CW, R4, ROWS4: 4 * R4, DV, DV4: 4 * DV, UNROLL: c.UNROLL };
}

export interface SplitPolicyInput {
  /** Keys of the call's longest sequence. */
  maxKv: number;
  /** Workgroups per split: batch × KV heads × row blocks. */
  baseWorkgroups: number;
  computeUnits: number;
  /** Resident workgroups a unit needs to saturate its memory bandwidth. */
  workgroupsPerUnit: number;
  /** Split lengths are multiples of this many keys (one step of the kernel). */
  stepKeys: number;
  /** Fewest keys per split when there is more than one split. */
  minSplitKeys: number;
  /** Most splits (the workspace's capacity). */
  maxSplits: number;
  /** Fixed cost of one workgroup (prologue, slot merge, partial write), in keys; default one step. */
  overheadKeys?: number;
}

/**
 * Split count for one call. Workgroups of a split do equal work, so the call
 * lasts as long as the busiest compute unit: ⌈workgroups / units⌉ workgroups of
 * (splitLen + overhead) keys each, where a unit given fewer than
 * `workgroupsPerUnit` workgroups is modelled as no faster than with that many
 * (it cannot keep enough loads in flight alone). The cheapest split count wins;
 * ties go to fewer splits (less for the combine pass to merge).
 */
export function chooseDecodeSplit(i: SplitPolicyInput): DecodeSplit {
  const step = i.stepKeys;
  const overhead = i.overheadKeys ?? step;
  const maxKv = Math.max(1, i.maxKv);
  let best: DecodeSplit = { splits: 1, splitLen: Math.ceil(maxKv / step) * step };
  let bestCost = Infinity;
  for (let s = 1; s <= Math.max(1, i.maxSplits); s++) {
    const splitLen = Math.ceil(Math.ceil(maxKv / s) / step) * step;
    if (s > 1 && splitLen < i.minSplitKeys) break;
    const splits = Math.ceil(maxKv / splitLen);
    if (splits !== s) continue; // the same split length as a smaller count
    const perUnit = Math.max(Math.ceil((i.baseWorkgroups * splits) / i.computeUnits), i.workgroupsPerUnit);
    const cost = perUnit * (splitLen + overhead);
    if (cost < bestCost) {
      bestCost = cost;
      best = { splits, splitLen };
    }
  }
  return best;
}

/**
 * Compute units of an adapter when it can be recognised (WebGPU does not report
 * them): NVIDIA data-centre parts by name, else a small number for software
 * adapters and a mid-range GPU's count otherwise. Pass `computeUnits` to the
 * operator to override.
 */
export function decodeComputeUnits(adapter: { vendor: string; device: string; description: string; isSoftware: boolean }): number {
  const name = `${adapter.device} ${adapter.description}`.toLowerCase();
  if (/\bh100\b.*pcie|h100-pcie/.test(name)) return 114;
  if (/\bh(100|200)\b|gh200|h100-|h200-/.test(name)) return 132;
  if (/\ba100\b|a100-/.test(name)) return 108;
  if (adapter.isSoftware) return 4;
  return 32;
}
