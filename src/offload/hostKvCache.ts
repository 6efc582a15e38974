/**
 * The KV cache of the offloaded layers in host memory. It lives in one shared
 * WebAssembly.Memory (a SharedArrayBuffer underneath) so that the SIMD kernel,
 * in every worker thread, reads it in place. The same memory holds the decode
 * workspace (queries, partial outputs, per-worker scratch, the job control
 * block), laid out once at creation: nothing is allocated per step.
 *
 * Layout per layer: K and V each `[batch, kvHeads, capacity, headDim]` (rows of
 * one KV head are contiguous, so one task streams one range of memory), in f32
 * or f16.
 */
import { ShapeError, UnsupportedError } from '../errors.js';
import { packHalf } from './f16.js';

export type HostKvDType = 'f32' | 'f16';

export interface HostKvCacheOptions {
  layers: number;
  batch: number;
  /** Query heads (sizes the workspace); a multiple of kvHeads. */
  heads: number;
  kvHeads: number;
  /** A multiple of 8 (the kernel's vector width). */
  headDim: number;
  /** Tokens each sequence may hold (prompt + output). */
  capacity: number;
  dtype: HostKvDType;
  /** Worker threads the workspace is sized for. */
  threads: number;
  /** Most key ranges one (sequence, KV head) is split into; default 16. */
  maxSplits?: number;
  /**
   * Host memory the caller lets the cache take, bytes; checked before allocating
   * (a context beyond it is an `UnsupportedError` on `capacity`, not an
   * out-of-memory kill later). Default: no check besides the allocation itself.
   */
  hostMemoryBytes?: number;
}

/** Byte layout of the shared memory. */
export interface HostKvLayout {
  control: number;
  scratch: number;
  scratchPerThread: number;
  query: number;
  partialAcc: number;
  partialStats: number;
  /** Start of layer l's K and V. */
  k: number[];
  v: number[];
  bytes: number;
}

const PAGE = 65536;
/** The module's own globals and stack sit below this; it has no data segment. */
const RESERVED = 65536;
/** Control block: 256 i32 words (see cpuAttention.ts). */
export const CONTROL_WORDS = 256;
/** Keys per block in the kernel (asm/decodeAttention.ts BLOCK). */
export const KERNEL_BLOCK = 64;
const MAX_BYTES = 65536 * PAGE;

function int(field: string, x: unknown, min = 1): number {
  if (typeof x !== 'number' || !Number.isInteger(x) || x < min) throw new ShapeError(field, `must be an integer ≥ ${min}, got ${String(x)}`, `integers ≥ ${min}`);
  return x;
}

export class HostKvCache {
  readonly memory: WebAssembly.Memory;
  readonly layout: HostKvLayout;
  readonly options: Readonly<Required<HostKvCacheOptions>>;
  readonly elementBytes: number;
  /** Tokens held per layer and sequence. */
  readonly lengths: Int32Array[];
  private readonly f32: Float32Array;
  private readonly u16: Uint16Array;

  private constructor(options: Required<HostKvCacheOptions>, layout: HostKvLayout) {
    this.options = options;
    this.layout = layout;
    this.elementBytes = options.dtype === 'f16' ? 2 : 4;
    const pages = layout.bytes / PAGE;
    try {
      this.memory = new WebAssembly.Memory({ initial: pages, maximum: pages, shared: true });
    } catch (e) {
      // V8 reports a failed reservation as a RangeError; keep it typed and early.
      throw new UnsupportedError('capacity', `the host could not allocate ${layout.bytes} bytes of shared memory for the cache (${(e as Error)?.message ?? e})`, 'a smaller capacity, fewer layers per cache, or more host memory');
    }
    this.f32 = new Float32Array(this.memory.buffer);
    this.u16 = new Uint16Array(this.memory.buffer);
    this.lengths = Array.from({ length: options.layers }, () => new Int32Array(options.batch));
  }

  /** Validate, lay out and allocate (bytes = {@link HostKvCache.bytesFor}). */
  static create(options: HostKvCacheOptions): HostKvCache {
    const o = HostKvCache.normalize(options);
    const layout = HostKvCache.layoutFor(o);
    if (options.hostMemoryBytes !== undefined && layout.bytes > options.hostMemoryBytes)
      throw new UnsupportedError('capacity', `the host cache needs ${layout.bytes} bytes, more than the ${options.hostMemoryBytes} bytes of host memory allowed`, `at most ${options.hostMemoryBytes} bytes (a shorter context, or fewer offloaded layers)`);
    assertSharedMemory();
    return new HostKvCache(o, layout);
  }

