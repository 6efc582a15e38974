/**
 * The tiling-mask (FastAttention §3.2): instead of an Sq×Sk mask, one small
 * M-mask of bMax × 3·bMax elements, from which the mask of any partially masked
 * (query block, key block) pair is a window found by offset arithmetic.
 *
 * Every supported mask is an intersection of half-planes in (query row i, key j):
 *   - key length (padding / variable-length batches):  j            ≤ kvLen − 1
 *   - causal, aligned to the end of the keys:          j − i        ≤ kvLen − Sq
 *   - sliding window of w keys (key in (p − w, p]):    j − i        ≥ kvLen − Sq − w + 1
 * Each is `u = j − α·i` compared with a bound, α ∈ {0, 1}. Over a block, u spans
 * an interval, so a block is classified by two comparisons: all allowed, all
 * masked (the block is *empty* and skipped), or crossed by the band's edge (a
 * *partial* block that reads a window of the M-mask). Blocks crossed by no edge
 * are *full*: no mask is applied at all.
 */

/** What a caller asks for. */
export interface MaskOptions {
  /** Causal mask aligned to the end of the keys (query i sits at key position i + kvLen − Sq). */
  causal?: boolean;
  /** Sliding window: each query sees only its `window` most recent keys (itself included). */
  window?: number;
}

/** The mask of one sequence of a batch. */
export interface SequenceMask extends MaskOptions {
  seqQ: number;
  /** Number of valid keys of this sequence (≤ the allocated Sk). */
  kvLen: number;
}

/** One half-plane `u = j − alpha·i` (upper: u ≤ bound; lower: u ≥ bound). */
export interface BandConstraint {
  alpha: 0 | 1;
  side: 'upper' | 'lower';
  bound: number;
}

export type BlockKind = 'empty' | 'full' | 'partial';

/**
 * A B-mask window: element (r, c) of the block is masked when
 * `M[alpha·r][c + colOffset]` differs from `negate` (1 = masked in M).
 */
export interface MaskWindow {
  alpha: 0 | 1;
  colOffset: number;
  negate: boolean;
}

export interface BlockClassification {
  kind: BlockKind;
  /** Windows to OR together; non-empty exactly when kind is 'partial'. */
  windows: MaskWindow[];
}

/** A block of the (query, key) plane: rows [qStart, qStart+rows), keys [kStart, kStart+cols). */
export interface Block {
  qStart: number;
  rows: number;
  kStart: number;
  cols: number;
}

/** The half-planes that make up a sequence's mask. */
export function sequenceConstraints(mask: SequenceMask): BandConstraint[] {
  const offset = mask.kvLen - mask.seqQ;
  const out: BandConstraint[] = [{ alpha: 0, side: 'upper', bound: mask.kvLen - 1 }];
  if (mask.causal) out.push({ alpha: 1, side: 'upper', bound: offset });
  if (mask.window !== undefined) out.push({ alpha: 1, side: 'lower', bound: offset - mask.window + 1 });
  return out;
}

/** Whether key j is masked for query row i (the dense definition every other function is tested against). */
export function isMasked(mask: SequenceMask, i: number, j: number): boolean {
  const p = i + mask.kvLen - mask.seqQ;
  if (j >= mask.kvLen) return true;
  if (mask.causal && j > p) return true;
  if (mask.window !== undefined && j <= p - mask.window) return true;
  return false;
}

/**
 * Classify a block against the constraints with O(1) arithmetic per constraint,
 * and return the M-mask windows of the constraints whose edge crosses it.
 * `bMax` is the M-mask's block bound: rows and cols must not exceed it.
 */
export function classifyBlock(constraints: readonly BandConstraint[], block: Block, bMax: number): BlockClassification {
  const { qStart, rows, kStart, cols } = block;
  const windows: MaskWindow[] = [];
  for (const c of constraints) {
    const uMin = kStart - c.alpha * (qStart + rows - 1);
    const uMax = kStart + cols - 1 - c.alpha * qStart;
    if (c.side === 'upper') {
      if (uMin > c.bound) return { kind: 'empty', windows: [] };
      if (uMax <= c.bound) continue;
      // masked ⇔ (kStart + c) − α(qStart + r) > bound ⇔ (c + off) − α·r ≥ bMax
      windows.push({ alpha: c.alpha, colOffset: kStart - c.alpha * qStart - c.bound - 1 + bMax, negate: false });
    } else {
      if (uMax < c.bound) return { kind: 'empty', windows: [] };
      if (uMin >= c.bound) continue;
      // masked ⇔ (kStart + c) − α(qStart + r) < bound ⇔ not ((c + off) − α·r ≥ bMax)
      windows.push({ alpha: c.alpha, colOffset: kStart - c.alpha * qStart - c.bound + bMax, negate: true });
    }
  }
  return { kind: windows.length === 0 ? 'full' : 'partial', windows };
}

