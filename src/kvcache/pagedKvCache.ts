/**
 * A paged KV cache for one attention call site: K and V of up to `sequences`
 * sequences × `headsKV` heads, stored as fixed-size pages in one or more pool
 * buffers, each within `maxStorageBufferBindingSize`, so a cache can exceed what
 * one binding can address. A page table (u32 per (sequence, logical page))
 * gives each page's global physical id; appending tokens fills the current page
 * and takes a page from the free list when it is full. {@link PagedKvCache.reserve}
 * grows a sequence the same way without copying anything, for writers that store
 * K/V straight into page slots ({@link PagedKvCache.byteOffset}). Existing data is
 * never copied, and no buffer is created after construction.
 *
 * Page layout (words of 16 bytes): `[K: H_kv][pageTokens][D] [V: H_kv][pageTokens][D]`,
 * so one head's keys of a page are contiguous (coalesced reads, one copy per
 * head per page on append).
 *
 * Limit: kernels bind at most {@link MAX_POOL_BUFFERS} pool buffers (WGSL cannot
 * index an array of buffers, and the default WebGPU limit is 8 storage buffers
 * per stage), so a cache holds at most 4 × maxStorageBufferBindingSize bytes.
 */
import { BufferError, ShapeError, UnsupportedError } from '../errors.js';
import type { BufferArg } from '../attention/problem.js';
import type { FastAttentionRuntime } from '../runtime/runtime.js';
import { BufferUsage } from '../runtime/usage.js';
import type { TensorLayout } from '../tiling/layout.js';

/** Most pool buffers a kernel can bind. */
export const MAX_POOL_BUFFERS = 4;

/** Storage type of a KV cache (and of the decode operator's tensors). */
export type KvDType = 'f32' | 'f16';

/** Marks a page-table entry with no page behind it. */
export const NO_PAGE = 0xffffffff;

export interface PagedKvCacheOptions {
  /** Sequences (batch slots) the cache serves. */
  sequences: number;
  /** Key/value heads. */
  headsKV: number;
  /** Head dimension (a multiple of 8). */
  headDim: number;
  /** Storage type; default `f32`. `f16` is decoded in-shader and needs no `shader-f16`. */
  dtype?: KvDType;
  /** Tokens per page (a power of two ≥ 8); default 256. */
  pageTokens?: number;
  /** Most tokens one sequence may hold; default 4096. */
  maxTokensPerSequence?: number;
  /** Physical pages in the pool; default enough for every sequence at its maximum. */
  totalPages?: number;
  /** Cap on one pool buffer's bytes; default the device's maxStorageBufferBindingSize (and maxBufferSize). Tests force it small. */
  maxBufferBytes?: number;
}

export interface PagedKvGeometry {
  sequences: number;
  headsKV: number;
  headDim: number;
  dtype: KvDType;
  pageTokens: number;
  maxPagesPerSequence: number;
  totalPages: number;
  pagesPerBuffer: number;
  /** Bytes of one page (K and V of every head). */
  pageBytes: number;
}

function positiveInt(field: string, x: unknown, allowed = 'integers ≥ 1'): number {
  if (typeof x !== 'number' || !Number.isInteger(x) || x <= 0) throw new ShapeError(field, `must be a positive integer, got ${String(x)}`, allowed);
  return x;
}

export class PagedKvCache {
  readonly geometry: PagedKvGeometry;
  /** The pool buffers (pages `[i·pagesPerBuffer, (i+1)·pagesPerBuffer)` live in buffer i). */
  readonly pools: readonly GPUBuffer[];
  /** `sequences × maxPagesPerSequence` u32: `(pool << 28) | page within the pool` of each logical page ({@link NO_PAGE} if none). */
  readonly pageTable: GPUBuffer;
  private readonly lengthsHost: Uint32Array;
  /** Global physical page of each (sequence, logical page). */
  private readonly pagesHost: Uint32Array<ArrayBuffer>;
  /** The page table as uploaded: pool and page within it. */
  private readonly tableHost: Uint32Array<ArrayBuffer>;
  private readonly pageOwner: Int32Array;
  private readonly freePages: number[];

