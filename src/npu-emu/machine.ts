/**
 * Machine model of a decoupled Cube/Vector accelerator (Ascend "separated"
 * architecture: one Cube core (AIC) paired with vector cores (AIV) that share no
 * buffer and exchange data through global memory), plus the SDMA engine used
 * for inter-chip collectives. Other machines (a smaller NPU, a GPU-like
 * processor) are just other configs.
 *
 * Every simulated duration is an integer number of cycles at `clockHz`, so
 * sums are exact and runs are deterministic.
 */
import { NpuConfigError } from './errors.js';

export type CubeDType = 'fp16' | 'bf16' | 'int8';

/** A DMA engine: fixed start latency plus bytes per cycle (per core). */
export interface TransferEngine {
  bytesPerCycle: number;
  latencyCycles: number;
}

/** Where a global-memory access is served from: L2 (working set fits) or HBM. */
export type GmPath = 'l2' | 'hbm';

export interface MachineConfig {
  name: string;
  /** Clock of the AI cores (Cube and Vector assumed equal). */
  clockHz: number;
  /** Number of Cube cores (AIC); each is one scheduling unit of the emulator. */
  aiCores: number;
  /** Vector cores (AIV) paired with each Cube core; they split the rows of a block. */
  vectorUnitsPerCore: number;
  cube: {
    /** Dense FLOPs (2 per MAC) per cycle per Cube core, by input type. */
    flopsPerCycle: Record<CubeDType, number>;
    /** Matrix fractal edge: m, n, k are rounded up to multiples of it. */
    fractal: number;
  };
  vector: {
    /** Bytes one vector core processes per cycle (fp32 elements/cycle = bytesPerCycle / 4). */
    bytesPerCycle: number;
  };
  /** On-chip capacities in bytes; `ub` is per vector core, the others per Cube core. */
  buffers: { l0a: number; l0b: number; l0c: number; l1: number; ub: number };
  engines: {
    /** MTE2 of the Cube core: GM → L1. */
    gmToL1: TransferEngine;
    /** MTE1: L1 → L0A/L0B. */
    l1ToL0: TransferEngine;
    /** FixPipe: L0C → GM. */
    l0cToGm: TransferEngine;
    /** MTE2 of a vector core: GM → UB. */
    gmToUb: TransferEngine;
    /** MTE3 of a vector core: UB → GM. */
    ubToGm: TransferEngine;
  };
  /** One Cube↔Vector synchronization through GM (flag written by one side, polled by the other). */
  syncCycles: number;
  /** Fixed cost of one kernel launch / device-wide barrier. */
  kernelLaunchCycles: number;
  hbmBytesPerSecond: number;
  hbmBytes: number;
  l2Bytes: number;
  /** Inter-chip DMA engine; it runs concurrently with the AI cores. */
  sdma: { linkBytesPerSecond: number; latencySeconds: number };
  /** Where each number comes from, and which are assumptions. */
  sources: Record<string, string>;
}

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;

/**
 * An Ascend-910B-like chip (the 910B2 SKU of the CANN platform config).
 *
 * Verified from public copies of CANN's `platform_config/Ascend910B2.ini`
 * (quoted in the READMEs of public Ascend kernel repositories): 24 Cube cores,
 * 48 vector cores, `cube_freq=1800` MHz, 16×16×16 fp16 fractal, L0A = L0B =
 * 64 KiB, L0C = 128 KiB, L1 = 512 KiB, UB = 192 KiB, L2 = 192 MiB, 64 GiB HBM.
 * Everything else is marked as an assumption in `sources`.
 */
