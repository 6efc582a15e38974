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
 *
 * `node dist/benchOffload.js table3 [--max N] [--steps N] [--kv-heads N] [--host-fraction F] [--budget-run 0|1]`
 * is the paper's Table 3 instead (bench/results/offload-table3-<adapter>-<time>.{json,md}):
 *  - per context length 1K…256K (batch 1, one LLaMA2-7B-like layer: 32 query heads,
 *    32 KV heads (or --kv-heads, GQA) of 128, f32 K/V), one offloaded layer's
 *    decode-step attention, each part measured (medians over --steps steps):
 *    classical = Upload (the layer's host KV → GPU: memcpy into a mapped buffer +
 *    copy) + GPU calc (split-KV decode kernel); cooperative = off (q/k/v of the new
 *    token read back, appended to the host cache) + CPU calc (WASM SIMD threads) +
 *    upload (the attention result written back); totals are measured per step, not
 *    summed. Stops at the largest length whose host cache, staging and GPU tensors
 *    fit (4 GiB per WebAssembly memory: a layer is split in KV-head groups, one host
 *    cache and one CPU pool per group; host memory: --host-fraction of free memory).
 *  - the 16K budget: the planner's per-GPU budget for LLaMA2-7B that holds exactly
 *    16K tokens of KV for every layer; the context the cooperative scheme reaches with
 *    it (bound by host memory), and one decode step's attention for all 32 layers at
 *    the largest context that fits this machine, run for real.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism, freemem, totalmem } from 'node:os';
import { join } from 'node:path';
import { createNodeRuntime } from '../src/node.js';
import { CpuAttentionPool } from '../src/offload/cpuAttention.js';
import { OffloadDecoder } from '../src/offload/decoder.js';
import { HostKvCache, splitHostKv, type HostKvDType, type HostKvPart } from '../src/offload/hostKvCache.js';
import { toHalf } from '../src/offload/f16.js';
import { BufferUsage, MapMode } from '../src/runtime/usage.js';
import { loadOffloadWasm, nodeWorkerSpawner } from '../src/offload/node.js';
import { budgetForGpuTokens, formatPlan, LLAMA2_7B, maxCooperativeContext, planOffload } from '../src/offload/planner.js';
import type { TileConfig } from '../src/tiling/tileConfig.js';
import { mulberry32, normalSamples } from '../src/reference/random.js';

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const randn = (n: number, seed: number): Float32Array<ArrayBuffer> => normalSamples(n, mulberry32(seed));
const log = (s: string): void => void process.stderr.write(`${s}\n`);

const rt = await createNodeRuntime();
const soft = rt.capabilities.adapter.isSoftware;
const threads = availableParallelism();
const module = await loadOffloadWasm();
if (process.argv[2] === 'table3') {
  await table3();
  rt.destroy();
  process.exit(0);
}
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

// ---------------------------------------------------------------------------
// Table 3 mode (see the header): per-layer decode attention, classical vs cooperative.

function arg(name: string, dflt: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
}

/** Host memory this process may fill: a fraction of what is free (and of the cgroup limit, when there is one). */
function hostBudget(fraction: number): { bytes: number; freeBytes: number; totalBytes: number; cgroupBytes: number | null } {
  let cgroup: number | null = null;
  try {
    const t = readFileSync('/sys/fs/cgroup/memory.max', 'utf8').trim();
    if (t !== 'max') cgroup = Number(t);
  } catch {
    /* no cgroup v2 limit */
  }
  const free = Math.min(freemem(), cgroup ?? Infinity);
  return { bytes: Math.floor(fraction * free), freeBytes: freemem(), totalBytes: totalmem(), cgroupBytes: cgroup };
}

// Function declarations (hoisted): table3() runs before the top-level code below the dispatch.
function fmtK(n: number): string {
  return n % 1024 === 0 ? `${n / 1024}K` : `${(n / 1024).toFixed(1)}K`;
}
function f2(x: number): string {
  return x < 10 ? x.toFixed(3) : x < 100 ? x.toFixed(2) : x.toFixed(1);
}

/** Fill `bytes` at `offset` of a memory with a repeated random pattern (f32 or f16 bits), fast. */
function fillPattern(buffer: ArrayBufferLike, offset: number, bytes: number, half: boolean, seed: number): void {
  const n = 1 << 22; // 4M elements per template
  const r = randn(n, seed);
  const tpl = half ? (() => {
    const h = new Uint16Array(n);
    for (let i = 0; i < n; i++) h[i] = toHalf(r[i]);
    return new Uint8Array(h.buffer);
  })() : new Uint8Array(r.buffer);
  const dst = new Uint8Array(buffer as ArrayBuffer, offset, bytes);
  for (let at = 0; at < bytes; at += tpl.length) dst.set(tpl.subarray(0, Math.min(tpl.length, bytes - at)), at);
}

