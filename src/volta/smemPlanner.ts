/**
 * Workgroup-memory planner: bank conflicts of a warp's (subgroup's) accesses
 * to a tile, a search over XOR-swizzled tile layouts that removes them, and
 * the count of 128-byte global-memory segments of a warp load (coalescing).
 *
 * Bank model (NVIDIA's, which WebGPU does not specify): 32 banks of 4 bytes;
 * a warp request is served in phases (all 32 lanes for ≤ 4-byte accesses,
 * half-warps for 8-byte, quarter-warps for 16-byte ones); within a phase,
 * lanes reading the same 4-byte word share it (broadcast) and each bank
 * serves one distinct word per wavefront. A phase costs as many wavefronts as
 * the most-loaded bank has distinct words (its conflict degree).
 *
 * Swizzles are XOR swizzles in CuTe's sense (`Swizzle<B,M,S>` XORs offset bits
 * [M+S, M+S+B) into [M, M+B); cutlass `include/cute/swizzle.hpp`), generalized
 * to any choice of row bits: bit j of a row's chunk index is XORed with the
 * parity of `row & masks[j]`. Chunks (2^M elements) move as a whole, so vector
 * accesses inside a chunk stay contiguous.
 */

export const BANKS = 32;
export const BANK_BYTES = 4;
export const WAVEFRONT_BYTES = BANKS * BANK_BYTES;
export const GLOBAL_SEGMENT_BYTES = 128;

/** Bit j of the chunk index is XORed with parity(row & masks[j]). */
export interface XorSwizzle {
  /** Elements per chunk, a power of two; a chunk never splits. */
  chunkElems: number;
  masks: readonly number[];
}

/** A rows × cols tile in workgroup memory, row-major with a row pitch and an optional XOR swizzle. */
export interface TileLayout {
  rows: number;
  cols: number;
  elementBytes: number;
  /** Elements from one row to the next: cols, or more with padding. */
  pitch: number;
  swizzle?: XorSwizzle;
}

/** A plain row-major tile, optionally padded by `pad` elements per row. */
export function rowMajorTile(rows: number, cols: number, elementBytes: number, pad = 0): TileLayout {
  return { rows, cols, elementBytes, pitch: cols + pad };
}

function parity(x: number): number {
  let v = x >>> 0;
  v ^= v >>> 16;
  v ^= v >>> 8;
  v ^= v >>> 4;
  v ^= v >>> 2;
  v ^= v >>> 1;
  return v & 1;
}

/** The value XORed into a row's chunk indices. */
export function swizzleXor(s: XorSwizzle, row: number): number {
  let x = 0;
  for (let j = 0; j < s.masks.length; j++) x |= parity(row & s.masks[j]) << j;
  return x;
}

/** Element offset of (row, col): `row·pitch + ((chunk ^ xor(row))·chunkElems + col % chunkElems)`. */
export function elementOffset(t: TileLayout, row: number, col: number): number {
  if (!t.swizzle) return row * t.pitch + col;
  const ce = t.swizzle.chunkElems;
  const chunk = Math.floor(col / ce) ^ swizzleXor(t.swizzle, row);
  return row * t.pitch + chunk * ce + (col % ce);
}

/** Byte address of (row, col) inside the tile. */
export function byteAddress(t: TileLayout, row: number, col: number): number {
  return elementOffset(t, row, col) * t.elementBytes;
}

/** Bank of the 4-byte word that holds element (row, col). */
export function bankOf(t: TileLayout, row: number, col: number): number {
  return Math.floor(byteAddress(t, row, col) / BANK_BYTES) % BANKS;
}

/** Bytes a tile occupies (pitch included). */
export function tileBytes(t: TileLayout): number {
  return t.rows * t.pitch * t.elementBytes;
}

/** A swizzle must permute chunks inside each row: pitch a power-of-two number of chunks, masks inside it. */
export function checkSwizzle(t: TileLayout): void {
  const s = t.swizzle;
  if (!s) return;
  const chunks = t.pitch / s.chunkElems;
  if (!Number.isInteger(chunks) || (chunks & (chunks - 1)) !== 0) throw new RangeError(`pitch ${t.pitch} is not a power-of-two number of ${s.chunkElems}-element chunks`);
  if (1 << s.masks.length > chunks) throw new RangeError(`swizzle touches chunk bit ${s.masks.length - 1} of ${chunks} chunks`);
  if (t.cols !== t.pitch) throw new RangeError('a swizzled tile has no padding');
}

