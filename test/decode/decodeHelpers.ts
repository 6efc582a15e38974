/** Helpers shared by the decode and KV-cache tests: f16 packing, reference inputs, random decode cases. */
import { normalizeProblem, type AttentionProblem } from '../../src/attention/problem.js';
import { cpuAttention } from '../../src/reference/cpuAttention.js';
import type { TensorLayout } from '../../src/tiling/layout.js';
import { readback, upload } from '../helpers/gpu.js';

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** IEEE binary16 bits of x, rounded to nearest even. */
export function toHalfBits(x: number): number {
  f32[0] = x;
  const b = u32[0];
  const sign = (b >>> 16) & 0x8000;
  const e = ((b >>> 23) & 0xff) - 127 + 15;
  let m = b & 0x7fffff;
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    m = (m | 0x800000) >>> (1 - e);
    return sign | ((m + 0x1000) >>> 13);
  }
  let h = sign | (e << 10) | (m >>> 13);
  const rest = m & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && (h & 1) === 1)) h++;
  return h;
}

export function fromHalfBits(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >>> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

/** Values as the GPU will see them in `dtype` storage (f16: rounded). */
export function quantize(x: Float32Array<ArrayBuffer>, dtype: 'f32' | 'f16'): Float32Array<ArrayBuffer> {
  if (dtype === 'f32') return x;
  return Float32Array.from(x, (v) => fromHalfBits(toHalfBits(v)));
}

/** Bytes of `x` in `dtype` storage, as u32 words (f16 element counts are even here). */
export function storageWords(x: Float32Array<ArrayBuffer>, dtype: 'f32' | 'f16'): Uint32Array<ArrayBuffer> {
  if (dtype === 'f32') return new Uint32Array(x.buffer.slice(0));
  const halves = new Uint16Array(Math.ceil(x.length / 2) * 2);
  for (let i = 0; i < x.length; i++) halves[i] = toHalfBits(x[i]);
  return new Uint32Array(halves.buffer);
}

export function uploadAs(device: GPUDevice, x: Float32Array<ArrayBuffer>, dtype: 'f32' | 'f16'): GPUBuffer {
  return upload(device, storageWords(x, dtype));
}

/** Read `elements` values of `dtype` storage back as numbers. */
export async function readAs(device: GPUDevice, buffer: GPUBuffer, elements: number, dtype: 'f32' | 'f16'): Promise<Float32Array> {
  const bytes = Math.ceil((elements * (dtype === 'f16' ? 2 : 4)) / 4) * 4;
  const raw = await readback(device, buffer, bytes);
  if (dtype === 'f32') return raw.subarray(0, elements);
  const halves = new Uint16Array(raw.buffer, raw.byteOffset, elements);
  return Float32Array.from(halves, fromHalfBits);
}

/** The float64 reference for decode: attention with small Sq, causal aligned to the end of each sequence's keys. */
export function referenceDecode(
  shape: { B: number; Hq: number; Hkv: number; Sq: number; Sk: number; D: number },
  layouts: { q: TensorLayout; k: TensorLayout; o: TensorLayout },
  causal: boolean,
  q: ArrayLike<number>,
  k: ArrayLike<number>,
  v: ArrayLike<number>,
  kvLengths: ArrayLike<number>,
): { out: Float64Array; problem: AttentionProblem } {
  const { B, Hq, Hkv, Sq, Sk, D } = shape;
  const problem = normalizeProblem({
    q: { shape: [B, Hq, Sq, D], layout: layouts.q },
    k: { shape: [B, Hkv, Sk, D], layout: layouts.k },
    v: { shape: [B, Hkv, Sk, D], layout: layouts.k },
    o: { shape: [B, Hq, Sq, D], layout: layouts.o },
    causal,
  });
  return { out: cpuAttention(problem, q, k, v, kvLengths), problem };
}

/** The `field` of the typed error `f` throws ('no error' if none, 'untyped: …' for other errors). */
export function fieldOf(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    return (e as { field?: string }).field ?? `untyped: ${String(e)}`;
  }
  return 'no error';
}
