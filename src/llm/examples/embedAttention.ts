/**
 * Example: an existing WebGPU LLM runner (not this package's) keeps its own
 * GPUDevice, its own KV-cache buffers and its own command encoder, and hands
 * them to the attention operator. Nothing is copied: the operator binds the
 * runner's buffers at the byte offsets it is given and records one dispatch
 * into the runner's encoder (or an open compute pass).
 *
 * The runner's cache here is one buffer for all layers, layer-major, each
 * layer [maxBatch, capacity, Hkv, D] f32 (BSHD, a token's heads contiguous);
 * its queries and outputs are [batch, seqQ, Hq, D] (BSHD) at offsets of its
 * activation buffers.
 */
import { FastAttentionRuntime } from '../../runtime/runtime.js';
import type { FlashAttentionPrefill } from '../../attention/flashAttentionPrefill.js';
import type { EncodeTarget } from '../../attention/encode.js';
import type { TileConfig } from '../../tiling/tileConfig.js';

export interface RunnerShape {
  maxBatch: number;
  /** Tokens per sequence the runner's cache holds. */
  capacity: number;
  headsQ: number;
  headsKV: number;
  headDim: number;
  /** New tokens per sequence in this call: the prompt (prefill) or 1 (decode). */
  seqQ: number;
}

/** Byte size of one layer of the runner's K (or V) cache. */
export function layerBytes(s: RunnerShape): number {
  return s.maxBatch * s.capacity * s.headsKV * s.headDim * 4;
}

/**
 * Adopt the runner's device and plan one operator for its shapes. Do this once
 * per request shape; `encode` below is then allocation-free.
 */
export async function planRunnerAttention(device: GPUDevice, shape: RunnerShape, tile?: TileConfig): Promise<{ runtime: FastAttentionRuntime; op: FlashAttentionPrefill }> {
  // The runtime never destroys a device it was given; destroying the runtime frees only its own buffers.
  const runtime = await FastAttentionRuntime.create({ device });
  const kv = { shape: [shape.maxBatch, shape.headsKV, shape.capacity, shape.headDim] as const, layout: 'BSHD' as const };
  const op = await runtime.createPrefill({
    q: { shape: [shape.maxBatch, shape.headsQ, shape.seqQ, shape.headDim], layout: 'BSHD' },
    k: kv,
    v: kv,
    causal: true, // aligned to the end of each sequence's valid keys: query i sees keys ≤ i + kvLen − seqQ
    tile,
  });
  return { runtime, op };
}

/** The runner's buffers for one call: its activations and its cache (all layers in one buffer). */
export interface RunnerBuffers {
  q: GPUBuffer;
  o: GPUBuffer;
  kCache: GPUBuffer;
  vCache: GPUBuffer;
  /** Byte offset of the query/output rows of this call in `q` and `o` (a multiple of 256). */
  activationOffset: number;
}

/**
 * Record attention for layer `layer` into the runner's encoder or pass.
 * `kvLengths[b]` = tokens of sequence b in the cache, this call's included.
 */
export function encodeRunnerAttention(op: FlashAttentionPrefill, target: EncodeTarget, shape: RunnerShape, bufs: RunnerBuffers, layer: number, kvLengths: ArrayLike<number>): void {
  const at = layer * layerBytes(shape); // a multiple of 256 when capacity·Hkv·D·4 is
  op.encode(
    target,
    {
      q: { buffer: bufs.q, offset: bufs.activationOffset },
      k: { buffer: bufs.kCache, offset: at },
      v: { buffer: bufs.vCache, offset: at },
      o: { buffer: bufs.o, offset: bufs.activationOffset },
    },
    { kvLengths },
  );
}
