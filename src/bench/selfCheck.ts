/**
 * A correctness self-check any embedder can run on its own adapter (the demo
 * page and `fastattn check` do): random problems through the fused operator
 * and the baseline, compared with the float64 CPU reference.
 */
import { cpuAttention } from '../reference/cpuAttention.js';
import type { FastAttentionRuntime } from '../runtime/runtime.js';
import { BufferUsage, MapMode } from '../runtime/usage.js';
import { SUPPORTED_HEAD_DIMS, type AttentionDType, type AttentionProblem } from '../attention/problem.js';
import type { KernelTier } from '../attention/tiers.js';
import { Float16Array } from '@petamoriken/float16';

export interface SelfCheckOptions {
  /** Random problems; each runs through the fused operator and the baseline. */
  count?: number;
  /** Storage type; f16 inputs are rounded to f16 before the float64 reference sees them. */
  dtype?: AttentionDType;
  /** Force a fused-kernel tier. */
  tier?: KernelTier;
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

/** Run random cases (every head dim, causal or not, GQA, odd lengths, Sq ≠ Sk, padding) on this device. */
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
  return { tolerance, cases, passed: cases.every((c) => c.passed) };
}
