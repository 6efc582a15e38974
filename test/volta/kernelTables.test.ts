// The generated fragment tables and swizzles of the Volta kernel, checked
// against the layout functions they come from and the PTX formulas; and the
// operator's validation (typed errors before anything is compiled or dispatched).
import { describe, expect, it } from 'vitest';
import { ShapeError, TileConfigError, UnsupportedError } from '../../src/errors.js';
import {
  fragmentTablesIn,
  generateFragmentTables,
  planVoltaSwizzle,
  separateFragment,
  voltaExchangeCounts,
  voltaKernelLayout,
  withFragmentTables,
} from '../../src/volta/kernelTables.js';
import { m8n8k4Element, QP_GRID_32x8, QP_GRID_16x16, quadpair, voltaFragment } from '../../src/volta/mmaLayouts.js';
import { elementOffset } from '../../src/volta/smemPlanner.js';
import { checkVoltaConfig, chooseVoltaConfig, VoltaAttention, voltaAttentionWgsl, voltaKernelSource, voltaWorkgroupBytes, type VoltaAttentionOptions } from '../../src/volta/voltaAttention.js';
import { rejects } from '../helpers/errors.js';
import { sharedRuntime } from '../helpers/gpu.js';

describe('fragment tables', () => {
  it('the committed shader holds the generated FP16 tables', () => {
    expect(fragmentTablesIn(voltaAttentionWgsl)).toBe(generateFragmentTables(voltaKernelLayout('f16')));
  });

  it('the FP32 source differs only in its generated section', () => {
    const f32 = voltaKernelSource('f32').code;
    expect(f32).toContain('const ACC_F32: bool = true;');
    expect(withFragmentTables(f32, voltaKernelLayout('f16'))).toBe(voltaAttentionWgsl);
  });

  for (const acc of ['f16', 'f32'] as const) {
    it(`${acc}: lane part + value part reproduces the PTX formulas for every lane and value`, () => {
      const L = voltaKernelLayout(acc);
      for (let lane = 0; lane < 32; lane++) {
        for (let v = 0; v < 8; v++) {
          const [r, c] = m8n8k4Element(`C.${acc}`, lane, v);
          // QP_GRID_32x8: quadpair q owns rows 8q..8q+7, all 8 columns.
          expect([L.c.rowL[lane] + L.c.rowV[v], L.c.colL[lane] + L.c.colV[v]]).toEqual([r + 8 * quadpair(lane), c]);
          expect(L.rowSlots[L.rowSlotOfValue[v]]).toBe(L.c.rowV[v]);
          expect(L.colSlots[L.colSlotOfValue[v]]).toBe(L.c.colV[v]);
        }
      }
    });
  }

  it('FP16 layout: one row per lane, a bijection of lanes onto the 32 warp rows, P read in place', () => {
    const L = voltaKernelLayout('f16');
    expect(L.rowSlots).toEqual([0]);
    expect(L.rowSharers).toBe(1);
    expect([...L.c.rowL].sort((a, b) => a - b)).toEqual(Array.from({ length: 32 }, (_, i) => i));
    expect(L.pSource).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    expect(L.reuse.zeroExchange).toBe(true);
  });

  it('FP32 layout: 2 rows × 4 columns per lane, each row shared with lane ^ 2', () => {
    const L = voltaKernelLayout('f32');
    expect(L.rowSlots).toEqual([0, 2]);
    expect(L.colSlots).toEqual([0, 1, 4, 5]);
    expect(L.rowSharers).toBe(2);
    for (let lane = 0; lane < 32; lane++) {
      expect(L.c.rowL[lane]).toBe(L.c.rowL[lane ^ 2]);
      expect(L.sharerIndex[lane][0]).not.toBe(L.sharerIndex[lane ^ 2][0]);
    }
  });

  it('exchange counts come from the fragment converter: 0 for FP16, 4 per lane per 8 keys for FP32', () => {
    expect(voltaExchangeCounts('f16', 32)).toMatchObject({ receivedPerLanePer8Keys: 0, receivedPerLanePerBlock: 0, zeroExchange: true, rowPartnerLanes: 0 });
    expect(voltaExchangeCounts('f32', 32)).toMatchObject({ receivedPerLanePer8Keys: 4, receivedPerLanePerBlock: 16, receivedPerWarpPerBlock: 512, rowPartnerLanes: 1 });
  });

  it('a fragment that is not lane part + value part is refused', () => {
    // m8n8k4 B.row on the 16×16 grid is separable; a hand-made one that mixes lane and value is not.
    expect(() => separateFragment(voltaFragment('B.row', QP_GRID_16x16))).not.toThrow();
    const f = voltaFragment('C.f16', QP_GRID_32x8);
    const broken = { ...f, elements: f.elements.map((vals, lane) => vals.map(([r, c], v) => [r, lane === 3 && v === 5 ? 0 : c] as const)) };
    expect(() => separateFragment(broken)).toThrow(RangeError);
  });
});