  private constructor(
    private readonly runtime: FastAttentionRuntime,
    geometry: PagedKvGeometry,
    pools: GPUBuffer[],
    pageTable: GPUBuffer,
  ) {
    this.geometry = geometry;
    this.pools = pools;
    this.pageTable = pageTable;
    this.lengthsHost = new Uint32Array(geometry.sequences);
    this.pagesHost = new Uint32Array(geometry.sequences * geometry.maxPagesPerSequence).fill(NO_PAGE);
    this.tableHost = new Uint32Array(geometry.sequences * geometry.maxPagesPerSequence).fill(NO_PAGE);
    this.pageOwner = new Int32Array(geometry.totalPages).fill(-1);
    // Lowest ids first: short caches stay in the first pool buffer.
    this.freePages = Array.from({ length: geometry.totalPages }, (_, i) => geometry.totalPages - 1 - i);
  }

  /**
   * Validate the geometry against the device and create the pool buffers and the page table (all in the ledger).
   *
   * @example
   * ```ts
   * const cache = PagedKvCache.create(rt, { sequences: 1, headsKV: 8, headDim: 128, dtype: 'f16', maxTokensPerSequence: 131072 });
   * cache.append(encoder, 0, { k: kNew, v: vNew, tokens: 1 });
   * ```
   */
  static create(runtime: FastAttentionRuntime, options: PagedKvCacheOptions): PagedKvCache {
    runtime.assertAlive();
    const sequences = positiveInt('sequences', options.sequences);
    const headsKV = positiveInt('headsKV', options.headsKV);
    const headDim = positiveInt('headDim', options.headDim);
    if (headDim % 8 !== 0 || headDim > 256) throw new UnsupportedError('headDim', `${headDim} is not supported`, 'multiples of 8 up to 256');
    const dtype = options.dtype ?? 'f32';
    if (dtype !== 'f32' && dtype !== 'f16') throw new UnsupportedError('dtype', `${JSON.stringify(dtype)} is not a KV storage type`, 'f32, f16');
    const pageTokens = positiveInt('pageTokens', options.pageTokens ?? 256, 'powers of two ≥ 8');
    if (pageTokens < 8 || (pageTokens & (pageTokens - 1)) !== 0) throw new ShapeError('pageTokens', `${pageTokens} is not a power of two ≥ 8`, 'powers of two ≥ 8');
    const maxTokens = positiveInt('maxTokensPerSequence', options.maxTokensPerSequence ?? 4096);
    const maxPagesPerSequence = Math.ceil(maxTokens / pageTokens);
    const totalPages = positiveInt('totalPages', options.totalPages ?? sequences * maxPagesPerSequence);
    const bytes = dtype === 'f16' ? 2 : 4;
    const pageBytes = 2 * headsKV * pageTokens * headDim * bytes;
    const L = runtime.capabilities.limits;
    const deviceCap = Math.min(L.maxStorageBufferBindingSize, L.maxBufferSize);
    const cap = options.maxBufferBytes === undefined ? deviceCap : positiveInt('maxBufferBytes', options.maxBufferBytes);
    if (cap > deviceCap) throw new BufferError('maxBufferBytes', `${cap} exceeds what one binding can address (${deviceCap})`, `at most ${deviceCap}`);
    const pagesPerBuffer = Math.floor(cap / pageBytes);
    if (pagesPerBuffer < 1) throw new BufferError('pageTokens', `one page needs ${pageBytes} bytes but a pool buffer holds at most ${cap}`, 'smaller pages');
    const buffers = Math.ceil(totalPages / pagesPerBuffer);
    if (buffers > MAX_POOL_BUFFERS)
      throw new BufferError(
        'totalPages',
        `${totalPages} pages of ${pageBytes} bytes need ${buffers} pool buffers of at most ${cap} bytes`,
        `at most ${MAX_POOL_BUFFERS * pagesPerBuffer} pages (${MAX_POOL_BUFFERS} pool buffers)`,
      );
    const geometry: PagedKvGeometry = { sequences, headsKV, headDim, dtype, pageTokens, maxPagesPerSequence, totalPages, pagesPerBuffer, pageBytes };
    const pools: GPUBuffer[] = [];
    for (let i = 0; i < buffers; i++) {
      const pages = Math.min(pagesPerBuffer, totalPages - i * pagesPerBuffer);
      pools.push(runtime.ledger.create('pagedKvCache', { label: `pagedKvCache.pool${i}`, size: pages * pageBytes, usage: BufferUsage.STORAGE | BufferUsage.COPY_DST | BufferUsage.COPY_SRC }));
    }
    const table = new Uint32Array(sequences * maxPagesPerSequence).fill(NO_PAGE);
    const pageTable = runtime.ledger.create('pagedKvCache', { label: 'pagedKvCache.pageTable', size: Math.max(16, table.byteLength), usage: BufferUsage.STORAGE | BufferUsage.COPY_DST });
    runtime.device.queue.writeBuffer(pageTable, 0, table);
    return new PagedKvCache(runtime, geometry, pools, pageTable);
  }

