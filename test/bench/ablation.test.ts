// The ablations behind `fastattn ablate`: GPU-free checks that each one still applies to its
// kernel as it is, and one timed run of the f32 tier's on the software adapter (the
// subgroup-matrix tier's timing needs tensor cores).
import { describe, expect, it } from 'vitest';
import { ablatedKernel, ablateSource, ABLATION_TARGETS, ablationTile, formatAblationTable, runAblation, type AblationTier } from '../../src/bench/ablation.js';
import { flashAttentionPrefillKernel, flashAttentionPrefillMatrixKernel } from '../../src/attention/flashAttentionPrefill.js';
import { pipelineWgsl } from '../../src/runtime/pipelineCache.js';
import { reflectKernel } from '../../src/runtime/wgsl.js';
import { matrixKernelCounts } from '../../src/tiling/matrixTile.js';
import { chooseTileConfig, TILE_CANDIDATES, vectorKernelCounts } from '../../src/tiling/tileConfig.js';
import { sharedRuntime } from '../helpers/gpu.js';

const kernels = { 'subgroup-matrix': flashAttentionPrefillMatrixKernel, f32: flashAttentionPrefillKernel } as const;
const types = {
  'subgroup-matrix': { enables: ['f16', 'subgroups', 'chromium_experimental_subgroup_matrix'] },
  f32: {},
};
const unroll = {
  'subgroup-matrix': matrixKernelCounts({ blockQ: 128, blockKV: 32, subgroups: 8 }, 128),
  f32: vectorKernelCounts(TILE_CANDIDATES[2], 128),
};
const tiers = Object.keys(ABLATION_TARGETS) as AblationTier[];
const bindingsOf = (tier: AblationTier, k: { name: string; code: string }) => reflectKernel(pipelineWgsl(k, {}, types[tier], unroll[tier])).bindings.main.map((b) => b.name);
// Untyped views for loops over both tiers (each tier's names are checked by its own type).
const ablate = (tier: AblationTier, code: string, names: string[]) => ablateSource(tier, code, names as never);
const kernelWithout = (tier: AblationTier, names: string[]) => ablatedKernel(tier, names as never);

