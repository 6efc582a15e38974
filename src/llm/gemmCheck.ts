/**
 * Cross-check and time the runner's prefill GEMM kernels on one problem:
 * the tiled f32-FMA GEMM (shaders/llm/gemm.wgsl) against the subgroup-matrix
 * GEMMs (shaders/llm/gemmMatrix.wgsl staged through workgroup memory,
 * shaders/llm/gemmMatrixDirect.wgsl from storage, f16 activations) where the device has them, both against a
 * float64 CPU product on sampled rows, with f32 and packed-f16 activations and
 * with `accumulate` (C += A·Wᵀ). Used by the LLM benchmark on the device and by
 * the tests (tiled only on software adapters).
 */
import { hasSubgroupMatrix16 } from '../attention/tiers.js';
import type { FastAttentionRuntime } from '../runtime/runtime.js';
import { BufferUsage, MapMode } from '../runtime/usage.js';
import { llmKernels, LlmKernelSet, type LlmOp } from './kernels.js';
import { GEMM_TILE_LARGE, GEMM_TILE_SMALL, MATRIX_GEMM_BK, type GemmTile } from './runner.js';
import { f16ToF32, f32ToF16 } from './safetensors.js';

/** The GEMM kernels: tiled f32 FMA, subgroup matrices staged through workgroup memory, subgroup matrices from storage. */
export type GemmKernel = 'tiled' | 'matrix' | 'matrix-direct';

export interface GemmCheckCase {
  kind: GemmKernel;
  /** Activations stored as packed f16 (the attention output on the f16 path). */
  aF16: boolean;
  /** Max |C − CPU float64| over the sampled rows, the CPU product using the kernel's input rounding. */
  maxAbsVsCpu: number;
  /** Same for C += A·Wᵀ over a random C. */
  maxAbsVsCpuAccumulate: number;
  /** Mean time of one dispatch over `reps` in one pass. */
  ms: number;
  tflops: number;
}

export interface GemmCheckResult {
  M: number;
  N: number;
  K: number;
  cases: GemmCheckCase[];
  /** Max |matrix − tiled| over all of C, per activation type (undefined without subgroup matrices). */
  maxAbsMatrixVsTiled?: { a32: number; a16: number; directA16: number };
}

/** Deterministic uniform numbers in [−1, 1). */
function uniform(n: number, seed: number): Float32Array<ArrayBuffer> {
  let s = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s / 2 ** 31 - 1;
  }
  return out;
}

/**
 * Run every GEMM kernel the device supports on `[M, K] · [N, K]ᵀ` with f16
 * weights. K must be a multiple of 64 (the matrix kernel's BK) and of 8.
 *
 * @example
 * ```ts
 * const r = await checkGemms(rt, { M: 519, N: 4096, K: 4096 });
 * console.log(r.maxAbsMatrixVsTiled);
 * ```
 */
