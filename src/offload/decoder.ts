/**
 * A minimal decoder that runs the paper's CPU-GPU cooperative strategy end to
 * end, so it can be checked and timed: every layer is x ← x + Attn(x·Wq, x·Wk,
 * x·Wv)·Wo on seeded random weights (no norms or FFN: they would not change
 * where K/V live or what crosses the bus). The first `lCpu` layers keep their
 * KV cache in host memory ({@link HostKvCache}); the others on the GPU.
 *
 * - `prefill`: whole prompts on the GPU with the fused operator; K/V of the
 *   offloaded layers are copied to staging buffers and mapped while later layers
 *   compute, so the offload stays off the GPU's critical path.
 * - `step(x, 'cooperative')`: for an offloaded layer the GPU computes q/k/v, only
 *   those vectors are read back, the CPU pool appends k/v and computes attention,
 *   the result is written back; with `microBatches: 2` one half of the batch runs
 *   its GPU work while the CPU attends for the other.
 * - `step(x, 'classical')`: the baseline: the layer's whole KV cache is uploaded to
 *   one GPU buffer each step, then GPU attention; the new k/v are read back to the
 *   host cache after the step.
 */
import offloadWgsl from '../../shaders/offloadDecode.wgsl?raw';
import { ShapeError, UnsupportedError } from '../errors.js';
import type { FlashAttentionPrefill } from '../attention/flashAttentionPrefill.js';
import { encodeDispatch } from '../attention/encode.js';
import type { FastAttentionRuntime } from '../runtime/runtime.js';
import { PARAMS_BINDING, type CompiledKernel } from '../runtime/pipelineCache.js';
import { ParamsPool } from '../runtime/paramsPool.js';
import { BufferUsage, MapMode } from '../runtime/usage.js';
import { CpuAttentionPool, type WorkerSpawner } from './cpuAttention.js';
import { HostKvCache, type HostKvDType } from './hostKvCache.js';
import type { TileConfig } from '../tiling/tileConfig.js';
import { mulberry32, normalSamples } from '../reference/random.js';

export const offloadDecodeKernel = { name: 'offloadDecode', code: offloadWgsl };
const WG = 64;
const OWNER = 'offloadDecoder';

export interface OffloadDecoderOptions {
  layers: number;
  /** Offloaded layers (the first ones): KV in host memory, attention on the CPU. */
  lCpu: number;
  batch: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  hidden: number;
  /** Tokens per sequence the caches hold (prompt + generated). */
  capacity: number;
  /** Host KV storage type; classical offloading needs f32 (it uploads the cache as is). */
  hostDtype: HostKvDType;
  /** CPU attention threads. */
  threads: number;
  /** The compiled offload WebAssembly module. */
  module: WebAssembly.Module;
  spawn?: WorkerSpawner;
  /** Split the batch in this many micro-batches in cooperative steps (1 or 2); default 1. */
  microBatches?: 1 | 2;
  /** Staging buffers for the prefill offload (in flight at once); default 2. */
  prefillStages?: number;
  /** Weight seed. */
  seed?: number;
  /** Tile configuration of the fused attention; default the runtime's choice for the device. */
  tile?: TileConfig;
  /** Called with each CPU attention result (tests check it against the reference). */
  onCpuAttention?: (layer: number, q: Float32Array, out: Float32Array, batchStart: number, batchCount: number) => void;
}

export type OffloadMode = 'cooperative' | 'classical';

export interface PrefillTiming {
  /** Submission to GPU idle, ms. */
  gpuMs: number;
  /** Submission to the last offloaded layer written into the host cache, ms. */
  hostMs: number;
}

interface MicroBatch {
  b0: number;
  nb: number;
  x: GPUBuffer;
  q: GPUBuffer;
  k: GPUBuffer;
  v: GPUBuffer;
  o: GPUBuffer;
  /** q | k | v of one offloaded layer, read back. */
  readback: GPUBuffer;
  attention: FlashAttentionPrefill;
  kvLen: Uint32Array;
}

