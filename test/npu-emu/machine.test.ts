import { describe, expect, it } from 'vitest';
import { ascend910B, cubeCycles, gpuLike, NpuConfigError, peakFlops, smallNpu, transferCycles, validateMachine, vectorCycles, type MachineConfig } from '../../src/npu-emu/index.js';

function withField(m: MachineConfig, edit: (c: MachineConfig) => void): MachineConfig {
  const c = structuredClone(m);
  edit(c);
  return c;
}

describe('machine configs', () => {
  it('the shipped configs are valid', () => {
    for (const m of [ascend910B, smallNpu, gpuLike]) expect(validateMachine(m)).toBe(m);
  });

  it('910B peak follows from 24 cores × 16³ MACs × 1.8 GHz (≈354 TFLOP/s)', () => {
    expect(peakFlops(ascend910B)).toBeCloseTo(24 * 2 * 16 ** 3 * 1.8e9, -6);
    expect(ascend910B.buffers).toEqual({ l0a: 65536, l0b: 65536, l0c: 131072, l1: 524288, ub: 196608 });
  });

  it.each([
    ['aiCores', (c: MachineConfig) => (c.aiCores = 0)],
    ['aiCores', (c: MachineConfig) => (c.aiCores = 2.5)],
    ['buffers.l1', (c: MachineConfig) => (c.buffers.l1 = -1)],
    ['buffers.ub', (c: MachineConfig) => (c.buffers.ub = 0)],
    ['engines.gmToL1.bytesPerCycle', (c: MachineConfig) => (c.engines.gmToL1.bytesPerCycle = 0)],
    ['hbmBytesPerSecond', (c: MachineConfig) => (c.hbmBytesPerSecond = Number.NaN)],
    ['sdma.linkBytesPerSecond', (c: MachineConfig) => (c.sdma.linkBytesPerSecond = -5)],
    ['cube.flopsPerCycle.fp16', (c: MachineConfig) => (c.cube.flopsPerCycle.fp16 = 0)],
  ])('rejects a non-positive %s, naming it', (field, edit) => {
    const bad = withField(ascend910B, edit);
    let err: unknown;
    try {
      validateMachine(bad);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(NpuConfigError);
    expect((err as NpuConfigError).field).toBe(field);
    expect((err as NpuConfigError).allowed).toMatch(/≥ 1|> 0/);
  });
});

describe('cost functions', () => {
  it('a 128×128×128 fp16 matmul takes 2·128³ / 8192 = 512 cycles on a 910B Cube', () => {
    expect(cubeCycles(ascend910B, 128, 128, 128)).toBe(512);
  });

  it('pads dimensions to the 16-element fractal', () => {
    // 17 rows are computed as 32: 2·32·16·16 / 8192 = 2 cycles, same as 32 rows.
    expect(cubeCycles(ascend910B, 17, 16, 16)).toBe(2);
    expect(cubeCycles(ascend910B, 32, 16, 16)).toBe(2);
    expect(cubeCycles(ascend910B, 16, 16, 16)).toBe(1);
  });

  it('vector cycles use 256 B/cycle = 64 fp32 lanes per vector core, two per 910B core', () => {
    expect(vectorCycles(ascend910B, 128 * 128, 6)).toBe((128 * 128 * 6) / 128);
  });

  it('HBM-served transfers are capped by the per-core HBM share, L2-served ones are not', () => {
    // 1.5e12 B/s / 1.8e9 Hz / 24 cores = 34.72 B/cycle per core.
    const bytes = 34_722;
    expect(transferCycles(ascend910B, 'gmToL1', bytes, 'hbm')).toBe(400 + Math.ceil(bytes / (1.5e12 / 1.8e9 / 24)));
    expect(transferCycles(ascend910B, 'gmToL1', bytes, 'l2')).toBe(400 + Math.ceil(bytes / 128));
    expect(transferCycles(ascend910B, 'gmToL1', 0, 'l2')).toBe(0);
  });
});
