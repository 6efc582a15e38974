/**
 * A correctness self-check any embedder can run on its own adapter (the demo
 * page and `fastattn check` do): random problems through the fused operator
 * and the baseline, compared with the float64 CPU reference.
 */
import { cpuAttention } from '../reference/cpuAttention.js';
import type { FastAttentionRuntime } from '../runtime/runtime.js';
import { BufferUsage, MapMode } from '../runtime/usage.js';
import { normalizeProblem, SUPPORTED_HEAD_DIMS, type AttentionDType, type AttentionProblem } from '../attention/problem.js';
import { PagedKvCache } from '../kvcache/pagedKvCache.js';
import type { KernelTier } from '../attention/tiers.js';
import { Float16Array } from '@petamoriken/float16';

export interface SelfCheckOptions {
  /** Random problems; each runs through the fused operator and the baseline. */
  count?: number;
  /** Storage type; f16 inputs are rounded to f16 before the float64 reference sees them. */
  dtype?: AttentionDType;
  /** Force a fused-kernel tier. */
  tier?: KernelTier;
  /** Chunked-prefill cases through a paged KV cache split over two pool buffers; default one per 8 random cases (`fastattn check --cases 24`: 3). */
  pagedCount?: number;
  /** Max abs error allowed; default 1e-4 for f32, 2e-3 for f16. */
  tolerance?: number;
  onCase?: (c: SelfCheckCase, i: number) => void;
}

export interface SelfCheckCase {
  label: string;
  /** `fused (<tier>)` or `standard`. */
  variant: string;
  maxAbsError: number;
  passed: boolean;
}

export interface SelfCheckReport {
  tolerance: number;
  cases: SelfCheckCase[];
  passed: boolean;
}

function lcg(seed: number): () => number {
  let x = seed >>> 0;
  return () => {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    return x / 2 ** 32;
  };
}

async function read(device: GPUDevice, src: GPUBuffer, bytes: number): Promise<ArrayBuffer> {
  const staging = device.createBuffer({ size: bytes, usage: BufferUsage.MAP_READ | BufferUsage.COPY_DST });
  const enc = device.createCommandEncoder();
  enc.copyBufferToBuffer(src, 0, staging, 0, bytes);
  device.queue.submit([enc.finish()]);
  await staging.mapAsync(MapMode.READ);
  const out = staging.getMappedRange().slice(0);
  staging.destroy();
  return out;
}

/**
 * One chunked-prefill case through the paged KV cache: each sequence's prefix and
 * then its S_q new tokens are appended (two pool buffers, pages interleaved across
 * sequences), and the S_q queries attend to all of it.
 */
