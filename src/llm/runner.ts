/**
 * A decoder-only Llama-family runner on WebGPU whose attention goes through
 * this library: the fused FastAttention operator, or the standard-attention
 * baseline, selected by one flag so that a comparison isolates attention.
 *
 * One step (prefill chunk or decode) is one compute pass:
 *   embed → per layer [RMSNorm → QKV matmul → RoPE + cache write → attention →
 *   O matmul (+residual) → RMSNorm → gate/up matmul → SwiGLU → down matmul (+residual)]
 *   → final RMSNorm of each sequence's last token → logits → sample on the GPU.
 * The sampled token is written straight into the next step's input, so decode
 * submits step after step without reading anything back; generated tokens are
 * read once at the end (and the first one for time to first token).
 * Every buffer is created at construction (the ledger shows them); a step
 * allocates nothing.
 */
import { ShapeError, UnsupportedError } from '../errors.js';
import type { FlashAttentionPrefill } from '../attention/flashAttentionPrefill.js';
import type { StandardAttention } from '../attention/standardAttention.js';
import type { TileConfig } from '../tiling/tileConfig.js';
import type { FastAttentionRuntime } from '../runtime/runtime.js';
import { BufferUsage, MapMode } from '../runtime/usage.js';
import type { LlamaConfig } from './config.js';
import { grid, llmKernels, LlmKernelSet, type LlmOp } from './kernels.js';
import { ContiguousKvCache, type KvCache } from './kvCache.js';
import type { LlamaWeights } from './weights.js';

/** Which attention the runner uses. */
export type AttentionImpl = 'fast' | 'standard';

/** Workgroup tile of the prefill matrix product (shaders/llm/gemm.wgsl). */
export interface GemmTile {
  tileM: number;
  tileN: number;
  tileK: number;
  tm: number;
  tn: number;
}

/** 32×32 tiles, 64 invocations: software adapters (slow at barriers of wide workgroups) and small problems. */
export const GEMM_TILE_SMALL: GemmTile = { tileM: 32, tileN: 32, tileK: 16, tm: 4, tn: 4 };
/** 128×128 tiles with 8×8 per invocation: more reuse per load on large GPUs. */
export const GEMM_TILE_LARGE: GemmTile = { tileM: 128, tileN: 128, tileK: 16, tm: 8, tn: 8 };

export interface LlamaRunnerOptions {
  /** `fast` (default): the fused FastAttention operator. `standard`: the unfused baseline. */
  attention?: AttentionImpl;
  /** Sequences generated together. */
  maxBatch: number;
  /** Tokens per sequence the cache is planned for: prompt + generated. */
  maxSeqLen: number;
  /** Prompt tokens per sequence processed per prefill pass; default min(maxSeqLen, 4096) (bounds activation memory). */
  prefillChunk?: number;
  /** Tile of the prefill matrix product; default by device (large on hardware GPUs). */
  gemmTile?: GemmTile;
  /** Workgroup widths of the reduction kernels: `wide` for GPUs, `narrow` for software adapters; default by device. */
  reductions?: 'wide' | 'narrow';
  /** Tile of the fused attention for prefill; default the library's choice (a small one on software adapters). */
  prefillTile?: TileConfig;
  /** Tile of the fused attention for decode (one query row per sequence): default a short-blockQ one. */
  decodeTile?: TileConfig;
  /** A KV cache to use instead of a contiguous one (e.g. a paged cache); must match the model and plan. */
  kvCache?: KvCache;
}

export interface GenerateOptions {
  /** Tokens to generate per sequence (≥ 1; the first comes from the prefill). */
  maxNewTokens: number;
  /** 0 (default): greedy. > 0: sample from softmax(logits / temperature). */
  temperature?: number;
  /** Seed of the sampling noise. */
  seed?: number;
}

export interface GenerateResult {
  /** Generated tokens per sequence. */
  tokens: number[][];
  /** Creating the operators for this request shape (compiles, baseline masks); not in the times below. */
  planMs: number;
  /** From the first upload to the first token read back. */
  ttftMs: number;
  /** From the first upload to the last token read back. */
  totalMs: number;
  /** totalMs − ttftMs: the decode steps. */
  decodeMs: number;
}

