// The prefill grid order (the kernels map it back in headAndQStart, shaders/common/prefillParams.wgsl).
import { describe, expect, it } from 'vitest';
import { prefillGrid } from '../../src/attention/flashAttentionPrefill.js';

describe('prefillGrid', () => {
  it('puts heads first under a causal mask (longest blocks of every head start first), query blocks first otherwise', () => {
    expect(prefillGrid({ seqQ: 1000, headsQ: 8, batch: 1, causal: false }, 64).groups).toEqual([16, 8, 1]);
    expect(prefillGrid({ seqQ: 1000, headsQ: 8, batch: 1, causal: true }, 64).groups).toEqual([8, 16, 1]);
    // The names follow the same order (they name the dimension in the too-many-workgroups error).
    expect(prefillGrid({ seqQ: 1000, headsQ: 8, batch: 1, causal: true }, 64).names).toEqual(['q.shape[1]', 'query blocks (q.shape[2] / blockQ)', 'q.shape[0]']);
  });
});
