/** Shared GPU helpers for tests: one runtime per worker, upload/readback, random data. */
import { createNodeRuntime } from '../../src/node.js';
import type { FastAttentionRuntime } from '../../src/runtime/runtime.js';
import { BufferUsage, MapMode } from '../../src/runtime/usage.js';
import { mulberry32, normalSamples } from '../../src/reference/random.js';

let shared: Promise<FastAttentionRuntime> | undefined;

export function sharedRuntime(): Promise<FastAttentionRuntime> {
  shared ??= createNodeRuntime();
  return shared;
}

export function upload(device: GPUDevice, data: Float32Array<ArrayBuffer> | Uint32Array<ArrayBuffer>, extraUsage = 0): GPUBuffer {
  const buffer = device.createBuffer({ size: Math.max(16, Math.ceil(data.byteLength / 4) * 4), usage: BufferUsage.STORAGE | BufferUsage.COPY_DST | BufferUsage.COPY_SRC | extraUsage });
  device.queue.writeBuffer(buffer, 0, data);
  return buffer;
}

export function emptyBuffer(device: GPUDevice, bytes: number): GPUBuffer {
  return device.createBuffer({ size: Math.max(16, bytes), usage: BufferUsage.STORAGE | BufferUsage.COPY_DST | BufferUsage.COPY_SRC });
}

export async function readback(device: GPUDevice, buffer: GPUBuffer, bytes = buffer.size): Promise<Float32Array> {
  const staging = device.createBuffer({ size: bytes, usage: BufferUsage.MAP_READ | BufferUsage.COPY_DST });
  const enc = device.createCommandEncoder();
  enc.copyBufferToBuffer(buffer, 0, staging, 0, bytes);
  device.queue.submit([enc.finish()]);
  await staging.mapAsync(MapMode.READ);
  const out = new Float32Array(staging.getMappedRange().slice(0));
  staging.destroy();
  return out;
}

/** Deterministic PRNG (mulberry32) so failures reproduce. */
export const rng = mulberry32;

/** Standard normal samples (Box-Muller). */
export function randn(n: number, rand: () => number): Float32Array<ArrayBuffer> {
  return normalSamples(n, rand);
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>, n = a.length): number {
  let m = 0;
  for (let i = 0; i < n; i++) {
    const d = Math.abs(a[i] - b[i]);
    if (!(d <= m)) m = Number.isNaN(d) ? Infinity : d;
  }
  return m;
}