export const ascend910B: MachineConfig = {
  name: 'ascend-910b',
  clockHz: 1.8e9,
  aiCores: 24,
  vectorUnitsPerCore: 2,
  // 16×16×16 MACs per cycle = 8192 FLOPs; int8 doubles k (16×32×16).
  cube: { flopsPerCycle: { fp16: 8192, bf16: 8192, int8: 16384 }, fractal: 16 },
  vector: { bytesPerCycle: 256 },
  buffers: { l0a: 64 * KiB, l0b: 64 * KiB, l0c: 128 * KiB, l1: 512 * KiB, ub: 192 * KiB },
  engines: {
    gmToL1: { bytesPerCycle: 128, latencyCycles: 400 },
    l1ToL0: { bytesPerCycle: 256, latencyCycles: 30 },
    l0cToGm: { bytesPerCycle: 128, latencyCycles: 400 },
    gmToUb: { bytesPerCycle: 64, latencyCycles: 400 },
    ubToGm: { bytesPerCycle: 64, latencyCycles: 400 },
  },
  syncCycles: 1000,
  kernelLaunchCycles: 9000,
  hbmBytesPerSecond: 1.5e12,
  hbmBytes: 64 * GiB,
  l2Bytes: 192 * MiB,
  sdma: { linkBytesPerSecond: 100e9, latencySeconds: 5e-6 },
  sources: {
    cores:
      'ai_core_cnt=24, cube_core_cnt=24, vector_core_cnt=48 in Ascend910B2.ini [SoCInfo] (quoted in public CANN kernel READMEs; also the --aicore_num="24|48" example of hiascend.com ATC docs, atlasatcparam_16_0038)',
    clock: 'cube_freq=1800 (MHz) in Ascend910B2.ini [AICoreSpec]; vector clock assumed equal',
    cube: 'cube_m/n/k_size=16: 16×16×16 fp16 MACs per cycle (hiascend.com TBE AI Core architecture page: "a 16 x 16 and 16 x 16 matrix multiplication in fp16"; int8 16×32×16). Peak = 24 × 8192 × 1.8e9 ≈ 354 TFLOP/s fp16 (public docs quote 280–320 TFLOP/s by SKU)',
    vector: 'hiascend.com TIK tiling principles: "256 bytes of data can be processed per clock cycle" (per vector unit); every softmax op assumed one pass at that rate (exp included): assumption',
    buffers: 'l0_a_size=65536, l0_b_size=65536, l0_c_size=131072, l1_size=524288, ub_size=196608 in Ascend910B2.ini [AICoreSpec]',
    l2: 'l2_size=201326592 (192 MiB), memory_size=68719476736 (64 GiB) in Ascend910B2.ini [SoCInfo]',
    hbm: '"about 1.5 TB/sec for global memory bandwidth" for 910B2 (public pto-kernels agent notes); 64 GB HBM2e (gitee.ai Ascend 910B page)',
    engines:
      'ASSUMPTION: bytes/cycle chosen in the range of the [AICoreMemoryRates] fields of CANN platform configs seen in public tiling unit tests (l1_to_l0 256–512, l2 ≈114–128, ub_to_ddr 17–64 B/cycle); latencies (400 cycles for GM, 30 for L1→L0) are assumptions',
    sync: 'ASSUMPTION: one cross-core flag through GM ≈ one GM write + one polled GM read + pipe barrier ≈ 1000 cycles (0.56 µs)',
    launch: 'ASSUMPTION: 5 µs per kernel launch / device barrier',
    sdma: 'ASSUMPTION: 100 GB/s per collective step, the order of the intranode 8-NPU bottleneck bandwidth measured by sgl-kernel-npu (102 GB/s dispatch, 152 GB/s combine); 5 µs per step. The 8 NPUs of a 910B server are fully connected by HCCS (gitee.ai Ascend 910B page: "单机内 8 卡全互联")',
  },
};

/**
 * A smaller NPU (Ascend-310P-like: coupled architecture, 8 AI cores). Buffer
 * sizes and rates follow the `hardware_info` fixture of a public CANN tiling
 * unit test for Ascend310P (CORE_NUM 8, L1 1 MiB, L0A/L0B 64 KiB, L0C 256 KiB,
 * UB 256 KiB, l2_rate 114, ddr 17 B/cycle, l1_to_l0_b 256). The coupled core
 * is still modelled as Cube + Vector exchanging through GM (pessimistic: on a
 * coupled core the handoff can stay on chip). Clock, HBM/DDR and SDMA are assumptions.
 */