export class OffloadDecoder {
  readonly cache: HostKvCache;
  readonly pool: CpuAttentionPool;
  private readonly device: GPUDevice;
  private readonly buffers: GPUBuffer[] = [];
  private readonly w: { q: GPUBuffer; k: GPUBuffer; v: GPUBuffer; o: GPUBuffer }[] = [];
  /** GPU K/V of the resident layers (index: layer − lCpu). */
  private readonly gpuKv: { k: GPUBuffer; v: GPUBuffer }[] = [];
  /** Tokens in the resident caches, per sequence (all layers advance together). */
  private readonly gpuLen: Int32Array;
  private readonly classical: { k: GPUBuffer; v: GPUBuffer };
  /** Mappable upload buffers of classical offloading (host cache → GPU). */
  private readonly uploads: GPUBuffer[];
  /** New k/v of each offloaded layer in a classical step, read back after it. */
  private readonly classicalReadback: GPUBuffer;
  private readonly whole: MicroBatch;
  private readonly halves: MicroBatch[];
  private readonly qHost: Float32Array;
  private readonly oHost: Float32Array<ArrayBuffer>;
  private readonly xOut: GPUBuffer;

  private constructor(
    private readonly runtime: FastAttentionRuntime,
    readonly options: Required<Omit<OffloadDecoderOptions, 'onCpuAttention' | 'spawn' | 'tile'>> & Pick<OffloadDecoderOptions, 'onCpuAttention' | 'tile'>,
    private readonly kernels: { project: CompiledKernel; append: CompiledKernel },
    private readonly params: { project: ParamsPool; append: ParamsPool },
    cache: HostKvCache,
    pool: CpuAttentionPool,
    attention: Map<number, FlashAttentionPrefill>,
  ) {
    this.device = runtime.device;
    this.cache = cache;
    this.pool = pool;
    const o = options;
    const f = 4;
    const storage = BufferUsage.STORAGE | BufferUsage.COPY_DST | BufferUsage.COPY_SRC;
    const create = (label: string, size: number, usage = storage): GPUBuffer => {
      const b = runtime.ledger.create(OWNER, { label: `${OWNER}.${label}`, size: Math.max(16, size), usage });
      this.buffers.push(b);
      return b;
    };
    const qd = o.heads * o.headDim;
    const kd = o.kvHeads * o.headDim;
    for (let l = 0; l < o.layers; l++) {
      const s = o.seed * 1000 + l * 10;
      const mk = (name: string, rows: number, cols: number, seed: number): GPUBuffer => {
        const b = create(`${name}${l}`, rows * cols * f);
        this.device.queue.writeBuffer(b, 0, normalSamples(rows * cols, mulberry32(seed), 1 / Math.sqrt(rows)));
        return b;
      };
      this.w.push({ q: mk('wq', o.hidden, qd, s + 1), k: mk('wk', o.hidden, kd, s + 2), v: mk('wv', o.hidden, kd, s + 3), o: mk('wo', qd, o.hidden, s + 4) });
    }
    const kvBytes = o.batch * o.kvHeads * o.capacity * o.headDim * f;
    for (let l = o.lCpu; l < o.layers; l++) this.gpuKv.push({ k: create(`k${l}`, kvBytes), v: create(`v${l}`, kvBytes) });
    this.gpuLen = new Int32Array(o.batch);
    // Classical offloading needs room for one layer's cache on the GPU, shared by all offloaded layers.
    this.classical = o.lCpu > 0 && o.hostDtype === 'f32' ? { k: create('classicalK', kvBytes), v: create('classicalV', kvBytes) } : { k: create('classicalK', 16), v: create('classicalV', 16) };
    this.uploads = o.lCpu > 0 && o.hostDtype === 'f32' ? [0, 1].map((i) => create(`classicalUpload${i}`, 2 * kvBytes, BufferUsage.MAP_WRITE | BufferUsage.COPY_SRC)) : [];
    this.classicalReadback = create('classicalReadback', Math.max(1, o.lCpu) * 2 * o.batch * kd * f, BufferUsage.MAP_READ | BufferUsage.COPY_DST);
    const micro = (b0: number, nb: number, name: string): MicroBatch => ({
      b0,
      nb,
      x: create(`${name}.x`, nb * o.hidden * f),
      q: create(`${name}.q`, nb * qd * f),
      k: create(`${name}.k`, nb * kd * f),
      v: create(`${name}.v`, nb * kd * f),
      o: create(`${name}.o`, nb * qd * f),
      readback: create(`${name}.readback`, nb * (qd + 2 * kd) * f, BufferUsage.MAP_READ | BufferUsage.COPY_DST),
      attention: attention.get(nb)!,
      kvLen: new Uint32Array(nb),
    });
    this.whole = micro(0, o.batch, 'mb');
    const h = Math.ceil(o.batch / 2);
    this.halves = o.microBatches === 2 ? [micro(0, h, 'mb0'), micro(h, o.batch - h, 'mb1')] : [];
    this.qHost = new Float32Array(o.batch * qd);
    this.oHost = new Float32Array(o.batch * qd);
    this.xOut = create('xOut', o.batch * o.hidden * f, BufferUsage.MAP_READ | BufferUsage.COPY_DST);
  }

