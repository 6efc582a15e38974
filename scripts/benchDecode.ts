/**
 * Decode benchmark: B = 1, H = 32, H_kv = 8, D = 128; S_k = 4K … 128K cached
 * tokens, S_q = 1 and 4, f16 and f32 storage, contiguous K/V and the paged
 * cache (pages of 256 tokens). Reports KV bytes read per second and its
 * fraction of the copy bandwidth that `.gpu/peaks.mjs` measures in the same run,
 * checks every configuration at 4K against the float64 reference, and sweeps
 * kernel variants (lane reduction, native f16, workgroup size, keys per step,
 * prefetch, workgroups per unit) and split counts at 32K, each variant's output
 * checked against the float64 reference (the defaults are chosen from them).
 * BENCH_MODE=sweep: S_k 4K and 32K only, with the wide variant grid.
 *
 * Time per call: `batch` calls recorded back to back into one compute pass;
 * with `timestamp-query`, GPU timestamps at the pass's start and end (median
 * over samples), otherwise submit-to-done wall time of a pre-recorded batch.
 * Writes decode-<device>-<date>.json and .md into $OUT (or the working directory).
 *
 *   EXTRA_ENTRY=scripts/benchDecode.ts EXTRA_NAME=benchDecode node scripts/build.mjs benchDecode
 *   node dist/benchDecode.js          (BENCH_SMALL=1: tiny shapes, for a smoke test)
 */
import { execFileSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { normalizeProblem } from '../src/attention/problem.js';
import { FlashDecode, type DecodeBuffers, type DecodeOptions } from '../src/decode/flashDecode.js';
import { PagedKvCache, type KvDType } from '../src/kvcache/pagedKvCache.js';
import { createNodeGPU, DAWN_FLAGS } from '../src/node.js';
import { cpuAttention } from '../src/reference/cpuAttention.js';
import { mulberry32, normalSamples } from '../src/reference/random.js';
import { FastAttentionRuntime } from '../src/runtime/runtime.js';
import { BufferUsage, MapMode } from '../src/runtime/usage.js';

const randn = (n: number, seed: number): Float32Array<ArrayBuffer> => normalSamples(n, mulberry32(seed));
const small = process.env.BENCH_SMALL === '1';
const sweepMode = process.env.BENCH_MODE === 'sweep';
const B = 1;
const Hq = small ? 8 : 32;
const Hkv = small ? 2 : 8;
const D = 128;
// The sweep length first: its fastest variants then run the other lengths too.
const lengths = small ? [1000, 300] : sweepMode ? [32768, 4096] : [32768, 4096, 8192, 16384, 65536, 131072];
const queries = [1, 4];
const checkLen = small ? 300 : 4096;
const sweepLen = lengths[0];
const PERIOD = 1_000_004; // random data repeats with this period (elements), out of step with heads and pages
const PAGE_TOKENS = 256;

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


interface Timed {
  ms: number;
  method: 'timestamps' | 'wall';
  calls: number;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[s.length >> 1];
}

/**
 * Median time per call of `calls` back-to-back calls in one compute pass. GPU
 * timestamps bracket the pass when the device has them; otherwise the wall time
 * from submit to done of the pre-recorded command buffer.
 */
async function timeCalls(rt: FastAttentionRuntime, encode: (pass: GPUComputePassEncoder) => void, calls: number, samples: number): Promise<Timed> {
  const dev = rt.device;
  const ts = rt.capabilities.features.timestampQuery;
  const qs = ts ? dev.createQuerySet({ type: 'timestamp', count: 2 }) : null;
  const resolve = ts ? dev.createBuffer({ size: 16, usage: BufferUsage.QUERY_RESOLVE | BufferUsage.COPY_SRC }) : null;
  const read = ts ? dev.createBuffer({ size: 16, usage: BufferUsage.MAP_READ | BufferUsage.COPY_DST }) : null;
  const sample = async (n: number): Promise<number> => {
    const enc = dev.createCommandEncoder();
    const pass = enc.beginComputePass(qs ? { timestampWrites: { querySet: qs, beginningOfPassWriteIndex: 0, endOfPassWriteIndex: 1 } } : {});
    for (let i = 0; i < n; i++) encode(pass);
    pass.end();
    if (qs) {
      enc.resolveQuerySet(qs, 0, 2, resolve!, 0);
      enc.copyBufferToBuffer(resolve!, 0, read!, 0, 16);
    }
    const cb = enc.finish();
    await dev.queue.onSubmittedWorkDone();
    const t0 = performance.now();
    dev.queue.submit([cb]);
    await dev.queue.onSubmittedWorkDone();
    const wall = performance.now() - t0;
    if (!read) return wall / n;
    await read.mapAsync(MapMode.READ);
    const t = new BigUint64Array(read.getMappedRange().slice(0));
    read.unmap();
    return Number(t[1] - t[0]) / 1e6 / n;
  };
  await sample(2);
  const per: number[] = [];
  for (let i = 0; i < samples; i++) per.push(await sample(calls));
  qs?.destroy();
  resolve?.destroy();
  read?.destroy();
  return { ms: median(per), method: ts ? 'timestamps' : 'wall', calls };
}

/** Calls per sample: about 20 ms of GPU work, at least 5 calls. */
function callsFor(kvBytes: number): number {
  return small ? 4 : Math.max(5, Math.min(400, Math.round(20e-3 / (kvBytes / 1.5e12))));
}

function upload(dev: GPUDevice, bytes: Uint8Array<ArrayBuffer>): GPUBuffer {
  const b = dev.createBuffer({ size: bytes.byteLength, usage: BufferUsage.STORAGE | BufferUsage.COPY_DST | BufferUsage.COPY_SRC });
  dev.queue.writeBuffer(b, 0, bytes);
  return b;
}

async function readOut(dev: GPUDevice, o: GPUBuffer, dtype: KvDType): Promise<Float32Array> {
  const staging = dev.createBuffer({ size: o.size, usage: BufferUsage.MAP_READ | BufferUsage.COPY_DST });
  const ce = dev.createCommandEncoder();
  ce.copyBufferToBuffer(o, 0, staging, 0, o.size);
  dev.queue.submit([ce.finish()]);
  await staging.mapAsync(MapMode.READ);
  const raw = staging.getMappedRange().slice(0);
  staging.destroy();
  return dtype === 'f32' ? new Float32Array(raw) : Float32Array.from(new Uint16Array(raw), fromHalf);
}

type Pattern = { k: { values: Float32Array }; v: { values: Float32Array } };

/** The float64 reference output for keys/values that repeat `pattern` with period PERIOD. */
function reference(q: Float32Array, pattern: Pattern, elements: number, qDesc: { shape: readonly [number, number, number, number] }, kDesc: { shape: readonly [number, number, number, number] }): Float64Array {
  const kHost = new Float32Array(elements);
  const vHost = new Float32Array(elements);
  for (let at = 0; at < elements; at += PERIOD) {
    const n = Math.min(PERIOD, elements - at);
    kHost.set(pattern.k.values.subarray(0, n), at);
    vHost.set(pattern.v.values.subarray(0, n), at);
  }
  return cpuAttention(normalizeProblem({ q: qDesc, k: kDesc, v: kDesc, causal: true }), q, kHost, vHost);
}

function maxErr(got: Float32Array, want: Float64Array): number {
  let err = 0;
  for (let i = 0; i < want.length; i++) {
    const d = Math.abs(got[i] - want[i]);
    err = d <= err ? err : Number.isNaN(d) ? Infinity : d;
  }
  return err;
}

/** Kernel variants timed at the sweep length (contiguous K/V); the fastest correct one per (dtype, S_q) also runs the whole grid. */
function variantGrid(base: DecodeOptions, dtype: KvDType, Sq: number): DecodeOptions[] {
  const grid: DecodeOptions[] = [];
  if (Sq === 1) {
    for (const threads of [128, 256])
      for (const keysPerSlot of [1, 2, 4, 8])
        for (const prefetch of [true, false]) grid.push({ ...base, reduction: 'subgroup', threads, keysPerSlot, prefetch });
    if (dtype === 'f16') grid.push({ ...base, reduction: 'subgroup', nativeF16: false }, { ...base, reduction: 'workgroup', nativeF16: false });
    for (const workgroupsPerUnit of [1, 3, 4]) grid.push({ ...base, reduction: 'subgroup', workgroupsPerUnit });
    for (const prefetch of [true, false]) grid.push({ ...base, reduction: 'workgroup', keysPerSlot: 8, prefetch });
    grid.push({ ...base, reduction: 'workgroup', threads: 128, keysPerSlot: 8 });
  } else {
    for (const threads of [128, 256]) for (const keysPerSlot of [2, 4]) grid.push({ ...base, reduction: 'subgroup', threads, keysPerSlot });
    for (const keysPerSlot of [4, 8]) grid.push({ ...base, reduction: 'workgroup', keysPerSlot });
  }
  return grid;
}

type Knobs = Pick<DecodeOptions, 'reduction' | 'nativeF16' | 'threads' | 'keysPerSlot' | 'prefetch' | 'workgroupsPerUnit'>;

function knobsOf(op: FlashDecode): Required<Knobs> {
  const t = op.tiling;
  return { reduction: t.reduction, nativeF16: op.nativeF16, threads: t.threads, keysPerSlot: t.keysPerSlot, prefetch: t.prefetch, workgroupsPerUnit: t.workgroupsPerUnit };
}

async function main(): Promise<void> {
  const ceilings = peaks();
  // Timestamps unquantised: the batch's duration, not a 100 µs grid.
  const gpu = await createNodeGPU([...DAWN_FLAGS, 'disable-dawn-features=timestamp_quantization']);
  const rt = await FastAttentionRuntime.create({ gpu });
  const dev = rt.device;
  const copyGbps = typeof ceilings.copy_gbps === 'number' ? ceilings.copy_gbps : NaN;
  const results: Record<string, unknown>[] = [];
  const variants: Record<string, unknown>[] = [];
  const splitSweep: Record<string, unknown>[] = [];
  const checks: Record<string, unknown>[] = [];
  const samples = small ? 3 : 7;
  const date = new Date().toISOString();
  // Written after every length too, so a run cut short still leaves its results.
  const write = (): string[] => {
    const caps = rt.capabilities;
    const doc = {
      benchmark: 'decode (split-KV): B1 H32 Hkv8 D128, causal',
      mode: sweepMode ? 'sweep' : 'full',
      date,
      adapter: caps.adapter,
      shape: { B, Hq, Hkv, D, queries, pageTokens: PAGE_TOKENS },
      ceilings,
      timing: { method: 'time per call = (end − start timestamp of one compute pass holding callsPerSample back-to-back calls) / callsPerSample, median of samples; wall time submit-to-done when timestamp-query is missing', samples },
      results,
      checks,
      variants,
      splitSweep,
    };
    const device = (caps.adapter.device || caps.adapter.architecture || 'gpu').replace(/[^A-Za-z0-9]+/g, '-').replace(/^-|-$/g, '');
    const stamp = date.replace(/[:.]/g, '-');
    const dir = process.env.OUT ?? '.';
    const name = `decode-${device}-${stamp}`;
    writeFileSync(join(dir, `${name}.json`), JSON.stringify(doc, null, 1));
    const md: string[] = [`# ${doc.benchmark}`, '', `adapter: ${caps.adapter.vendor} ${caps.adapter.device} (${caps.adapter.description}), ${date}`, '', `copy ceiling measured in this run: ${copyGbps} GB/s (.gpu/peaks.mjs); timing: ${results[0]?.method ?? '-'}`, ''];
    md.push('Rows: `default` = the operator\'s defaults; `best-of-sweep` = the fastest correct variant of the sweep at Sk=' + sweepLen + ' for that dtype and Sq (options in the knobs column), where it differs from the defaults.', '');
    md.push('| dtype | variant | K/V | Sq | Sk | ms/call | KV GB/s | % of copy | splits × len | knobs |', '|---|---|---|---|---|---|---|---|---|---|');
    const order = (r: Record<string, unknown>) => `${r.dtype}/${r.variant}/${String(r.Sq).padStart(2, '0')}/${String(r.Sk).padStart(7, '0')}/${r.mode}`;
    results.sort((a, b) => (order(a) < order(b) ? -1 : 1));
    for (const r of results) {
      if (r.error !== undefined) {
        md.push(`| ${r.dtype} | ${r.variant} | ${r.mode} | ${r.Sq} | ${r.Sk} | error: ${String(r.error).split('\n')[0]} | | | | |`);
        continue;
      }
      const sp = r.splits as { splits: number; splitLen: number };
      const kb = r.knobs as Required<Knobs>;
      const knobs = `${kb.reduction}, ${kb.threads} thr, ${kb.keysPerSlot} keys/slot${kb.prefetch ? ', prefetch' : ''}${kb.nativeF16 ? ', native f16' : ''}, ${kb.workgroupsPerUnit} wg/unit`;
      md.push(`| ${r.dtype} | ${r.variant} | ${r.mode} | ${r.Sq} | ${r.Sk} | ${(r.msPerCall as number).toFixed(4)} | ${r.kvGBps} | ${((r.fractionOfCopy as number) * 100).toFixed(1)}% | ${sp.splits} × ${sp.splitLen} | ${knobs} |`);
    }
    md.push('', `checks vs float64 reference at Sk=${checkLen}: ${checks.filter((c) => c.ok).length}/${checks.length} within tolerance; max error f16 ${Math.max(0, ...checks.filter((c) => c.dtype === 'f16').map((c) => c.maxAbsError as number)).toExponential(2)}, f32 ${Math.max(0, ...checks.filter((c) => c.dtype === 'f32').map((c) => c.maxAbsError as number)).toExponential(2)}`, '');
    md.push(`## variants at Sk=${sweepLen} (contiguous), each checked against the float64 reference`, '', '| dtype | Sq | reduction | threads | keys/slot | prefetch | native f16 | wg/unit | splits | ms/call | % of copy | max error |', '|---|---|---|---|---|---|---|---|---|---|---|---|');
    for (const v of variants) {
      if (v.error !== undefined) {
        md.push(`| ${v.dtype} | ${v.Sq} | ${JSON.stringify(v.options)} | error: ${String(v.error).split('\n')[0]} | | | | | | | | |`);
        continue;
      }
      const sp = v.splits as { splits: number };
      md.push(`| ${v.dtype} | ${v.Sq} | ${v.reduction} | ${v.threads} | ${v.keysPerSlot} | ${v.prefetch} | ${v.nativeF16} | ${v.workgroupsPerUnit} | ${sp.splits} | ${(v.msPerCall as number).toFixed(4)} | ${((v.fractionOfCopy as number) * 100).toFixed(1)}% | ${(v.maxAbsError as number).toExponential(1)}${v.ok ? '' : ' FAIL'} |`);
    }
    writeFileSync(join(dir, `${name}.md`), md.join('\n'));
    return md;
  };
  const bestKnobs = new Map<string, Knobs>();
  const defaultKnobs = new Map<string, Required<Knobs>>();
  const fraction = (gbps: number) => +(gbps / copyGbps).toFixed(3);

  for (const dtype of ['f16', 'f32'] as const) {
    const bpe = dtype === 'f16' ? 2 : 4;
    const pattern = { k: encode(randn(PERIOD, 11), dtype), v: encode(randn(PERIOD, 12), dtype) };
    for (const Sk of lengths) {
      const elements = B * Hkv * Sk * D;
      const fill = (which: 'k' | 'v'): GPUBuffer => {
        const buf = dev.createBuffer({ size: elements * bpe, usage: BufferUsage.STORAGE | BufferUsage.COPY_DST | BufferUsage.COPY_SRC });
        for (let at = 0; at < elements; at += PERIOD) dev.queue.writeBuffer(buf, at * bpe, pattern[which].bytes, 0, Math.min(PERIOD, elements - at) * bpe);
        return buf;
      };
      const k = fill('k');
      const v = fill('v');
      const kvBytes = 2 * elements * bpe;
      const kDesc = { shape: [B, Hkv, Sk, D] as const };
      const cache = PagedKvCache.create(rt, { sequences: B, headsKV: Hkv, headDim: D, dtype, pageTokens: PAGE_TOKENS, maxTokensPerSequence: Sk });
      const enc = dev.createCommandEncoder();
      cache.append(enc, 0, { k, v, tokens: Sk });
      dev.queue.submit([enc.finish()]);

      for (const Sq of queries) {
        const qData = encode(randn(B * Hq * Sq * D, 13 + Sq), dtype);
        const q = upload(dev, qData.bytes);
        const o = dev.createBuffer({ size: B * Hq * Sq * D * bpe, usage: BufferUsage.STORAGE | BufferUsage.COPY_SRC });
        const qDesc = { shape: [B, Hq, Sq, D] as const };
        const modes: [string, DecodeOptions, DecodeBuffers][] = [
          ['contiguous', { q: qDesc, k: kDesc, v: kDesc, dtype }, { q, o, k, v }],
          ['paged', { q: qDesc, cache, dtype }, { q, o }],
        ];
        for (const [mode, defaults, bufs] of modes) {
         for (const variant of ['default', 'best-of-sweep'] as const) {
          // Looked up per pass: at the sweep length the sweep inside the `default` pass sets it.
          const best = bestKnobs.get(`${dtype}/${Sq}`);
          if (variant === 'best-of-sweep' && best === undefined) continue;
          const options: DecodeOptions = variant === 'default' ? defaults : { ...defaults, ...best };
          let op: FlashDecode;
          try {
            op = await FlashDecode.create(rt, options);
          } catch (e) {
            // A configuration this device cannot build is reported, not fatal.
            results.push({ dtype, mode, variant, Sq, Sk, kvBytes, error: String(e) });
            continue;
          }
          if (variant === 'best-of-sweep' && JSON.stringify(knobsOf(op)) === JSON.stringify(defaultKnobs.get(`${dtype}/${Sq}/${mode}`))) {
            op.destroy();
            continue; // the defaults are the sweep's best: nothing more to time
          }
          if (variant === 'default') defaultKnobs.set(`${dtype}/${Sq}/${mode}`, knobsOf(op));
          const t = await timeCalls(rt, (pass) => op.encode(pass, bufs), callsFor(kvBytes), samples);
          const gbps = kvBytes / (t.ms * 1e6);
          const t0 = op.tiling;
          results.push({
            dtype, mode, variant, Sq, Sk, kvBytes,
            msPerCall: +t.ms.toFixed(5), method: t.method, callsPerSample: t.calls,
            kvGBps: Math.round(gbps), fractionOfCopy: fraction(gbps),
            splits: op.lastSplits,
            knobs: knobsOf(op),
            tiling: { lanes: t0.lanes, wordsPerLane: t0.wordsPerLane, stepKeys: t0.blockN, rowBlock: t0.rowBlock, rowBlocks: t0.rowBlocks, computeUnits: t0.computeUnits },
            poolBuffers: mode === 'paged' ? cache.pools.length : 0,
          });
          if (Sk === checkLen) {
            await op.run(bufs);
            const err = maxErr(await readOut(dev, o, dtype), reference(qData.values, pattern, elements, qDesc, kDesc));
            const tol = dtype === 'f16' ? 2e-3 : 1e-4;
            checks.push({ dtype, mode, variant, Sq, Sk, maxAbsError: err, tolerance: tol, ok: err <= tol });
          }
          // Kernel variants and split counts, to choose the defaults (contiguous).
          if (Sk === sweepLen && mode === 'contiguous' && variant === 'default') {
            const grid = variantGrid(options, dtype, Sq);
            // The float64 reference at this length, once per (dtype, Sq): every variant's output is checked against it.
            const want = grid.length > 0 ? reference(qData.values, pattern, elements, qDesc, kDesc) : new Float64Array(0);
            const tol = dtype === 'f16' ? 2e-3 : 1e-4;
            for (const vo of grid) {
              try {
                const vop = await FlashDecode.create(rt, vo);
                const vt = await timeCalls(rt, (pass) => vop.encode(pass, bufs), callsFor(kvBytes), samples);
                await vop.run(bufs);
                const err = maxErr(await readOut(dev, o, dtype), want);
                const g = kvBytes / (vt.ms * 1e6);
                const tv = vop.tiling;
                variants.push({ dtype, Sq, Sk, reduction: tv.reduction, nativeF16: vop.nativeF16, threads: tv.threads, keysPerSlot: tv.keysPerSlot, wordsPerLane: tv.wordsPerLane, prefetch: tv.prefetch, workgroupsPerUnit: tv.workgroupsPerUnit, rowBlock: tv.rowBlock, splits: vop.lastSplits, msPerCall: +vt.ms.toFixed(5), kvGBps: Math.round(g), fractionOfCopy: fraction(g), maxAbsError: err, ok: err <= tol });
                vop.destroy();
              } catch (e) {
                variants.push({ dtype, Sq, Sk, options: { reduction: vo.reduction, nativeF16: vo.nativeF16, threads: vo.threads, keysPerSlot: vo.keysPerSlot, wordsPerLane: vo.wordsPerLane, prefetch: vo.prefetch, workgroupsPerUnit: vo.workgroupsPerUnit }, error: String(e) });
              }
            }
          }
          if (Sk === sweepLen && mode === 'contiguous' && variant === 'default') {
            // The fastest correct variant of this (dtype, S_q), for the other lengths and the paged cache.
            const mine = variants.filter((v) => v.dtype === dtype && v.Sq === Sq && v.ok === true);
            mine.sort((a, b) => (a.msPerCall as number) - (b.msPerCall as number));
            if (mine.length > 0) {
              const w = mine[0] as Required<Knobs>;
              bestKnobs.set(`${dtype}/${Sq}`, { reduction: w.reduction, nativeF16: w.nativeF16, threads: w.threads, keysPerSlot: w.keysPerSlot, prefetch: w.prefetch, workgroupsPerUnit: w.workgroupsPerUnit });
            }
          }
          if (Sk === sweepLen && mode === 'contiguous' && Sq === 1 && variant === 'default') {
            for (const splits of [8, 16, 24, 32, 48, 64, 96, 128, 132].filter((x) => x <= op.tiling.maxSplits)) {
              const st = await timeCalls(rt, (pass) => op.encode(pass, bufs, { splits }), callsFor(kvBytes), samples);
              const g = kvBytes / (st.ms * 1e6);
              splitSweep.push({ dtype, Sk, splits: op.lastSplits, msPerCall: +st.ms.toFixed(5), kvGBps: Math.round(g), fractionOfCopy: fraction(g) });
            }
          }
          op.destroy();
         }
        }
        q.destroy();
        o.destroy();
      }
      cache.destroy();
      write();
      k.destroy();
      v.destroy();
    }
  }
  const md = write();
  console.log(md.join('\n'));
  rt.destroy();
  process.exit(0);
}

main().catch((e) => {
  console.log(JSON.stringify({ error: String(e), stack: (e as Error).stack }));
  process.exit(1);
});
