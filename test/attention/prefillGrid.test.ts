// The prefill grid order (the kernels map it back in headAndQStart, shaders/common/prefillParams.wgsl).
import { describe, expect, it } from 'vitest';
import { prefillGrid } from '../../src/attention/flashAttentionPrefill.js';

describe('prefillGrid', () => {
  it('puts heads first under a causal mask (longest blocks of every head start first), query blocks first otherwise', () => {
    expect(prefillGrid({ seqQ: 1000, headsQ: 8, batch: 1, causal: false }, 64)).toEqual([16, 8, 1]);
    expect(prefillGrid({ seqQ: 1000, headsQ: 8, batch: 1, causal: true }, 64)).toEqual([8, 16, 1]);
  });
});
