/**
 * The KV cache interface of the runner and its contiguous implementation.
 *
 * The runner never computes a cache address itself: the RoPE kernel writes a
 * token's K and V at `slot(seq, pos) · Hkv · D` of the layer's buffers, and the
 * attention operators read the views this object describes. A cache whose
 * token vectors are not slot-major (the paged cache of src/kvcache stores each
 * page head-major) plugs in by giving step-local slots into a staging buffer and
 * appending from it; see src/llm/EMBEDDING.md.
 */
import { ShapeError } from '../errors.js';
import type { BufferArg } from '../attention/problem.js';
import type { TensorDesc } from '../tiling/layout.js';
import type { FastAttentionRuntime } from '../runtime/runtime.js';
import { BufferUsage } from '../runtime/usage.js';

export interface KvCache {
  /** Sequences the cache holds at once. */
  readonly maxBatch: number;
  /** Tokens each sequence may hold (prompt + generated). */
  readonly capacity: number;
  readonly numLayers: number;
  /** The buffers the RoPE kernel writes layer `l`'s K and V into (f32, slot-major, Hkv·D per slot). */
  layer(l: number): { k: GPUBuffer; v: GPUBuffer };
  /** Slot of position `pos` of sequence `seq`. */
  slot(seq: number, pos: number): number;
  /** K/V tensor description of a batch of `batch` sequences for the fused operator (valid lengths go in `kvLengths`). */
  batchView(batch: number): TensorDesc;
  /** K and V of one sequence's first `length` tokens, as a `[1, Hkv, length, D]` BSHD tensor (for per-sequence operators). */
  sequenceView(l: number, seq: number): { k: BufferArg; v: BufferArg };
  /** Bytes of K and V held. */
  readonly bytes: number;
  destroy(): void;
}

/** Capacities are rounded up to this many tokens so every sequence's slice starts 256-byte aligned. */
export const CAPACITY_MULTIPLE = 64;

/**
 * One [maxBatch, capacity, Hkv, D] f32 buffer per layer for K and one for V
 * (BSHD: a token's heads are contiguous, the layout LLM runners use).
 */
export class ContiguousKvCache implements KvCache {
  readonly capacity: number;
  private readonly k: GPUBuffer[] = [];
  private readonly v: GPUBuffer[] = [];
  private readonly seqBytes: number;

  constructor(
    private readonly runtime: FastAttentionRuntime,
    readonly numLayers: number,
    readonly maxBatch: number,
    maxSeqLen: number,
    private readonly headsKV: number,
    private readonly headDim: number,
  ) {
    this.capacity = Math.ceil(maxSeqLen / CAPACITY_MULTIPLE) * CAPACITY_MULTIPLE;
    this.seqBytes = this.capacity * headsKV * headDim * 4;
    const size = maxBatch * this.seqBytes;
    const limit = runtime.capabilities.limits.maxStorageBufferBindingSize;
    if (size > limit)
      throw new ShapeError('maxSeqLen', `a layer's K cache for ${maxBatch} × ${this.capacity} tokens needs ${size} bytes, over maxStorageBufferBindingSize (${limit})`, `maxBatch · maxSeqLen ≤ ${Math.floor(limit / (headsKV * headDim * 4))} tokens (or a paged cache)`);
    for (let l = 0; l < numLayers; l++) {
      this.k.push(runtime.ledger.create('llm.kvCache', { label: `llm.kvCache.k${l}`, size, usage: BufferUsage.STORAGE | BufferUsage.COPY_SRC }));
      this.v.push(runtime.ledger.create('llm.kvCache', { label: `llm.kvCache.v${l}`, size, usage: BufferUsage.STORAGE | BufferUsage.COPY_SRC }));
    }
  }

  get bytes(): number {
    return 2 * this.numLayers * this.maxBatch * this.seqBytes;
  }

  layer(l: number): { k: GPUBuffer; v: GPUBuffer } {
    return { k: this.k[l], v: this.v[l] };
  }

  slot(seq: number, pos: number): number {
    return seq * this.capacity + pos;
  }

  batchView(batch: number): TensorDesc {
    return { shape: [batch, this.headsKV, this.capacity, this.headDim], layout: 'BSHD' };
  }

  sequenceView(l: number, seq: number): { k: BufferArg; v: BufferArg } {
    return { k: { buffer: this.k[l], offset: seq * this.seqBytes }, v: { buffer: this.v[l], offset: seq * this.seqBytes } };
  }

  destroy(): void {
    for (const b of [...this.k, ...this.v]) this.runtime.ledger.destroy(b);
    this.k.length = 0;
    this.v.length = 0;
  }
}