async function pagedCase(rt: FastAttentionRuntime, dtype: AttentionDType, tier: KernelTier | undefined, rand: () => number, tolerance: number, i: number): Promise<SelfCheckCase> {
  const dev = rt.device;
  const D = i % 2 === 0 ? 64 : 128;
  const B = 1 + Math.floor(rand() * 2);
  const Hkv = 1 + Math.floor(rand() * 2);
  const Hq = Hkv * (1 + Math.floor(rand() * 3));
  const Sq = 1 + Math.floor(rand() * 100);
  const causal = rand() < 0.7;
  const pageTokens = i % 2 === 0 ? 16 : 32;
  const maxTokens = 256;
  const prefix = Array.from({ length: B }, () => Math.floor(rand() * 120));
  const lengths = prefix.map((n) => n + Sq);
  const bpe = dtype === 'f16' ? 2 : 4;
  const pageBytes = 2 * Hkv * pageTokens * D * bpe;
  const cache = PagedKvCache.create(rt, {
    sequences: B, headsKV: Hkv, headDim: D, dtype, pageTokens, maxTokensPerSequence: maxTokens,
    maxBufferBytes: Math.ceil((B * maxTokens) / pageTokens / 2) * pageBytes,
  });
  const make = (n: number) => {
    const values = Float32Array.from({ length: n }, () => 2 * rand() - 1);
    if (dtype === 'f32') return { bytes: values, values };
    const half = Float16Array.from(values);
    return { bytes: new Uint16Array(half.buffer), values: Float32Array.from(half) };
  };
  const temps: GPUBuffer[] = [];
  const upload = (data: ArrayBufferView<ArrayBuffer>) => {
    const b = dev.createBuffer({ size: Math.max(16, Math.ceil(data.byteLength / 4) * 4), usage: BufferUsage.STORAGE | BufferUsage.COPY_DST | BufferUsage.COPY_SRC });
    dev.queue.writeBuffer(b, 0, data);
    temps.push(b);
    return b;
  };
  // Reference K/V: contiguous BHSD [B, Hkv, Smax, D], zero past each length.
  const Smax = Math.max(...lengths);
  const kRef = new Float32Array(B * Hkv * Smax * D);
  const vRef = new Float32Array(B * Hkv * Smax * D);
  for (const chunk of ['prefix', 'new'] as const) {
    const enc = dev.createCommandEncoder();
    for (let b = 0; b < B; b++) {
      const from = chunk === 'prefix' ? 0 : prefix[b];
      const tokens = chunk === 'prefix' ? prefix[b] : Sq;
      if (tokens === 0) continue;
      const k = make(Hkv * tokens * D);
      const v = make(Hkv * tokens * D);
      for (let h = 0; h < Hkv; h++) {
        kRef.set(k.values.subarray(h * tokens * D, (h + 1) * tokens * D), ((b * Hkv + h) * Smax + from) * D);
        vRef.set(v.values.subarray(h * tokens * D, (h + 1) * tokens * D), ((b * Hkv + h) * Smax + from) * D);
      }
      cache.append(enc, b, { k: upload(k.bytes), v: upload(v.bytes), tokens });
    }
    dev.queue.submit([enc.finish()]);
  }
  const shapeQ = [B, Hq, Sq, D] as const;
  const op = await rt.createPrefill({ q: { shape: shapeQ }, cache, causal, dtype, tier });
  const q = make(B * Hq * Sq * D);
  const o = dev.createBuffer({ size: Math.ceil((q.values.length * bpe) / 4) * 4, usage: BufferUsage.STORAGE | BufferUsage.COPY_SRC });
  await op.run({ q: upload(q.bytes), o });
  const raw = await read(dev, o, o.size);
  const out = dtype === 'f32' ? new Float32Array(raw) : new Float16Array(raw);
  const p = normalizeProblem({ q: { shape: shapeQ }, k: { shape: [B, Hkv, Smax, D] }, v: { shape: [B, Hkv, Smax, D] }, causal, dtype });
  const ref = cpuAttention(p, q.values, kRef, vRef, lengths);
  let err = 0;
  for (let j = 0; j < p.elements.o; j++) {
    const d = Math.abs(out[j] - ref[j]);
    err = d > err || Number.isNaN(d) ? (Number.isNaN(d) ? Infinity : d) : err;
  }
  op.destroy();
  cache.destroy();
  o.destroy();
  for (const t of temps) t.destroy();
  return {
    label: `B${B} Hq${Hq} Hkv${Hkv} Sq${Sq} prefix ${prefix.join('/')} D${D} pages of ${pageTokens} × ${cache.pools.length} pools ${dtype}${causal ? ' causal' : ''}`,
    variant: `fused paged (${op.tier.tier})`,
    maxAbsError: err,
    passed: err <= tolerance,
  };
}

