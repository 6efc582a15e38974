// Tensor-parallel attention + output projection on N logical devices sharing one
// GPUDevice, summed by a ring or tree AllReduce built from link-transfer
// dispatches: baseline and tiling-AllReduce against the float64 reference of the
// unsplit layer (SwiftShader in CI).
import { afterAll, describe, expect, it } from 'vitest';
import {
  allReduceSchedule,
  ascend910B,
  chooseBlocks,
  cpuTensorParallelReference,
  layerCostModel,
  NpuConfigError,
  pipelineMakespan,
  WebGpuTensorParallelLayer,
  type AllReduceAlgorithm,
  type LayerConfig,
} from '../../src/npu-emu/index.js';
import { maxAbsDiff, randn, rng, sharedRuntime } from '../helpers/gpu.js';

const TOL = 1e-4;
// A small fused-kernel tile: SwiftShader compiles the default 64×64 one slowly.
const tile = { blockQ: 8, blockKV: 8, rowsPerThread: 1, threadsPerRow: 8, chunk: 4, kvStages: 1 } as const;

function inputs(layer: LayerConfig, seed: number) {
  const r = rng(seed);
  const n = layer.seqLen * layer.heads * layer.headDim;
  const K = layer.heads * layer.headDim;
  const w = randn(K * layer.hidden, r).map((x) => x / Math.sqrt(K));
  return { q: randn(n, r), k: randn(n, r), v: randn(n, r), w };
}

describe('AllReduce schedules', () => {
  it.each([
    ['ring', 2], ['ring', 3], ['ring', 4], ['ring', 8], ['tree', 2], ['tree', 3], ['tree', 5], ['tree', 8],
  ] as [AllReduceAlgorithm, number][])('%s over %i devices sums every chunk onto every device in the emulator’s step count', (alg, N) => {
    const steps = allReduceSchedule(N, alg);
    expect(steps.length).toBe(alg === 'ring' ? 2 * (N - 1) : 2 * Math.ceil(Math.log2(N)));
    // Symbolic execution: each device's chunk holds the set of contributions it has summed.
    const chunks = alg === 'ring' ? N : 1;
    const held = Array.from({ length: N }, (_, d) => Array.from({ length: chunks }, () => new Set([d])));
    for (const step of steps) {
      const before = held.map((dv) => dv.map((s) => new Set(s)));
      const touched = new Set<string>();
      for (const t of step) {
        const cs = t.chunk < 0 ? [...Array(chunks).keys()] : [t.chunk];
        for (const c of cs) {
          const key = `${t.dst}:${c}`;
          expect(touched.has(key)).toBe(false); // one writer per destination chunk per step
          touched.add(key);
          const src = before[t.src][c];
          if (t.accumulate) {
            for (const x of src) expect(before[t.dst][c].has(x)).toBe(false); // nothing summed twice
            src.forEach((x) => held[t.dst][c].add(x));
          } else held[t.dst][c] = new Set(src);
        }
      }
    }
    for (const dv of held) for (const c of dv) expect([...c].sort()).toEqual([...Array(N).keys()]);
  });
});