export const smallNpu: MachineConfig = {
  name: 'small-npu-310p-like',
  clockHz: 1.08e9,
  aiCores: 8,
  vectorUnitsPerCore: 1,
  cube: { flopsPerCycle: { fp16: 8192, bf16: 8192, int8: 16384 }, fractal: 16 },
  vector: { bytesPerCycle: 256 },
  buffers: { l0a: 64 * KiB, l0b: 64 * KiB, l0c: 256 * KiB, l1: 1024 * KiB, ub: 256 * KiB },
  engines: {
    gmToL1: { bytesPerCycle: 114, latencyCycles: 400 },
    l1ToL0: { bytesPerCycle: 256, latencyCycles: 30 },
    l0cToGm: { bytesPerCycle: 64, latencyCycles: 400 },
    gmToUb: { bytesPerCycle: 114, latencyCycles: 400 },
    ubToGm: { bytesPerCycle: 64, latencyCycles: 400 },
  },
  syncCycles: 600,
  kernelLaunchCycles: 5400,
  hbmBytesPerSecond: 204.8e9,
  hbmBytes: 24 * GiB,
  l2Bytes: 16 * MiB,
  sdma: { linkBytesPerSecond: 16e9, latencySeconds: 10e-6 },
  sources: {
    all: 'Sizes and rates: hardware_info fixture of a public CANN tiling unit test (Short_SoC_version Ascend310P). ASSUMPTIONS: 1.08 GHz clock, 204.8 GB/s LPDDR, PCIe-class 16 GB/s inter-chip, sync 600 cycles',
  },
};

/**
 * A GPU-like machine (V100-like, for contrast): "Cube" = the tensor cores of an
 * SM (125 TFLOP/s / 80 SMs / 1.53 GHz ≈ 1024 FLOPs/cycle), "Vector" = its 64
 * FP32 lanes, L1 = shared memory, L0A/L0B/L0C = register-file shares, and a
 * Cube↔Vector handoff that costs a barrier, not a GM round trip (the schedules
 * still route blocks through GM; that is what the emulator compares).
 * ASSUMPTIONS throughout; public V100 figures: 80 SMs, 900 GB/s HBM2, 96 KiB shared memory per SM, NVLink 25 GB/s per link.
 */
export const gpuLike: MachineConfig = {
  name: 'gpu-like-v100',
  clockHz: 1.53e9,
  aiCores: 80,
  vectorUnitsPerCore: 1,
  cube: { flopsPerCycle: { fp16: 1024, bf16: 1024, int8: 2048 }, fractal: 16 },
  vector: { bytesPerCycle: 256 },
  buffers: { l0a: 64 * KiB, l0b: 64 * KiB, l0c: 128 * KiB, l1: 96 * KiB, ub: 96 * KiB },
  engines: {
    gmToL1: { bytesPerCycle: 64, latencyCycles: 500 },
    l1ToL0: { bytesPerCycle: 128, latencyCycles: 30 },
    l0cToGm: { bytesPerCycle: 64, latencyCycles: 500 },
    gmToUb: { bytesPerCycle: 64, latencyCycles: 500 },
    ubToGm: { bytesPerCycle: 64, latencyCycles: 500 },
  },
  syncCycles: 40,
  kernelLaunchCycles: 7650,
  hbmBytesPerSecond: 900e9,
  hbmBytes: 32 * GiB,
  l2Bytes: 6 * MiB,
  sdma: { linkBytesPerSecond: 25e9, latencySeconds: 5e-6 },
  sources: { all: 'V100 public figures (80 SMs, 125 TFLOP/s fp16 tensor, 900 GB/s, 6 MiB L2, 96 KiB shared memory/SM); per-cycle rates and latencies are ASSUMPTIONS' },
};

export const MACHINES: Readonly<Record<string, MachineConfig>> = { ascend910B, smallNpu, gpuLike };

function checkPositive(field: string, value: number, integer = false): void {
  const ok = Number.isFinite(value) && value > 0 && (!integer || Number.isInteger(value));
  if (!ok) throw new NpuConfigError(field, `must be a positive ${integer ? 'integer' : 'number'}, got ${value}`, integer ? 'integers ≥ 1' : 'finite numbers > 0');
}

function checkNonNegative(field: string, value: number): void {
  if (!(Number.isFinite(value) && value >= 0)) throw new NpuConfigError(field, `must be a finite number ≥ 0, got ${value}`, 'finite numbers ≥ 0');
}

