/**
 * Decode attention on the CPU over the host KV cache: worker threads (Node
 * worker_threads or browser Web Workers) running the WebAssembly SIMD kernel of
 * asm/decodeAttention.ts on one shared memory. A job is split into tasks of
 * (sequence, KV head, key range); the partial softmax states of a head's key
 * ranges are merged here (FlashDecoding), so long contexts keep every thread
 * busy even at batch 1.
 *
 * Browsers need cross-origin isolation (COOP/COEP) for shared memory.
 */
import { ShapeError, UnsupportedError } from '../errors.js';
import { CONTROL_WORDS, KERNEL_BLOCK, assertSharedMemory, type HostKvCache } from './hostKvCache.js';
import { workerMain, type WorkerInit } from './cpuWorker.js';

// Control words; keep in sync with cpuWorker.ts.
const W_GEN = 0, W_NEXT = 1, W_DONE = 2, W_TOTAL = 3, W_KIND = 4, W_G = 5, W_D = 6, W_SPLITS = 7, W_HKV = 8, W_HALF = 9;
const W_KBASE = 10, W_VBASE = 11, W_CAP = 12, W_QBASE = 13, W_ACC = 14, W_STATS = 15, W_B0 = 16, W_SCALE = 17, W_WINDOW = 18;
const W_SRC = 19, W_DST = 20, W_CHUNK = 21, W_WORKERS = 22, W_SCRATCH = 23, W_SCRATCH_STRIDE = 24, W_LENGTHS = CONTROL_WORDS;
const KIND_ATTEND = 1, KIND_READ = 2, KIND_COPY = 3, KIND_STOP = 9;
/** Fewest keys per task worth a split of their own. */
const MIN_KEYS_PER_SPLIT = 4 * KERNEL_BLOCK;

/** A started worker, whichever the platform. */
export interface PoolWorker {
  /** Resolves on the worker's first message ('ready'). */
  ready: Promise<void>;
  terminate(): void;
}

/** Starts a worker running `source` (JavaScript that calls workerMain) with `init`. */
export type WorkerSpawner = (init: WorkerInit, mainSource: string) => PoolWorker;

/** Web Workers from a Blob URL (browsers; the page must be cross-origin isolated). */
export const webWorkerSpawner: WorkerSpawner = (init, mainSource) => {
  const code = `self.onmessage = (e) => { self.onmessage = null; (${mainSource})(e.data, (m) => self.postMessage(m)); };`;
  const url = URL.createObjectURL(new Blob([code], { type: 'text/javascript' }));
  const w = new Worker(url);
  const ready = new Promise<void>((resolve, reject) => {
    w.onmessage = () => resolve();
    w.onerror = (e) => reject(new Error(`CPU-attention worker failed: ${e.message}`));
  });
  w.postMessage(init);
  return { ready: ready.finally(() => URL.revokeObjectURL(url)), terminate: () => w.terminate() };
};

export interface CpuAttentionOptions {
  /** The compiled offload module (`loadOffloadWasm()` from `fastattention-webgpu/offload/node` in Node, or `WebAssembly.compileStreaming` in a page). */
  module: WebAssembly.Module;
  /** Starts workers; default Web Workers (Node: `nodeWorkerSpawner` from `fastattention-webgpu/offload/node`). */
  spawn?: WorkerSpawner;
}

export interface AttendCall {
  /** First sequence of the job; default 0. */
  batchStart?: number;
  /** Sequences in the job; default all from batchStart. */
  batchCount?: number;
  /** Softmax scale; default 1/√headDim. */
  scale?: number;
  /** Sliding window (keys per query, itself included); default none. */
  window?: number;
}

export class CpuAttentionPool {
  readonly threads: number;
  private readonly I: Int32Array;
  private readonly F: Float32Array;
  private readonly mem: Float32Array;
  private chain: Promise<unknown> = Promise.resolve();
  private stopped = false;

  private constructor(
    readonly cache: HostKvCache,
    private readonly workers: PoolWorker[],
  ) {
    this.threads = workers.length;
    const buf = cache.memory.buffer;
    this.I = new Int32Array(buf, cache.layout.control, CONTROL_WORDS + cache.options.batch);
    this.F = new Float32Array(buf, cache.layout.control, CONTROL_WORDS);
    this.mem = new Float32Array(buf);
  }

