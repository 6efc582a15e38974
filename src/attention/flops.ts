/** FLOP counts used to report TFLOP/s: 4·D per (query, key) pair that is not masked (2 for Q·Kᵀ, 2 for P·V). */
import type { AttentionProblem } from './problem.js';

/** Number of unmasked (query, key) pairs of one sequence, by the row-wise key interval. */
export function unmaskedPairs(seqQ: number, kvLen: number, causal: boolean, window: number | undefined): number {
  const offset = kvLen - seqQ;
  let n = 0;
  for (let i = 0; i < seqQ; i++) {
    let hi = kvLen - 1;
    let lo = 0;
    if (causal) hi = Math.min(hi, i + offset);
    if (window !== undefined) lo = Math.max(lo, i + offset - window + 1);
    if (hi >= lo) n += hi - lo + 1;
  }
  return n;
}

export function attentionFlops(p: AttentionProblem, kvLengths?: ArrayLike<number>): number {
  let pairs = 0;
  for (let b = 0; b < p.batch; b++) pairs += unmaskedPairs(p.seqQ, kvLengths ? kvLengths[b] : p.seqK, p.causal, p.window);
  return 4 * p.headDim * p.headsQ * pairs;
}