  /** Bytes of shared memory a cache with these options takes. */
  static bytesFor(options: HostKvCacheOptions): number {
    return HostKvCache.layoutFor(HostKvCache.normalize(options)).bytes;
  }

  /** @internal */
  static normalize(options: HostKvCacheOptions): Required<HostKvCacheOptions> {
    const layers = int('layers', options.layers, 0);
    const batch = int('batch', options.batch);
    const heads = int('heads', options.heads);
    const kvHeads = int('kvHeads', options.kvHeads);
    const headDim = int('headDim', options.headDim);
    if (headDim % 8 !== 0) throw new UnsupportedError('headDim', `${headDim} is not a multiple of 8`, 'multiples of 8 (the SIMD kernel reads 8 lanes at a time)');
    if (heads % kvHeads !== 0) throw new ShapeError('heads', `${heads} query heads is not a multiple of ${kvHeads} KV heads`, `a multiple of ${kvHeads}`);
    const capacity = int('capacity', options.capacity);
    if (options.dtype !== 'f32' && options.dtype !== 'f16') throw new UnsupportedError('dtype', `${JSON.stringify(options.dtype)} is not a host KV type`, 'f32, f16');
    const threads = int('threads', options.threads);
    const maxSplits = int('maxSplits', options.maxSplits ?? 16);
    if (options.hostMemoryBytes !== undefined && !(typeof options.hostMemoryBytes === 'number' && options.hostMemoryBytes > 0))
      throw new ShapeError('hostMemoryBytes', `must be a positive number of bytes, got ${String(options.hostMemoryBytes)}`, 'numbers > 0');
    return { layers, batch, heads, kvHeads, headDim, capacity, dtype: options.dtype, threads, maxSplits, hostMemoryBytes: options.hostMemoryBytes ?? Infinity };
  }

  private static layoutFor(o: Required<HostKvCacheOptions>): HostKvLayout {
    let at = RESERVED;
    const take = (bytes: number): number => {
      const p = at;
      at += Math.ceil(bytes / 64) * 64; // cache-line aligned regions
      return p;
    };
    const G = o.heads / o.kvHeads;
    const control = take(CONTROL_WORDS * 4 + o.batch * 4);
    const scratchPerThread = G * KERNEL_BLOCK * 4;
    const scratch = take(scratchPerThread * o.threads);
    const query = take(o.batch * o.heads * o.headDim * 4);
    const partialAcc = take(o.batch * o.heads * o.maxSplits * o.headDim * 4);
    const partialStats = take(o.batch * o.heads * o.maxSplits * 8);
    const eb = o.dtype === 'f16' ? 2 : 4;
    const tensor = o.batch * o.kvHeads * o.capacity * o.headDim * eb;
    const k: number[] = [];
    const v: number[] = [];
    for (let l = 0; l < o.layers; l++) {
      k.push(take(tensor));
      v.push(take(tensor));
    }
    const bytes = Math.ceil(at / PAGE) * PAGE;
    if (bytes > MAX_BYTES)
      throw new UnsupportedError('capacity', `the host cache needs ${bytes} bytes, beyond one 32-bit WebAssembly memory`, `at most ${MAX_BYTES} bytes per cache (split the offloaded layers over several caches)`);
    return { control, scratch, scratchPerThread, query, partialAcc, partialStats, k, v, bytes };
  }

  private checkLayer(layer: number): void {
    if (!Number.isInteger(layer) || layer < 0 || layer >= this.options.layers) throw new ShapeError('layer', `got ${layer}`, `integers in [0, ${this.options.layers - 1}]`);
  }

  /** Element index of (b, h, token, 0) in a layer's K or V, relative to its start. */
  private row(b: number, h: number, t: number): number {
    const o = this.options;
    return ((b * o.kvHeads + h) * o.capacity + t) * o.headDim;
  }

  private store(base: number, index: number, src: ArrayLike<number>, srcOffset: number, n: number): void {
    if (this.elementBytes === 4) {
      const at = base / 4 + index;
      for (let i = 0; i < n; i++) this.f32[at + i] = src[srcOffset + i];
    } else packHalf(this.u16, base / 2 + index, src, srcOffset, n);
  }