/**
 * Workgroup widths of the reduction kernels. Software adapters run a workgroup's
 * invocations as fibers and pay per barrier per invocation, so they get narrow
 * workgroups; GPUs get wide ones for memory parallelism.
 */
interface ReductionShape {
  gemvGroup: number;
  gemvRows: number;
  normThreads: number;
  sampleThreads: number;
  rowThreads: number;
}
const WIDE: ReductionShape = { gemvGroup: 64, gemvRows: 4, normThreads: 256, sampleThreads: 256, rowThreads: 128 };
const NARROW: ReductionShape = { gemvGroup: 4, gemvRows: 16, normThreads: 32, sampleThreads: 32, rowThreads: 32 };

/** Fused-attention tile for software adapters: 64 invocations, few barriers per key block. */
export const SOFTWARE_ATTENTION_TILE: TileConfig = { blockQ: 8, blockKV: 16, rowsPerThread: 1, threadsPerRow: 8, chunk: 4, kvStages: 1 };
/**
 * Decode has one query row per sequence, so a workgroup's time is its walk over
 * the keys, bound by barriers: 64-key blocks in 16-deep slices need ~4× fewer
 * barriers per key than 32-key blocks in 8-deep slices; 16 query rows waste less than 64.
 */
export const DECODE_ATTENTION_TILE: TileConfig = { blockQ: 16, blockKV: 64, rowsPerThread: 1, threadsPerRow: 16, chunk: 16, kvStages: 1 };

/** Decode batches up to this size use the GEMV kernel; larger ones the GEMM. */
const GEMV_MAX_ROWS = 16;
const OWNER = 'llm.runner';

interface AttentionStep {
  batch: number;
  /** Query tokens per sequence. */
  seqQ: number;
  /** Keys visible to the last query of each sequence (= start + seqQ). */
  kvLen: number;
}

export class LlamaRunner {
  readonly config: LlamaConfig;
  readonly attention: AttentionImpl;
  readonly maxBatch: number;
  readonly maxSeqLen: number;
  readonly prefillChunk: number;
  readonly gemmTile: GemmTile;
  readonly prefillTile: TileConfig | undefined;
  readonly decodeTile: TileConfig;
  readonly cache: KvCache;
  private readonly ownsCache: boolean;
  private readonly kernels: LlmKernelSet;
  private readonly bufs: Record<'tokens' | 'meta' | 'x' | 'xn' | 'qkv' | 'q' | 'attnOut' | 'gateUp' | 'h' | 'last' | 'logits' | 'history' | 'rope' | 'logitsStaging' | 'historyStaging', GPUBuffer>;
  private readonly fastOps = new Map<string, Promise<FlashAttentionPrefill>>();
  private readonly standardOps = new Map<string, Promise<StandardAttention>>();
  private readonly metaScratch: Uint32Array<ArrayBuffer>;
  private readonly kvScratch: Uint32Array;
  private readonly shape: ReductionShape;
  private ops!: {
    gemm: LlmOp;
    gemv: Map<number, LlmOp>;
    rmsNorm: LlmOp;
    rope: LlmOp;
    swiglu: LlmOp;
    embed: LlmOp;
    sample: LlmOp;
  };