describe('WebGPU tensor-parallel layer with tiling-AllReduce', async () => {
  const rt = await sharedRuntime();
  const layers: WebGpuTensorParallelLayer[] = [];
  afterAll(() => layers.forEach((l) => l.destroy()));

  const CASES: [string, LayerConfig, number, AllReduceAlgorithm, number[] | undefined][] = [
    ['4 heads / 2 devices, ring, causal, blocks 16+32', { name: 't', hidden: 128, heads: 4, headDim: 32, seqLen: 48, causal: true }, 2, 'ring', [16, 32]],
    ['4 heads / 4 devices, tree, causal, blocks 8+24+8', { name: 't', hidden: 128, heads: 4, headDim: 32, seqLen: 40, causal: true }, 4, 'tree', [8, 24, 8]],
    ['3 heads / 3 devices, ring, non-causal, hidden 100', { name: 't', hidden: 100, heads: 3, headDim: 32, seqLen: 33, causal: false }, 3, 'ring', [16, 17]],
  ];
  it.each(CASES)('%s: baseline and tiled equal the unsplit reference on every device', async (_n, layer, N, alg, blocks) => {
    const tp = await WebGpuTensorParallelLayer.create(rt, { layer, devices: N, algorithm: alg, blocks, tile });
    layers.push(tp);
    const x = inputs(layer, layer.seqLen * 31 + N);
    const ref = cpuTensorParallelReference(layer, x);
    for (const mode of ['baseline', 'tiled'] as const) {
      tp.setInputs(x);
      await tp.run(mode);
      for (let d = 0; d < N; d++) expect(maxAbsDiff(await tp.readOutput(d), ref)).toBeLessThanOrEqual(TOL);
    }
    expect(tp.dispatchCount('tiled')).toBeGreaterThan(tp.dispatchCount('baseline'));
  });

  it('without explicit blocks it takes the emulator’s chooseBlocks partition', async () => {
    const layer: LayerConfig = { name: 't', hidden: 64, heads: 2, headDim: 32, seqLen: 64, causal: true };
    const tp = await WebGpuTensorParallelLayer.create(rt, { layer, devices: 2, granularity: 16, tile });
    layers.push(tp);
    const expected = chooseBlocks(layerCostModel(ascend910B, layer, 2, 'ring'), 64, 16);
    expect(tp.blocks).toEqual(expected.blocks);
    expect(tp.predictedSeconds).toBeCloseTo(expected.makespan / ascend910B.clockHz, 12);
    const x = inputs(layer, 7);
    tp.setInputs(x);
    await tp.run('tiled');
    expect(maxAbsDiff(await tp.readOutput(1), cpuTensorParallelReference(layer, x))).toBeLessThanOrEqual(TOL);
  });

  it('rejects bad layers, device counts and blocks with typed errors', async () => {
    const layer: LayerConfig = { name: 't', hidden: 64, heads: 2, headDim: 32, seqLen: 32, causal: true };
    const err = async (o: Parameters<typeof WebGpuTensorParallelLayer.create>[1]) => {
      try {
        await WebGpuTensorParallelLayer.create(rt, o);
      } catch (e) {
        expect(e).toBeInstanceOf(NpuConfigError);
        return (e as NpuConfigError).field;
      }
      throw new Error('expected a throw');
    };
    expect(await err({ layer, devices: 3 })).toBe('devices');
    expect(await err({ layer: { ...layer, batch: 2 }, devices: 2 })).toBe('layer.batch');
    expect(await err({ layer: { ...layer, hidden: 66 }, devices: 2 })).toBe('layer.hidden');
    expect(await err({ layer, devices: 2, blocks: [16, 8] })).toBe('blocks');
    expect(await err({ layer, devices: 2, blocks: [1, 31] })).toBe('blocks');
    // granularity only steers the block chooser: with explicit blocks it would be ignored, so it is refused.
    expect(await err({ layer, devices: 2, blocks: [16, 16], granularity: 16 })).toBe('granularity');
  });

  it('with explicit blocks, a given machine predicts their makespan; without one there is no prediction', async () => {
    const layer: LayerConfig = { name: 't', hidden: 64, heads: 2, headDim: 32, seqLen: 32, causal: true };
    const blocks = [16, 16];
    // A slower link than the 910B's, so a prediction on the default machine would not pass for this one.
    const machine = { ...ascend910B, sdma: { ...ascend910B.sdma, linkBytesPerSecond: ascend910B.sdma.linkBytesPerSecond / 10 } };
    const expected = pipelineMakespan(layerCostModel(machine, layer, 2, 'ring'), blocks) / machine.clockHz;
    const onDefault = pipelineMakespan(layerCostModel(ascend910B, layer, 2, 'ring'), blocks) / ascend910B.clockHz;
    expect(expected).not.toBeCloseTo(onDefault, 9);
    const tp = await WebGpuTensorParallelLayer.create(rt, { layer, devices: 2, blocks, machine, tile });
    layers.push(tp);
    expect(tp.blocks).toEqual(blocks);
    expect(tp.predictedSeconds).toBeCloseTo(expected, 12);
    const plain = await WebGpuTensorParallelLayer.create(rt, { layer, devices: 2, blocks, tile });
    layers.push(plain);
    expect(plain.predictedSeconds).toBeNull();
  });
});