  /**
   * Write `tokens` tokens of every sequence and KV head, starting at token `start`,
   * from K and V laid out `[batch, tokens, kvHeads, headDim]` (BSHD, as a projection
   * writes them) or `[batch, kvHeads, tokens, headDim]` (BHSD). Sets the layer's length.
   */
  writeTokens(layer: number, k: ArrayLike<number>, v: ArrayLike<number>, tokens: number, layout: 'BSHD' | 'BHSD', start = 0): void {
    this.checkLayer(layer);
    const o = this.options;
    const D = o.headDim;
    if (!Number.isInteger(tokens) || tokens < 0 || start + tokens > o.capacity)
      throw new ShapeError('tokens', `${start} + ${tokens} tokens exceed the capacity`, `at most ${o.capacity - start}`);
    const need = o.batch * tokens * o.kvHeads * D;
    if (k.length < need || v.length < need) throw new ShapeError('k', `has ${Math.min(k.length, v.length)} elements`, `at least ${need}`);
    for (let b = 0; b < o.batch; b++) {
      for (let h = 0; h < o.kvHeads; h++) {
        for (let t = 0; t < tokens; t++) {
          const src = layout === 'BSHD' ? ((b * tokens + t) * o.kvHeads + h) * D : ((b * o.kvHeads + h) * tokens + t) * D;
          const dst = this.row(b, h, start + t);
          this.store(this.layout.k[layer], dst, k, src, D);
          this.store(this.layout.v[layer], dst, v, src, D);
        }
      }
      this.lengths[layer][b] = start + tokens;
    }
  }

  /**
   * Append one token to sequences [batchStart, batchStart + batchCount) of a layer;
   * k and v hold `[batchCount, kvHeads, headDim]` from kOffset / vOffset.
   */
  append(layer: number, k: ArrayLike<number>, v: ArrayLike<number>, kOffset = 0, vOffset = 0, batchStart = 0, batchCount = this.options.batch - batchStart): void {
    this.checkLayer(layer);
    const o = this.options;
    if (batchStart < 0 || batchCount < 1 || batchStart + batchCount > o.batch)
      throw new ShapeError('batchStart', `sequences [${batchStart}, ${batchStart + batchCount}) are outside the batch`, `a range inside [0, ${o.batch})`);
    for (let b = batchStart; b < batchStart + batchCount; b++) {
      const t = this.lengths[layer][b];
      if (t >= o.capacity) throw new ShapeError('capacity', `sequence ${b} of layer ${layer} is full (${t} tokens)`, `at most ${o.capacity} tokens`);
      for (let h = 0; h < o.kvHeads; h++) {
        const src = ((b - batchStart) * o.kvHeads + h) * o.headDim;
        this.store(this.layout.k[layer], this.row(b, h, t), k, kOffset + src, o.headDim);
        this.store(this.layout.v[layer], this.row(b, h, t), v, vOffset + src, o.headDim);
      }
      this.lengths[layer][b] = t + 1;
    }
  }

  /**
   * A layer's K or V for one sequence and head, tokens [0, length), as f32
   * `[length, headDim]` (a copy, for tests and the classical-offloading upload).
   */
  read(layer: number, which: 'k' | 'v', b: number, h: number, out?: Float32Array): Float32Array {
    this.checkLayer(layer);
    const o = this.options;
    const n = this.lengths[layer][b] * o.headDim;
    const dst = out ?? new Float32Array(n);
    const base = which === 'k' ? this.layout.k[layer] : this.layout.v[layer];
    const at = this.row(b, h, 0);
    if (this.elementBytes === 4) dst.set(this.f32.subarray(base / 4 + at, base / 4 + at + n));
    else {
      const h16 = this.u16.subarray(base / 2 + at, base / 2 + at + n);
      for (let i = 0; i < n; i++) dst[i] = halfToFloat(h16[i]);
    }
    return dst;
  }

  /** The raw f32 view of a layer's K or V region when the cache is f32 (zero-copy upload source). */
  rawF32(layer: number, which: 'k' | 'v'): Float32Array<SharedArrayBuffer> {
    this.checkLayer(layer);
    if (this.elementBytes !== 4) throw new UnsupportedError('dtype', 'raw f32 views need an f32 cache', 'f32');
    const o = this.options;
    const base = which === 'k' ? this.layout.k[layer] : this.layout.v[layer];
    return new Float32Array(this.memory.buffer as unknown as SharedArrayBuffer, base, o.batch * o.kvHeads * o.capacity * o.headDim);
  }
}

/** Most bytes one host cache (one 32-bit WebAssembly memory) can take. */
export const MAX_HOST_CACHE_BYTES = MAX_BYTES;

/**
 * Throws a typed error when shared WebAssembly memory cannot be used by worker
 * threads: `SharedArrayBuffer` missing, or a page that is not cross-origin
 * isolated (COOP `same-origin` + COEP `require-corp` are needed). Called before
 * anything is allocated or any worker is started, so the failure is never a
 * DataCloneError deep inside a worker. There is no silent single-thread
 * fallback: the caller decides (keep every layer on the GPU, `lCpu = 0`, or
 * serve the page cross-origin isolated).
 */