interface Part {
  part: HostKvPart;
  cache: HostKvCache;
  pool: CpuAttentionPool | null;
}

async function table3(): Promise<void> {
  const H = 32;
  const Hkv = arg('kv-heads', 32);
  const D = 128;
  const steps = arg('steps', soft ? 3 : 5);
  const maxLen = arg('max', soft ? 16384 : 262144);
  const fraction = arg('host-fraction', soft ? 0.4 : 0.7);
  const host = hostBudget(fraction);
  const lim = rt.capabilities.limits;
  const gpuTensorMax = Math.min(lim.maxStorageBufferBindingSize, lim.maxBufferSize);
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const adapterName = (rt.capabilities.adapter.architecture || rt.capabilities.adapter.vendor || 'gpu').replace(/[^A-Za-z0-9_-]/g, '_');
  const base = `offload-table3-${adapterName}-${stamp}`;
  const report: Record<string, unknown> = {
    date: new Date().toISOString(),
    adapter: rt.capabilities.adapter,
    limits: { maxStorageBufferBindingSize: lim.maxStorageBufferBindingSize, maxBufferSize: lim.maxBufferSize },
    cpuThreads: threads,
    node: process.version,
    host,
    layer: { batch: 1, heads: H, kvHeads: Hkv, headDim: D, kvDtype: 'f32', model: Hkv === H ? 'LLaMA2-7B-like (MHA)' : `GQA ${H}/${Hkv} (LLaMA-3-8B-like)` },
    method: {
      context: 'L keys attended per step: L − 1 cached tokens + the new token (its K/V go to slot L − 1; lengths are reset after each step so L stays fixed)',
      classical: 'Upload: per KV-head group, mapAsync(WRITE) a staging buffer, memcpy the layer’s host K and V (L tokens) into it, copyBufferToBuffer into the GPU K/V, wait for the queue. GPU calc: copy the new token’s k/v into slot L − 1, split-KV decode kernel (createDecode, f32), wait. Total: both, measured per step.',
      cooperative: 'Off: copy q/k/v of the new token (GPU) to a mappable buffer, map, append k/v to the host caches. CPU calc: CpuAttentionPool.attend on every KV-head group (WASM SIMD, all threads, groups one after another). Upload: writeBuffer of the attention result, wait. Total measured per step.',
      statistic: `median of ${steps} steps after 1 warm-up step`,
    },
  };
  const rows: Record<string, unknown>[] = [];
  const lengths = [1, 2, 4, 8, 16, 32, 64, 128, 256].map((k) => k * 1024).filter((L) => L <= maxLen);
  let stop: string | null = maxLen < 262144 ? `--max ${maxLen} (${soft ? 'software adapter: small sizes' : 'requested'})` : null;
  const write = (): void => {
    report.table3 = rows;
    report.stoppedBefore = stop;
    const json = JSON.stringify(report, null, 2);
    const md = table3Markdown(report, rows);
    mkdirSync('bench/results', { recursive: true });
    writeFileSync(join('bench/results', `${base}.json`), json);
    writeFileSync(join('bench/results', `${base}.md`), md);
    if (process.env.OUT) {
      writeFileSync(join(process.env.OUT, `${base}.json`), json);
      writeFileSync(join(process.env.OUT, `${base}.md`), md);
    }
  };
  const qkvFloats = (H + 2 * Hkv) * D;
  const qkv = rt.ledger.create('bench', { label: 'bench.qkv', size: qkvFloats * 4, usage: BufferUsage.STORAGE | BufferUsage.COPY_SRC | BufferUsage.COPY_DST });
  const qkvHost = randn(qkvFloats, 42);
  rt.device.queue.writeBuffer(qkv, 0, qkvHost);
  const oGpu = rt.ledger.create('bench', { label: 'bench.o', size: H * D * 4, usage: BufferUsage.STORAGE | BufferUsage.COPY_SRC | BufferUsage.COPY_DST });
  const readback = rt.ledger.create('bench', { label: 'bench.readback', size: Math.max(qkvFloats, H * D) * 4, usage: BufferUsage.MAP_READ | BufferUsage.COPY_DST });
  for (const L of lengths) {
    // Split the layer into KV-head groups: each host cache ≤ one WebAssembly memory, each GPU tensor ≤ one binding.
    let parts: HostKvPart[];
    try {
      parts = splitHostKv({ layers: 1, batch: 1, heads: H, kvHeads: Hkv, headDim: D, capacity: L, dtype: 'f32', threads });
    } catch (e) {
      stop = `L = ${fmtK(L)}: ${(e as Error).message}`;
      break;
    }
    while (L * parts[0].kvHeads * D * 4 > gpuTensorMax && parts[0].kvHeads > 1) {
      const g = Hkv / (parts[0].kvHeads / 2);
      parts = Array.from({ length: g }, (_, i) => ({ layer0: 0, layers: 1, kvHead0: (i * Hkv) / g, kvHeads: Hkv / g, heads: H / g, bytes: HostKvCache.bytesFor({ layers: 1, batch: 1, heads: H / g, kvHeads: Hkv / g, headDim: D, capacity: L, dtype: 'f32', threads }) }));
    }
    const hostBytes = parts.reduce((a, p) => a + p.bytes, 0);
    const layerKv = 2 * L * Hkv * D * 4;
    // Host: the caches + the classical staging (mapped, host memory); software adapter: the "GPU" tensors too.
    const need = hostBytes + layerKv + (soft ? layerKv : 0);
    if (need > host.bytes) {
      stop = `L = ${fmtK(L)}: needs ${(need / 2 ** 30).toFixed(2)} GiB of host memory (host caches ${(hostBytes / 2 ** 30).toFixed(2)} + staging ${(layerKv / 2 ** 30).toFixed(2)}${soft ? ' + software-adapter GPU tensors' : ''}), over the ${(host.bytes / 2 ** 30).toFixed(2)} GiB allowed (${fraction} of free memory)`;
      break;
    }
    const tFill = performance.now();
    const P: Part[] = parts.map((part) => ({ part, cache: HostKvCache.create({ layers: 1, batch: 1, heads: part.heads, kvHeads: part.kvHeads, headDim: D, capacity: L, dtype: 'f32', threads }), pool: null }));
    for (const [i, p] of P.entries()) {
      const lay = p.cache.layout;
      const tensor = part_tensor(p, L, D);
      fillPattern(p.cache.memory.buffer, lay.k[0], tensor, false, 1000 + i);
      fillPattern(p.cache.memory.buffer, lay.v[0], tensor, false, 2000 + i);
      p.cache.lengths[0][0] = L - 1;
      p.pool = await CpuAttentionPool.create(p.cache, { module, spawn: nodeWorkerSpawner });
    }
    const fillMs = performance.now() - tFill;
    const usage = BufferUsage.STORAGE | BufferUsage.COPY_DST | BufferUsage.COPY_SRC;
    const gpu = await Promise.all(
      P.map(async (p) => {
        const bytes = part_tensor(p, L, D);
        return {
          k: rt.ledger.create('bench', { label: 'bench.k', size: bytes, usage }),
          v: rt.ledger.create('bench', { label: 'bench.v', size: bytes, usage }),
          stage: rt.ledger.create('bench', { label: 'bench.stage', size: 2 * bytes, usage: BufferUsage.MAP_WRITE | BufferUsage.COPY_SRC }),
          op: await rt.createDecode({ q: { shape: [1, p.part.heads, 1, D] }, k: { shape: [1, p.part.kvHeads, L, D] }, v: { shape: [1, p.part.kvHeads, L, D] }, dtype: 'f32' }),
        };
      }),
    );
    const qHost = qkvHost.subarray(0, H * D);
    const outHost = new Float32Array(H * D);
    const classicalStep = async (): Promise<{ upload: number; calc: number; total: number }> => {
      const t0 = performance.now();
      let enc = rt.device.createCommandEncoder();
      for (const [i, p] of P.entries()) {
        const g = gpu[i];
        const bytes = part_tensor(p, L, D);
        await g.stage.mapAsync(MapMode.WRITE);
        const dst = new Float32Array(g.stage.getMappedRange());
        dst.set(p.cache.rawF32(0, 'k'));
        dst.set(p.cache.rawF32(0, 'v'), bytes / 4);
        g.stage.unmap();
        enc.copyBufferToBuffer(g.stage, 0, g.k, 0, bytes);
        enc.copyBufferToBuffer(g.stage, bytes, g.v, 0, bytes);
      }
      rt.device.queue.submit([enc.finish()]);
      await rt.device.queue.onSubmittedWorkDone();
      const t1 = performance.now();
      enc = rt.device.createCommandEncoder();
      for (const [i, p] of P.entries()) {
        const g = gpu[i];
        for (let h = 0; h < p.part.kvHeads; h++) {
          const row = (h * L + L - 1) * D * 4;
          enc.copyBufferToBuffer(qkv, (H + p.part.kvHead0 + h) * D * 4, g.k, row, D * 4);
          enc.copyBufferToBuffer(qkv, (H + Hkv + p.part.kvHead0 + h) * D * 4, g.v, row, D * 4);
        }
        const qOff = (p.part.kvHead0 * (H / Hkv)) * D * 4;
        g.op.encode(enc, { q: { buffer: qkv, offset: qOff }, o: { buffer: oGpu, offset: qOff }, k: g.k, v: g.v });
      }
      rt.device.queue.submit([enc.finish()]);
      await rt.device.queue.onSubmittedWorkDone();
      const t2 = performance.now();
      return { upload: t1 - t0, calc: t2 - t1, total: t2 - t0 };
    };
    const cooperativeStep = async (): Promise<{ off: number; cpu: number; up: number; total: number }> => {
      const t0 = performance.now();
      const enc = rt.device.createCommandEncoder();
      enc.copyBufferToBuffer(qkv, 0, readback, 0, qkvFloats * 4);
      rt.device.queue.submit([enc.finish()]);
      await readback.mapAsync(MapMode.READ, 0, qkvFloats * 4);
      const r = new Float32Array(readback.getMappedRange(0, qkvFloats * 4));
      qHost.set(r.subarray(0, H * D));
      for (const p of P) p.cache.append(0, r, r, (H + p.part.kvHead0) * D, (H + Hkv + p.part.kvHead0) * D);
      readback.unmap();
      const t1 = performance.now();
      for (const p of P) {
        const q0 = p.part.kvHead0 * (H / Hkv) * D;
        await p.pool!.attend(0, qHost.subarray(q0, q0 + p.part.heads * D), outHost.subarray(q0, q0 + p.part.heads * D));
      }
      const t2 = performance.now();
      rt.device.queue.writeBuffer(oGpu, 0, outHost);
      await rt.device.queue.onSubmittedWorkDone();
      const t3 = performance.now();
      for (const p of P) p.cache.lengths[0][0] = L - 1;
      return { off: t1 - t0, cpu: t2 - t1, up: t3 - t2, total: t3 - t0 };
    };
    const cl: { upload: number; calc: number; total: number }[] = [];
    const co: { off: number; cpu: number; up: number; total: number }[] = [];
    for (let i = 0; i <= steps; i++) {
      const a = await classicalStep();
      const b = await cooperativeStep();
      if (i > 0) {
        cl.push(a);
        co.push(b);
      }
    }
    // The same step both ways: the GPU result of the classical step vs the CPU result.
    await classicalStep();
    const enc = rt.device.createCommandEncoder();
    enc.copyBufferToBuffer(oGpu, 0, readback, 0, H * D * 4);
    rt.device.queue.submit([enc.finish()]);
    await readback.mapAsync(MapMode.READ, 0, H * D * 4);
    const gpuOut = new Float32Array(readback.getMappedRange(0, H * D * 4).slice(0));
    readback.unmap();
    await cooperativeStep();
    let diff = 0;
    for (let i = 0; i < H * D; i++) diff = Math.max(diff, Math.abs(gpuOut[i] - outHost[i]));
    const m = (xs: number[]): number => median(xs);
    const row = {
      context: L,
      kvBytes: layerKv,
      kvHeadGroups: P.length,
      hostCacheBytes: hostBytes,
      classical: { uploadMs: m(cl.map((x) => x.upload)), gpuCalcMs: m(cl.map((x) => x.calc)), totalMs: m(cl.map((x) => x.total)), uploadGBs: layerKv / m(cl.map((x) => x.upload)) / 1e6 },
      cooperative: { cpuCalcMs: m(co.map((x) => x.cpu)), offUploadMs: m(co.map((x) => x.off + x.up)), offMs: m(co.map((x) => x.off)), resultUploadMs: m(co.map((x) => x.up)), totalMs: m(co.map((x) => x.total)), cpuGBs: layerKv / m(co.map((x) => x.cpu)) / 1e6 },
      ratioClassicalOverCooperative: m(cl.map((x) => x.total)) / m(co.map((x) => x.total)),
      maxAbsDiffGpuVsCpu: diff,
      samples: { classical: cl, cooperative: co },
      setupMs: fillMs,
    };
    log(`L=${fmtK(L)} (${P.length} group(s)): classical upload ${f2(row.classical.uploadMs)} + GPU ${f2(row.classical.gpuCalcMs)} = ${f2(row.classical.totalMs)} ms; cooperative CPU ${f2(row.cooperative.cpuCalcMs)} + off/up ${f2(row.cooperative.offUploadMs)} = ${f2(row.cooperative.totalMs)} ms; ×${row.ratioClassicalOverCooperative.toFixed(2)}; |Δ| ${diff.toExponential(1)}`);
    rows.push(row);
    for (const p of P) await p.pool!.destroy();
    for (const g of gpu) {
      g.op.destroy();
      rt.ledger.destroy(g.k);
      rt.ledger.destroy(g.v);
      rt.ledger.destroy(g.stage);
    }
    write();
  }
  if (!stop && lengths[lengths.length - 1] === 262144) stop = 'none: 256K reached';
  write();
  if (arg('budget-run', 1)) {
    report.budget16K = await budget16K(host.bytes, qkv);
    write();
  }
  log(`wrote bench/results/${base}.json and .md`);
}