  /**
   * Start `cache.options.threads` workers on the cache's memory.
   *
   * @example
   * ```ts
   * const cache = HostKvCache.create({ layers: 4, batch: 1, heads: 32, kvHeads: 8, headDim: 128, capacity: 65536, dtype: 'f16', threads: 8 });
   * const pool = await CpuAttentionPool.create(cache, { module: await loadOffloadWasm(), spawn: nodeWorkerSpawner });
   * await pool.attend(0, q, out);   // q, out: [batch, heads, headDim]
   * ```
   */
  static async create(cache: HostKvCache, options: CpuAttentionOptions): Promise<CpuAttentionPool> {
    if (!(options?.module instanceof WebAssembly.Module)) throw new UnsupportedError('module', 'is not a WebAssembly.Module', 'the compiled dist/wasm/offload.wasm (npm run build:wasm)');
    assertSharedMemory(); // before any worker is started
    const spawn = options.spawn ?? webWorkerSpawner;
    const source = workerMain.toString();
    const workers: PoolWorker[] = [];
    for (let id = 0; id < cache.options.threads; id++) workers.push(spawn({ memory: cache.memory, module: options.module, id, control: cache.layout.control }, source));
    await Promise.all(workers.map((w) => w.ready));
    const I = new Int32Array(cache.memory.buffer, cache.layout.control, CONTROL_WORDS);
    I[W_WORKERS] = workers.length;
    I[W_SCRATCH] = cache.layout.scratch | 0;
    I[W_SCRATCH_STRIDE] = cache.layout.scratchPerThread;
    return new CpuAttentionPool(cache, workers);
  }

  /** Publish the job in the control block, wake the workers, resolve when all have finished it. */
  private async runJob(total: number): Promise<void> {
    const I = this.I;
    Atomics.store(I, W_NEXT, 0);
    Atomics.store(I, W_DONE, 0);
    I[W_TOTAL] = total;
    Atomics.add(I, W_GEN, 1);
    Atomics.notify(I, W_GEN);
    // A pending Atomics.waitAsync does not keep Node's event loop alive (the workers are unref'd): hold a timer while waiting.
    const keepAlive = setInterval(() => undefined, 1 << 30);
    try {
      for (;;) {
        const done = Atomics.load(I, W_DONE);
        if (done === this.threads) return;
        const w = (Atomics as unknown as { waitAsync(a: Int32Array, i: number, v: number): { async: boolean; value: Promise<string> | string } }).waitAsync(I, W_DONE, done);
        if (w.async) await w.value;
      }
    } finally {
      clearInterval(keepAlive);
    }
  }

  /** Jobs run one at a time, in call order (concurrent callers, e.g. micro-batches, queue). */
  private serial<T>(job: () => Promise<T>): Promise<T> {
    if (this.stopped) return Promise.reject(new UnsupportedError('pool', 'the CPU-attention pool was destroyed', 'a live pool'));
    const next = this.chain.then(job, job);
    this.chain = next.catch(() => undefined);
    return next;
  }

  /**
   * Attention of one new query per sequence over layer `layer`'s cached keys
   * (append the new token's K/V first: it attends to itself).
   * `q` and `out` are `[batch, heads, headDim]` f32 over the whole batch; only the
   * job's sequences are read and written.
   */
  attend(layer: number, q: Float32Array, out: Float32Array, call: AttendCall = {}): Promise<void> {
    const o = this.cache.options;
    const b0 = call.batchStart ?? 0;
    const nb = call.batchCount ?? o.batch - b0;
    if (!Number.isInteger(b0) || !Number.isInteger(nb) || b0 < 0 || nb < 1 || b0 + nb > o.batch)
      throw new ShapeError('batchStart', `sequences [${b0}, ${b0 + nb}) are outside the batch`, `a range inside [0, ${o.batch})`);
    const need = o.batch * o.heads * o.headDim;
    if (q.length < need) throw new ShapeError('q', `has ${q.length} elements`, `at least ${need} ([batch, heads, headDim])`);
    if (out.length < need) throw new ShapeError('out', `has ${out.length} elements`, `at least ${need}`);
    if (!Number.isInteger(layer) || layer < 0 || layer >= o.layers) throw new ShapeError('layer', `got ${layer}`, `integers in [0, ${o.layers - 1}]`);
    const scale = call.scale ?? 1 / Math.sqrt(o.headDim);
    if (!Number.isFinite(scale) || scale === 0) throw new ShapeError('scale', `got ${scale}`, 'finite numbers ≠ 0');
    if (call.window !== undefined && (!Number.isInteger(call.window) || call.window < 1)) throw new ShapeError('window', `got ${call.window}`, 'integers ≥ 1');
    return this.serial(async () => {
      const I = this.I;
      const L = this.cache.layout;
      const Gq = o.heads / o.kvHeads;
      const D = o.headDim;
      let shortest = Infinity;
      for (let b = b0; b < b0 + nb; b++) {
        const len = this.cache.lengths[layer][b];
        I[W_LENGTHS + b] = len;
        shortest = Math.min(shortest, call.window ? Math.min(len, call.window) : len);
      }
      // Enough tasks for every thread (×4 for balance), none shorter than a few kernel blocks.
      const want = Math.ceil((4 * this.threads) / (nb * o.kvHeads));
      const splits = Math.max(1, Math.min(o.maxSplits, want, Math.floor(shortest / MIN_KEYS_PER_SPLIT)));
      const qOff = L.query / 4;
      const span = nb * o.heads * D;
      this.mem.set(q.subarray(b0 * o.heads * D, b0 * o.heads * D + span), qOff + b0 * o.heads * D);
      I[W_KIND] = KIND_ATTEND;
      I[W_G] = Gq;
      I[W_D] = D;
      I[W_SPLITS] = splits;
      I[W_HKV] = o.kvHeads;
      I[W_HALF] = o.dtype === 'f16' ? 1 : 0;
      I[W_KBASE] = L.k[layer] | 0;
      I[W_VBASE] = L.v[layer] | 0;
      I[W_CAP] = o.capacity;
      I[W_QBASE] = L.query | 0;
      I[W_ACC] = L.partialAcc | 0;
      I[W_STATS] = L.partialStats | 0;
      I[W_B0] = b0;
      this.F[W_SCALE] = scale * Math.LOG2E;
      I[W_WINDOW] = call.window ?? 0;
      await this.runJob(nb * o.kvHeads * splits);
      this.merge(nb, b0, splits, out);
    });
  }