  private constructor(
    private readonly runtime: FastAttentionRuntime,
    private readonly weights: LlamaWeights,
    options: LlamaRunnerOptions,
  ) {
    const c = weights.config;
    this.config = c;
    this.attention = options.attention ?? 'fast';
    if (this.attention !== 'fast' && this.attention !== 'standard')
      throw new UnsupportedError('attention', `unknown attention ${JSON.stringify(this.attention)}`, 'fast, standard');
    const { maxBatch, maxSeqLen } = options;
    if (!Number.isInteger(maxBatch) || maxBatch < 1) throw new ShapeError('maxBatch', `must be a positive integer, got ${maxBatch}`, 'integers ≥ 1');
    if (!Number.isInteger(maxSeqLen) || maxSeqLen < 2) throw new ShapeError('maxSeqLen', `must be an integer ≥ 2, got ${maxSeqLen}`, 'integers ≥ 2');
    this.maxBatch = maxBatch;
    this.maxSeqLen = maxSeqLen;
    const chunk = options.prefillChunk ?? Math.min(maxSeqLen, 4096);
    if (!Number.isInteger(chunk) || chunk < 1) throw new ShapeError('prefillChunk', `must be a positive integer, got ${chunk}`, 'integers ≥ 1');
    this.prefillChunk = Math.min(chunk, maxSeqLen);
    const L = runtime.capabilities.limits;
    const software = runtime.capabilities.adapter.isSoftware;
    this.gemmTile = options.gemmTile ?? (software ? GEMM_TILE_SMALL : GEMM_TILE_LARGE);
    const reductions = options.reductions ?? (software ? 'narrow' : 'wide');
    if (reductions !== 'wide' && reductions !== 'narrow') throw new UnsupportedError('reductions', `unknown ${JSON.stringify(reductions)}`, 'wide, narrow');
    this.shape = reductions === 'wide' ? WIDE : NARROW;
    this.prefillTile = options.prefillTile ?? (software ? SOFTWARE_ATTENTION_TILE : undefined);
    this.decodeTile = options.decodeTile ?? (software ? SOFTWARE_ATTENTION_TILE : DECODE_ATTENTION_TILE);
    const t = this.gemmTile;
    const threads = (t.tileM / t.tm) * (t.tileN / t.tn);
    if (!Number.isInteger(threads) || threads > L.maxComputeInvocationsPerWorkgroup || t.tileK % 8 !== 0 || (t.tileK * (t.tileM + t.tileN) * 4) > L.maxComputeWorkgroupStorageSize)
      throw new UnsupportedError('gemmTile', `${JSON.stringify(t)} needs ${threads} invocations and ${t.tileK * (t.tileM + t.tileN) * 4} bytes of workgroup storage`, `tiles within ${L.maxComputeInvocationsPerWorkgroup} invocations and ${L.maxComputeWorkgroupStorageSize} bytes, tileK a multiple of 8`);
    const Hq = c.numHeads * c.headDim;
    const Hkv = c.numKvHeads * c.headDim;
    if (this.attention === 'standard' && (Hq * 4) % L.minStorageBufferOffsetAlignment !== 0)
      throw new UnsupportedError('attention', `the baseline runs per sequence at byte offsets of numHeads·headDim·4 = ${Hq * 4}`, `models with numHeads·headDim·4 a multiple of ${L.minStorageBufferOffsetAlignment}`);
    const tokens = maxBatch * this.prefillChunk;
    if (tokens > L.maxComputeWorkgroupsPerDimension)
      throw new ShapeError('prefillChunk', `maxBatch · prefillChunk = ${tokens} rows exceeds ${L.maxComputeWorkgroupsPerDimension} workgroups`, `maxBatch · prefillChunk ≤ ${L.maxComputeWorkgroupsPerDimension}`);
    if (options.kvCache) {
      const kc = options.kvCache;
      if (kc.numLayers !== c.numLayers || kc.maxBatch < maxBatch || kc.capacity < maxSeqLen)
        throw new ShapeError('kvCache', `holds ${kc.numLayers} layers × ${kc.maxBatch} sequences × ${kc.capacity} tokens`, `at least ${c.numLayers} layers × ${maxBatch} × ${maxSeqLen}`);
      this.cache = kc;
      this.ownsCache = false;
    } else {
      this.cache = new ContiguousKvCache(runtime, c.numLayers, maxBatch, maxSeqLen, c.numKvHeads, c.headDim);
      this.ownsCache = true;
    }
    this.kernels = new LlmKernelSet(runtime);
    const S = BufferUsage.STORAGE;
    const make = (name: string, bytes: number, usage: number): GPUBuffer => {
      if (bytes > L.maxStorageBufferBindingSize && (usage & S))
        throw new ShapeError('prefillChunk', `the ${name} activations of ${tokens} tokens need ${bytes} bytes, over maxStorageBufferBindingSize (${L.maxStorageBufferBindingSize})`, 'a smaller maxBatch · prefillChunk');
      return runtime.ledger.create(OWNER, { label: `${OWNER}.${name}`, size: Math.max(16, bytes), usage });
    };
    const halfD = c.headDim / 2;
    this.bufs = {
      tokens: make('tokens', tokens * 4, S | BufferUsage.COPY_DST),
      meta: make('meta', tokens * 8, S | BufferUsage.COPY_DST),
      x: make('x', tokens * c.hiddenSize * 4, S),
      xn: make('xn', tokens * c.hiddenSize * 4, S),
      qkv: make('qkv', tokens * (Hq + 2 * Hkv) * 4, S),
      q: make('q', tokens * Hq * 4, S),
      attnOut: make('attnOut', tokens * Hq * 4, S),
      gateUp: make('gateUp', tokens * 2 * c.intermediateSize * 4, S),
      h: make('h', tokens * c.intermediateSize * 4, S),
      last: make('last', maxBatch * c.hiddenSize * 4, S),
      logits: make('logits', maxBatch * c.vocabSize * 4, S | BufferUsage.COPY_SRC),
      history: make('history', maxSeqLen * maxBatch * 4, S | BufferUsage.COPY_SRC),
      rope: make('rope', this.cache.capacity * halfD * 8, S | BufferUsage.COPY_DST),
      logitsStaging: make('logitsStaging', maxBatch * c.vocabSize * 4, BufferUsage.MAP_READ | BufferUsage.COPY_DST),
      historyStaging: make('historyStaging', maxSeqLen * maxBatch * 4, BufferUsage.MAP_READ | BufferUsage.COPY_DST),
    };
    // cos/sin of every (position, pair) in float64, stored f32: f32 angles lose accuracy at long positions.
    const table = new Float32Array(this.cache.capacity * halfD * 2);
    for (let p = 0; p < this.cache.capacity; p++)
      for (let i = 0; i < halfD; i++) {
        const angle = p * Math.pow(c.ropeTheta, (-2 * i) / c.headDim);
        table[2 * (p * halfD + i)] = Math.cos(angle);
        table[2 * (p * halfD + i) + 1] = Math.sin(angle);
      }
    runtime.device.queue.writeBuffer(this.bufs.rope, 0, table);
    this.metaScratch = new Uint32Array(tokens * 2);
    this.kvScratch = new Uint32Array(maxBatch);
  }

