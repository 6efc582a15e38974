/**
 * Decode benchmark: Sq = 1, B = 1, H = 32, H_kv = 8, D = 128 against 4K / 32K /
 * 128K cached tokens, f16 and f32 storage, contiguous K/V and the paged cache.
 * Reports KV bytes read per second and its fraction of the copy bandwidth that
 * `.gpu/peaks.mjs` measures in the same run, and checks the 4K outputs against
 * the float64 reference. Prints one JSON document.
 *
 *   EXTRA_ENTRY=scripts/benchDecode.ts EXTRA_NAME=benchDecode node scripts/build.mjs benchDecode
 *   node dist/benchDecode.js > result.json          (BENCH_SMALL=1: tiny shapes, for a smoke test)
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { normalizeProblem } from '../src/attention/problem.js';
import { timeGpu } from '../src/bench/timing.js';
import { FlashDecode } from '../src/decode/flashDecode.js';
import { PagedKvCache, type KvDType } from '../src/kvcache/pagedKvCache.js';
import { createNodeRuntime } from '../src/node.js';
import { cpuAttention } from '../src/reference/cpuAttention.js';
import { BufferUsage, MapMode } from '../src/runtime/usage.js';

const small = process.env.BENCH_SMALL === '1';
const B = 1;
const Hq = small ? 8 : 32;
const Hkv = small ? 2 : 8;
const D = 128;
const lengths = small ? [300, 1000] : [4096, 32768, 131072];
const checkLen = lengths[0];
const PERIOD = 1_000_004; // random data repeats with this period (elements), out of step with heads and pages

function peaks(): Record<string, unknown> {
  const script = '.gpu/peaks.mjs';
  if (!existsSync(script)) return { error: `${script} not found` };
  try {
    const out = execFileSync(process.execPath, [script], { encoding: 'utf8', timeout: 120_000 });
    return JSON.parse(out.trim().split('\n').pop()!) as Record<string, unknown>;
  } catch (e) {
    return { error: String(e) };
  }
}

// Deterministic normal-ish samples (mulberry32 + Box-Muller).
function randn(n: number, seed: number): Float32Array<ArrayBuffer> {
  let a = seed >>> 0;
  const u = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.sqrt(-2 * Math.log(1 - u())) * Math.cos(2 * Math.PI * u());
  return out;
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);
function toHalf(x: number): number {
  f32[0] = x;
  const b = u32[0];
  const sign = (b >>> 16) & 0x8000;
  const e = ((b >>> 23) & 0xff) - 112;
  const m = b & 0x7fffff;
  if (e <= 0) return sign; // |x| < 2^-14: flushed (not produced by these samples' scale in practice)
  if (e >= 31) return sign | 0x7c00;
  let h = sign | (e << 10) | (m >>> 13);
  const rest = m & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && (h & 1) === 1)) h++;
  return h;
}
function fromHalf(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >>> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

/** Values as stored (f16-rounded) and their storage bytes. */
function encode(x: Float32Array<ArrayBuffer>, dtype: KvDType): { values: Float32Array<ArrayBuffer>; bytes: Uint8Array<ArrayBuffer> } {
  if (dtype === 'f32') return { values: x, bytes: new Uint8Array(x.buffer) };
  const h = Uint16Array.from(x, toHalf);
  return { values: Float32Array.from(h, fromHalf), bytes: new Uint8Array(h.buffer) };
}

/**
 * GPU time per call: `batch` calls are recorded into one command buffer before
 * the clock starts, so the JS cost of encoding is excluded (it is reported
 * separately, through src/bench/timing.ts, as `withEncodeMs`). Median of samples.
 */