  /** Validate, compile, allocate, start the CPU workers. */
  static async create(runtime: FastAttentionRuntime, options: OffloadDecoderOptions): Promise<OffloadDecoder> {
    runtime.assertAlive();
    const int = (field: string, x: unknown, min: number): number => {
      if (typeof x !== 'number' || !Number.isInteger(x) || x < min) throw new ShapeError(field, `must be an integer ≥ ${min}, got ${String(x)}`, `integers ≥ ${min}`);
      return x;
    };
    const layers = int('layers', options.layers, 1);
    const lCpu = int('lCpu', options.lCpu, 0);
    if (lCpu > layers) throw new ShapeError('lCpu', `${lCpu} offloaded layers of ${layers}`, `integers in [0, ${layers}]`);
    const batch = int('batch', options.batch, 1);
    const microBatches = options.microBatches ?? 1;
    if (microBatches !== 1 && microBatches !== 2) throw new UnsupportedError('microBatches', `got ${microBatches}`, '1, 2');
    if (microBatches === 2 && batch < 2) throw new ShapeError('microBatches', 'two micro-batches need at least 2 sequences', 'batch ≥ 2, or microBatches 1');
    int('hidden', options.hidden, 1);
    const o = { ...options, microBatches, prefillStages: int('prefillStages', options.prefillStages ?? 2, 1), seed: options.seed ?? 1 } as OffloadDecoder['options'];
    // The host cache validates heads, kvHeads, headDim, capacity, dtype, threads.
    const cache = HostKvCache.create({ layers: lCpu, batch, heads: o.heads, kvHeads: o.kvHeads, headDim: o.headDim, capacity: o.capacity, dtype: o.hostDtype, threads: o.threads });
    const attention = new Map<number, FlashAttentionPrefill>();
    const sizes = microBatches === 2 ? [batch, Math.ceil(batch / 2), batch - Math.ceil(batch / 2)] : [batch];
    for (const nb of sizes) {
      if (attention.has(nb)) continue;
      attention.set(
        nb,
        await runtime.createPrefill({
          q: { shape: [nb, o.heads, 1, o.headDim] },
          k: { shape: [nb, o.kvHeads, o.capacity, o.headDim] },
          v: { shape: [nb, o.kvHeads, o.capacity, o.headDim] },
          tile: o.tile,
        }),
      );
    }
    const project = await runtime.pipelines.get(offloadDecodeKernel, 'project', {});
    const append = await runtime.pipelines.get(offloadDecodeKernel, 'appendKv', {});
    const align = runtime.capabilities.limits.minStorageBufferOffsetAlignment;
    const pool = (k: CompiledKernel, name: string): ParamsPool =>
      new ParamsPool(runtime.device.queue, runtime.ledger, `${OWNER}.${name}`, k.bindings.find((b) => b.name === PARAMS_BINDING)!.struct!, 0, align, 256);
    const cpu = await CpuAttentionPool.create(cache, { module: o.module, spawn: options.spawn });
    return new OffloadDecoder(runtime, o, { project, append }, { project: pool(project, 'project'), append: pool(append, 'append') }, cache, cpu, attention);
  }