  /** Tokens held by sequence `seq`. */
  length(seq: number): number {
    this.checkSeq('seq', seq);
    return this.lengthsHost[seq];
  }

  /** Tokens held by every sequence (a live view; do not modify). */
  get lengths(): Readonly<Uint32Array> {
    return this.lengthsHost;
  }

  /** Most tokens one sequence can hold. */
  get capacityTokens(): number {
    return this.geometry.maxPagesPerSequence * this.geometry.pageTokens;
  }

  /** Pages on the free list. */
  get freePageCount(): number {
    return this.freePages.length;
  }

  /** Physical pages of a sequence, in logical order. */
  /**
   * Physical page of logical page `i` of sequence `seq` ({@link NO_PAGE} at or
   * past the sequence's pages). Allocates nothing, for per-call checks.
   */
  pageOf(seq: number, i: number): number {
    this.checkSeq('seq', seq);
    const n = Math.ceil(this.lengthsHost[seq] / this.geometry.pageTokens);
    return Number.isInteger(i) && i >= 0 && i < n ? this.pagesHost[seq * this.geometry.maxPagesPerSequence + i] : NO_PAGE;
  }

  pagesOf(seq: number): number[] {
    this.checkSeq('seq', seq);
    const n = Math.ceil(this.lengthsHost[seq] / this.geometry.pageTokens);
    return Array.from(this.pagesHost.subarray(seq * this.geometry.maxPagesPerSequence, seq * this.geometry.maxPagesPerSequence + n));
  }

  /** Byte offset of (physical page, K or V, head, token in page) inside its pool buffer. */
  byteOffset(page: number, isV: boolean, head: number, token: number): { pool: number; offset: number } {
    const g = this.geometry;
    const bytes = g.dtype === 'f16' ? 2 : 4;
    const local = page % g.pagesPerBuffer;
    const rowBytes = g.headDim * bytes;
    return {
      pool: Math.floor(page / g.pagesPerBuffer),
      offset: local * g.pageBytes + (isV ? g.headsKV * g.pageTokens * rowBytes : 0) + (head * g.pageTokens + token) * rowBytes,
    };
  }

  /**
   * Append `tokens` new keys and values to sequence `seq`, recorded as copies in
   * `encoder` (nothing already cached is copied; no buffer is created). Sources
   * hold one sequence: `[H_kv, tokens, D]` (`BHSD`, default) or `[tokens, H_kv, D]`
   * (`BSHD`), in the cache's dtype, with COPY_SRC usage. Every check runs before
   * anything is recorded; new pages' table entries are written through the queue
   * (they precede any later submit).
   */
  append(encoder: GPUCommandEncoder, seq: number, src: { k: BufferArg; v: BufferArg; tokens: number; layout?: TensorLayout }): void {
    this.runtime.assertAlive();
    const g = this.geometry;
    this.checkSeq('seq', seq);
    const tokens = src.tokens;
    const layout = src.layout ?? 'BHSD';
    if (layout !== 'BHSD' && layout !== 'BSHD') throw new UnsupportedError('layout', `unknown layout ${JSON.stringify(layout)}`, 'BHSD, BSHD');
    const { len, have, need } = this.checkGrowth(seq, tokens, 'appending');
    const bytes = g.dtype === 'f16' ? 2 : 4;
    const rowBytes = g.headDim * bytes;
    const srcBytes = tokens * g.headsKV * rowBytes;
    const k = this.resolveSource('k', src.k, srcBytes);
    const v = this.resolveSource('v', src.v, srcBytes);
    if (tokens === 0) return;

    this.takePages(seq, have, need);
    const base = seq * g.maxPagesPerSequence;
    // One copy per (K/V, head, run of tokens inside one page); BSHD sources are token-major, so one per token.
    for (let t = 0; t < tokens; ) {
      const pos = len + t;
      const inPage = pos % g.pageTokens;
      const run = layout === 'BHSD' ? Math.min(tokens - t, g.pageTokens - inPage) : 1;
      const page = this.pagesHost[base + Math.floor(pos / g.pageTokens)];
      for (let h = 0; h < g.headsKV; h++) {
        const from = layout === 'BHSD' ? (h * tokens + t) * rowBytes : (t * g.headsKV + h) * rowBytes;
        const dk = this.byteOffset(page, false, h, inPage);
        const dv = this.byteOffset(page, true, h, inPage);
        encoder.copyBufferToBuffer(k.buffer, k.offset + from, this.pools[dk.pool], dk.offset, run * rowBytes);
        encoder.copyBufferToBuffer(v.buffer, v.offset + from, this.pools[dv.pool], dv.offset, run * rowBytes);
      }
      t += run;
    }
    this.lengthsHost[seq] = len + tokens;
  }