/** Throw an {@link NpuConfigError} naming the first unusable field; return the config otherwise. */
export function validateMachine(m: MachineConfig): MachineConfig {
  checkPositive('clockHz', m.clockHz);
  checkPositive('aiCores', m.aiCores, true);
  checkPositive('vectorUnitsPerCore', m.vectorUnitsPerCore, true);
  for (const dt of ['fp16', 'bf16', 'int8'] as const) checkPositive(`cube.flopsPerCycle.${dt}`, m.cube.flopsPerCycle[dt]);
  checkPositive('cube.fractal', m.cube.fractal, true);
  checkPositive('vector.bytesPerCycle', m.vector.bytesPerCycle);
  for (const b of ['l0a', 'l0b', 'l0c', 'l1', 'ub'] as const) checkPositive(`buffers.${b}`, m.buffers[b], true);
  for (const e of ['gmToL1', 'l1ToL0', 'l0cToGm', 'gmToUb', 'ubToGm'] as const) {
    checkPositive(`engines.${e}.bytesPerCycle`, m.engines[e].bytesPerCycle);
    checkNonNegative(`engines.${e}.latencyCycles`, m.engines[e].latencyCycles);
  }
  checkNonNegative('syncCycles', m.syncCycles);
  checkNonNegative('kernelLaunchCycles', m.kernelLaunchCycles);
  checkPositive('hbmBytesPerSecond', m.hbmBytesPerSecond);
  checkPositive('hbmBytes', m.hbmBytes);
  checkPositive('l2Bytes', m.l2Bytes);
  checkPositive('sdma.linkBytesPerSecond', m.sdma.linkBytesPerSecond);
  checkNonNegative('sdma.latencySeconds', m.sdma.latencySeconds);
  return m;
}

/** Round `x` up to a multiple of `q`. */
export function roundUp(x: number, q: number): number {
  return Math.ceil(x / q) * q;
}

/** Cycles of one Cube matmul m×k · k×n (dimensions padded to the fractal, as the hardware does). */
export function cubeCycles(m: MachineConfig, rows: number, cols: number, inner: number, dtype: CubeDType = 'fp16'): number {
  const f = m.cube.fractal;
  const flops = 2 * roundUp(rows, f) * roundUp(cols, f) * roundUp(inner, f);
  return Math.ceil(flops / m.cube.flopsPerCycle[dtype]);
}

/** Cycles for all vector units of a core to apply `opsPerElement` fp32 passes to `elements` elements. */
export function vectorCycles(m: MachineConfig, elements: number, opsPerElement: number): number {
  const perCycle = (m.vector.bytesPerCycle / 4) * m.vectorUnitsPerCore;
  return Math.ceil((elements * opsPerElement) / perCycle);
}

/** HBM bytes per cycle one core gets when every core streams at once. */
export function hbmShareBytesPerCycle(m: MachineConfig): number {
  return m.hbmBytesPerSecond / m.clockHz / m.aiCores;
}

/**
 * Cycles of one DMA transfer: latency + bytes / rate, where an HBM-served
 * transfer is capped by the core's share of HBM bandwidth. `units` engines in
 * parallel (the vector cores' own MTEs) multiply the rate.
 */
export function transferCycles(m: MachineConfig, engine: keyof MachineConfig['engines'], bytes: number, path: GmPath = 'l2', units = 1): number {
  if (bytes <= 0) return 0;
  const e = m.engines[engine];
  let rate = e.bytesPerCycle * units;
  if (path === 'hbm' && engine !== 'l1ToL0') rate = Math.min(rate, hbmShareBytesPerCycle(m));
  return e.latencyCycles + Math.ceil(bytes / rate);
}

/** Seconds → whole cycles (rounded up). */
export function secondsToCycles(m: MachineConfig, seconds: number): number {
  return Math.ceil(seconds * m.clockHz - 1e-9);
}

/** Peak dense FLOP/s of the chip for a Cube input type. */
export function peakFlops(m: MachineConfig, dtype: CubeDType = 'fp16'): number {
  return m.cube.flopsPerCycle[dtype] * m.aiCores * m.clockHz;
}