  private encodeProject(enc: GPUCommandEncoder, x: GPUBuffer, w: GPUBuffer, y: GPUBuffer, rows: number, inner: number, cols: number, residual: boolean): void {
    const off = this.params.project.offsetFor({ rows, inner, cols, residual: residual ? 1 : 0, batch: 0, tokens: 0, kvHeads: 0, headDim: 0, capacity: 0, pos: 0 });
    const k = this.kernels.project;
    const group = this.runtime.bindGroups.get(k.bindGroupLayout, k.key, [
      { binding: 0, buffer: this.params.project.buffer, offset: 0, size: this.params.project.bindingBytes },
      { binding: 1, buffer: x, offset: 0, size: rows * inner * 4 },
      { binding: 2, buffer: w, offset: 0, size: inner * cols * 4 },
      { binding: 3, buffer: y, offset: 0, size: rows * cols * 4 },
    ]);
    encodeDispatch(enc, k.pipeline, group, [off], [Math.ceil(cols / WG), Math.min(rows, 65535), Math.ceil(rows / 65535)], 'offload.project');
  }

  /** Copy `tokens` rows of [nb, tokens, kvHeads, D] into a [·, kvHeads, capacity, D] cache at sequence b0, position pos. */
  private encodeAppend(enc: GPUCommandEncoder, src: GPUBuffer, cache: GPUBuffer, b0: number, nb: number, tokens: number, pos: number): void {
    const o = this.options;
    const off = this.params.append.offsetFor({ rows: 0, inner: 0, cols: 0, residual: 0, batch: nb, tokens, kvHeads: o.kvHeads, headDim: o.headDim, capacity: o.capacity, pos });
    const k = this.kernels.append;
    const per = o.kvHeads * o.capacity * o.headDim * 4;
    const group = this.runtime.bindGroups.get(k.bindGroupLayout, k.key, [
      { binding: 0, buffer: this.params.append.buffer, offset: 0, size: this.params.append.bindingBytes },
      { binding: 4, buffer: src, offset: 0, size: nb * tokens * o.kvHeads * o.headDim * 4 },
      { binding: 5, buffer: cache, offset: b0 * per, size: nb * per },
    ]);
    const n = Math.ceil((nb * tokens * o.kvHeads * o.headDim) / WG);
    const x = Math.min(n, 65535);
    encodeDispatch(enc, k.pipeline, group, [off], [x, Math.ceil(n / x), 1], 'offload.appendKv');
  }