export async function checkGemms(runtime: FastAttentionRuntime, shape: { M: number; N: number; K: number; reps?: number; tile?: GemmTile; sampleRows?: number }): Promise<GemmCheckResult> {
  const { M, N, K } = shape;
  const reps = shape.reps ?? 10;
  if (K % MATRIX_GEMM_BK !== 0) throw new RangeError(`checkGemms: K = ${K} must be a multiple of ${MATRIX_GEMM_BK}`);
  const caps = runtime.capabilities;
  const tile = shape.tile ?? (caps.adapter.isSoftware ? GEMM_TILE_SMALL : GEMM_TILE_LARGE);
  const matrix = hasSubgroupMatrix16(caps);
  const device = runtime.device;
  const kernels = new LlmKernelSet(runtime);
  const owner = 'llm.gemmCheck';
  const S = BufferUsage.STORAGE | BufferUsage.COPY_DST | BufferUsage.COPY_SRC;
  const made: GPUBuffer[] = [];
  const make = (label: string, bytes: number, usage = S): GPUBuffer => {
    const b = runtime.ledger.create(owner, { label: `${owner}.${label}`, size: Math.max(16, bytes), usage });
    made.push(b);
    return b;
  };
  try {
    // Inputs: A in [−1, 1), W in [−1, 1)/√K as f16, C0 in [−1, 1) for the accumulate run.
    const a32 = uniform(M * K, 1);
    const wHalf = new Uint16Array(N * K);
    const wF = new Float64Array(N * K);
    const wRaw = uniform(N * K, 2);
    for (let i = 0; i < N * K; i++) {
      wHalf[i] = f32ToF16(wRaw[i] / Math.sqrt(K));
      wF[i] = f16ToF32(wHalf[i]);
    }
    const aHalf = new Uint16Array(M * K);
    const a16F = new Float64Array(M * K);
    for (let i = 0; i < M * K; i++) {
      aHalf[i] = f32ToF16(a32[i]);
      a16F[i] = f16ToF32(aHalf[i]);
    }
    const c0 = uniform(M * N, 3);
    const bufA32 = make('a32', a32.byteLength);
    // A padded to 64-row blocks, as the runner's activation buffers are (the direct kernel loads whole blocks).
    const bufA16 = make('a16', Math.ceil(M / 64) * 64 * K * 2);
    const bufW = make('w', wHalf.byteLength);
    const bufC0 = make('c0', c0.byteLength);
    const bufC = make('c', M * N * 4);
    const staging = make('staging', M * N * 4, BufferUsage.MAP_READ | BufferUsage.COPY_DST);
    device.queue.writeBuffer(bufA32, 0, a32);
    device.queue.writeBuffer(bufA16, 0, aHalf);
    device.queue.writeBuffer(bufW, 0, wHalf);
    device.queue.writeBuffer(bufC0, 0, c0);

    const variants: Array<{ kind: GemmKernel; aF16: boolean; op: LlmOp; groups: [number, number, number] }> = [];
    const enables = { enables: ['f16', 'subgroups', 'chromium_experimental_subgroup_matrix'] };
    for (const aF16 of [false, true]) {
      variants.push({
        kind: 'tiled',
        aF16,
        op: await kernels.op(llmKernels.gemm, 'gemm', { TILE_M: tile.tileM, TILE_N: tile.tileN, TILE_K: tile.tileK, TM: tile.tm, TN: tile.tn, WEIGHT_F16: true, A_F16: aF16 }),
        groups: [Math.ceil(N / tile.tileN), Math.ceil(M / tile.tileM), 1],
      });
      if (matrix)
        variants.push({
          kind: 'matrix',
          aF16,
          op: await kernels.op(llmKernels.gemmMatrix, 'gemmMatrix', { BK: MATRIX_GEMM_BK, A_F16: aF16 }, enables),
          groups: [Math.ceil(N / 128), Math.ceil(M / 64), 1],
        });
    }
    if (matrix && N % 16 === 0)
      variants.push({ kind: 'matrix-direct', aF16: true, op: await kernels.op(llmKernels.gemmMatrixDirect, 'gemmMatrixDirect', {}, enables), groups: [Math.ceil(N / 128), Math.ceil(M / 64), 1] });
    const run = async (v: (typeof variants)[number], accumulate: boolean, times: number): Promise<number> => {
      const enc = device.createCommandEncoder();
      if (accumulate) enc.copyBufferToBuffer(bufC0, 0, bufC, 0, M * N * 4);
      const pass = enc.beginComputePass();
      for (let r = 0; r < times; r++) kernels.dispatch(pass, v.op, { M, N, K, accumulate: accumulate ? 1 : 0 }, [v.aF16 ? bufA16 : bufA32, bufW, bufC], v.groups);
      pass.end();
      const t0 = performance.now();
      device.queue.submit([enc.finish()]);
      await device.queue.onSubmittedWorkDone();
      return (performance.now() - t0) / times;
    };
    const read = async (): Promise<Float32Array> => {
      const enc = device.createCommandEncoder();
      enc.copyBufferToBuffer(bufC, 0, staging, 0, M * N * 4);
      device.queue.submit([enc.finish()]);
      await staging.mapAsync(MapMode.READ);
      const out = new Float32Array(staging.getMappedRange().slice(0));
      staging.unmap();
      return out;
    };
    // Sampled rows (first, last, spread) against float64 with the kernel's rounding of A (the matrix kernel rounds f32 A to f16).
    const rows = Array.from(new Set(Array.from({ length: Math.min(M, shape.sampleRows ?? 8) }, (_, i) => Math.round((i * (M - 1)) / Math.max(1, Math.min(M, shape.sampleRows ?? 8) - 1)))));
    const vsCpu = (c: Float32Array, aRounded: boolean, accumulate: boolean): number => {
      let err = 0;
      for (const m of rows)
        for (let n = 0; n < N; n++) {
          let acc = accumulate ? c0[m * N + n] : 0;
          for (let k = 0; k < K; k++) acc += (aRounded ? a16F[m * K + k] : a32[m * K + k]) * wF[n * K + k];
          const d = Math.abs(c[m * N + n] - acc);
          err = Number.isNaN(d) ? Infinity : Math.max(err, d);
        }
      return err;
    };
    const cases: GemmCheckCase[] = [];
    const outputs = new Map<string, Float32Array>();
    for (const v of variants) {
      const aRounded = v.aF16 || v.kind !== 'tiled';
      await run(v, false, 1);
      const c = await read();
      outputs.set(`${v.kind}:${v.aF16}`, c);
      const errPlain = vsCpu(c, aRounded, false);
      await run(v, true, 1);
      const errAcc = vsCpu(await read(), aRounded, true);
      // Warm up for ≥ 300 ms first: an idle GPU (the CPU reference above takes seconds) runs at low clocks.
      for (let spent = 0; spent < 300; ) spent += (await run(v, false, reps)) * reps;
      const ms = await run(v, false, reps);
      cases.push({ kind: v.kind, aF16: v.aF16, maxAbsVsCpu: errPlain, maxAbsVsCpuAccumulate: errAcc, ms, tflops: (2 * M * N * K) / (ms / 1000) / 1e12 });
    }
    const diff = (x: Float32Array | undefined, y: Float32Array | undefined): number => {
      if (!x || !y) return NaN;
      let m = 0;
      for (let i = 0; i < x.length; i++) {
        const d = Math.abs(x[i] - y[i]);
        m = Number.isNaN(d) ? Infinity : Math.max(m, d);
      }
      return m;
    };
    return {
      M,
      N,
      K,
      cases,
      maxAbsMatrixVsTiled: matrix
        ? {
            a32: diff(outputs.get('matrix:false'), outputs.get('tiled:false')),
            a16: diff(outputs.get('matrix:true'), outputs.get('tiled:true')),
            directA16: diff(outputs.get('matrix-direct:true'), outputs.get('tiled:true')),
          }
        : undefined,
    };
  } finally {
    for (const b of made) runtime.ledger.destroy(b);
    kernels.destroy();
  }
}