  /**
   * Plan a runner for a model: allocate the cache and activations for
   * `maxBatch` sequences of `maxSeqLen` tokens and compile its kernels.
   *
   * @example
   * ```ts
   * const weights = LlamaWeights.fromCheckpoint(rt, await loadLlamaCheckpoint(source), 'f16');
   * const runner = await LlamaRunner.create(rt, weights, { maxBatch: 1, maxSeqLen: 1024, attention: 'fast' });
   * const { tokens } = await runner.generate([promptIds], { maxNewTokens: 32 });
   * ```
   */
  static async create(runtime: FastAttentionRuntime, weights: LlamaWeights, options: LlamaRunnerOptions): Promise<LlamaRunner> {
    runtime.assertAlive();
    const r = new LlamaRunner(runtime, weights, options);
    try {
      await r.compile();
    } catch (e) {
      r.destroy();
      throw e;
    }
    return r;
  }

  private async compile(): Promise<void> {
    const f16 = this.weights.dtype === 'f16';
    const t = this.gemmTile;
    const k = this.kernels;
    const sh = this.shape;
    const gemvRows = Array.from({ length: Math.min(this.maxBatch, GEMV_MAX_ROWS) }, (_, i) => i + 1);
    const [gemm, rmsNorm, rope, swiglu, embed, sample, ...gemvs] = await Promise.all([
      k.op(llmKernels.gemm, 'gemm', { TILE_M: t.tileM, TILE_N: t.tileN, TILE_K: t.tileK, TM: t.tm, TN: t.tn, WEIGHT_F16: f16 }),
      k.op(llmKernels.rmsNorm, 'rmsNorm', { THREADS: sh.normThreads }),
      k.op(llmKernels.rope, 'ropeScatter', { THREADS: sh.rowThreads }),
      k.op(llmKernels.swiglu, 'swiglu'),
      k.op(llmKernels.embedding, 'embed', { WEIGHT_F16: f16, THREADS: sh.rowThreads }),
      k.op(llmKernels.sampling, 'sampleTokens', { THREADS: sh.sampleThreads }),
      ...gemvRows.map((m) => k.op(llmKernels.gemv, 'gemv', { BATCH: m, WEIGHT_F16: f16, GROUP: sh.gemvGroup, ROWS_PER_WG: sh.gemvRows })),
    ]);
    this.ops = { gemm, rmsNorm, rope, swiglu, embed, sample, gemv: new Map(gemvRows.map((m, i) => [m, gemvs[i]])) };
  }