/**
 * CuTe `Swizzle<B,M,S>` on a row-major tile with a power-of-two pitch, as an
 * XorSwizzle: offset bits [M+S, M+S+B) must lie in the row index.
 */
export function cuteSwizzle(b: number, m: number, s: number, pitch: number): XorSwizzle {
  const p = Math.log2(pitch);
  if (!Number.isInteger(p)) throw new RangeError(`pitch ${pitch} is not a power of two`);
  if (m + s < p) throw new RangeError(`Swizzle<${b},${m},${s}> reads column bits for pitch ${pitch}`);
  if (m + b > p) throw new RangeError(`Swizzle<${b},${m},${s}> writes past the row for pitch ${pitch}`);
  return { chunkElems: 1 << m, masks: Array.from({ length: b }, (_, j) => 1 << (m + s + j - p)) };
}

/** CuTe's definition on a raw offset: `o ^ ((o & (((1<<B)-1) << (M+S))) >> S)`. */
export function cuteSwizzleOffset(b: number, m: number, s: number, offset: number): number {
  const mask = ((1 << b) - 1) << (m + s);
  return offset ^ ((offset & mask) >> s);
}

/** Human-readable form, with the CuTe name when the swizzle is one. */
export function describeSwizzle(s: XorSwizzle | undefined, pitch: number): string {
  if (!s || s.masks.every((m) => m === 0)) return 'none';
  const terms = s.masks.map((m, j) => (m === 0 ? '' : `c${j}^=${bitList(m).map((b) => `r${b}`).join('^')}`)).filter(Boolean);
  const m = Math.log2(s.chunkElems);
  const rowBits = s.masks.map((mask) => (mask && (mask & (mask - 1)) === 0 ? Math.log2(mask) : -1));
  const contiguous = rowBits.every((r, j) => r >= 0 && r === rowBits[0] + j);
  const p = Math.log2(pitch);
  const cute = contiguous && Number.isInteger(p) ? ` = Swizzle<${s.masks.length},${m},${rowBits[0] + p - m}>` : '';
  return `chunk=${s.chunkElems} elems: ${terms.join(', ')}${cute}`;
}

function bitList(x: number): number[] {
  const out: number[] = [];
  for (let b = 0; x >> b; b++) if ((x >> b) & 1) out.push(b);
  return out;
}

// ---------------------------------------------------------------------------
// Access patterns and their cost
// ---------------------------------------------------------------------------

/** One lane reads or writes `elems` consecutive columns of one row. */
export interface Access {
  lane: number;
  row: number;
  col: number;
  elems: number;
}

/** One warp-wide instruction (one request of the warp). */
export interface AccessStep {
  label?: string;
  accesses: readonly Access[];
}

export interface AccessPattern {
  name: string;
  steps: readonly AccessStep[];
}

export interface StepCost {
  /** Wavefronts (bank cycles) the request takes. */
  wavefronts: number;
  /** Wavefronts without conflicts: one per non-empty phase. */
  ideal: number;
  /** Largest number of distinct words on one bank in one phase (1 = conflict-free, 32 = fully serialized). */
  degree: number;
}

export interface PatternCost {
  pattern: string;
  steps: number;
  wavefronts: number;
  ideal: number;
  maxDegree: number;
  /** Steps whose wavefronts exceed their ideal. */
  conflictedSteps: number;
  perStep: StepCost[];
}

/** A contiguous run of bytes one lane touches. */
interface Piece {
  lane: number;
  byte: number;
  bytes: number;
}

/**
 * Elements one instruction moves per lane. A swizzled tile only keeps a
 * chunk contiguous, and code is the same for every lane, so wider accesses
 * become chunk-sized instructions even where a lane's XOR happens to keep
 * neighbouring chunks adjacent.
 */
function vectorElems(t: TileLayout, a: Access): number {
  return t.swizzle ? Math.min(a.elems, t.swizzle.chunkElems) : a.elems;
}

