/**
 * Benchmark of the CPU-GPU cooperative strategy (src/offload). Writes
 * bench/results/offload-<adapter>-<time>.json (and a copy under $OUT when set).
 * Every ratio compares figures measured in this run:
 *  - planner: LLaMA2-7B splits at 16K / 64K / 256K on one 32 GiB GPU (computed, not timed)
 *  - CPU decode attention (WASM SIMD, worker threads): K+V bytes per second as a
 *    fraction of this machine's read bandwidth measured by the same threads, and of a
 *    main-thread TypedArray copy
 *  - prefill: GPU time with and without the asynchronous K/V offload
 *  - decode: cooperative vs classical offloading on offloaded layers, and one vs two
 *    micro-batches on a mixed model
 * Sizes follow the adapter: small on a software adapter, larger on a real GPU.
 *   EXTRA_ENTRY=scripts/benchOffload.ts EXTRA_NAME=benchOffload node scripts/build.mjs benchOffload && node dist/benchOffload.js
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { createNodeRuntime } from '../src/node.js';
import { CpuAttentionPool } from '../src/offload/cpuAttention.js';
import { OffloadDecoder } from '../src/offload/decoder.js';
import { HostKvCache, type HostKvDType } from '../src/offload/hostKvCache.js';
import { loadOffloadWasm, nodeWorkerSpawner } from '../src/offload/node.js';
import { formatPlan, LLAMA2_7B, planOffload } from '../src/offload/planner.js';
import type { TileConfig } from '../src/tiling/tileConfig.js';

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const randn = (n: number, seed: number): Float32Array<ArrayBuffer> => {
  let a = seed >>> 0;
  const u = (): number => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.sqrt(-2 * Math.log(1 - u())) * Math.cos(2 * Math.PI * u());
  return out;
};
const log = (s: string): void => void process.stderr.write(`${s}\n`);

const rt = await createNodeRuntime();
const soft = rt.capabilities.adapter.isSoftware;
const threads = availableParallelism();
const module = await loadOffloadWasm();
const result: Record<string, unknown> = {
  date: new Date().toISOString(),
  adapter: rt.capabilities.adapter,
  cpuThreads: threads,
  node: process.version,
  paper: {
    source: 'arXiv 2410.16663 (abstract)',
    maxInputLength: '256K on 8 V100 GPUs with the CPU-GPU cooperative strategy',
    cooperativeVsOffloading: 'not found in the searchable paper text (the issue quotes 1.27-1.48x)',
    appendixCFormula: 'not found in the searchable paper text; src/offload/planner.ts documents the model used',
  },
};

// 1. Planner
const plans = [16384, 65536, 262144].map((promptLength) => planOffload(LLAMA2_7B, { batch: 1, promptLength, outputLength: 0, gpus: 1, gpuMemoryBytes: 32 * 2 ** 30, prefillChunk: 4096 }));
for (const p of plans) log(formatPlan(p));
result.planner = plans.map((p) => ({ promptLength: p.options.promptLength, lGpu: p.lGpu, lCpu: p.lCpu, perGpu: p.perGpu, hostKvBytes: p.hostKvBytes }));

// 2. CPU decode attention vs memory bandwidth
{
  const S = soft ? 16384 : 65536;
  const shape = { heads: 32, kvHeads: 8, headDim: 128 };
  const rows: unknown[] = [];
  // main-thread TypedArray copy (read + write bytes)
  const big = new Float32Array(64 * 2 ** 20);
  const big2 = new Float32Array(big.length);
  big.fill(1);
  const copyTimes: number[] = [];
  for (let i = 0; i < 5; i++) {
    const t0 = performance.now();
    big2.set(big);
    copyTimes.push(performance.now() - t0);
  }
  const mainCopyGBs = (2 * big.byteLength) / Math.min(...copyTimes) / 1e6;
  for (const dtype of ['f32', 'f16'] as HostKvDType[]) {
    const cache = HostKvCache.create({ layers: 2, batch: 1, ...shape, capacity: S, dtype, threads });
    const pool = await CpuAttentionPool.create(cache, { module, spawn: nodeWorkerSpawner });
    const kv = randn(8 * 4096 * 128, 3);
    for (let t = 0; t < S; t += 4096) cache.writeTokens(0, kv, kv, Math.min(4096, S - t), 'BSHD', t);
    const bw = await pool.measureBandwidth(1, 5);
    const q = randn(32 * 128, 4);
    const out = new Float32Array(q.length);
    await pool.attend(0, q, out);
    const times: number[] = [];
    for (let i = 0; i < (soft ? 5 : 15); i++) {
      const t0 = performance.now();
      await pool.attend(0, q, out);
      times.push(performance.now() - t0);
    }
    const bytes = 2 * 8 * S * 128 * cache.elementBytes;
    const ms = median(times);
    const gbs = bytes / ms / 1e6;
    const row = { dtype, seqLen: S, ...shape, kvBytes: bytes, medianMs: ms, attentionGBs: gbs, threadedReadGBs: bw.readGBs, threadedCopyGBs: bw.copyGBs, mainThreadCopyGBs: mainCopyGBs, fractionOfThreadedRead: gbs / bw.readGBs, fractionOfMainCopy: gbs / mainCopyGBs };
    log(`CPU attention ${dtype} S=${S}: ${ms.toFixed(2)} ms, ${gbs.toFixed(2)} GB/s = ${(100 * row.fractionOfThreadedRead).toFixed(0)}% of threaded read ${bw.readGBs.toFixed(2)} GB/s`);
    rows.push(row);
    await pool.destroy();
  }
  result.cpuAttention = rows;
}

// 3 & 4. Stand-in decoder: prefill offload, cooperative vs classical, micro-batches
{
  const cfg = soft
    ? { layers: 4, heads: 4, kvHeads: 2, headDim: 32, hidden: 64, prompt: 192, steps: 5 }
    : { layers: 4, heads: 32, kvHeads: 8, headDim: 128, hidden: 1024, prompt: 16384, steps: 9 };
  // SwiftShader compiles the default 64×64 tile very slowly; a small tile keeps the software run short.
  const tile: TileConfig | undefined = soft ? { blockQ: 16, blockKV: 16, rowsPerThread: 1, threadsPerRow: 16, chunk: 16, kvStages: 1 } : undefined;
  const common = { tile, heads: cfg.heads, kvHeads: cfg.kvHeads, headDim: cfg.headDim, hidden: cfg.hidden, capacity: cfg.prompt + 64, threads, module, spawn: nodeWorkerSpawner, hostDtype: 'f32' as const };
  // prefill: half the layers offloaded, with and without the K/V offload
  {
    const batch = 1;
    const d = await OffloadDecoder.create(rt, { ...common, layers: cfg.layers, lCpu: cfg.layers / 2, batch });
    const prompt = randn(batch * cfg.prompt * cfg.hidden, 7);
    await d.prefill(prompt, cfg.prompt); // warm-up (pipelines)
    const on: number[] = [], off: number[] = [], host: number[] = [];
    for (let i = 0; i < 5; i++) {
      const a = await d.prefill(prompt, cfg.prompt, { offloadKv: false });
      off.push(a.gpuMs);
      const b = await d.prefill(prompt, cfg.prompt, { offloadKv: true });
      on.push(b.gpuMs);
      host.push(b.hostMs);
    }
    const r = { layers: cfg.layers, lCpu: cfg.layers / 2, prompt: cfg.prompt, kvBytesPerLayer: 2 * cfg.prompt * cfg.kvHeads * cfg.headDim * 4, gpuMsWithoutOffload: median(off), gpuMsWithOffload: median(on), hostCompleteMs: median(host), ratio: median(on) / median(off) };
    log(`prefill: GPU ${r.gpuMsWithoutOffload.toFixed(1)} ms without offload, ${r.gpuMsWithOffload.toFixed(1)} ms with (×${r.ratio.toFixed(3)}), host cache complete at ${r.hostCompleteMs.toFixed(1)} ms`);
    result.prefillOffload = r;
    await d.destroy();
  }
  // decode on offloaded layers: every layer offloaded
  const stepTimes = async (d: OffloadDecoder, mode: 'cooperative' | 'classical', batch: number): Promise<number[]> => {
    const ts: number[] = [];
    for (let i = 0; i < cfg.steps; i++) {
      const x = randn(batch * cfg.hidden, 100 + i);
      const t0 = performance.now();
      await d.step(x, mode);
      ts.push(performance.now() - t0);
    }
    return ts.slice(1); // first step warms the pipelines
  };
  {
    const batch = 1;
    const d = await OffloadDecoder.create(rt, { ...common, layers: cfg.layers, lCpu: cfg.layers, batch });
    await d.prefill(randn(batch * cfg.prompt * cfg.hidden, 8), cfg.prompt);
    const coop = median(await stepTimes(d, 'cooperative', batch));
    const classical = median(await stepTimes(d, 'classical', batch));
    const r = { layers: cfg.layers, offloaded: cfg.layers, batch, contextTokens: cfg.prompt, kvBytesPerLayer: 2 * cfg.prompt * cfg.kvHeads * cfg.headDim * 4, cooperativeMs: coop, classicalMs: classical, speedupCooperative: classical / coop };
    log(`decode, ${cfg.layers} offloaded layers, ${cfg.prompt} tokens: cooperative ${coop.toFixed(2)} ms, classical ${classical.toFixed(2)} ms, ×${r.speedupCooperative.toFixed(2)}`);
    result.decodeOffloadedLayers = r;
    await d.destroy();
  }
  // overlap: mixed model, batch 2, one vs two micro-batches
  {
    const batch = 2;
    const rows: Record<string, number> = {};
    for (const microBatches of [1, 2] as const) {
      const d = await OffloadDecoder.create(rt, { ...common, layers: cfg.layers, lCpu: cfg.layers / 2, batch, microBatches });
      await d.prefill(randn(batch * cfg.prompt * cfg.hidden, 9), cfg.prompt);
      rows[`microBatches${microBatches}Ms`] = median(await stepTimes(d, 'cooperative', batch));
      await d.destroy();
    }
    const r = { layers: cfg.layers, lCpu: cfg.layers / 2, batch, contextTokens: cfg.prompt, ...rows, speedupTwoMicroBatches: rows.microBatches1Ms / rows.microBatches2Ms };
    log(`overlap (batch 2, ${cfg.layers / 2} of ${cfg.layers} offloaded): 1 micro-batch ${rows.microBatches1Ms.toFixed(2)} ms, 2 micro-batches ${rows.microBatches2Ms.toFixed(2)} ms`);
    result.decodeOverlap = r;
  }
}

const name = `offload-${(rt.capabilities.adapter.architecture || rt.capabilities.adapter.vendor || 'gpu').replace(/[^A-Za-z0-9_-]/g, '_')}-${new Date().toISOString().replace(/[:.]/g, '-')}.json`;
const text = JSON.stringify(result, null, 2);
mkdirSync('bench/results', { recursive: true });
writeFileSync(join('bench/results', name), text);
if (process.env.OUT) writeFileSync(join(process.env.OUT, name), text);
log(`wrote bench/results/${name}`);
rt.destroy();
process.exit(0);
