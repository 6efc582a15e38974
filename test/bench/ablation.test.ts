// The ablations of the subgroup-matrix prefill behind `fastattn ablate`: GPU-free checks that
// each one still applies to the kernel as it is (the timing itself needs tensor cores).
import { describe, expect, it } from 'vitest';
import { ablatedMatrixKernel, ablateMatrixPrefill, DEFAULT_ABLATION_SETS, MATRIX_PREFILL_ABLATIONS, type MatrixPrefillAblation } from '../../src/bench/ablation.js';
import { flashAttentionPrefillMatrixKernel } from '../../src/attention/flashAttentionPrefill.js';
import { pipelineWgsl } from '../../src/runtime/pipelineCache.js';
import { reflectKernel } from '../../src/runtime/wgsl.js';
import { matrixKernelCounts } from '../../src/tiling/matrixTile.js';

const kernel = flashAttentionPrefillMatrixKernel;
const enables = { enables: ['f16', 'subgroups', 'chromium_experimental_subgroup_matrix'] };
const unroll = matrixKernelCounts({ blockQ: 128, blockKV: 32, subgroups: 8 }, 128);
const bindingsOf = (k: { name: string; code: string }) => reflectKernel(pipelineWgsl(k, {}, enables, unroll)).bindings.main.map((b) => b.name);

describe('subgroup-matrix prefill ablations', () => {
  it('each applies to the kernel, changes it, and leaves a kernel that unrolls and binds the same', () => {
    for (const name of Object.keys(MATRIX_PREFILL_ABLATIONS) as MatrixPrefillAblation[]) {
      const k = ablatedMatrixKernel([name]);
      expect(k.code, name).not.toBe(kernel.code);
      expect(k.name).toBe(`${kernel.name}~${name}`);
      expect(bindingsOf(k), name).toEqual(bindingsOf(kernel));
    }
  });

  it('the default sets apply, the first being the whole kernel itself', () => {
    expect(DEFAULT_ABLATION_SETS[0]).toEqual([]);
    expect(ablatedMatrixKernel([])).toBe(kernel);
    for (const set of DEFAULT_ABLATION_SETS) expect(() => ablateMatrixPrefill(kernel.code, set)).not.toThrow();
  });

  it('removes what it says: the span barrier, the softmax, the K/V loads', () => {
    const spanBarriers = (code: string) => code.split("the previous span's K, V, P and flag are consumed").length - 1;
    expect(spanBarriers(ablateMatrixPrefill(kernel.code, ['span-barrier']))).toBe(spanBarriers(kernel.code) - 1);
    const noSoftmax = ablateMatrixPrefill(kernel.code, ['softmax']);
    for (const gone of ['// Softmax for this', 'exp2(', 'pTile[pAt', 'workgroupUniformLoad(']) expect(noSoftmax, gone).not.toContain(gone);
    expect(noSoftmax).toContain('subgroupMatrixStore<row_major>(&sTile, sRow + {n}u * 16u, st{n}');
    expect(noSoftmax).toContain('// O += P·V.');
    expect(ablateMatrixPrefill(kernel.code, ['kv-loads']).split('spanWord(').length).toBe(kernel.code.split('spanWord(').length - 1);
  });

  it('refuses two ablations of the same text, an unknown name, and a kernel without the anchor', () => {
    expect(() => ablateMatrixPrefill(kernel.code, ['softmax', 's-barrier'])).toThrow(/s-barrier.*0 times/);
    expect(() => ablateMatrixPrefill(kernel.code, ['nope' as MatrixPrefillAblation])).toThrow(/unknown ablation "nope"/);
    expect(() => ablateMatrixPrefill('fn main() {}', ['kv-loads'])).toThrow(/kv-loads/);
  });
});