  /**
   * Prefill `prompt` (`[batch, tokens, hidden]`) through every layer. Resident
   * layers' K/V go to their GPU caches; offloaded layers' K/V are copied to a
   * ring of staging buffers and written into the host cache as each mapping
   * completes, while the GPU goes on with later layers. `offloadKv: false`
   * drops them instead (for timing the path without the offload).
   */
  async prefill(prompt: Float32Array<ArrayBuffer>, tokens: number, call: { offloadKv?: boolean } = {}): Promise<PrefillTiming> {
    const o = this.options;
    if (!Number.isInteger(tokens) || tokens < 1 || tokens > o.capacity) throw new ShapeError('tokens', `got ${tokens}`, `integers in [1, ${o.capacity}]`);
    if (prompt.length !== o.batch * tokens * o.hidden) throw new ShapeError('prompt', `has ${prompt.length} elements`, `batch · tokens · hidden = ${o.batch * tokens * o.hidden}`);
    const offload = call.offloadKv ?? true;
    const rows = o.batch * tokens;
    const qd = o.heads * o.headDim;
    const kd = o.kvHeads * o.headDim;
    // Prefill activations and staging are per call: prefill runs once per prompt, not per step.
    const temp: GPUBuffer[] = [];
    const make = (label: string, size: number, usage = BufferUsage.STORAGE | BufferUsage.COPY_DST | BufferUsage.COPY_SRC): GPUBuffer => {
      const b = this.runtime.ledger.create(`${OWNER}.prefill`, { label: `${OWNER}.prefill.${label}`, size, usage });
      temp.push(b);
      return b;
    };
    const x = make('x', rows * o.hidden * 4);
    const q = make('q', rows * qd * 4);
    const k = make('k', rows * kd * 4);
    const v = make('v', rows * kd * 4);
    const att = make('o', rows * qd * 4);
    const kvBytes = rows * kd * 4;
    const stages = offload && o.lCpu > 0 ? Array.from({ length: Math.min(o.prefillStages, o.lCpu) }, (_, i) => make(`stage${i}`, 2 * kvBytes, BufferUsage.MAP_READ | BufferUsage.COPY_DST)) : [];
    const op = await this.runtime.createPrefill({
      q: { shape: [o.batch, o.heads, tokens, o.headDim], layout: 'BSHD' },
      k: { shape: [o.batch, o.kvHeads, tokens, o.headDim], layout: 'BSHD' },
      v: { shape: [o.batch, o.kvHeads, tokens, o.headDim], layout: 'BSHD' },
      causal: true,
      tile: o.tile,
    });
    try {
      this.device.queue.writeBuffer(x, 0, prompt);
      await this.device.queue.onSubmittedWorkDone();
      const t0 = performance.now();
      const inFlight: (Promise<void> | null)[] = stages.map(() => null);
      const drains: Promise<void>[] = [];
      let hostDone = t0;
      for (let l = 0; l < o.layers; l++) {
        const enc = this.device.createCommandEncoder();
        const W = this.w[l];
        this.encodeProject(enc, x, W.q, q, rows, o.hidden, qd, false);
        this.encodeProject(enc, x, W.k, k, rows, o.hidden, kd, false);
        this.encodeProject(enc, x, W.v, v, rows, o.hidden, kd, false);
        op.encode(enc, { q, k, v, o: att });
        this.encodeProject(enc, att, W.o, x, rows, qd, o.hidden, true);
        let stage = -1;
        if (l >= o.lCpu) {
          const kv = this.gpuKv[l - o.lCpu];
          this.encodeAppend(enc, k, kv.k, 0, o.batch, tokens, 0);
          this.encodeAppend(enc, v, kv.v, 0, o.batch, tokens, 0);
        } else if (offload) {
          stage = l % stages.length;
          // Backpressure: reuse a staging buffer only once its previous layer is in the host cache.
          if (inFlight[stage]) await inFlight[stage];
          enc.copyBufferToBuffer(k, 0, stages[stage], 0, kvBytes);
          enc.copyBufferToBuffer(v, 0, stages[stage], kvBytes, kvBytes);
        }
        this.device.queue.submit([enc.finish()]);
        if (stage >= 0) {
          const buf = stages[stage];
          const layer = l;
          const p = buf.mapAsync(MapMode.READ).then(() => {
            const data = new Float32Array(buf.getMappedRange());
            this.cache.writeTokens(layer, data.subarray(0, rows * kd), data.subarray(rows * kd), tokens, 'BSHD');
            buf.unmap();
            hostDone = performance.now();
          });
          inFlight[stage] = p;
          drains.push(p);
        }
      }
      await this.device.queue.onSubmittedWorkDone();
      const gpuDone = performance.now();
      await Promise.all(drains);
      this.gpuLen.fill(tokens);
      return { gpuMs: gpuDone - t0, hostMs: Math.max(gpuDone, hostDone) - t0 };
    } finally {
      op.destroy();
      for (const b of temp) this.runtime.ledger.destroy(b);
    }
  }

  /**
   * One decode step: `x` is the hidden state of the new token of each sequence
   * (`[batch, hidden]`); returns the output hidden state.
   */
  async step(x: Float32Array<ArrayBuffer>, mode: OffloadMode): Promise<Float32Array> {
    const o = this.options;
    this.runtime.assertAlive();
    if (mode !== 'cooperative' && mode !== 'classical') throw new UnsupportedError('mode', `got ${JSON.stringify(mode)}`, 'cooperative, classical');
    if (x.length !== o.batch * o.hidden) throw new ShapeError('x', `has ${x.length} elements`, `batch · hidden = ${o.batch * o.hidden}`);
    if (mode === 'classical' && o.lCpu > 0 && o.hostDtype !== 'f32') throw new UnsupportedError('mode', 'classical offloading uploads the host cache as is, which the f32 GPU kernel needs in f32', 'cooperative, or hostDtype f32');
    const len = this.gpuLen[0];
    for (let l = 0; l < o.lCpu; l++) for (let b = 0; b < o.batch; b++) if (this.cache.lengths[l][b] !== len) throw new ShapeError('lengths', 'host and GPU caches disagree on the number of tokens', 'prefill before decoding');
    if (len >= o.capacity) throw new ShapeError('capacity', `the caches are full (${len} tokens)`, `at most ${o.capacity} tokens`);
    const mbs = mode === 'cooperative' && o.microBatches === 2 ? this.halves : [this.whole];
    for (const mb of mbs) this.device.queue.writeBuffer(mb.x, 0, x, mb.b0 * o.hidden, mb.nb * o.hidden);
    if (mode === 'cooperative') await Promise.all(mbs.map((mb) => this.cooperative(mb, len)));
    else await this.classicalStep(this.whole, len);
    this.gpuLen.fill(len + 1);
    const enc = this.device.createCommandEncoder();
    for (const mb of mbs) enc.copyBufferToBuffer(mb.x, 0, this.xOut, mb.b0 * o.hidden * 4, mb.nb * o.hidden * 4);
    this.device.queue.submit([enc.finish()]);
    await this.xOut.mapAsync(MapMode.READ);
    const out = new Float32Array(this.xOut.getMappedRange().slice(0));
    this.xOut.unmap();
    return out;
  }