  // ---- planning of attention operators ----

  private fastOp(step: AttentionStep): Promise<FlashAttentionPrefill> {
    const key = `${step.batch}:${step.seqQ}`;
    let op = this.fastOps.get(key);
    if (!op) {
      const c = this.config;
      op = this.runtime.createPrefill({
        q: { shape: [step.batch, c.numHeads, step.seqQ, c.headDim], layout: 'BSHD' },
        k: this.cache.batchView(step.batch),
        v: this.cache.batchView(step.batch),
        causal: true,
        tile: step.seqQ === 1 ? this.decodeTile : this.prefillTile,
      });
      this.fastOps.set(key, op);
      op.catch(() => this.fastOps.delete(key));
    }
    return op;
  }

  /** The baseline bakes its key length into its dense mask: one operator per (query length, key length), run per sequence. */
  private standardOp(step: AttentionStep): Promise<StandardAttention> {
    const key = `${step.seqQ}:${step.kvLen}`;
    let op = this.standardOps.get(key);
    if (!op) {
      const c = this.config;
      const kv = { shape: [1, c.numKvHeads, step.kvLen, c.headDim] as const, layout: 'BSHD' as const };
      op = this.runtime.createStandardAttention({ q: { shape: [1, c.numHeads, step.seqQ, c.headDim], layout: 'BSHD' }, k: kv, v: kv, causal: true });
      this.standardOps.set(key, op);
      op.catch(() => this.standardOps.delete(key));
    }
    return op;
  }

  private async planAttention(steps: AttentionStep[]): Promise<Array<FlashAttentionPrefill | StandardAttention>> {
    return Promise.all(steps.map((s) => (this.attention === 'fast' ? this.fastOp(s) : this.standardOp(s))));
  }

  /** Release the baseline's per-length operators (they hold S×S intermediates). */
  releaseAttentionPlans(): void {
    for (const p of this.standardOps.values()) p.then((op) => op.destroy(), () => undefined);
    this.standardOps.clear();
  }

  // ---- encoding ----

  private matmul(pass: GPUComputePassEncoder, x: GPUBuffer, w: GPUBuffer, y: GPUBuffer, M: number, N: number, K: number, accumulate: boolean): void {
    const maxGroups = this.runtime.capabilities.limits.maxComputeWorkgroupsPerDimension;
    const gemv = M <= GEMV_MAX_ROWS ? this.ops.gemv.get(M) : undefined;
    if (gemv) {
      this.kernels.dispatch(pass, gemv, { N, K, accumulate: accumulate ? 1 : 0 }, [x, w, y], grid(Math.ceil(N / this.shape.gemvRows), maxGroups));
      return;
    }
    const t = this.gemmTile;
    this.kernels.dispatch(pass, this.ops.gemm, { M, N, K, accumulate: accumulate ? 1 : 0 }, [x, w, y], [Math.ceil(N / t.tileN), Math.ceil(M / t.tileM), 1]);
  }