/** Width of the M-mask in elements: windows of any block of ≤ bMax rows and cols fit in 3·bMax columns. */
export function mMaskWidth(bMax: number): number {
  return 3 * bMax;
}

/** The M-mask: `M[r][x] = 1` (masked) iff `x − r ≥ bMax`; bMax rows, 3·bMax columns, one u32 each. */
export function buildMMask(bMax: number): Uint32Array<ArrayBuffer> {
  const width = mMaskWidth(bMax);
  const m = new Uint32Array(bMax * width);
  for (let r = 0; r < bMax; r++) for (let x = 0; x < width; x++) m[r * width + x] = x - r >= bMax ? 1 : 0;
  return m;
}

/** Bytes of the M-mask as the kernels store it (u32 per element). */
export function mMaskBytes(bMax: number): number {
  return bMax * mMaskWidth(bMax) * 4;
}

/** Bytes a dense Sq×Sk mask would take, at `bytesPerElement` (2 for the fp16 masks of the paper's baseline). */
export function denseMaskBytes(seqQ: number, seqK: number, bytesPerElement = 2): number {
  return seqQ * seqK * bytesPerElement;
}

/** Materialize a block's B-mask (1 = masked) from the M-mask windows; row-major rows × cols. */
export function bMaskFromWindows(mMask: Uint32Array, bMax: number, windows: readonly MaskWindow[], rows: number, cols: number): Uint8Array {
  const width = mMaskWidth(bMax);
  const out = new Uint8Array(rows * cols);
  for (const w of windows) {
    for (let r = 0; r < rows; r++) {
      for (let c = 0; c < cols; c++) {
        const x = c + w.colOffset;
        if (x < 0 || x >= width) throw new RangeError(`M-mask window column ${x} outside [0, ${width})`);
        const bit = mMask[w.alpha * r * width + x] === 1;
        if (bit !== w.negate) out[r * cols + c] = 1;
      }
    }
  }
  return out;
}

/** Dense Sq×Sk mask (1 = masked) of one sequence; for tests and the standard-attention baseline only. */
export function denseMask(mask: SequenceMask, seqK: number): Uint8Array {
  const out = new Uint8Array(mask.seqQ * seqK);
  for (let i = 0; i < mask.seqQ; i++) for (let j = 0; j < seqK; j++) out[i * seqK + j] = isMasked(mask, i, j) ? 1 : 0;
  return out;
}

/**
 * The key blocks a query block must visit: [first, end). Every block outside is
 * empty, every block inside has at least one allowed key (the band of allowed
 * keys is contiguous over a block's rows). Same arithmetic as the WGSL kernel.
 */
export function keyBlockRange(mask: SequenceMask, qStart: number, rows: number, blockKV: number): [number, number] {
  const offset = mask.kvLen - mask.seqQ;
  let kBegin = 0;
  let kEnd = mask.kvLen;
  if (mask.causal) kEnd = Math.min(kEnd, qStart + rows + offset);
  if (mask.window !== undefined) kBegin = Math.max(0, qStart + offset - mask.window + 1);
  if (kEnd <= kBegin) return [0, 0];
  return [Math.floor(kBegin / blockKV), Math.ceil(kEnd / blockKV)];
}

export interface BlockCounts {
  empty: number;
  full: number;
  partial: number;
}

/** Count the kinds of all (query block, key block) pairs of one sequence. */
export function countBlocks(mask: SequenceMask, seqK: number, blockQ: number, blockKV: number): BlockCounts {
  const bMax = Math.max(blockQ, blockKV);
  const cons = sequenceConstraints(mask);
  const counts: BlockCounts = { empty: 0, full: 0, partial: 0 };
  for (let q = 0; q < mask.seqQ; q += blockQ) {
    for (let k = 0; k < seqK; k += blockKV) {
      const block = { qStart: q, rows: Math.min(blockQ, mask.seqQ - q), kStart: k, cols: Math.min(blockKV, seqK - k) };
      counts[classifyBlock(cons, block, bMax).kind]++;
    }
  }
  return counts;
}