  private encodeQkv(enc: GPUCommandEncoder, mb: MicroBatch, l: number): void {
    const o = this.options;
    const W = this.w[l];
    this.encodeProject(enc, mb.x, W.q, mb.q, mb.nb, o.hidden, o.heads * o.headDim, false);
    this.encodeProject(enc, mb.x, W.k, mb.k, mb.nb, o.hidden, o.kvHeads * o.headDim, false);
    this.encodeProject(enc, mb.x, W.v, mb.v, mb.nb, o.hidden, o.kvHeads * o.headDim, false);
  }

  private encodeOut(enc: GPUCommandEncoder, mb: MicroBatch, l: number): void {
    const o = this.options;
    this.encodeProject(enc, mb.o, this.w[l].o, mb.x, mb.nb, o.heads * o.headDim, o.hidden, true);
  }

  /** Fused attention over a GPU cache `[batch, kvHeads, capacity, D]` (this micro-batch's rows), then the output projection. */
  private encodeGpuAttention(enc: GPUCommandEncoder, mb: MicroBatch, l: number, k: GPUBuffer, v: GPUBuffer, len: number): void {
    const o = this.options;
    const per = o.kvHeads * o.capacity * o.headDim * 4;
    mb.kvLen.fill(len + 1);
    mb.attention.encode(enc, { q: mb.q, k: { buffer: k, offset: mb.b0 * per }, v: { buffer: v, offset: mb.b0 * per }, o: mb.o }, { kvLengths: mb.kvLen });
    this.encodeOut(enc, mb, l);
  }

  /** A resident layer after its q/k/v: append k/v to its GPU cache, attend, project. */
  private encodeResident(enc: GPUCommandEncoder, mb: MicroBatch, l: number, len: number): void {
    const kv = this.gpuKv[l - this.options.lCpu];
    this.encodeAppend(enc, mb.k, kv.k, mb.b0, mb.nb, 1, len);
    this.encodeAppend(enc, mb.v, kv.v, mb.b0, mb.nb, 1, len);
    this.encodeGpuAttention(enc, mb, l, kv.k, kv.v, len);
  }

  /** Cooperative step of one micro-batch (two of them interleave on the queue and the CPU pool). */
  private async cooperative(mb: MicroBatch, len: number): Promise<void> {
    const o = this.options;
    const qd = mb.nb * o.heads * o.headDim;
    const kd = mb.nb * o.kvHeads * o.headDim;
    let enc = this.device.createCommandEncoder();
    for (let l = 0; l < o.layers; l++) {
      this.encodeQkv(enc, mb, l);
      if (l >= o.lCpu) {
        this.encodeResident(enc, mb, l, len);
        continue;
      }
      // Only q, k, v of the new token cross the bus.
      enc.copyBufferToBuffer(mb.q, 0, mb.readback, 0, qd * 4);
      enc.copyBufferToBuffer(mb.k, 0, mb.readback, qd * 4, kd * 4);
      enc.copyBufferToBuffer(mb.v, 0, mb.readback, (qd + kd) * 4, kd * 4);
      this.device.queue.submit([enc.finish()]);
      await mb.readback.mapAsync(MapMode.READ);
      const r = new Float32Array(mb.readback.getMappedRange());
      this.qHost.set(r.subarray(0, qd), mb.b0 * o.heads * o.headDim);
      this.cache.append(l, r, r, qd, qd + kd, mb.b0, mb.nb);
      mb.readback.unmap();
      await this.pool.attend(l, this.qHost, this.oHost, { batchStart: mb.b0, batchCount: mb.nb });
      o.onCpuAttention?.(l, this.qHost, this.oHost, mb.b0, mb.nb);
      // The attention result goes back; the GPU resumes with the output projection.
      this.device.queue.writeBuffer(mb.o, 0, this.oHost, mb.b0 * o.heads * o.headDim, qd);
      enc = this.device.createCommandEncoder();
      this.encodeOut(enc, mb, l);
    }
    this.device.queue.submit([enc.finish()]);
  }