describe('planned swizzles', () => {
  for (const [tile, warps, bc, d] of [['Q', 2, 32, 64], ['K', 1, 16, 128], ['V', 1, 8, 128]] as const) {
    it(`${tile} ${warps}w×${bc} D${d}: conflict-free for the planned accesses, and a permutation of each row's chunks`, () => {
      const plan = planVoltaSwizzle(tile, warps, bc, d);
      expect(plan.wavefronts.swizzled).toBe(plan.wavefronts.ideal);
      expect(plan.wavefronts.rowMajor).toBeGreaterThan(plan.wavefronts.ideal);
      expect(plan.masks).toHaveLength(3);
      for (let row = 0; row < plan.rows; row++) {
        const chunks = new Set(Array.from({ length: d / 4 }, (_, c4) => elementOffset(plan.layout, row, 4 * c4) - row * d));
        expect(chunks.size).toBe(d / 4);
      }
    });
  }
});

describe('VoltaAttention validation', async () => {
  const rt = await sharedRuntime();
  const shape = [1, 1, 16, 64] as const;
  const base = { q: { shape }, k: { shape }, v: { shape }, accumulator: 'f16' as const };
  it('names the field and the allowed values', async () => {
    await expect(VoltaAttention.create(rt, { ...base, accumulator: 'bf16' as never })).rejects.toMatchObject({ field: 'accumulator', allowed: 'f16, f32' });
    await expect(VoltaAttention.create(rt, { ...base, window: 8 })).rejects.toBeInstanceOf(UnsupportedError);
    const d256 = [1, 1, 16, 256] as const;
    await expect(VoltaAttention.create(rt, { ...base, q: { shape: d256 }, k: { shape: d256 }, v: { shape: d256 } })).rejects.toMatchObject({ field: 'q.shape[3]' });
    await expect(VoltaAttention.create(rt, { ...base, config: { warps: 1, blockKV: 12 } })).rejects.toMatchObject({ field: 'config.blockKV' });
    await expect(VoltaAttention.create(rt, { ...base, config: { warps: 0, blockKV: 16 } })).rejects.toBeInstanceOf(TileConfigError);
    await expect(VoltaAttention.create(rt, { ...base, k: { shape: [1, 1, 16, 32] } })).rejects.toBeInstanceOf(ShapeError);
  });
  it('rejects the fused kernel\'s tier, tile and checkF16Range: true, and f16 storage, before creating a buffer or a pipeline', async () => {
    const buffers = rt.ledger.createdCount;
    const compiled = rt.pipelines.compiledCount;
    for (const tier of ['f32', 'f16', 'subgroup-matrix'])
      expect((await rejects(VoltaAttention.create(rt, { ...base, tier } as never), UnsupportedError, 'tier')).allowed).toBe('omit tier');
    const tile = { blockQ: 16, blockKV: 16, rowsPerThread: 1, threadsPerRow: 4, chunk: 16, kvStages: 1 };
    expect((await rejects(VoltaAttention.create(rt, { ...base, tile } as never), UnsupportedError, 'tile')).allowed).toContain('config');
    for (const checkF16Range of [true, 'yes']) {
      const e = await rejects(VoltaAttention.create(rt, { ...base, checkF16Range } as never), UnsupportedError, 'checkF16Range');
      expect(e.allowed).toMatch(/^false or omitted/);
      expect(e.message).toContain(JSON.stringify(checkF16Range));
    }
    // Cast: VoltaAttentionOptions.dtype is 'f32' only, so 'f16' does not compile; this checks the runtime refusal a JavaScript caller gets.
    expect((await rejects(VoltaAttention.create(rt, { ...base, dtype: 'f16' } as never), UnsupportedError, 'dtype')).allowed).toBe('f32');
    await rejects(VoltaAttention.create(rt, { ...base, cache: {} } as never), UnsupportedError, 'cache');
    expect(rt.ledger.createdCount).toBe(buffers);
    expect(rt.pipelines.compiledCount).toBe(compiled);
  });
  it('types dtype as f32 only: f16 storage is a compile-time error (checked by tsc over test/)', () => {
    const f32: VoltaAttentionOptions = { ...base, dtype: 'f32' };
    // @ts-expect-error f16 storage is not read by the Volta kernel; tsc reports an unused directive if the type admits it again.
    const f16: VoltaAttentionOptions = { ...base, dtype: 'f16' };
    expect([f32.dtype, f16.dtype]).toEqual(['f32', 'f16']);
  });
  it('accepts checkF16Range: false (no check asked for, none run)', async () => {
    const op = await VoltaAttention.create(rt, { ...base, checkF16Range: false, config: { warps: 1, blockKV: 8 } });
    expect(op.problem.dtype).toBe('f32');
    op.destroy();
  });
  it('rejects configs that exceed workgroup memory, and the default fits', () => {
    const limits = { maxComputeWorkgroupStorageSize: 32768, maxComputeInvocationsPerWorkgroup: 256, maxComputeWorkgroupSizeX: 256 };
    expect(() => checkVoltaConfig({ warps: 1, blockKV: 16 }, 128, 'f32', limits)).toThrow(TileConfigError);
    const cfg = chooseVoltaConfig(128, limits);
    expect(cfg).toEqual({ warps: 1, blockKV: 8 });
    expect(voltaWorkgroupBytes(cfg, 128, 'f32')).toBeLessThanOrEqual(32768);
    // The FP32 layout carries the exchange tile the FP16 one does not need.
    expect(voltaWorkgroupBytes(cfg, 128, 'f32') - voltaWorkgroupBytes(cfg, 128, 'f16')).toBe(32 * 9 * 4 - 4 + 32 * 4);
  });
});