function part_tensor(p: Part, L: number, D: number): number {
  return p.part.kvHeads * L * D * 4;
}

/**
 * The 16K budget: per-GPU memory that holds LLaMA2-7B's weights, vocabulary,
 * largest intermediate and exactly 16K tokens of KV for all 32 layers. The
 * planner's split per length, the longest context the host holds, and one decode
 * step's attention for all layers at that context, run: offloaded layers in f16
 * host caches (one per layer, or per KV-head group) with CPU attention, resident
 * layers on the GPU.
 */
async function budget16K(hostBytes: number, qkv: GPUBuffer): Promise<Record<string, unknown>> {
  const model = LLAMA2_7B;
  const common = { batch: 1, gpus: 1, prefillChunk: 4096 };
  const budget = budgetForGpuTokens(model, 16384, common);
  const splits = [1, 2, 4, 8, 16, 32, 64, 128, 256].map((k) => {
    const p = planOffload(model, { ...common, promptLength: k * 1024, outputLength: 0, gpuMemoryBytes: budget });
    return { context: k * 1024, lGpu: p.lGpu, lCpu: p.lCpu, hostKvBytes: p.hostKvBytes, gpuKvBytes: p.perGpu.kvResident, fitsHost: p.hostKvBytes <= hostBytes };
  });
  // On the machine running this: the host memory allowed, less the caches' workspace and a margin for the process.
  const reach = maxCooperativeContext(model, { ...common, outputLength: 1, gpuMemoryBytes: budget, hostMemoryBytes: hostBytes });
  const at17 = planOffload(model, { ...common, promptLength: 16384 + 1024, outputLength: 0, gpuMemoryBytes: budget });
  const L = reach.options.promptLength + 1; // prompt + the new token
  log(`16K budget ${(budget / 2 ** 30).toFixed(3)} GiB/GPU: L_gpu 32 at 16K, ${at17.lGpu} at 17K; cooperative reaches ${fmtK(reach.options.promptLength)} here (L_gpu ${reach.lGpu}, L_cpu ${reach.lCpu}, host KV ${(reach.hostKvBytes / 2 ** 30).toFixed(1)} GiB of ${(hostBytes / 2 ** 30).toFixed(1)} GiB allowed)`);
  const H = model.heads, Hkv = model.kvHeads, D = model.headDim;
  const result: Record<string, unknown> = {
    model: 'LLaMA2-7B (32 layers, 32 heads × 128, MHA, f16 weights and KV)',
    gpuMemoryBytesPerGpu: budget,
    budgetMeaning: 'weights + vocabulary + largest intermediate (prefill chunk 4096) + 32 layers × KV of 16K tokens (f16)',
    planAt16K: splits[4],
    planAt17K: { context: 17408, lGpu: at17.lGpu, lCpu: at17.lCpu },
    splits,
    hostMemoryAllowedBytes: hostBytes,
    reachedContext: reach.options.promptLength,
    reachedPlan: { lGpu: reach.lGpu, lCpu: reach.lCpu, hostKvBytes: reach.hostKvBytes, gpuKvBytes: reach.perGpu.kvResident },
    classicalGpuOnlyMaxContext: 16384,
    // The planner alone, with all of this machine's memory (or its cgroup limit) for the host KV.
    reachedWithAllHostMemory: (() => {
      const all = Math.min(totalmem(), hostBudget(1).cgroupBytes ?? Infinity);
      const p = maxCooperativeContext(model, { ...common, outputLength: 1, gpuMemoryBytes: budget, hostMemoryBytes: all });
      return { hostMemoryBytes: all, context: p.options.promptLength, lGpu: p.lGpu, lCpu: p.lCpu, hostKvBytes: p.hostKvBytes };
    })(),
  };
  // One decode step's attention at the reached context, run.
  const f16 = rt.capabilities.features.shaderF16;
  const gpuDtype = f16 ? 'f16' : 'f32';
  const tStart = performance.now();
  const parts = splitHostKv({ layers: reach.lCpu, batch: 1, heads: H, kvHeads: Hkv, headDim: D, capacity: L, dtype: 'f16', threads, hostMemoryBytes: hostBytes });
  const caches = parts.map((part, i) => {
    const cache = HostKvCache.create({ layers: part.layers, batch: 1, heads: part.heads, kvHeads: part.kvHeads, headDim: D, capacity: L, dtype: 'f16', threads });
    for (let l = 0; l < part.layers; l++) {
      const bytes = part.kvHeads * L * D * 2;
      fillPattern(cache.memory.buffer, cache.layout.k[l], bytes, true, 3000 + i * 64 + l);
      fillPattern(cache.memory.buffer, cache.layout.v[l], bytes, true, 5000 + i * 64 + l);
      cache.lengths[l][0] = L - 1;
    }
    return { part, cache };
  });
  const fillMs = performance.now() - tStart;
  log(`  host caches: ${parts.length} cache(s), ${(parts.reduce((a, p) => a + p.bytes, 0) / 2 ** 30).toFixed(1)} GiB filled in ${(fillMs / 1000).toFixed(1)} s`);
  // Resident layers: their K/V on the GPU at the reached context (one shared buffer pair on a software adapter, whose "GPU" memory is host memory).
  const eb = gpuDtype === 'f16' ? 2 : 4;
  const residentBuffers = soft ? Math.min(1, reach.lGpu) : reach.lGpu;
  const perTensor = Hkv * L * D * eb;
  const groups = Math.max(1, Math.ceil(perTensor / Math.min(rt.capabilities.limits.maxStorageBufferBindingSize, rt.capabilities.limits.maxBufferSize)));
  let g = groups;
  while (Hkv % g !== 0) g++;
  const usage = BufferUsage.STORAGE | BufferUsage.COPY_DST | BufferUsage.COPY_SRC;
  const resident = Array.from({ length: residentBuffers }, () => Array.from({ length: g }, () => ({ k: rt.ledger.create('bench', { label: 'bench.rk', size: perTensor / g, usage }), v: rt.ledger.create('bench', { label: 'bench.rv', size: perTensor / g, usage }) })));
  const qh = rt.ledger.create('bench', { label: 'bench.q16', size: H * D * eb, usage });
  const oh = rt.ledger.create('bench', { label: 'bench.o16', size: H * D * eb, usage });
  const gpuOp = await rt.createDecode({ q: { shape: [1, H / g, 1, D] }, k: { shape: [1, Hkv / g, L, D] }, v: { shape: [1, Hkv / g, L, D] }, dtype: gpuDtype });
  const qkvFloats = (H + 2 * Hkv) * D;
  const readback = rt.ledger.create('bench', { label: 'bench.readback16', size: qkvFloats * 4, usage: BufferUsage.MAP_READ | BufferUsage.COPY_DST });
  const oGpu = rt.ledger.create('bench', { label: 'bench.o32', size: H * D * 4, usage });
  const qHost = new Float32Array(H * D);
  const outHost = new Float32Array(H * D);
  let cpuMs = 0, offUpMs = 0, gpuMs = 0, poolStartMs = 0;
  const perLayer: { layer: number; where: 'cpu' | 'gpu'; ms: number }[] = [];
  const gpuLayer = async (l: number): Promise<void> => {
    const t0 = performance.now();
    const enc = rt.device.createCommandEncoder();
    const bufs = resident[(l - reach.lCpu) % residentBuffers];
    for (let i = 0; i < g; i++) gpuOp.encode(enc, { q: { buffer: qh, offset: (i * H * D * eb) / g }, o: { buffer: oh, offset: (i * H * D * eb) / g }, k: bufs[i].k, v: bufs[i].v });
    rt.device.queue.submit([enc.finish()]);
    await rt.device.queue.onSubmittedWorkDone();
    const ms = performance.now() - t0;
    gpuMs += ms;
    perLayer.push({ layer: l, where: 'gpu', ms });
  };
  // Warm the GPU pipeline (not timed).
  if (reach.lGpu > 0) {
    const enc = rt.device.createCommandEncoder();
    gpuOp.encode(enc, { q: qh, o: oh, k: resident[0][0].k, v: resident[0][0].v });
    rt.device.queue.submit([enc.finish()]);
    await rt.device.queue.onSubmittedWorkDone();
  }
  for (let l = 0; l < reach.lCpu; l++) {
    const mine = caches.filter((c) => l >= c.part.layer0 && l < c.part.layer0 + c.part.layers);
    const t = performance.now();
    const pools = await Promise.all(mine.map((c) => CpuAttentionPool.create(c.cache, { module, spawn: nodeWorkerSpawner })));
    poolStartMs += performance.now() - t;
    const t0 = performance.now();
    const enc = rt.device.createCommandEncoder();
    enc.copyBufferToBuffer(qkv, 0, readback, 0, qkvFloats * 4);
    rt.device.queue.submit([enc.finish()]);
    await readback.mapAsync(MapMode.READ);
    const r = new Float32Array(readback.getMappedRange());
    qHost.set(r.subarray(0, H * D));
    for (const c of mine) c.cache.append(l - c.part.layer0, r, r, (H + c.part.kvHead0) * D, (H + Hkv + c.part.kvHead0) * D);
    readback.unmap();
    const t1 = performance.now();
    for (const [i, c] of mine.entries()) {
      const q0 = c.part.kvHead0 * (H / Hkv) * D;
      await pools[i].attend(l - c.part.layer0, qHost.subarray(q0, q0 + c.part.heads * D), outHost.subarray(q0, q0 + c.part.heads * D));
    }
    const t2 = performance.now();
    rt.device.queue.writeBuffer(oGpu, 0, outHost);
    await rt.device.queue.onSubmittedWorkDone();
    const t3 = performance.now();
    cpuMs += t2 - t1;
    offUpMs += t1 - t0 + (t3 - t2);
    perLayer.push({ layer: l, where: 'cpu', ms: t3 - t0 });
    for (const p of pools) await p.destroy();
    if (!outHost.every(Number.isFinite)) throw new Error(`layer ${l}: non-finite attention output`);
  }
  // A software adapter takes seconds per resident layer at these lengths: time --gpu-layers of them and scale (said in the report).
  const gpuTimed = Math.min(reach.lGpu, arg('gpu-layers', soft ? 1 : reach.lGpu));
  for (let l = reach.lCpu; l < reach.lCpu + gpuTimed; l++) await gpuLayer(l);
  if (gpuTimed < reach.lGpu && gpuTimed > 0) gpuMs *= reach.lGpu / gpuTimed;
  for (const row of resident) for (const b of row) { rt.ledger.destroy(b.k); rt.ledger.destroy(b.v); }
  gpuOp.destroy();
  result.decodeStepRun = {
    context: L,
    keysAttendedPerLayer: L,
    offloadedLayers: reach.lCpu,
    residentLayers: reach.lGpu,
    hostCaches: parts.length,
    hostCacheBytes: parts.reduce((a, p) => a + p.bytes, 0),
    hostKvDtype: 'f16',
    gpuKvDtype: gpuDtype,
    residentGpuBuffers: residentBuffers < reach.lGpu ? `${residentBuffers} layer's K/V reused for all ${reach.lGpu} resident layers (software adapter: its GPU memory is host memory)` : `${reach.lGpu} layers' K/V allocated on the GPU`,
    attentionStepMs: cpuMs + offUpMs + gpuMs,
    cpuCalcMs: cpuMs,
    offUploadMs: offUpMs,
    gpuCalcMs: gpuMs,
    gpuLayersTimed: gpuTimed,
    gpuCalcNote: gpuTimed < reach.lGpu ? `${gpuTimed} of ${reach.lGpu} resident layers run and timed; gpuCalcMs scales their time to all ${reach.lGpu}` : 'every resident layer run and timed',
    perLayer,
    notTimed: { fillMs, poolStartMs, why: 'one CPU pool per host cache (its workers are bound to one WebAssembly memory); pools are started per layer before its timed part and stopped after, so at most one layer’s workers exist at a time' },
    what: 'attention of every layer for one new token (q/k/v from a GPU buffer standing in for the projections): offloaded layers read back q/k/v, append, CPU attention, result written back; resident layers run the split-KV kernel over their GPU K/V. Projections, norms and FFN are not part of it.',
  };
  log(`  decode step at ${fmtK(L - 1)}+1: attention ${(cpuMs + offUpMs + gpuMs).toFixed(1)} ms (CPU ${cpuMs.toFixed(1)}, off/up ${offUpMs.toFixed(1)}, GPU ${gpuMs.toFixed(1)}) over ${reach.lCpu} offloaded + ${reach.lGpu} resident layers`);
  return result;
}

