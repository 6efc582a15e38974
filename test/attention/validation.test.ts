// Every misuse gets a typed error naming the field, before anything is dispatched.
import { describe, expect, it } from 'vitest';
import { BufferError, DeviceLostError, ScaleError, ShapeError, TileConfigError, UnsupportedError } from '../../src/errors.js';
import { createNodeRuntime } from '../../src/node.js';
import type { AttentionOptions } from '../../src/attention/problem.js';
import { BufferUsage } from '../../src/runtime/usage.js';
import { rejects } from '../helpers/errors.js';
import { emptyBuffer, readback, sharedRuntime, upload } from '../helpers/gpu.js';

const shape = [1, 2, 16, 32] as const;
const ok: AttentionOptions = { q: { shape }, k: { shape }, v: { shape } };

describe('bad input: options', async () => {
  const rt = await sharedRuntime();
  it('head dim not supported', async () => {
    const s = [1, 2, 16, 48] as const;
    const e = await rejects(rt.createPrefill({ q: { shape: s }, k: { shape: s }, v: { shape: s } }), UnsupportedError, 'q.shape[3]');
    expect(e.allowed).toBe('32, 64, 80, 96, 128, 256');
  });
  it('K head dim differs from Q', () => rejects(rt.createPrefill({ ...ok, k: { shape: [1, 2, 16, 64] } }), ShapeError, 'k.shape[3]'));
  it('V shape differs from K', () => rejects(rt.createPrefill({ ...ok, v: { shape: [1, 2, 17, 32] } }), ShapeError, 'v.shape[2]'));
  it('O shape differs from Q', () => rejects(rt.createPrefill({ ...ok, o: { shape: [1, 2, 15, 32] } }), ShapeError, 'o.shape[2]'));
  it('batch differs', () => rejects(rt.createPrefill({ ...ok, k: { shape: [2, 2, 16, 32] }, v: { shape: [2, 2, 16, 32] } }), ShapeError, 'k.shape[0]'));
  it('query heads not a multiple of KV heads', () =>
    rejects(rt.createPrefill({ q: { shape: [1, 3, 16, 32] }, k: { shape: [1, 2, 16, 32] }, v: { shape: [1, 2, 16, 32] } }), ShapeError, 'q.shape[1]'));
  it('non-integer sequence length', () => rejects(rt.createPrefill({ ...ok, q: { shape: [1, 2, 16.5, 32] } }), ShapeError, 'q.shape[2]'));
  it('unknown layout', () => rejects(rt.createPrefill({ ...ok, k: { shape, layout: 'BHDS' as 'BHSD' } }), UnsupportedError, 'k.layout'));
  it('non-finite scale', async () => {
    await rejects(rt.createPrefill({ ...ok, scale: Number.NaN }), ScaleError, 'scale');
    await rejects(rt.createPrefill({ ...ok, scale: Infinity }), ScaleError, 'scale');
  });
  it('unsupported dtype on this tier', () => rejects(rt.createPrefill({ ...ok, dtype: 'f16' as 'f32' }), UnsupportedError, 'dtype'));
  it('bad window', () => rejects(rt.createPrefill({ ...ok, window: 0 }), ShapeError, 'window'));
  it('tile configuration beyond the device limits', async () => {
    const e = await rejects(rt.createPrefill({ ...ok, tile: { blockQ: 128, blockKV: 128, rowsPerThread: 8, threadsPerRow: 16, chunk: 16, kvStages: 2 } }), TileConfigError, 'tile');
    expect(e.message).toMatch(/workgroup storage/);
    const threads = await rejects(rt.createPrefill({ ...ok, tile: { blockQ: 64, blockKV: 64, rowsPerThread: 1, threadsPerRow: 64, chunk: 8, kvStages: 1 } }), TileConfigError, 'tile');
    expect(threads.message).toMatch(/invocations/);
  });
});