/** The step's accesses as sub-steps (one per vector instruction), each a list of pieces. */
function subSteps(t: TileLayout, step: AccessStep): Piece[][] {
  const out: Piece[][] = [];
  for (const a of step.accesses) {
    const w = vectorElems(t, a);
    for (let j = 0, e = 0; e < a.elems; j++, e += w) {
      const n = Math.min(w, a.elems - e);
      (out[j] ??= []).push({ lane: a.lane, byte: elementOffset(t, a.row, a.col + e) * t.elementBytes, bytes: n * t.elementBytes });
    }
  }
  return out;
}

/** Lanes served together: 32 for ≤ 4-byte accesses, 16 for 8-byte, 8 for 16-byte. */
export function lanesPerPhase(bytesPerLane: number): number {
  const words = Math.ceil(bytesPerLane / BANK_BYTES);
  return Math.max(1, BANKS >> Math.ceil(Math.log2(Math.max(1, words))));
}

/** Distinct words per bank, one row of 32 per phase of every sub-step of one step (for heatmaps). */
export function stepBankLoads(t: TileLayout, step: AccessStep): number[][] {
  const phases: number[][] = [];
  for (const ps of subSteps(t, step)) {
    const per = lanesPerPhase(Math.max(...ps.map((p) => p.bytes)));
    const byPhase = new Map<number, Set<number>>();
    for (const p of ps) {
      const ph = Math.floor(p.lane / per);
      let words = byPhase.get(ph);
      if (!words) byPhase.set(ph, (words = new Set<number>()));
      for (let w = Math.floor(p.byte / BANK_BYTES); w <= Math.floor((p.byte + p.bytes - 1) / BANK_BYTES); w++) words.add(w);
    }
    for (const ph of [...byPhase.keys()].sort((a, b) => a - b)) {
      const load = new Array<number>(BANKS).fill(0);
      for (const w of byPhase.get(ph) as Set<number>) load[w % BANKS]++;
      phases.push(load);
    }
  }
  return phases;
}

/** Scratch for the allocation-free cost path (the swizzle search evaluates thousands of layouts). */
const scratch = { stamp: new Int32Array(0), tick: 0, bank: new Int32Array(BANKS) };

/** Wavefronts, ideal and conflict degree of one step. */
export function stepCost(t: TileLayout, step: AccessStep): StepCost {
  let wavefronts = 0;
  let ideal = 0;
  let degree = 0;
  const words = Math.ceil((t.rows * t.pitch * t.elementBytes) / BANK_BYTES) + 8;
  if (scratch.stamp.length < words) scratch.stamp = new Int32Array(words);
  for (const ps of subSteps(t, step)) {
    let widest = 0;
    for (const p of ps) widest = Math.max(widest, p.bytes);
    const per = lanesPerPhase(widest);
    const sorted = ps.length > 1 && ps.some((p, i) => i > 0 && p.lane < ps[i - 1].lane) ? [...ps].sort((a, b) => a.lane - b.lane) : ps;
    let k = 0;
    while (k < sorted.length) {
      const ph = Math.floor(sorted[k].lane / per);
      scratch.tick++;
      scratch.bank.fill(0);
      let distinct = 0;
      let d = 0;
      for (; k < sorted.length && Math.floor(sorted[k].lane / per) === ph; k++) {
        const p = sorted[k];
        const last = Math.floor((p.byte + p.bytes - 1) / BANK_BYTES);
        for (let w = Math.floor(p.byte / BANK_BYTES); w <= last; w++) {
          if (scratch.stamp[w] === scratch.tick) continue;
          scratch.stamp[w] = scratch.tick;
          distinct++;
          const c = ++scratch.bank[w % BANKS];
          if (c > d) d = c;
        }
      }
      const minimum = Math.ceil(distinct / BANKS);
      wavefronts += Math.max(d, minimum);
      ideal += minimum;
      degree = Math.max(degree, d);
    }
  }
  return { wavefronts, ideal, degree };
}

