/**
 * The runner's two KV caches.
 *
 * - {@link PagedLlmKvCache} (the fast path): one {@link PagedKvCache} per layer.
 *   Every layer's pages are written and read in place: the split-KV decode
 *   operator and, for a later chunk of a chunked prefill, the fused prefill
 *   operator read them through the page table (nothing is gathered or copied
 *   back). When a layer's pages fit one pool buffer ({@link PagedLlmKvCache.directWrite})
 *   the runner reserves positions ({@link PagedLlmKvCache.reserve}, i.e.
 *   `PagedKvCache.reserve` per layer) and the RoPE kernel stores each token's
 *   K/V straight into its page slot ({@link PagedLlmKvCache.slot}); otherwise it
 *   writes a `[seq][Hkv][tokens][D]` staging buffer that `PagedKvCache.append`
 *   moves into pages (one copy per (sequence, head, page run), nothing already
 *   cached is copied, nothing is allocated).
 * - {@link ContiguousKvCache} (the standard-attention baseline only): the baseline
 *   reads one contiguous `[1, Hkv, kvLen, D]` tensor per sequence, so the RoPE
 *   kernel writes straight into `[maxBatch][capacity][Hkv][D]` per layer.
 */
import { BufferError, ShapeError } from '../errors.js';
import type { BufferArg } from '../attention/problem.js';
import { NO_PAGE, PagedKvCache, type KvDType } from '../kvcache/pagedKvCache.js';
import type { FastAttentionRuntime } from '../runtime/runtime.js';
import { BufferUsage } from '../runtime/usage.js';

/** Capacities are rounded up to this many tokens so every sequence's slice starts 256-byte aligned. */
export const CAPACITY_MULTIPLE = 64;

export interface LlmKvCacheShape {
  numLayers: number;
  maxBatch: number;
  /** Tokens per sequence: prompt + generated. */
  maxSeqLen: number;
  headsKV: number;
  headDim: number;
  /** Storage type of K and V (the attention operators' dtype). */
  dtype: KvDType;
}

/**
 * One buffer per layer: K as [maxBatch, capacity, Hkv, D] (BSHD: a token's heads
 * are contiguous), then V the same, starting at {@link ContiguousKvCache.vOffsetBytes}
 * (256-byte aligned). Used by the standard-attention baseline.
 */
export class ContiguousKvCache {
  readonly numLayers: number;
  readonly maxBatch: number;
  readonly capacity: number;
  readonly dtype: KvDType;
  /** Byte offset of V in each layer's buffer. */
  readonly vOffsetBytes: number;
  private readonly kv: GPUBuffer[] = [];
  private readonly seqBytes: number;
  private readonly bpe: number;
  private readonly headsKV: number;
  private readonly headDim: number;

  constructor(
    private readonly runtime: FastAttentionRuntime,
    shape: LlmKvCacheShape,
  ) {
    this.numLayers = shape.numLayers;
    this.maxBatch = shape.maxBatch;
    this.dtype = shape.dtype;
    this.headsKV = shape.headsKV;
    this.headDim = shape.headDim;
    const bpe = shape.dtype === 'f16' ? 2 : 4;
    this.bpe = bpe;
    this.capacity = Math.ceil(shape.maxSeqLen / CAPACITY_MULTIPLE) * CAPACITY_MULTIPLE;
    this.seqBytes = this.capacity * shape.headsKV * shape.headDim * bpe;
    const size = shape.maxBatch * this.seqBytes;
    const limit = runtime.capabilities.limits.maxStorageBufferBindingSize;
    if (size > limit)
      throw new ShapeError('maxSeqLen', `a layer's K cache for ${shape.maxBatch} × ${this.capacity} tokens needs ${size} bytes, over maxStorageBufferBindingSize (${limit})`, `maxBatch · maxSeqLen ≤ ${Math.floor(limit / (shape.headsKV * shape.headDim * bpe))} tokens (or the fast attention's paged cache)`);
    this.vOffsetBytes = size;
    for (let l = 0; l < shape.numLayers; l++)
      this.kv.push(runtime.ledger.create('llm.kvCache', { label: `llm.kvCache.layer${l}`, size: 2 * size, usage: BufferUsage.STORAGE | BufferUsage.COPY_SRC }));
  }

  get bytes(): number {
    return 2 * this.numLayers * this.maxBatch * this.seqBytes;
  }


  /** The buffer the RoPE kernel writes layer `l`'s K and V into, and where V starts (elements). */
  layer(l: number): { kv: GPUBuffer; vOffset: number } {
    return { kv: this.kv[l], vOffset: this.vOffsetBytes / this.bpe };
  }

  /** Element index of token `pos` of sequence `seq`, head 0 (heads follow at stride `headDim`). */
  element(seq: number, pos: number): number {
    return (seq * this.capacity + pos) * this.headsKV * this.headDim;
  }

  /** K and V of one sequence as `[1, Hkv, ·, D]` BSHD tensors at byte offsets. */
  sequenceView(l: number, seq: number): { k: BufferArg; v: BufferArg } {
    return { k: { buffer: this.kv[l], offset: seq * this.seqBytes }, v: { buffer: this.kv[l], offset: this.vOffsetBytes + seq * this.seqBytes } };
  }