  /**
   * Grow sequence `seq` by `tokens` positions without writing any data: the
   * pages they need come from the free list, the length grows, and only the
   * new page-table entries are uploaded (one `writeBuffer`, ordered before any
   * later submit). The caller stores the K/V of positions `[start, start + tokens)`
   * in their page slots ({@link PagedKvCache.byteOffset}, {@link PagedKvCache.pagesOf})
   * before an operator reads them; operators read only up to the key lengths
   * they are given, so slots still unwritten are harmless until then. Every
   * check runs before anything changes.
   *
   * @returns `start`, the first reserved position (the previous length).
   * @throws {ShapeError} `seq` out of range; `tokens` not an integer ≥ 0 or past the sequence capacity.
   * @throws {BufferError} `cache.pages`: fewer free pages than the growth needs.
   *
   * @example
   * ```ts
   * const start = cache.reserve(0, 16);          // positions [start, start + 16) of sequence 0
   * const page = cache.pagesOf(0)[Math.floor(start / cache.geometry.pageTokens)];
   * const { pool, offset } = cache.byteOffset(page, false, 0, start % cache.geometry.pageTokens);
   * ```
   */
  reserve(seq: number, tokens: number): number {
    this.runtime.assertAlive();
    this.checkSeq('seq', seq);
    const { len, have, need } = this.checkGrowth(seq, tokens, 'reserving');
    this.takePages(seq, have, need);
    this.lengthsHost[seq] = len + tokens;
    return len;
  }

  /**
   * Give sequence `seq` an explicit page list (e.g. restoring a cache or moving
   * a sequence between slots): `pages[i]` holds tokens `[i·pageTokens, …)`.
   * Its previous pages return to the free list; the given pages must be free
   * (or already its own), distinct and in range.
   */
  assignPages(seq: number, pages: ArrayLike<number>, length: number): void {
    const g = this.geometry;
    this.checkSeq('seq', seq);
    if (pages.length > g.maxPagesPerSequence)
      throw new ShapeError('pages', `${pages.length} pages exceed the ${g.maxPagesPerSequence} logical pages of a sequence`, `at most ${g.maxPagesPerSequence} entries`);
    const seen = new Set<number>();
    for (let i = 0; i < pages.length; i++) {
      const p = pages[i];
      if (!Number.isInteger(p) || p < 0 || p >= g.totalPages) throw new ShapeError(`pages[${i}]`, `page ${p} is out of range`, `integers in [0, ${g.totalPages - 1}]`);
      if (seen.has(p)) throw new ShapeError(`pages[${i}]`, `page ${p} is listed twice`, 'distinct pages');
      if (this.pageOwner[p] !== -1 && this.pageOwner[p] !== seq) throw new ShapeError(`pages[${i}]`, `page ${p} belongs to sequence ${this.pageOwner[p]}`, 'free pages or pages of this sequence');
      seen.add(p);
    }
    if (!Number.isInteger(length) || length < 0 || length > pages.length * g.pageTokens)
      throw new ShapeError('length', `${length} tokens do not fit in ${pages.length} pages`, `integers in [0, ${pages.length * g.pageTokens}]`);
    if (Math.ceil(length / g.pageTokens) !== pages.length)
      throw new ShapeError('pages', `${pages.length} pages for ${length} tokens`, `exactly ${Math.ceil(length / g.pageTokens)} pages`);
    this.release(seq);
    for (const p of seen) {
      const at = this.freePages.indexOf(p);
      this.freePages.splice(at, 1);
      this.pageOwner[p] = seq;
    }
    const base = seq * g.maxPagesPerSequence;
    for (let i = 0; i < pages.length; i++) this.setEntry(base + i, pages[i]);
    this.runtime.device.queue.writeBuffer(this.pageTable, base * 4, this.tableHost, base, g.maxPagesPerSequence);
    this.lengthsHost[seq] = length;
  }