export function patternCost(t: TileLayout, pattern: AccessPattern): PatternCost {
  checkSwizzle(t);
  const perStep = pattern.steps.map((s) => stepCost(t, s));
  return {
    pattern: pattern.name,
    steps: perStep.length,
    wavefronts: perStep.reduce((a, s) => a + s.wavefronts, 0),
    ideal: perStep.reduce((a, s) => a + s.ideal, 0),
    maxDegree: Math.max(0, ...perStep.map((s) => s.degree)),
    conflictedSteps: perStep.filter((s) => s.wavefronts > s.ideal).length,
    perStep,
  };
}

/** Total wavefronts, giving up (returning Infinity) once `limit` is exceeded. */
function totalWavefronts(t: TileLayout, patterns: readonly AccessPattern[], limit: number): number {
  let total = 0;
  for (const p of patterns) {
    for (const s of p.steps) {
      total += stepCost(t, s).wavefronts;
      if (total > limit) return Number.POSITIVE_INFINITY;
    }
  }
  return total;
}

// ---------------------------------------------------------------------------
// Swizzle search
// ---------------------------------------------------------------------------

export interface SwizzleSearchOptions {
  /** Chunk sizes (elements) to try; default: powers of two of 4 to 16 bytes. */
  chunkElems?: readonly number[];
  /** Most row bits to XOR in; default: as many as the chunk bits that select a bank. */
  maxXorBits?: number;
}

export interface SwizzleSearchResult {
  baseline: TileLayout;
  best: TileLayout;
  swizzle: string;
  before: PatternCost[];
  after: PatternCost[];
  beforeWavefronts: number;
  afterWavefronts: number;
  idealWavefronts: number;
  conflictFree: boolean;
  candidatesTried: number;
}

function* combinations(n: number, k: number, start = 0): Generator<number[]> {
  if (k === 0) {
    yield [];
    return;
  }
  for (let i = start; i <= n - k; i++) for (const rest of combinations(n, k - 1, i + 1)) yield [i, ...rest];
}

function* arrangements(n: number, k: number, used: readonly number[] = []): Generator<number[]> {
  if (used.length === k) {
    yield [...used];
    return;
  }
  for (let i = 0; i < n; i++) if (!used.includes(i)) yield* arrangements(n, k, [...used, i]);
}

/**
 * Search XOR swizzles of `base` (row-major, power-of-two pitch, no padding) for
 * the fewest total wavefronts over `patterns`. Candidates XOR single row bits
 * into the chunk-index bits that select a bank, fewest XOR bits first; the
 * search stops at the first level that reaches the conflict-free ideal, and
 * prefers larger chunks among equals (fewer split vector accesses).
 */
export function searchSwizzle(base: TileLayout, patterns: readonly AccessPattern[], options: SwizzleSearchOptions = {}): SwizzleSearchResult {
  const before = patterns.map((p) => patternCost(base, p));
  const beforeWavefronts = before.reduce((a, c) => a + c.wavefronts, 0);
  const idealWavefronts = before.reduce((a, c) => a + c.ideal, 0);
  const chunkOptions = (options.chunkElems ?? [16, 8, 4].map((b) => b / base.elementBytes).filter((c) => c >= 1 && Number.isInteger(c)))
    .filter((c) => base.pitch % c === 0 && ((base.pitch / c) & (base.pitch / c - 1)) === 0)
    .sort((a, b) => b - a);
  const rowBits = Math.max(1, Math.ceil(Math.log2(base.rows)));
  let best: TileLayout = base;
  let bestCost = beforeWavefronts;
  let tried = 0;
  const maxLevel = Math.max(
    0,
    ...chunkOptions.map((c) => Math.min(Math.log2(base.pitch / c), Math.log2(WAVEFRONT_BYTES / (c * base.elementBytes)))),
  );
  for (let k = 1; k <= Math.min(maxLevel, options.maxXorBits ?? maxLevel) && bestCost > idealWavefronts; k++) {
    for (const ce of chunkOptions) {
      // Only chunk bits below the 128-byte bank window change the bank.
      const bankBits = Math.min(Math.log2(base.pitch / ce), Math.log2(WAVEFRONT_BYTES / (ce * base.elementBytes)));
      if (k > bankBits) continue;
      for (const targets of combinations(bankBits, k)) {
        for (const sources of arrangements(rowBits, k)) {
          const masks = new Array<number>(targets[targets.length - 1] + 1).fill(0);
          targets.forEach((bit, i) => (masks[bit] = 1 << sources[i]));
          const cand: TileLayout = { ...base, swizzle: { chunkElems: ce, masks } };
          tried++;
          const cost = totalWavefronts(cand, patterns, bestCost - 1);
          if (cost < bestCost) {
            bestCost = cost;
            best = cand;
          }
        }
      }
    }
  }
  const after = patterns.map((p) => patternCost(best, p));
  return {
    baseline: base,
    best,
    swizzle: describeSwizzle(best.swizzle, best.pitch),
    before,
    after,
    beforeWavefronts,
    afterWavefronts: bestCost,
    idealWavefronts,
    conflictFree: after.every((c) => c.wavefronts === c.ideal),
    candidatesTried: tried,
  };
}