  /**
   * One pass over all layers for `batch` sequences of `seqQ` new tokens each
   * (rows b·seqQ + s), then the last token of each sequence to a sampled token.
   */
  private encodeStep(pass: GPUComputePassEncoder, step: AttentionStep, attn: FlashAttentionPrefill | StandardAttention, sampleStep: number, temperature: number, seed: number, head: boolean): void {
    const c = this.config;
    const b = this.bufs;
    const w = this.weights;
    const T = step.batch * step.seqQ;
    const H = c.hiddenSize;
    const Hq = c.numHeads * c.headDim;
    const Hkv = c.numKvHeads * c.headDim;
    const maxGroups = this.runtime.capabilities.limits.maxComputeWorkgroupsPerDimension;
    const eps = c.rmsNormEps;
    const kv = this.kvScratch.subarray(0, step.batch).fill(step.kvLen);
    this.kernels.dispatch(pass, this.ops.embed, { tokens: T, dim: H }, [b.tokens, w.embed, b.x], grid(T, maxGroups));
    for (let l = 0; l < c.numLayers; l++) {
      const lw = w.layers[l];
      const cache = this.cache.layer(l);
      this.kernels.dispatch(pass, this.ops.rmsNorm, { rows: T, dim: H, rowStep: 1, rowOffset: 0, eps }, [b.x, lw.attnNorm, b.xn], [T, 1, 1]);
      this.matmul(pass, b.xn, lw.qkv, b.qkv, T, Hq + 2 * Hkv, H, false);
      this.kernels.dispatch(pass, this.ops.rope, { tokens: T, headsQ: c.numHeads, headsKV: c.numKvHeads, headDim: c.headDim }, [b.qkv, b.meta, b.rope, b.q, cache.k, cache.v], grid(T, maxGroups));
      if (this.attention === 'fast') {
        (attn as FlashAttentionPrefill).encode(pass, { q: b.q, k: cache.k, v: cache.v, o: b.attnOut }, { kvLengths: kv });
      } else {
        for (let s = 0; s < step.batch; s++) {
          const view = this.cache.sequenceView(l, s);
          const at = s * step.seqQ * Hq * 4;
          (attn as StandardAttention).encode(pass, { q: { buffer: b.q, offset: at }, k: view.k, v: view.v, o: { buffer: b.attnOut, offset: at } });
        }
      }
      this.matmul(pass, b.attnOut, lw.o, b.x, T, H, Hq, true);
      this.kernels.dispatch(pass, this.ops.rmsNorm, { rows: T, dim: H, rowStep: 1, rowOffset: 0, eps }, [b.x, lw.mlpNorm, b.xn], [T, 1, 1]);
      this.matmul(pass, b.xn, lw.gateUp, b.gateUp, T, 2 * c.intermediateSize, H, false);
      this.kernels.dispatch(pass, this.ops.swiglu, { tokens: T, inter: c.intermediateSize }, [b.gateUp, b.h], grid(Math.ceil((T * c.intermediateSize) / 256), maxGroups));
      this.matmul(pass, b.h, lw.down, b.x, T, H, c.intermediateSize, true);
    }
    if (!head) return;
    this.kernels.dispatch(pass, this.ops.rmsNorm, { rows: step.batch, dim: H, rowStep: step.seqQ, rowOffset: step.seqQ - 1, eps }, [b.x, w.finalNorm, b.last], [step.batch, 1, 1]);
    this.matmul(pass, b.last, w.lmHead, b.logits, step.batch, c.vocabSize, H, false);
    this.kernels.dispatch(pass, this.ops.sample, { vocab: c.vocabSize, batch: step.batch, step: sampleStep, seed: seed >>> 0, temperature }, [b.logits, b.tokens, b.history], [step.batch, 1, 1]);
  }

  private writeTokens(prompts: readonly (readonly number[])[], s0: number, s1: number): void {
    const n = s1 - s0;
    const ids = new Uint32Array(prompts.length * n);
    const meta = this.metaScratch;
    prompts.forEach((p, b) => {
      for (let s = s0; s < s1; s++) {
        const row = b * n + (s - s0);
        ids[row] = p[s];
        meta[2 * row] = s;
        meta[2 * row + 1] = this.cache.slot(b, s);
      }
    });
    this.runtime.device.queue.writeBuffer(this.bufs.tokens, 0, ids);
    this.runtime.device.queue.writeBuffer(this.bufs.meta, 0, meta, 0, prompts.length * n * 2);
  }