describe('prefill ablations', () => {
  it('each applies to its kernel, changes it, and leaves a kernel that unrolls and binds the same', () => {
    for (const tier of tiers)
      for (const name of Object.keys(ABLATION_TARGETS[tier].ablations)) {
        const k = kernelWithout(tier, [name]);
        expect(k.code, name).not.toBe(kernels[tier].code);
        expect(k.name).toBe(`${kernels[tier].name}~${name}`);
        // Without its storage loads the f32 kernel no longer reads q at all (k and v stay: the paged reads name them).
        const whole = bindingsOf(tier, kernels[tier]);
        expect(bindingsOf(tier, k), name).toEqual(name === 'global-loads' ? whole.filter((b) => b !== 'q') : whole);
      }
  });

  it('the default sets apply, the first being the whole kernel itself', () => {
    for (const tier of tiers) {
      const sets = ABLATION_TARGETS[tier].defaultSets as readonly (readonly string[])[];
      expect(sets[0]).toEqual([]);
      expect(kernelWithout(tier, [])).toBe(kernels[tier]);
      for (const set of sets) expect(() => ablate(tier, kernels[tier].code, [...set]), `${tier}: ${set.join('+')}`).not.toThrow();
    }
  });

  it('subgroup-matrix: removes what it says: the span barrier, the softmax, the K/V loads', () => {
    const code = flashAttentionPrefillMatrixKernel.code;
    const spanBarriers = (c: string) => c.split("the previous span's K, V, P and flag are consumed").length - 1;
    expect(spanBarriers(ablateSource('subgroup-matrix', code, ['span-barrier']))).toBe(spanBarriers(code) - 1);
    const noSoftmax = ablateSource('subgroup-matrix', code, ['softmax']);
    for (const gone of ['// Softmax for this', 'exp2(', 'pTile[pAt', 'workgroupUniformLoad(']) expect(noSoftmax, gone).not.toContain(gone);
    expect(noSoftmax).toContain('subgroupMatrixStore<row_major>(&sTile, sRow + {n}u * 16u, st{n}');
    expect(noSoftmax).toContain('// O += P·V.');
    expect(ablateSource('subgroup-matrix', code, ['kv-loads']).split('spanWord(').length).toBe(code.split('spanWord(').length - 1);
  });

  it('f32: removes what it says: the operand loads, the storage loads, the softmax, the slice barriers', () => {
    const code = flashAttentionPrefillKernel.code;
    const count = (c: string, x: string | RegExp) => c.split(x).length - 1;
    const operands = ablateSource('f32', code, ['q-loads', 'p-loads', 'v-loads']);
    // The Q·Kᵀ step reads only K from the slice; P·V reads nothing from workgroup memory.
    expect(count(code, /\bslices\[/g) - count(operands, /\bslices\[/g)).toBe(2);
    expect(count(operands, 'pTile[(ks * CHUNK')).toBe(0);
    const noGlobal = ablateSource('f32', code, ['global-loads']);
    expect(noGlobal).not.toMatch(/\b[qkv]\[blk\./);
    const noSoftmax = ablateSource('f32', code, ['softmax']);
    for (const gone of ['exp2(s[', 'exp2(m[', 'mRow', 'l[{i}] = l[{i}] * alpha']) expect(noSoftmax, gone).not.toContain(gone);
    expect(count(code, 'workgroupBarrier()') - count(ablateSource('f32', code, ['slice-barriers']), 'workgroupBarrier()')).toBe(2);
  });

  it('refuses two ablations of the same text, an unknown name, and a kernel without the anchor', () => {
    expect(() => ablateSource('subgroup-matrix', flashAttentionPrefillMatrixKernel.code, ['softmax', 's-barrier'])).toThrow(/s-barrier.*0 times/);
    expect(() => ablate('subgroup-matrix', flashAttentionPrefillMatrixKernel.code, ['nope'])).toThrow(/unknown subgroup-matrix ablation "nope"/);
    expect(() => ablate('f32', flashAttentionPrefillKernel.code, ['kv-loads'])).toThrow(/unknown f32 ablation "kv-loads" \(allowed: q-loads/);
    expect(() => ablateSource('subgroup-matrix', 'fn main() {}', ['kv-loads'])).toThrow(/kv-loads/);
  });

  it('times the f32 kernel whole and ablated on the software adapter, the whole kernel first', async () => {
    const rt = await sharedRuntime();
    const shape = { batch: 1, heads: 1, seq: 48, headDim: 32, causal: false };
    expect(ablationTile(rt, 'f32', shape)).toEqual(chooseTileConfig(32, rt.tileLimits));
    const seen: string[][] = [];
    const report = await runAblation(rt, { tier: 'f32', shape, sets: [[], ['softmax', 'slice-barriers']], samples: 2, ceilings: { f32_fma_tflops: 1 }, onRow: (r) => seen.push(r.ablations) });
    expect(seen).toEqual([[], ['softmax', 'slice-barriers']]);
    expect(report.rows[0].speedupVsWhole).toBe(1);
    for (const r of report.rows) {
      expect(r.timing.medianMs).toBeGreaterThan(0);
      expect(r.fractionOfCeiling).toBeCloseTo(r.tflops, 12);
    }
    expect(report.rows[1].speedupVsWhole).toBeCloseTo(report.rows[0].timing.medianMs / report.rows[1].timing.medianMs, 12);
    expect(Object.keys(report.ablations)).toEqual(Object.keys(ABLATION_TARGETS.f32.ablations));
    const table = formatAblationTable(report);
    expect(table).toContain('f32 prefill, f32, B1 H1 S48 D32');
    expect(table).toContain('without softmax, slice-barriers');
    await expect(runAblation(rt, { tier: 'f32', shape, sets: [['softmax']] })).rejects.toThrow(/first set must be \[\]/);
    await expect(runAblation(rt, { tier: 'f32', shape, sets: [[], ['kv-stores']] })).rejects.toThrow(/unknown f32 ablation "kv-stores"/);
  }, 120_000);
});