  /** Classical offloading: each offloaded layer's cache is uploaded to one shared GPU buffer pair, then GPU attention. */
  private async classicalStep(mb: MicroBatch, len: number): Promise<void> {
    const o = this.options;
    const kd = mb.nb * o.kvHeads * o.headDim;
    const row = o.capacity * o.headDim;
    const tensor = o.batch * o.kvHeads * row;
    let enc = this.device.createCommandEncoder();
    for (let l = 0; l < o.layers; l++) {
      if (l < o.lCpu) {
        // The previous offloaded layer read the shared buffers: its commands go first.
        this.device.queue.submit([enc.finish()]);
        // Host → mapped upload buffer (one memcpy), then a GPU copy of the valid rows.
        // A ring of two lets the CPU fill one while the GPU drains the other.
        const stage = this.uploads[l % this.uploads.length];
        await stage.mapAsync(MapMode.WRITE);
        const dst = new Float32Array(stage.getMappedRange());
        const rk = this.cache.rawF32(l, 'k');
        const rv = this.cache.rawF32(l, 'v');
        const n = len * o.headDim;
        for (let bh = 0; bh < o.batch * o.kvHeads; bh++) {
          dst.set(rk.subarray(bh * row, bh * row + n), bh * row);
          dst.set(rv.subarray(bh * row, bh * row + n), tensor + bh * row);
        }
        stage.unmap();
        enc = this.device.createCommandEncoder();
        for (let bh = 0; bh < o.batch * o.kvHeads; bh++) {
          enc.copyBufferToBuffer(stage, bh * row * 4, this.classical.k, bh * row * 4, n * 4);
          enc.copyBufferToBuffer(stage, (tensor + bh * row) * 4, this.classical.v, bh * row * 4, n * 4);
        }
        this.encodeQkv(enc, mb, l);
        enc.copyBufferToBuffer(mb.k, 0, this.classicalReadback, l * 2 * kd * 4, kd * 4);
        enc.copyBufferToBuffer(mb.v, 0, this.classicalReadback, (l * 2 + 1) * kd * 4, kd * 4);
        this.encodeAppend(enc, mb.k, this.classical.k, 0, mb.nb, 1, len);
        this.encodeAppend(enc, mb.v, this.classical.v, 0, mb.nb, 1, len);
        this.encodeGpuAttention(enc, mb, l, this.classical.k, this.classical.v, len);
      } else {
        this.encodeQkv(enc, mb, l);
        this.encodeResident(enc, mb, l, len);
      }
    }
    this.device.queue.submit([enc.finish()]);
    if (o.lCpu === 0) return;
    // The new tokens' k/v join the host cache once the step is done.
    await this.classicalReadback.mapAsync(MapMode.READ, 0, o.lCpu * 2 * kd * 4);
    const r = new Float32Array(this.classicalReadback.getMappedRange(0, o.lCpu * 2 * kd * 4));
    for (let l = 0; l < o.lCpu; l++) this.cache.append(l, r, r, l * 2 * kd, (l * 2 + 1) * kd);
    this.classicalReadback.unmap();
  }

  /** Release every GPU buffer and stop the CPU workers. */
  async destroy(): Promise<void> {
    await this.pool.destroy();
    for (const b of this.buffers) this.runtime.ledger.destroy(b);
    this.runtime.ledger.destroy(this.params.project.buffer);
    this.runtime.ledger.destroy(this.params.append.buffer);
  }
}