async function timeRecorded(dev: GPUDevice, encode: (e: GPUCommandEncoder) => void, o: { samples: number; minSampleMs: number; maxBatch: number }): Promise<{ medianMs: number; minMs: number; batch: number }> {
  const sample = async (batch: number): Promise<number> => {
    const enc = dev.createCommandEncoder();
    for (let i = 0; i < batch; i++) encode(enc);
    const cb = enc.finish();
    await dev.queue.onSubmittedWorkDone();
    const t0 = performance.now();
    dev.queue.submit([cb]);
    await dev.queue.onSubmittedWorkDone();
    return performance.now() - t0;
  };
  await sample(1);
  let batch = 1;
  let ms = await sample(batch);
  while (ms < o.minSampleMs && batch < o.maxBatch) {
    batch = Math.min(o.maxBatch, batch * Math.max(2, Math.ceil(o.minSampleMs / Math.max(ms, 0.01))));
    ms = await sample(batch);
  }
  const per: number[] = [];
  for (let i = 0; i < o.samples; i++) per.push((await sample(batch)) / batch);
  per.sort((a, b) => a - b);
  return { medianMs: per[per.length >> 1], minMs: per[0], batch };
}

async function main(): Promise<void> {
  const ceilings = peaks();
  const rt = await createNodeRuntime();
  const dev = rt.device;
  const copyGbps = typeof ceilings.copy_gbps === 'number' ? ceilings.copy_gbps : NaN;
  const results: Record<string, unknown>[] = [];
  const sweep: Record<string, unknown>[] = [];
  const checks: Record<string, unknown>[] = [];
  const timing = small ? { samples: 3, minSampleMs: 5, maxBatch: 8 } : { samples: 9, minSampleMs: 40, maxBatch: 400 };

  for (const dtype of ['f16', 'f32'] as const) {
    const bpe = dtype === 'f16' ? 2 : 4;
    const pattern = { k: encode(randn(PERIOD, 11), dtype), v: encode(randn(PERIOD, 12), dtype) };
    const qData = encode(randn(B * Hq * D, 13), dtype);
    const q = dev.createBuffer({ size: qData.bytes.byteLength, usage: BufferUsage.STORAGE | BufferUsage.COPY_DST });
    dev.queue.writeBuffer(q, 0, qData.bytes);
    const o = dev.createBuffer({ size: B * Hq * D * bpe, usage: BufferUsage.STORAGE | BufferUsage.COPY_SRC });
    for (const Sk of lengths) {
      const elements = B * Hkv * Sk * D;
      const fill = (which: 'k' | 'v'): GPUBuffer => {
        const buf = dev.createBuffer({ size: elements * bpe, usage: BufferUsage.STORAGE | BufferUsage.COPY_DST | BufferUsage.COPY_SRC });
        for (let at = 0; at < elements; at += PERIOD) {
          const n = Math.min(PERIOD, elements - at);
          dev.queue.writeBuffer(buf, at * bpe, pattern[which].bytes, 0, n * bpe);
        }
        return buf;
      };
      const k = fill('k');
      const v = fill('v');
      const kvBytes = 2 * elements * bpe;
      const qDesc = { shape: [B, Hq, 1, D] as const };
      const kDesc = { shape: [B, Hkv, Sk, D] as const };

      const contiguous = await FlashDecode.create(rt, { q: qDesc, k: kDesc, v: kDesc, dtype });
      const cache = PagedKvCache.create(rt, { sequences: B, headsKV: Hkv, headDim: D, dtype, pageTokens: 256, maxTokensPerSequence: Sk });
      const enc = dev.createCommandEncoder();
      cache.append(enc, 0, { k, v, tokens: Sk });
      dev.queue.submit([enc.finish()]);
      const paged = await FlashDecode.create(rt, { q: qDesc, cache, dtype });

      for (const [mode, op, bufs] of [
        ['contiguous', contiguous, { q, o, k, v }],
        ['paged', paged, { q, o }],
      ] as const) {
        const t = await timeRecorded(dev, (e) => op.encode(e, bufs), timing);
        const withEncode = await timeGpu(dev, (e) => op.encode(e, bufs), timing);
        const gbps = kvBytes / (t.medianMs * 1e6);
        results.push({
          dtype,
          mode,
          Sk,
          kvBytes,
          medianMs: +t.medianMs.toFixed(5),
          minMs: +t.minMs.toFixed(5),
          batch: t.batch,
          withEncodeMs: +withEncode.medianMs.toFixed(5),
          kvGBps: Math.round(gbps),
          fractionOfCopy: +(gbps / copyGbps).toFixed(3),
          splits: op.lastSplits,
          blockN: op.tiling.blockN,
          rowBlock: op.tiling.rowBlock,
          poolBuffers: mode === 'paged' ? cache.pools.length : 0,
        });
        if (Sk === checkLen) {
          // Check the output against the float64 reference on the same data.
          await op.run(bufs);
          const staging = dev.createBuffer({ size: o.size, usage: BufferUsage.MAP_READ | BufferUsage.COPY_DST });
          const ce = dev.createCommandEncoder();
          ce.copyBufferToBuffer(o, 0, staging, 0, o.size);
          dev.queue.submit([ce.finish()]);
          await staging.mapAsync(MapMode.READ);
          const raw = staging.getMappedRange().slice(0);
          staging.destroy();
          const got = dtype === 'f32' ? new Float32Array(raw) : Float32Array.from(new Uint16Array(raw), fromHalf);
          const kHost = new Float32Array(elements);
          const vHost = new Float32Array(elements);
          for (let i = 0; i < elements; i++) {
            kHost[i] = pattern.k.values[i % PERIOD];
            vHost[i] = pattern.v.values[i % PERIOD];
          }
          const p = normalizeProblem({ q: qDesc, k: kDesc, v: kDesc, causal: true });
          const want = cpuAttention(p, qData.values, kHost, vHost);
          let err = 0;
          for (let i = 0; i < want.length; i++) err = Math.max(err, Math.abs(got[i] - want[i]));
          checks.push({ dtype, mode, Sk, maxAbsError: err, tolerance: dtype === 'f16' ? 2e-3 : 1e-4, ok: err <= (dtype === 'f16' ? 2e-3 : 1e-4) });
        }
      }
      if (dtype === 'f16' && Sk === lengths[1]) {
        // Workgroup size × split target, to choose the defaults.
        for (const threads of [64, 128, 256])
          for (const targetWorkgroups of small ? [8, 32] : [132, 264, 528, 1056, 2112]) {
            const op = await FlashDecode.create(rt, { q: qDesc, k: kDesc, v: kDesc, dtype, threads, targetWorkgroups });
            const t = await timeRecorded(dev, (e) => op.encode(e, { q, o, k, v }), timing);
            const gbps = kvBytes / (t.medianMs * 1e6);
            sweep.push({ dtype, mode: 'contiguous', Sk, threads, targetWorkgroups, blockN: op.tiling.blockN, splits: op.lastSplits, medianMs: +t.medianMs.toFixed(5), kvGBps: Math.round(gbps), fractionOfCopy: +(gbps / copyGbps).toFixed(3) });
            op.destroy();
          }
      }
      contiguous.destroy();
      paged.destroy();
      cache.destroy();
      k.destroy();
      v.destroy();
    }
    q.destroy();
    o.destroy();
  }
  const caps = rt.capabilities;
  console.log(
    JSON.stringify(
      {
        benchmark: 'decode (split-KV), Sq=1',
        date: new Date().toISOString(),
        adapter: caps.adapter,
        shape: { B, Hq, Hkv, D, Sq: 1 },
        ceilings,
        timing: { method: 'medianMs: submit-to-done of a pre-recorded batch of calls / batch; withEncodeMs: the same including JS encoding (src/bench/timing.ts)', ...timing },
        results,
        sweep,
        checks,
      },
      null,
      1,
    ),
  );
  rt.destroy();
  process.exit(0);
}

main().catch((e) => {
  console.log(JSON.stringify({ error: String(e), stack: (e as Error).stack }));
  process.exit(1);
});