  /** Empty sequence `seq` and return its pages to the free list (no GPU work besides the page-table write). */
  release(seq: number): void {
    const g = this.geometry;
    this.checkSeq('seq', seq);
    const base = seq * g.maxPagesPerSequence;
    for (let i = 0; i < g.maxPagesPerSequence; i++) {
      const p = this.pagesHost[base + i];
      if (p === NO_PAGE) continue;
      this.pageOwner[p] = -1;
      this.freePages.push(p);
      this.setEntry(base + i, NO_PAGE);
    }
    this.runtime.device.queue.writeBuffer(this.pageTable, base * 4, this.tableHost, base, g.maxPagesPerSequence);
    this.lengthsHost[seq] = 0;
  }

  /** Destroy the pool buffers and the page table. */
  destroy(): void {
    for (const b of this.pools) this.runtime.ledger.destroy(b);
    this.runtime.ledger.destroy(this.pageTable);
  }

  /** Pages and length a growth of `tokens` needs; throws (before any change) past the capacity or the free pages. */
  private checkGrowth(seq: number, tokens: number, verb: string): { len: number; have: number; need: number } {
    const g = this.geometry;
    if (!Number.isInteger(tokens) || tokens < 0) throw new ShapeError('tokens', `must be a non-negative integer, got ${tokens}`, 'integers ≥ 0');
    const len = this.lengthsHost[seq];
    if (len + tokens > this.capacityTokens)
      throw new ShapeError('tokens', `sequence ${seq} holds ${len} tokens; ${tokens} more exceed its capacity of ${this.capacityTokens}`, `at most ${this.capacityTokens - len}`);
    const have = Math.ceil(len / g.pageTokens);
    const need = Math.ceil((len + tokens) / g.pageTokens) - have;
    if (need > this.freePages.length)
      throw new BufferError('cache.pages', `${verb} ${tokens} tokens needs ${need} free pages, ${this.freePages.length} are left`, `at most ${this.freePages.length * g.pageTokens + (have * g.pageTokens - len)} more tokens`);
    return { len, have, need };
  }

  /** Give sequence `seq` logical pages `[have, have + need)` from the free list and upload just those table entries. */
  private takePages(seq: number, have: number, need: number): void {
    if (need === 0) return;
    const base = seq * this.geometry.maxPagesPerSequence;
    for (let p = 0; p < need; p++) {
      const page = this.freePages.pop()!;
      this.pageOwner[page] = seq;
      this.setEntry(base + have + p, page);
    }
    this.runtime.device.queue.writeBuffer(this.pageTable, (base + have) * 4, this.tableHost, base + have, need);
  }

  private setEntry(at: number, page: number): void {
    this.pagesHost[at] = page;
    const ppb = this.geometry.pagesPerBuffer;
    this.tableHost[at] = page === NO_PAGE ? NO_PAGE : ((Math.floor(page / ppb) << 28) | page % ppb) >>> 0;
  }

  private checkSeq(field: string, seq: number): void {
    if (!Number.isInteger(seq) || seq < 0 || seq >= this.geometry.sequences)
      throw new ShapeError(field, `sequence ${seq} is out of range`, `integers in [0, ${this.geometry.sequences - 1}]`);
  }

  private resolveSource(field: string, arg: BufferArg | undefined, bytes: number): { buffer: GPUBuffer; offset: number } {
    if (!arg) throw new BufferError(field, 'is missing', 'a GPUBuffer or { buffer, offset }');
    const wrapped = 'buffer' in arg;
    const buffer = wrapped ? arg.buffer : arg;
    const offset = wrapped ? (arg.offset ?? 0) : 0;
    if (!buffer || typeof (buffer as GPUBuffer).usage !== 'number') throw new BufferError(field, 'is not a GPUBuffer', 'a GPUBuffer or { buffer, offset }');
    if ((buffer.usage & BufferUsage.COPY_SRC) === 0) throw new BufferError(`${field}.usage`, 'lacks GPUBufferUsage.COPY_SRC', 'buffers created with COPY_SRC usage');
    if (!Number.isInteger(offset) || offset < 0 || offset % 4 !== 0) throw new BufferError(`${field}.offset`, `${offset} is not a multiple of 4`, 'non-negative multiples of 4');
    if (offset + bytes > buffer.size) throw new BufferError(`${field}.size`, `needs ${bytes} bytes at offset ${offset} but the buffer has ${buffer.size}`, `buffers of at least ${offset + bytes} bytes`);
    return { buffer, offset };
  }
}