/** Run random cases (every head dim, causal or not, GQA, odd lengths, Sq ≠ Sk, padding, chunked prefill through a paged cache) on this device. */
export async function selfCheck(rt: FastAttentionRuntime, options: SelfCheckOptions = {}): Promise<SelfCheckReport> {
  const count = options.count ?? 12;
  const dtype = options.dtype ?? 'f32';
  const tolerance = options.tolerance ?? (dtype === 'f16' ? 2e-3 : 1e-4);
  const rand = lcg(2024);
  const cases: SelfCheckCase[] = [];
  const dev = rt.device;
  for (let i = 0; i < count; i++) {
    const D = SUPPORTED_HEAD_DIMS[i % SUPPORTED_HEAD_DIMS.length];
    const B = 1 + Math.floor(rand() * 2);
    const Hkv = 1 + Math.floor(rand() * 2);
    const Hq = Hkv * (1 + Math.floor(rand() * 2));
    const Sq = 1 + Math.floor(rand() * 150);
    const Sk = Sq + Math.floor(rand() * 60);
    const causal = rand() < 0.6;
    const kvLengths = rand() < 0.3 ? Array.from({ length: B }, () => Math.floor(rand() * (Sk + 1))) : undefined;
    const shapeQ = [B, Hq, Sq, D] as const;
    const shapeK = [B, Hkv, Sk, D] as const;
    const layout = rand() < 0.5 ? 'BHSD' : 'BSHD';
    const opts = { q: { shape: shapeQ, layout }, k: { shape: shapeK, layout }, v: { shape: shapeK, layout }, causal, dtype } as const;
    const fused = await rt.createPrefill({ ...opts, tier: options.tier });
    const p: AttentionProblem = fused.problem;
    // Data as stored (f16-rounded for f16) and the same values as numbers for the reference.
    const make = (n: number) => {
      const values = Float32Array.from({ length: n }, () => 2 * rand() - 1);
      if (dtype === 'f32') return { bytes: values, values };
      const half = Float16Array.from(values);
      return { bytes: new Uint16Array(half.buffer), values: Float32Array.from(half) };
    };
    const q = make(p.elements.q);
    const k = make(p.elements.k);
    const v = make(p.elements.v);
    const buf = (data: ArrayBufferView<ArrayBuffer> | null, n: number) => {
      const b = dev.createBuffer({ size: Math.ceil((n * p.bytesPerElement) / 4) * 4, usage: BufferUsage.STORAGE | BufferUsage.COPY_DST | BufferUsage.COPY_SRC });
      if (data) dev.queue.writeBuffer(b, 0, data);
      return b;
    };
    const bufs = { q: buf(q.bytes, q.values.length), k: buf(k.bytes, k.values.length), v: buf(v.bytes, v.values.length), o: buf(null, p.elements.o) };
    const ref = cpuAttention(p, q.values, k.values, v.values, kvLengths);
    const standard = await rt.createStandardAttention({ ...opts, kvLengths });
    for (const [variant, op] of [[`fused (${fused.tier.tier})`, fused], ['standard', standard]] as const) {
      await op.run(bufs, { kvLengths });
      const raw = await read(dev, bufs.o, bufs.o.size);
      const out = dtype === 'f32' ? new Float32Array(raw) : new Float16Array(raw);
      let err = 0;
      for (let j = 0; j < p.elements.o; j++) {
        const d = Math.abs(out[j] - ref[j]);
        err = d > err || Number.isNaN(d) ? (Number.isNaN(d) ? Infinity : d) : err;
      }
      const c = { label: `B${B} Hq${Hq} Hkv${Hkv} Sq${Sq} Sk${Sk} D${D} ${layout} ${dtype}${causal ? ' causal' : ''}${kvLengths ? ' varlen' : ''}`, variant, maxAbsError: err, passed: err <= tolerance };
      cases.push(c);
      options.onCase?.(c, cases.length - 1);
    }
    fused.destroy();
    standard.destroy();
    for (const b of Object.values(bufs)) b.destroy();
  }
  const paged = options.pagedCount ?? Math.floor(count / 8);
  for (let i = 0; i < paged; i++) {
    const c = await pagedCase(rt, dtype, options.tier, rand, tolerance, i);
    cases.push(c);
    options.onCase?.(c, cases.length - 1);
  }
  return { tolerance, cases, passed: cases.every((c) => c.passed) };
}