function table3Markdown(report: Record<string, unknown>, rows: Record<string, unknown>[]): string {
  const a = report.adapter as { device: string; description: string; isSoftware: boolean };
  const lay = report.layer as { heads: number; kvHeads: number; headDim: number; model: string };
  const out: string[] = [];
  out.push(`# Per-layer decode attention, classical offloading vs CPU-GPU cooperation (Table 3 shape)`, '');
  out.push(`Adapter: ${a.device || a.description}${a.isSoftware ? ' (software)' : ''}; ${report.cpuThreads} CPU threads; node ${report.node}; ${report.date}.`);
  out.push(`One layer, batch 1, ${lay.model}: ${lay.heads} query heads, ${lay.kvHeads} KV heads × ${lay.headDim}, f32 K/V. ${(report.method as { statistic: string }).statistic}; times in ms.`, '');
  out.push('| context | KV of the layer | Upload | GPU calc | classical total | CPU calc | off+upload | cooperative total | classical / cooperative | KV-head groups | max abs diff GPU vs CPU |');
  out.push('|---|---|---|---|---|---|---|---|---|---|---|');
  for (const r of rows as { context: number; kvBytes: number; kvHeadGroups: number; maxAbsDiffGpuVsCpu: number; ratioClassicalOverCooperative: number; classical: { uploadMs: number; gpuCalcMs: number; totalMs: number }; cooperative: { cpuCalcMs: number; offUploadMs: number; totalMs: number } }[])
    out.push(`| ${fmtK(r.context)} | ${(r.kvBytes / 2 ** 20).toFixed(0)} MiB | ${f2(r.classical.uploadMs)} | ${f2(r.classical.gpuCalcMs)} | ${f2(r.classical.totalMs)} | ${f2(r.cooperative.cpuCalcMs)} | ${f2(r.cooperative.offUploadMs)} | ${f2(r.cooperative.totalMs)} | ${r.ratioClassicalOverCooperative.toFixed(2)} | ${r.kvHeadGroups} | ${r.maxAbsDiffGpuVsCpu.toExponential(1)} |`);
  out.push('', `Stopped before: ${report.stoppedBefore ?? 'none'}.`, '');
  const b = report.budget16K as undefined | Record<string, any>;
  if (b) {
    out.push(`## A budget that holds only 16K tokens of KV on the GPU (${b.model})`, '');
    out.push(`Per-GPU budget ${(b.gpuMemoryBytesPerGpu / 2 ** 30).toFixed(3)} GiB (${b.budgetMeaning}): L_gpu = ${b.planAt16K.lGpu} at 16K, ${b.planAt17K.lGpu} at 17K.`, '');
    out.push('| context | L_gpu | L_cpu | KV on GPU (GiB) | KV on host (GiB) | fits this host |', '|---|---|---|---|---|---|');
    for (const s of b.splits) out.push(`| ${fmtK(s.context)} | ${s.lGpu} | ${s.lCpu} | ${(s.gpuKvBytes / 2 ** 30).toFixed(2)} | ${(s.hostKvBytes / 2 ** 30).toFixed(2)} | ${s.fitsHost ? 'yes' : 'no'} |`);
    out.push('', `Host memory allowed here: ${(b.hostMemoryAllowedBytes / 2 ** 30).toFixed(1)} GiB. GPU-only (classical without offload) stops at 16K; the cooperative scheme reaches **${fmtK(b.reachedContext)}** tokens (L_gpu ${b.reachedPlan.lGpu}, L_cpu ${b.reachedPlan.lCpu}, ${(b.reachedPlan.hostKvBytes / 2 ** 30).toFixed(1)} GiB of KV on the host), bound by host memory (with all ${(b.reachedWithAllHostMemory.hostMemoryBytes / 2 ** 30).toFixed(0)} GiB of this machine's memory, planner only: ${fmtK(b.reachedWithAllHostMemory.context)}, L_cpu ${b.reachedWithAllHostMemory.lCpu}).`);
    const d = b.decodeStepRun;
    if (d) out.push('', `Run at that context: one decode step's attention over all 32 layers (${d.offloadedLayers} offloaded in ${d.hostCaches} f16 host cache(s), ${d.residentLayers} resident, ${d.gpuKvDtype} on the GPU): **${d.attentionStepMs.toFixed(1)} ms** (CPU calc ${d.cpuCalcMs.toFixed(1)}, off+upload ${d.offUploadMs.toFixed(1)}, GPU calc ${d.gpuCalcMs.toFixed(1)}); not timed: filling the caches ${(d.notTimed.fillMs / 1000).toFixed(1)} s, starting the CPU pools ${(d.notTimed.poolStartMs / 1000).toFixed(1)} s. ${d.residentGpuBuffers}.`);
  }
  return out.join('\n') + '\n';
}