// ---------------------------------------------------------------------------
// Global-memory coalescing
// ---------------------------------------------------------------------------

/** Where a tile element lives in global memory: `baseByte + row·rowPitchBytes + col·elementBytes`. */
export interface GlobalTile {
  baseByte: number;
  rowPitchBytes: number;
  elementBytes: number;
}

export interface SegmentCount {
  /** Distinct 128-byte segments touched, summed over steps. */
  segments: number;
  /** Bytes moved / 128, rounded up per step: the fully coalesced count. */
  ideal: number;
  perStep: number[];
}

/** 128-byte segments each warp load touches. */
export function countSegments(g: GlobalTile, pattern: AccessPattern): SegmentCount {
  const perStep: number[] = [];
  let ideal = 0;
  for (const step of pattern.steps) {
    const segs = new Set<number>();
    const bytes = new Set<number>();
    for (const a of step.accesses) {
      const start = g.baseByte + a.row * g.rowPitchBytes + a.col * g.elementBytes;
      for (let b = 0; b < a.elems * g.elementBytes; b++) {
        segs.add(Math.floor((start + b) / GLOBAL_SEGMENT_BYTES));
        bytes.add(start + b);
      }
    }
    perStep.push(segs.size);
    ideal += Math.ceil(bytes.size / GLOBAL_SEGMENT_BYTES);
  }
  return { segments: perStep.reduce((a, b) => a + b, 0), ideal, perStep };
}

/**
 * How a workgroup of `invocations` fills a rows × cols tile with `vecElems`-element
 * vectors: 'coalesced' gives consecutive invocations consecutive vectors of a row;
 * 'row-per-lane' gives each invocation its own row (the naive mapping). One step
 * per warp per round.
 */
export function tileFillPattern(
  name: string,
  rows: number,
  cols: number,
  vecElems: number,
  invocations: number,
  order: 'coalesced' | 'row-per-lane' = 'coalesced',
): AccessPattern {
  if (cols % vecElems !== 0) throw new RangeError(`${cols} columns are not a multiple of ${vecElems}`);
  const vecsPerRow = cols / vecElems;
  const total = rows * vecsPerRow;
  const steps: AccessStep[] = [];
  const warps = Math.ceil(invocations / 32);
  const rounds = order === 'coalesced' ? Math.ceil(total / invocations) : vecsPerRow * Math.ceil(rows / invocations);
  for (let round = 0; round < rounds; round++) {
    for (let w = 0; w < warps; w++) {
      const accesses: Access[] = [];
      for (let lane = 0; lane < 32; lane++) {
        const inv = w * 32 + lane;
        if (inv >= invocations) break;
        let row: number;
        let vec: number;
        if (order === 'coalesced') {
          const idx = round * invocations + inv;
          if (idx >= total) break;
          row = Math.floor(idx / vecsPerRow);
          vec = idx % vecsPerRow;
        } else {
          // Invocation i owns rows i, i + invocations, ...; round walks its vectors.
          const r = inv + invocations * Math.floor(round / vecsPerRow);
          if (r >= rows) break;
          row = r;
          vec = round % vecsPerRow;
        }
        accesses.push({ lane, row, col: vec * vecElems, elems: vecElems });
      }
      if (accesses.length) steps.push({ label: `round ${round} warp ${w}`, accesses });
    }
  }
  return { name, steps };
}
