/**
 * The safetensors format, read and written: an 8-byte little-endian header
 * length, a JSON header mapping names to { dtype, shape, data_offsets }, then
 * the raw little-endian data. Written here rather than taken from npm because
 * the only package of that name (`safetensors@0.0.1`) is an unmaintained stub.
 * Every offset is checked against the file, so a truncated download names the
 * first tensor it cuts.
 */
import { CheckpointError } from './errors.js';

/** Element types the runner loads. */
export type SafetensorsDType = 'F32' | 'F16' | 'BF16';
export const SAFETENSORS_DTYPES: readonly SafetensorsDType[] = ['F32', 'F16', 'BF16'];
const BYTES: Record<SafetensorsDType, number> = { F32: 4, F16: 2, BF16: 2 };

/** One tensor of a parsed file; `data` is a view into the file's bytes. */
export interface SafetensorsTensor {
  name: string;
  dtype: SafetensorsDType;
  shape: number[];
  data: Uint8Array;
}

export interface SafetensorsFile {
  tensors: Map<string, SafetensorsTensor>;
  metadata: Record<string, string>;
}

/** Headers beyond this are not a safetensors file (the reference implementation caps at 100 MB). */
const MAX_HEADER = 100_000_000;

/** Parse a safetensors file held in memory. `file` names it in errors. */
export function parseSafetensors(bytes: Uint8Array, file = 'model.safetensors'): SafetensorsFile {
  if (bytes.byteLength < 8) throw new CheckpointError('truncated', file, `has ${bytes.byteLength} bytes, fewer than the 8-byte header length`, 'a complete safetensors file');
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerLen = Number(view.getBigUint64(0, true));
  if (headerLen > MAX_HEADER) throw new CheckpointError('header', file, `declares a ${headerLen}-byte header`, `headers of at most ${MAX_HEADER} bytes`);
  if (8 + headerLen > bytes.byteLength)
    throw new CheckpointError('truncated', file, `declares a ${headerLen}-byte header but only ${bytes.byteLength - 8} bytes follow`, 'a complete safetensors file');
  let header: Record<string, unknown>;
  try {
    header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + headerLen))) as Record<string, unknown>;
  } catch (e) {
    throw new CheckpointError('header', file, `header is not JSON (${(e as Error).message})`, 'a JSON object header');
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) throw new CheckpointError('header', file, 'header is not a JSON object', 'a JSON object header');
  const dataStart = 8 + headerLen;
  const dataLen = bytes.byteLength - dataStart;
  const tensors = new Map<string, SafetensorsTensor>();
  let metadata: Record<string, string> = {};
  for (const [name, entry] of Object.entries(header)) {
    if (name === '__metadata__') {
      metadata = (entry ?? {}) as Record<string, string>;
      continue;
    }
    const e = entry as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (typeof e !== 'object' || e === null) throw new CheckpointError('header', name, 'header entry is not an object', '{ dtype, shape, data_offsets }');
    if (!SAFETENSORS_DTYPES.includes(e.dtype as SafetensorsDType))
      throw new CheckpointError('dtype', name, `dtype ${JSON.stringify(e.dtype)} is not loadable`, SAFETENSORS_DTYPES.join(', '));
    const dtype = e.dtype as SafetensorsDType;
    if (!Array.isArray(e.shape) || !e.shape.every((x) => Number.isInteger(x) && x >= 0))
      throw new CheckpointError('header', name, `shape ${JSON.stringify(e.shape)} is not a list of sizes`, 'non-negative integers');
    const shape = e.shape as number[];
    const offs = e.data_offsets;
    if (!Array.isArray(offs) || offs.length !== 2 || !offs.every((x) => Number.isInteger(x) && x >= 0) || offs[1] < offs[0])
      throw new CheckpointError('header', name, `data_offsets ${JSON.stringify(offs)} are not [begin, end]`, '[begin, end] with 0 ≤ begin ≤ end');
    const [begin, end] = offs as [number, number];
    const expected = shape.reduce((a, b) => a * b, 1) * BYTES[dtype];
    if (end - begin !== expected)
      throw new CheckpointError('header', name, `data_offsets span ${end - begin} bytes but ${dtype}${JSON.stringify(shape)} needs ${expected}`, `${expected} bytes`);
    if (end > dataLen)
      throw new CheckpointError('truncated', name, `data ends at byte ${end} of the data section but ${file} has only ${dataLen} data bytes`, 'a complete safetensors file');
    tensors.set(name, { name, dtype, shape, data: bytes.subarray(dataStart + begin, dataStart + end) });
  }
  return { tensors, metadata };
}