  private writeDecodeMeta(batch: number, pos: number): void {
    const meta = this.metaScratch;
    for (let b = 0; b < batch; b++) {
      meta[2 * b] = pos;
      meta[2 * b + 1] = this.cache.slot(b, pos);
    }
    this.runtime.device.queue.writeBuffer(this.bufs.meta, 0, meta, 0, batch * 2);
  }

  /** Validate prompts against the plan; every sequence must have the same length. */
  private checkPrompts(prompts: readonly (readonly number[])[], newTokens: number): number {
    if (!Array.isArray(prompts) || prompts.length < 1 || prompts.length > this.maxBatch)
      throw new ShapeError('prompts', `has ${Array.isArray(prompts) ? prompts.length : 'no'} sequences`, `1 to ${this.maxBatch} sequences (the planned maxBatch)`);
    const P = prompts[0].length;
    prompts.forEach((p, b) => {
      if (p.length !== P) throw new ShapeError(`prompts[${b}]`, `has ${p.length} tokens but prompts[0] has ${P}`, `${P} tokens (sequences of a batch share one length)`);
      p.forEach((id: number, i: number) => {
        if (!Number.isInteger(id) || id < 0 || id >= this.config.vocabSize)
          throw new ShapeError(`prompts[${b}][${i}]`, `token id ${id} is outside the vocabulary`, `integers in [0, ${this.config.vocabSize})`);
      });
    });
    if (P < 1) throw new ShapeError('prompts[0]', 'is empty', 'at least one token');
    if (P + newTokens > this.maxSeqLen)
      throw new ShapeError('prompts', `${P} prompt tokens + ${newTokens} new tokens exceed the planned cache of ${this.maxSeqLen} tokens per sequence`, `prompt + maxNewTokens ≤ ${this.maxSeqLen}`);
    return P;
  }

  private prefillSteps(batch: number, P: number): AttentionStep[] {
    const steps: AttentionStep[] = [];
    for (let s0 = 0; s0 < P; s0 += this.prefillChunk) {
      const s1 = Math.min(P, s0 + this.prefillChunk);
      steps.push({ batch, seqQ: s1 - s0, kvLen: s1 });
    }
    return steps;
  }

  /** Encode and submit the prefill, chunk by chunk; the last chunk samples the first token (history row 0). */
  private submitPrefill(prompts: readonly (readonly number[])[], steps: AttentionStep[], ops: Array<FlashAttentionPrefill | StandardAttention>, temperature: number, seed: number): void {
    const device = this.runtime.device;
    steps.forEach((step, i) => {
      this.writeTokens(prompts, step.kvLen - step.seqQ, step.kvLen);
      const enc = device.createCommandEncoder({ label: 'llm.prefill' });
      const pass = enc.beginComputePass({ label: 'llm.prefill' });
      this.encodeStep(pass, step, ops[i], 0, temperature, seed, i === steps.length - 1);
      pass.end();
      device.queue.submit([enc.finish()]);
    });
  }

  private async readHistory(rows: number, batch: number): Promise<Uint32Array> {
    const device = this.runtime.device;
    const bytes = rows * batch * 4;
    const enc = device.createCommandEncoder();
    enc.copyBufferToBuffer(this.bufs.history, 0, this.bufs.historyStaging, 0, bytes);
    device.queue.submit([enc.finish()]);
    await this.bufs.historyStaging.mapAsync(MapMode.READ, 0, bytes);
    const out = new Uint32Array(this.bufs.historyStaging.getMappedRange(0, bytes).slice(0));
    this.bufs.historyStaging.unmap();
    return out;
  }

