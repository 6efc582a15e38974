/**
 * Float64 CPU attention: the ground truth every kernel is tested against.
 * Straightforward on purpose: dense scores, the mask from its definition
 * (`isMasked`), a max-subtracted softmax per row, and zeros for rows whose keys
 * are all masked.
 */
import { isMasked } from '../tiling/mask.js';
import { elementIndex } from '../tiling/layout.js';
import type { AttentionProblem } from '../attention/problem.js';

export function cpuAttention(
  p: AttentionProblem,
  q: ArrayLike<number>,
  k: ArrayLike<number>,
  v: ArrayLike<number>,
  kvLengths?: ArrayLike<number>,
): Float64Array {
  const out = new Float64Array(p.elements.o);
  const D = p.headDim;
  const scores = new Float64Array(p.seqK);
  for (let b = 0; b < p.batch; b++) {
    const kvLen = kvLengths ? kvLengths[b] : p.seqK;
    const mask = { seqQ: p.seqQ, kvLen, causal: p.causal, window: p.window };
    for (let h = 0; h < p.headsQ; h++) {
      const hk = Math.floor(h / p.groupSize);
      for (let i = 0; i < p.seqQ; i++) {
        let max = -Infinity;
        for (let j = 0; j < p.seqK; j++) {
          if (isMasked(mask, i, j)) {
            scores[j] = -Infinity;
            continue;
          }
          let dot = 0;
          const qi = elementIndex(p.strides.q, b, h, i, 0);
          const kj = elementIndex(p.strides.k, b, hk, j, 0);
          for (let d = 0; d < D; d++) dot += q[qi + d] * k[kj + d];
          scores[j] = dot * p.scale;
          if (scores[j] > max) max = scores[j];
        }
        const oi = elementIndex(p.strides.o, b, h, i, 0);
        if (max === -Infinity) continue; // every key masked: the row stays zero
        let sum = 0;
        for (let j = 0; j < p.seqK; j++) {
          scores[j] = scores[j] === -Infinity ? 0 : Math.exp(scores[j] - max);
          sum += scores[j];
        }
        for (let j = 0; j < p.seqK; j++) {
          const w = scores[j] / sum;
          if (w === 0) continue;
          const vj = elementIndex(p.strides.v, b, hk, j, 0);
          for (let d = 0; d < D; d++) out[oi + d] += w * v[vj + d];
        }
      }
    }
  }
  return out;
}