/** A tensor to write: f32 values, or raw 16-bit words for F16/BF16. */
export interface TensorToWrite {
  name: string;
  dtype: SafetensorsDType;
  shape: number[];
  data: Float32Array | Uint16Array;
}

/** Serialize tensors (in the given order) into one safetensors file. */
export function serializeSafetensors(tensors: readonly TensorToWrite[], metadata: Record<string, string> = {}): Uint8Array {
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length > 0) header.__metadata__ = metadata;
  let offset = 0;
  for (const t of tensors) {
    const bytes = t.data.byteLength;
    const expected = t.shape.reduce((a, b) => a * b, 1) * BYTES[t.dtype];
    if (bytes !== expected) throw new CheckpointError('shape', t.name, `has ${bytes} bytes but ${t.dtype}${JSON.stringify(t.shape)} needs ${expected}`, `${expected} bytes`);
    if ((t.dtype === 'F32') !== t.data instanceof Float32Array) throw new CheckpointError('dtype', t.name, `${t.dtype} data must be a ${t.dtype === 'F32' ? 'Float32Array' : 'Uint16Array'}`, 'matching typed arrays');
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = JSON.stringify(header);
  // Pad with spaces so the data section starts 8-byte aligned, as the reference writer does.
  json += ' '.repeat((8 - ((8 + new TextEncoder().encode(json).byteLength) % 8)) % 8);
  const headerBytes = new TextEncoder().encode(json);
  const out = new Uint8Array(8 + headerBytes.byteLength + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(headerBytes.byteLength), true);
  out.set(headerBytes, 8);
  let at = 8 + headerBytes.byteLength;
  for (const t of tensors) {
    out.set(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength), at);
    at += t.data.byteLength;
  }
  return out;
}

const f32Scratch = new Float32Array(1);
const u32Scratch = new Uint32Array(f32Scratch.buffer);

/** IEEE binary16 bits → number. */
export function f16ToF32(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

/** number → IEEE binary16 bits, round to nearest even (overflow to ±∞). */
export function f32ToF16(x: number): number {
  f32Scratch[0] = x;
  const f = u32Scratch[0];
  const sign = (f >>> 16) & 0x8000;
  const exp = (f >>> 23) & 0xff;
  let mant = f & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  let e = exp - 127 + 15;
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    const half = 1 << (shift - 1);
    let r = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    if (rem > half || (rem === half && (r & 1))) r++;
    return sign | r;
  }
  let r = mant >>> 13;
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (r & 1))) {
    r++;
    if (r === 0x400) {
      r = 0;
      e++;
      if (e >= 31) return sign | 0x7c00;
    }
  }
  return sign | (e << 10) | r;
}

/** bfloat16 bits → number (exact). */
export function bf16ToF32(h: number): number {
  u32Scratch[0] = h << 16;
  return f32Scratch[0];
}

/** A tensor's values as f32, whatever its stored dtype. */
export function tensorToF32(t: SafetensorsTensor): Float32Array<ArrayBuffer> {
  const n = t.data.byteLength / BYTES[t.dtype];
  const view = new DataView(t.data.buffer, t.data.byteOffset, t.data.byteLength);
  const out = new Float32Array(n);
  if (t.dtype === 'F32') for (let i = 0; i < n; i++) out[i] = view.getFloat32(4 * i, true);
  else if (t.dtype === 'F16') for (let i = 0; i < n; i++) out[i] = f16ToF32(view.getUint16(2 * i, true));
  else for (let i = 0; i < n; i++) out[i] = bf16ToF32(view.getUint16(2 * i, true));
  return out;
}

/** A tensor's values as binary16 words (F16 copied, others rounded to nearest even). */
export function tensorToF16(t: SafetensorsTensor): Uint16Array<ArrayBuffer> {
  const n = t.data.byteLength / BYTES[t.dtype];
  const view = new DataView(t.data.buffer, t.data.byteOffset, t.data.byteLength);
  const out = new Uint16Array(n);
  if (t.dtype === 'F16') for (let i = 0; i < n; i++) out[i] = view.getUint16(2 * i, true);
  else {
    const f = tensorToF32(t);
    for (let i = 0; i < n; i++) out[i] = f32ToF16(f[i]);
  }
  return out;
}