  /**
   * Logits of the last prompt position of each sequence, `[batch, vocab]`
   * (runs the prefill; the cache then holds the prompts).
   */
  async logits(prompts: readonly (readonly number[])[]): Promise<Float32Array> {
    this.runtime.assertAlive();
    const P = this.checkPrompts(prompts, 0);
    const steps = this.prefillSteps(prompts.length, P);
    const ops = await this.planAttention(steps);
    this.submitPrefill(prompts, steps, ops, 0, 0);
    const device = this.runtime.device;
    const bytes = prompts.length * this.config.vocabSize * 4;
    const enc = device.createCommandEncoder();
    enc.copyBufferToBuffer(this.bufs.logits, 0, this.bufs.logitsStaging, 0, bytes);
    device.queue.submit([enc.finish()]);
    await this.bufs.logitsStaging.mapAsync(MapMode.READ, 0, bytes);
    const out = new Float32Array(this.bufs.logitsStaging.getMappedRange(0, bytes).slice(0));
    this.bufs.logitsStaging.unmap();
    return out;
  }

  /**
   * Generate `maxNewTokens` tokens for each prompt (all of one length), greedy
   * or sampled, with the times a serving benchmark reports.
   */
  async generate(prompts: readonly (readonly number[])[], options: GenerateOptions): Promise<GenerateResult> {
    this.runtime.assertAlive();
    const n = options.maxNewTokens;
    if (!Number.isInteger(n) || n < 1) throw new ShapeError('maxNewTokens', `must be a positive integer, got ${n}`, 'integers ≥ 1');
    const temperature = options.temperature ?? 0;
    if (!Number.isFinite(temperature) || temperature < 0) throw new ShapeError('temperature', `must be a finite number ≥ 0, got ${temperature}`, '0 (greedy) or a positive temperature');
    const seed = options.seed ?? 0;
    const P = this.checkPrompts(prompts, n);
    const B = prompts.length;
    const t0 = performance.now();
    const prefillSteps = this.prefillSteps(B, P);
    const decodeSteps: AttentionStep[] = [];
    for (let i = 1; i < n; i++) decodeSteps.push({ batch: B, seqQ: 1, kvLen: P + i });
    const [prefillOps, decodeOps] = await Promise.all([this.planAttention(prefillSteps), this.planAttention(decodeSteps)]);
    const planMs = performance.now() - t0;

    const device = this.runtime.device;
    const start = performance.now();
    this.submitPrefill(prompts, prefillSteps, prefillOps, temperature, seed);
    await this.readHistory(1, B);
    const ttft = performance.now() - start;
    decodeSteps.forEach((step, i) => {
      // The token fed at this step sits at position kvLen − 1; the sampler already wrote its id into `tokens`.
      this.writeDecodeMeta(B, step.kvLen - 1);
      const enc = device.createCommandEncoder({ label: 'llm.decode' });
      const pass = enc.beginComputePass({ label: 'llm.decode' });
      this.encodeStep(pass, step, decodeOps[i], i + 1, temperature, seed, true);
      pass.end();
      device.queue.submit([enc.finish()]);
    });
    const history = await this.readHistory(n, B);
    const total = performance.now() - start;
    if (this.attention === 'standard') this.releaseAttentionPlans();
    const tokens = Array.from({ length: B }, (_, b) => Array.from({ length: n }, (_, s) => history[s * B + b]));
    return { tokens, planMs, ttftMs: ttft, totalMs: total, decodeMs: total - ttft };
  }

  /** Bytes the runner holds on the GPU besides the weights: cache, activations, staging. */
  get bytes(): number {
    let n = this.ownsCache ? this.cache.bytes : 0;
    for (const b of Object.values(this.bufs)) n += b.size;
    return n;
  }

  /** Release the runner's buffers and operators (not the weights, not a cache it was given). */
  destroy(): void {
    for (const b of Object.values(this.bufs ?? {})) this.runtime.ledger.destroy(b);
    for (const p of this.fastOps.values()) p.then((op) => op.destroy(), () => undefined);
    this.fastOps.clear();
    this.releaseAttentionPlans();
    this.kernels.destroy();
    if (this.ownsCache) this.cache.destroy();
  }
}