  /** Combine the key ranges of each head: weights 2^(m_s − M), normalized by Σ l_s 2^(m_s − M). */
  private merge(nb: number, b0: number, splits: number, out: Float32Array): void {
    const o = this.cache.options;
    const D = o.headDim;
    const Gq = o.heads / o.kvHeads;
    const acc = this.mem;
    const accOff = this.cache.layout.partialAcc / 4;
    const statOff = this.cache.layout.partialStats / 4;
    for (let bl = 0; bl < nb; bl++) {
      for (let h = 0; h < o.kvHeads; h++) {
        for (let g = 0; g < Gq; g++) {
          const dst = ((b0 + bl) * o.heads + h * Gq + g) * D;
          let M = -Infinity;
          for (let s = 0; s < splits; s++) M = Math.max(M, acc[statOff + (((bl * o.kvHeads + h) * splits + s) * Gq + g) * 2]);
          out.fill(0, dst, dst + D);
          if (M === -Infinity) continue; // no keys: the row stays zero, as in the GPU kernel
          let l = 0;
          for (let s = 0; s < splits; s++) {
            const slot = (bl * o.kvHeads + h) * splits + s;
            const w = 2 ** (acc[statOff + (slot * Gq + g) * 2] - M);
            if (w === 0) continue;
            l += w * acc[statOff + (slot * Gq + g) * 2 + 1];
            const a = accOff + (slot * Gq + g) * D;
            for (let d = 0; d < D; d++) out[dst + d] += w * acc[a + d];
          }
          const inv = 1 / l;
          for (let d = 0; d < D; d++) out[dst + d] *= inv;
        }
      }
    }
  }

  /**
   * Memory bandwidth of this machine through the same threads and SIMD loads:
   * read `bytes` of `layer`'s K/V region (both tensors) and copy K onto V.
   * Returns GB/s (10⁹ B/s); copy counts bytes read + written. Overwrites the layer.
   */
  measureBandwidth(layer: number, repeats = 3): Promise<{ readGBs: number; copyGBs: number; bytes: number }> {
    return this.serial(async () => {
      const L = this.cache.layout;
      const bytes = L.v[layer] - L.k[layer];
      const chunk = 1 << 20;
      const tasks = Math.floor(bytes / chunk);
      if (tasks < 1) throw new ShapeError('layer', `a layer of ${bytes} bytes is too small to time`, 'layers of at least 1 MiB per tensor');
      const I = this.I;
      // Pages never written read as the shared zero page, which would inflate the figure.
      new Uint8Array(this.cache.memory.buffer, L.k[layer], 2 * bytes).fill(1);
      const time = async (kind: number): Promise<number> => {
        I[W_KIND] = kind;
        I[W_SRC] = L.k[layer] | 0;
        I[W_DST] = L.v[layer] | 0;
        I[W_CHUNK] = chunk;
        let best = Infinity;
        for (let r = 0; r < repeats; r++) {
          const t0 = performance.now();
          await this.runJob(kind === KIND_READ ? 2 * tasks : tasks); // read covers K and V
          best = Math.min(best, performance.now() - t0);
        }
        return best;
      };
      const readMs = await time(KIND_READ);
      const copyMs = await time(KIND_COPY);
      return { readGBs: (2 * tasks * chunk) / readMs / 1e6, copyGBs: (2 * tasks * chunk) / copyMs / 1e6, bytes: 2 * tasks * chunk };
    });
  }

  /** Stop and terminate the workers. */
  async destroy(): Promise<void> {
    if (this.stopped) return;
    await this.chain;
    this.stopped = true;
    this.I[W_KIND] = KIND_STOP;
    Atomics.add(this.I, W_GEN, 1);
    Atomics.notify(this.I, W_GEN);
    for (const w of this.workers) w.terminate();
  }
}