export function assertSharedMemory(): void {
  const g = globalThis as { SharedArrayBuffer?: unknown; crossOriginIsolated?: boolean };
  if (typeof g.SharedArrayBuffer !== 'function' || g.crossOriginIsolated === false)
    throw new UnsupportedError(
      'SharedArrayBuffer',
      g.crossOriginIsolated === false ? 'the page is not cross-origin isolated, so worker threads cannot share the host KV cache' : 'SharedArrayBuffer is not available, so worker threads cannot share the host KV cache',
      'a cross-origin isolated page (COOP same-origin, COEP require-corp), Node ≥ 20, or no offload (every layer on the GPU)',
    );
}

/** One host cache of a split: layers [layer0, layer0 + layers) and KV heads [kvHead0, kvHead0 + kvHeads). */
export interface HostKvPart {
  layer0: number;
  layers: number;
  kvHead0: number;
  kvHeads: number;
  /** Query heads of this part (kvHeads · heads / kvHeads of the whole). */
  heads: number;
  bytes: number;
}

/**
 * Split a host KV cache too big for one WebAssembly memory (4 GiB) into several
 * {@link HostKvCache}s: as many layers per cache as fit, and when one layer does
 * not fit, its KV heads in equal groups (the fewest groups that fit). Each part
 * gets its own cache and its own {@link CpuAttentionPool}. Throws a typed error
 * when the parts together exceed `hostMemoryBytes`, or when even one KV head of
 * one layer exceeds one memory.
 */
export function splitHostKv(options: HostKvCacheOptions, maxBytesPerCache = MAX_BYTES): HostKvPart[] {
  const o = HostKvCache.normalize({ ...options, layers: Math.max(1, options.layers) });
  const G = o.heads / o.kvHeads;
  const bytes = (layers: number, kvHeads: number): number => HostKvCache.bytesFor({ ...o, layers, kvHeads, heads: kvHeads * G, hostMemoryBytes: undefined });
  const fits = (layers: number, kvHeads: number): boolean => {
    try {
      return bytes(layers, kvHeads) <= maxBytesPerCache;
    } catch {
      return false;
    }
  };
  const parts: HostKvPart[] = [];
  if (options.layers === 0) return parts;
  if (fits(1, o.kvHeads)) {
    let per = 1;
    while (per < o.layers && fits(per + 1, o.kvHeads)) per++;
    for (let l = 0; l < o.layers; l += per) {
      const n = Math.min(per, o.layers - l);
      parts.push({ layer0: l, layers: n, kvHead0: 0, kvHeads: o.kvHeads, heads: o.heads, bytes: bytes(n, o.kvHeads) });
    }
  } else {
    let groups = 2;
    while (groups <= o.kvHeads && (o.kvHeads % groups !== 0 || !fits(1, o.kvHeads / groups))) groups++;
    if (groups > o.kvHeads)
      throw new UnsupportedError('capacity', `one KV head of one layer at ${o.capacity} tokens exceeds one ${maxBytesPerCache}-byte WebAssembly memory`, 'a shorter context or f16 storage');
    const hk = o.kvHeads / groups;
    for (let l = 0; l < o.layers; l++)
      for (let g = 0; g < groups; g++) parts.push({ layer0: l, layers: 1, kvHead0: g * hk, kvHeads: hk, heads: hk * G, bytes: bytes(1, hk) });
  }
  const total = parts.reduce((a, p) => a + p.bytes, 0);
  if (total > o.hostMemoryBytes)
    throw new UnsupportedError('capacity', `the host caches need ${total} bytes, more than the ${o.hostMemoryBytes} bytes of host memory allowed`, `at most ${o.hostMemoryBytes} bytes (a shorter context, or fewer offloaded layers)`);
  return parts;
}

/** f16 bits → f32 by table (built lazily). */
let table: Float32Array | null = null;
function halfToFloat(h: number): number {
  if (!table) {
    table = new Float32Array(65536);
    const s = new Uint32Array(table.buffer);
    for (let i = 0; i < 65536; i++) {
      const sign = (i & 0x8000) << 16;
      const e = (i >>> 10) & 0x1f;
      const m = i & 0x3ff;
      if (e === 0) table[i] = (i & 0x8000 ? -1 : 1) * m * 2 ** -24;
      else if (e === 0x1f) s[i] = sign | 0x7f800000 | (m << 13);
      else s[i] = sign | ((e - 15 + 127) << 23) | (m << 13);
    }
  }
  return table[h];
}