  destroy(): void {
    for (const b of this.kv) this.runtime.ledger.destroy(b);
    this.kv.length = 0;
  }
}

/** One paged cache per layer, all with the same geometry and the same sequence lengths. */
export class PagedLlmKvCache {
  readonly layers: PagedKvCache[] = [];
  readonly maxBatch: number;
  readonly dtype: KvDType;
  readonly pageTokens: number;
  private readonly headsKV: number;
  private readonly headDim: number;

  constructor(runtime: FastAttentionRuntime, shape: LlmKvCacheShape, pageTokens: number, maxPoolBytes?: number) {
    this.maxBatch = shape.maxBatch;
    this.dtype = shape.dtype;
    this.pageTokens = pageTokens;
    this.headsKV = shape.headsKV;
    this.headDim = shape.headDim;
    try {
      for (let l = 0; l < shape.numLayers; l++)
        this.layers.push(
          PagedKvCache.create(runtime, { sequences: shape.maxBatch, headsKV: shape.headsKV, headDim: shape.headDim, dtype: shape.dtype, pageTokens, maxTokensPerSequence: shape.maxSeqLen, maxBufferBytes: maxPoolBytes }),
        );
    } catch (e) {
      this.destroy();
      throw e;
    }
  }

  get bytes(): number {
    let n = 0;
    for (const c of this.layers) for (const b of c.pools) n += b.size;
    return n;
  }

  /** Every layer's pages live in one pool buffer, so a kernel can write a token's slot directly (otherwise decode appends). */
  get directWrite(): boolean {
    return this.layers.every((c) => c.pools.length === 1);
  }

  /**
   * Grow sequences `[0, batch)` of every layer to `length` tokens (those
   * already that long are left alone) without copying anything:
   * `PagedKvCache.reserve` takes their next pages from each layer's free list.
   * The tokens past what was written are a reservation the caller fills in
   * order (the attention operators read only up to the `kvLengths` they are given).
   *
   * Every layer goes through the same reserve/release sequence, so their free
   * lists, hence their page ids, stay identical: {@link slot} relies on it (one
   * RoPE record per token serves every layer) and this checks it.
   */
  reserve(batch: number, length: number): void {
    // Checked once up front (layers are alike) so a failure leaves every layer unchanged.
    const c0 = this.layers[0];
    if (!Number.isInteger(batch) || batch < 1 || batch > this.maxBatch) throw new ShapeError('batch', `got ${batch}`, `integers in [1, ${this.maxBatch}]`);
    if (!Number.isInteger(length) || length < 0 || length > c0.capacityTokens)
      throw new ShapeError('length', `${length} tokens per sequence`, `integers in [0, ${c0.capacityTokens}] (the cache's capacity per sequence)`);
    let need = 0;
    for (let s = 0; s < batch; s++) need += Math.max(0, Math.ceil(length / this.pageTokens) - Math.ceil(c0.length(s) / this.pageTokens));
    if (need > c0.freePageCount)
      throw new BufferError('cache.pages', `${batch} sequences of ${length} tokens need ${need} more pages per layer, ${c0.freePageCount} are free`, `at most ${c0.freePageCount} more pages per layer`);
    for (const cache of this.layers)
      for (let s = 0; s < batch; s++) {
        const have = cache.length(s);
        if (have < length) cache.reserve(s, length - have);
      }
    const first = this.layers[0];
    for (const cache of this.layers)
      for (let s = 0; s < batch; s++)
        if (cache.pagesOf(s).join() !== first.pagesOf(s).join()) throw new Error('PagedLlmKvCache: layers disagree on page placement');
  }

  /**
   * Where token `pos` of sequence `seq` lives in every layer's pool buffer (all
   * layers place pages alike, see {@link reserve}): element index of its K for
   * head 0, the element distance between heads, and V's distance from K.
   */
  slot(seq: number, pos: number): { element: number; headStride: number; vOffset: number } {
    const cache = this.layers[0];
    const g = cache.geometry;
    const page = cache.pageOf(seq, Math.floor(pos / this.pageTokens));
    if (page === NO_PAGE) throw new ShapeError('pos', `token ${pos} of sequence ${seq} is past its ${cache.length(seq)} cached tokens`, `positions below ${cache.length(seq)}`);
    const bpe = this.dtype === 'f16' ? 2 : 4;
    return { element: cache.byteOffset(page, false, 0, pos % this.pageTokens).offset / bpe, headStride: this.pageTokens * this.headDim, vOffset: (g.headsKV * this.pageTokens * this.headDim) };
  }

  /** Empty every sequence of every layer (pages back to the free lists). */
  reset(): void {
    for (const c of this.layers) for (let s = 0; s < this.maxBatch; s++) if (c.length(s) > 0) c.release(s);
  }

  destroy(): void {
    for (const c of this.layers) c.destroy();
    this.layers.length = 0;
  }
}