describe('bad input: buffers and call arguments', async () => {
  const rt = await sharedRuntime();
  const op = await rt.createPrefill(ok);
  const n = 2 * 16 * 32;
  const good = () => ({ q: emptyBuffer(rt.device, n * 4), k: emptyBuffer(rt.device, n * 4), v: emptyBuffer(rt.device, n * 4), o: emptyBuffer(rt.device, n * 4) });
  const enc = () => rt.device.createCommandEncoder();

  it('missing buffer', () => rejects(() => op.encode(enc(), { ...good(), v: undefined as unknown as GPUBuffer }), BufferError, 'buffers.v'));
  it('buffer too small', () => rejects(() => op.encode(enc(), { ...good(), k: emptyBuffer(rt.device, n * 4 - 4) }), BufferError, 'buffers.k.size'));
  it('buffer without STORAGE usage', () => {
    const b = rt.device.createBuffer({ size: n * 4, usage: BufferUsage.COPY_DST | BufferUsage.UNIFORM });
    return rejects(() => op.encode(enc(), { ...good(), q: b }), BufferError, 'buffers.q.usage');
  });
  it('misaligned offset', () => rejects(() => op.encode(enc(), { ...good(), o: { buffer: emptyBuffer(rt.device, n * 8), offset: 4 } }), BufferError, 'buffers.o.offset'));
  it('kvLengths of the wrong length or range', async () => {
    await rejects(() => op.encode(enc(), good(), { kvLengths: [1, 2] }), ShapeError, 'kvLengths');
    await rejects(() => op.encode(enc(), good(), { kvLengths: [17] }), ShapeError, 'kvLengths[0]');
  });
  it('nothing is dispatched when a call is rejected', async () => {
    const bufs = good();
    const sentinel = new Float32Array(n).fill(7);
    bufs.o = upload(rt.device, sentinel);
    const e = enc();
    expect(() => op.encode(e, bufs, { kvLengths: [99] })).toThrow(ShapeError);
    rt.device.queue.submit([e.finish()]);
    expect(await readback(rt.device, bufs.o)).toEqual(sentinel);
  });
});

describe('fully masked rows', async () => {
  const rt = await sharedRuntime();
  it('give zeros, not NaN, in the fused and the standard path', async () => {
    // Query chunk of 12 against 4 keys, causal: the first 8 queries precede every key.
    const q = [1, 1, 12, 32] as const;
    const k = [1, 1, 4, 32] as const;
    const data = (len: number) => new Float32Array(len).map((_, i) => Math.sin(i));
    const bufs = { q: upload(rt.device, data(12 * 32)), k: upload(rt.device, data(4 * 32)), v: upload(rt.device, data(4 * 32)), o: emptyBuffer(rt.device, 12 * 32 * 4) };
    for (const op of [await rt.createPrefill({ q: { shape: q }, k: { shape: k }, v: { shape: k }, causal: true }), await rt.createStandardAttention({ q: { shape: q }, k: { shape: k }, v: { shape: k }, causal: true })]) {
      await op.run(bufs);
      const out = await readback(rt.device, bufs.o);
      expect(out.every(Number.isFinite)).toBe(true);
      expect(Array.from(out.subarray(0, 8 * 32)).every((x) => x === 0)).toBe(true);
      expect(Array.from(out.subarray(8 * 32)).some((x) => x !== 0)).toBe(true);
    }
    // Every key padded away.
    const op = await rt.createPrefill({ q: { shape: k }, k: { shape: k }, v: { shape: k } });
    await op.run({ ...bufs, q: bufs.k, o: bufs.o }, { kvLengths: [0] });
    const out = await readback(rt.device, bufs.o);
    expect(Array.from(out.subarray(0, 4 * 32)).every((x) => x === 0)).toBe(true);
  });
});

describe('device lost', () => {
  it('is reported as DeviceLostError on the next call', async () => {
    const rt = await createNodeRuntime();
    const op = await rt.createPrefill(ok);
    rt.device.destroy();
    await rt.device.lost;
    await rejects(() => op.encode(rt.device.createCommandEncoder(), { q: undefined as unknown as GPUBuffer, k: undefined as unknown as GPUBuffer, v: undefined as unknown as GPUBuffer, o: undefined as unknown as GPUBuffer }), DeviceLostError, 'device');
    await rejects(rt.createPrefill(ok), DeviceLostError, 'device');
  });
});

describe('error names', () => {
  it('survive minification (literal, not taken from the class)', () => {
    expect(new ShapeError('f', 'm', 'a').name).toBe('ShapeError');
    expect(new TileConfigError('f', 'm', 'a').name).toBe('TileConfigError');
    expect(new DeviceLostError('gone').name).toBe('DeviceLostError');
    expect(new ShapeError('f', 'm', 'a').message).toBe('f: m (allowed: a)');
  });
});
