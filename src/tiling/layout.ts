/**
 * Tensor layouts of Q, K, V and O in memory. The kernels never branch on a
 * layout: they take element strides, so any layout reduces to four numbers.
 */

/** `[B, H, S, D]` (heads outermost, the PyTorch SDPA layout) or `[B, S, H, D]` (tokens outermost, the LLM-runner layout). */
export type TensorLayout = 'BHSD' | 'BSHD';

export const TENSOR_LAYOUTS: readonly TensorLayout[] = ['BHSD', 'BSHD'];

/** Logical shape of one attention operand, always in (batch, heads, sequence, headDim) order. */
export interface TensorDesc {
  /** `[batch, heads, seq, headDim]`, whatever the memory layout. */
  shape: readonly [number, number, number, number];
  /** Memory layout; default `BHSD`. */
  layout?: TensorLayout;
}

/** Element strides of a tensor; the head-dim stride is always 1. */
export interface TensorStrides {
  batch: number;
  head: number;
  seq: number;
}

/** Strides, in elements, of a dense tensor of logical shape `[B, H, S, D]` stored in `layout`. */
export function tensorStrides(layout: TensorLayout, heads: number, seq: number, headDim: number): TensorStrides {
  if (layout === 'BHSD') return { batch: heads * seq * headDim, head: seq * headDim, seq: headDim };
  return { batch: seq * heads * headDim, head: headDim, seq: heads * headDim };
}

/** Number of elements of a dense `[B, H, S, D]` tensor. */
export function tensorElements(shape: readonly [number, number, number, number]): number {
  return shape[0] * shape[1] * shape[2] * shape[3];
}

/** Flat element index of (b, h, s, d). */
export function elementIndex(strides: TensorStrides, b: number, h: number, s: number, d: number): number {
  return b * strides.batch + h * strides.head + s * strides.seq + d;
}
