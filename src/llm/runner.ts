/**
 * A decoder-only Llama-family runner on WebGPU whose attention goes through
 * this library: the fused FastAttention operator, or the standard-attention
 * baseline, selected by one flag so that a comparison isolates attention.
 *
 * One step (prefill chunk or decode) is one command buffer:
 *   embed → per layer [RMSNorm → QKV matmul → RoPE + K/V write → attention →
 *   O matmul (+residual) → RMSNorm → gate/up matmul → SwiGLU → down matmul (+residual)]
 *   → final RMSNorm of each sequence's last token → logits → sample on the GPU.
 *
 * Fast path (`attention: 'fast'`): the KV cache is paged ({@link PagedLlmKvCache},
 * one PagedKvCache per layer). With one pool buffer per layer (the usual case)
 * positions are reserved first and RoPE stores K/V straight into their page
 * slots; otherwise RoPE writes a staging buffer and `PagedKvCache.append` copies
 * the rows into pages (between two compute passes). The first prefill chunk runs
 * the fused FastAttention operator over the chunk's own K/V rows (contiguous
 * staging, any tier); a later chunk of a chunked prefill runs it over the pages
 * in place (`createPrefill({ q, cache })`, one operator per layer, vector tiers);
 * decode runs the split-KV decode operator over the pages (GQA, one query per
 * sequence). Baseline (`'standard'`): RoPE writes into a contiguous
 * cache that the unfused operator reads per sequence; GEMMs, norms and sampling
 * are the same kernels, so a comparison isolates attention and its KV handling.
 *
 * Precision: with f16 weights on a device with shader-f16, the matrix-product
 * inputs (normed rows, SwiGLU output), attention's Q/K/V/O and the KV cache are
 * f16 (`activations: 'f16'`); the residual stream, norm statistics, GEMM
 * accumulation and outputs, and the logits stay f32. With subgroup matrices the prefill GEMMs run on tensor
 * cores (shaders/llm/gemmMatrix.wgsl, f16 × f16 → f32).
 * The sampled token is written straight into the next step's input, so decode
 * submits step after step without reading anything back; generated tokens are
 * read once at the end (and the first one for time to first token).
 * Every buffer is created at construction (the ledger shows them); a step
 * allocates nothing.
 */
import { ShapeError, UnsupportedError } from '../errors.js';
import { MAX_PREFILL_POOL_BUFFERS, type FlashAttentionPrefill } from '../attention/flashAttentionPrefill.js';
import type { StandardAttention } from '../attention/standardAttention.js';
import type { AttentionOptions } from '../attention/problem.js';
import { hasSubgroupMatrix16 } from '../attention/tiers.js';
import type { FlashDecode } from '../decode/flashDecode.js';
import type { KvDType } from '../kvcache/pagedKvCache.js';
import type { TileConfig } from '../tiling/tileConfig.js';
import type { FastAttentionRuntime } from '../runtime/runtime.js';
import { BufferUsage, MapMode } from '../runtime/usage.js';
import type { LlamaConfig } from './config.js';
import { grid, llmKernels, LlmKernelSet, type LlmOp } from './kernels.js';
import { ContiguousKvCache, PagedLlmKvCache } from './kvCache.js';
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
  /** Tile of the fused attention for prefill (f32 or f16 tier); default the library's choice (a small one on software adapters). */
  prefillTile?: TileConfig;
  /**
   * Storage type of the matrix-product inputs, attention's Q, K, V, O and the KV
   * cache. Default `f16` with f16 weights on a device with shader-f16, else `f32`.
   */
  activations?: KvDType;
  /**
   * Prefill matrix products: `matrix` (subgroup matrices, f16 weights; the default
   * where the device has them) or `tiled` (f32 FMA, any device).
   */
  gemm?: GemmKind;
  /** Tokens per page of the fast path's paged KV cache (a power of two ≥ 8); default 256, 1024 beyond 4096 tokens. */
  pageTokens?: number;
  /**
   * Cap on the bytes of one pool buffer of the paged cache; default the device's
   * binding limit. With more than one pool per layer K/V are appended (copies)
   * instead of written in place. A chunked prefill (`prefillChunk` < `maxSeqLen`)
   * reads the pages through the fused operator, which binds at most 2 pool
   * buffers per layer: more is rejected at creation (`UnsupportedError`).
   */
  kvPoolBytes?: number;
}

/** Which prefill matrix-product kernel the runner uses. */
export type GemmKind = 'matrix' | 'tiled';

/** K granularity of the subgroup-matrix GEMM (its BK); other K fall back to the tiled GEMM. */
export const MATRIX_GEMM_BK = 64;

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

/** Decode batches up to this size use the GEMV kernel; larger ones the GEMM. */
const GEMV_MAX_ROWS = 16;
/** Block of C one subgroup-matrix GEMM workgroup computes (shaders/llm/gemmMatrix.wgsl defaults: 2 × 4 subgroups of 32 × 32). */
const MATRIX_TILE_M = 64;
const MATRIX_TILE_N = 128;
/** Same for shaders/llm/gemmMatrixDirect.wgsl (2 × 2 subgroups of 32 × 64). */
const DIRECT_TILE_M = 64;
const DIRECT_TILE_N = 128;
/** Activation buffers hold a multiple of this many rows: the direct matrix GEMM loads whole 64-row blocks of A. */
const ROW_PAD = 64;
const OWNER = 'llm.runner';

interface AttentionStep {
  batch: number;
  /** Query tokens per sequence. */
  seqQ: number;
  /** Keys visible to the last query of each sequence (= start + seqQ). */
  kvLen: number;
  /** A decode step (one token per sequence after the prefill). */
  decode: boolean;
}

/**
 * The attention of one step: the fused prefill operator over the step's own K/V
 * (a first prefill chunk), the fused operator over each layer's pages (a later
 * chunk: the operator is bound to its layer's cache), the split-KV decode
 * operators (per layer), or the baseline.
 */
type StepAttention =
  | { kind: 'prefill'; op: FlashAttentionPrefill }
  | { kind: 'pagedPrefill'; ops: FlashAttentionPrefill[] }
  | { kind: 'decode' }
  | { kind: 'standard'; op: StandardAttention };

export class LlamaRunner {
  readonly config: LlamaConfig;
  readonly attention: AttentionImpl;
  readonly maxBatch: number;
  readonly maxSeqLen: number;
  readonly prefillChunk: number;
  readonly gemmTile: GemmTile;
  readonly prefillTile: TileConfig | undefined;
  /** Storage type of attention's tensors and the KV cache. */
  readonly activations: KvDType;
  readonly gemmKind: GemmKind;
  /** The fast path's paged cache (undefined on the baseline). */
  readonly pagedCache: PagedLlmKvCache | undefined;
  /** The baseline's contiguous cache (undefined on the fast path). */
  readonly contiguousCache: ContiguousKvCache | undefined;
  private readonly kernels: LlmKernelSet;
  private readonly bufs: Record<'tokens' | 'meta' | 'unusedPages' | 'x' | 'xn' | 'qkv' | 'q' | 'attnOut' | 'gateUp' | 'h' | 'last' | 'logits' | 'history' | 'rope' | 'logitsStaging' | 'historyStaging', GPUBuffer> &
    Partial<Record<'kvStage', GPUBuffer>>;
  /** Byte offset of V in the staging buffer (K rows first). */
  private readonly stageVBytes: number;
  private readonly fastOps = new Map<string, Promise<FlashAttentionPrefill>>();
  private readonly standardOps = new Map<string, Promise<StandardAttention>>();
  private decodeOps: FlashDecode[] = [];
  private readonly metaScratch: Uint32Array<ArrayBuffer>;
  private readonly kvScratch: Uint32Array;
  private readonly decodeKvScratch: Uint32Array;
  private readonly shape: ReductionShape;
  private readonly bpe: number;
  private ops!: {
    gemm: LlmOp;
    gemmA16?: LlmOp;
    gemmMatrix?: LlmOp;
    gemmMatrixA16?: LlmOp;
    gemmMatrixDirect?: LlmOp;
    gemv: Map<number, LlmOp>;
    gemvX16: Map<number, LlmOp>;
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
    const caps = runtime.capabilities;
    const f16Weights = weights.dtype === 'f16';
    const activations = options.activations ?? (f16Weights && caps.features.shaderF16 ? 'f16' : 'f32');
    if (activations !== 'f32' && activations !== 'f16') throw new UnsupportedError('activations', `unknown ${JSON.stringify(activations)}`, 'f32, f16');
    if (activations === 'f16' && !caps.features.shaderF16) throw new UnsupportedError('activations', 'f16 attention needs shader-f16, which this device lacks', 'f32');
    if (activations === 'f16' && !f16Weights) throw new UnsupportedError('activations', 'f16 activations are planned for f16 weights', 'f32 (with f32 weights)');
    this.activations = activations;
    this.bpe = activations === 'f16' ? 2 : 4;
    const matrixOk = f16Weights && hasSubgroupMatrix16(caps);
    const gemmKind = options.gemm ?? (matrixOk ? 'matrix' : 'tiled');
    if (gemmKind !== 'matrix' && gemmKind !== 'tiled') throw new UnsupportedError('gemm', `unknown ${JSON.stringify(gemmKind)}`, 'matrix, tiled');
    if (gemmKind === 'matrix' && !matrixOk)
      throw new UnsupportedError('gemm', 'the subgroup-matrix GEMM needs f16 weights and chromium-experimental-subgroup-matrix (f16→f32 16×16×16, subgroups of 32)', 'tiled');
    this.gemmKind = gemmKind;
    const t = this.gemmTile;
    const threads = (t.tileM / t.tm) * (t.tileN / t.tn);
    if (!Number.isInteger(threads) || threads > L.maxComputeInvocationsPerWorkgroup || t.tileK % 8 !== 0 || (t.tileK * (t.tileM + t.tileN) * 4) > L.maxComputeWorkgroupStorageSize)
      throw new UnsupportedError('gemmTile', `${JSON.stringify(t)} needs ${threads} invocations and ${t.tileK * (t.tileM + t.tileN) * 4} bytes of workgroup storage`, `tiles within ${L.maxComputeInvocationsPerWorkgroup} invocations and ${L.maxComputeWorkgroupStorageSize} bytes, tileK a multiple of 8`);
    const Hq = c.numHeads * c.headDim;
    const Hkv = c.numKvHeads * c.headDim;
    if (this.attention === 'standard' && (Hq * this.bpe) % L.minStorageBufferOffsetAlignment !== 0)
      throw new UnsupportedError('attention', `the baseline runs per sequence at byte offsets of numHeads·headDim·${this.bpe} = ${Hq * this.bpe}`, `models with numHeads·headDim·${this.bpe} a multiple of ${L.minStorageBufferOffsetAlignment}`);
    const tokens = maxBatch * this.prefillChunk;
    if (tokens > L.maxComputeWorkgroupsPerDimension)
      throw new ShapeError('prefillChunk', `maxBatch · prefillChunk = ${tokens} rows exceeds ${L.maxComputeWorkgroupsPerDimension} workgroups`, `maxBatch · prefillChunk ≤ ${L.maxComputeWorkgroupsPerDimension}`);
    const pageTokens = options.pageTokens ?? (maxSeqLen > 4096 ? 1024 : 256);
    const cacheShape = { numLayers: c.numLayers, maxBatch, maxSeqLen, headsKV: c.numKvHeads, headDim: c.headDim, dtype: activations };
    if (this.attention === 'fast') {
      this.pagedCache = new PagedLlmKvCache(runtime, cacheShape, pageTokens, options.kvPoolBytes);
      const g = this.pagedCache.layers[0].geometry;
      const pools = this.pagedCache.layers[0].pools.length;
      // A later prefill chunk reads the pages through the fused operator (no gather copy): it binds at most 2 pool buffers.
      if (this.prefillChunk < maxSeqLen && pools > MAX_PREFILL_POOL_BUFFERS) {
        this.pagedCache.destroy();
        const minPoolBytes = Math.ceil(g.totalPages / MAX_PREFILL_POOL_BUFFERS) * g.pageBytes;
        throw new UnsupportedError(
          options.kvPoolBytes !== undefined ? 'kvPoolBytes' : 'prefillChunk',
          `a chunked prefill (prefillChunk ${this.prefillChunk} < maxSeqLen ${maxSeqLen}) reads each layer's pages through the fused operator, which binds at most ${MAX_PREFILL_POOL_BUFFERS} pool buffers; this cache has ${pools} per layer`,
          `prefillChunk ≥ maxSeqLen (${maxSeqLen}), or pool buffers of at least ${minPoolBytes} bytes (kvPoolBytes; at most ${MAX_PREFILL_POOL_BUFFERS} per layer), or a smaller maxBatch · maxSeqLen`,
        );
      }
    } else this.contiguousCache = new ContiguousKvCache(runtime, cacheShape);
    this.kernels = new LlmKernelSet(runtime);
    const S = BufferUsage.STORAGE;
    const make = (name: string, bytes: number, usage: number): GPUBuffer => {
      if (bytes > L.maxStorageBufferBindingSize && (usage & S))
        throw new ShapeError('prefillChunk', `the ${name} activations of ${tokens} tokens need ${bytes} bytes, over maxStorageBufferBindingSize (${L.maxStorageBufferBindingSize})`, 'a smaller maxBatch · prefillChunk');
      const buffer = runtime.ledger.create(OWNER, { label: `${OWNER}.${name}`, size: Math.max(16, bytes), usage });
      made.push(buffer);
      return buffer;
    };
    const made: GPUBuffer[] = [];
    try {
      const halfD = c.headDim / 2;
      // Rows of the activation buffers, padded (see ROW_PAD); the head's rows are the sequences.
      const rows = Math.ceil(tokens / ROW_PAD) * ROW_PAD;
      const headRows = Math.ceil(maxBatch / ROW_PAD) * ROW_PAD;
      const ropeRows = Math.ceil(maxSeqLen / 64) * 64;
      // Staging rows: K of every token, then V at a 256-byte aligned offset (the prefill operator binds V there).
      this.stageVBytes = Math.ceil((tokens * Hkv * this.bpe) / 256) * 256;
      const staging: Partial<Record<'kvStage', GPUBuffer>> = this.attention === 'fast' ? { kvStage: make('kvStage', 2 * this.stageVBytes, S | BufferUsage.COPY_SRC) } : {};
      this.bufs = {
        ...staging,
        tokens: make('tokens', tokens * 4, S | BufferUsage.COPY_DST),
        meta: make('meta', tokens * 16, S | BufferUsage.COPY_DST),
        // Bound as RoPE's page output when it writes no pages.
        unusedPages: make('unusedPages', 16, S),
        x: make('x', rows * c.hiddenSize * 4, S),
        xn: make('xn', rows * c.hiddenSize * 4, S),
        qkv: make('qkv', rows * (Hq + 2 * Hkv) * 4, S),
        q: make('q', rows * Hq * this.bpe, S),
        attnOut: make('attnOut', rows * Hq * this.bpe, S),
        gateUp: make('gateUp', rows * 2 * c.intermediateSize * 4, S),
        h: make('h', rows * c.intermediateSize * 4, S),
        last: make('last', headRows * c.hiddenSize * 4, S),
        logits: make('logits', headRows * c.vocabSize * 4, S | BufferUsage.COPY_SRC),
        history: make('history', maxSeqLen * maxBatch * 4, S | BufferUsage.COPY_SRC),
        rope: make('rope', ropeRows * halfD * 8, S | BufferUsage.COPY_DST),
        logitsStaging: make('logitsStaging', maxBatch * c.vocabSize * 4, BufferUsage.MAP_READ | BufferUsage.COPY_DST),
        historyStaging: make('historyStaging', maxSeqLen * maxBatch * 4, BufferUsage.MAP_READ | BufferUsage.COPY_DST),
      };
      // cos/sin of every (position, pair) in float64, stored f32: f32 angles lose accuracy at long positions.
      const table = new Float32Array(ropeRows * halfD * 2);
      for (let p = 0; p < ropeRows; p++)
        for (let i = 0; i < halfD; i++) {
          const angle = p * Math.pow(c.ropeTheta, (-2 * i) / c.headDim);
          table[2 * (p * halfD + i)] = Math.cos(angle);
          table[2 * (p * halfD + i) + 1] = Math.sin(angle);
        }
      runtime.device.queue.writeBuffer(this.bufs.rope, 0, table);
      this.metaScratch = new Uint32Array(tokens * 4);
      this.kvScratch = new Uint32Array(maxBatch);
      this.decodeKvScratch = new Uint32Array(maxBatch);
    } catch (e) {
      // Nothing the runner created outlives a failed construction.
      for (const buffer of made) runtime.ledger.destroy(buffer);
      this.pagedCache?.destroy();
      this.contiguousCache?.destroy();
      throw e;
    }
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
    const a16 = this.activations === 'f16';
    const t = this.gemmTile;
    const k = this.kernels;
    const sh = this.shape;
    const gemvRows = Array.from({ length: Math.min(this.maxBatch, GEMV_MAX_ROWS) }, (_, i) => i + 1);
    const gemmConsts = (aF16: boolean) => ({ TILE_M: t.tileM, TILE_N: t.tileN, TILE_K: t.tileK, TM: t.tm, TN: t.tn, WEIGHT_F16: f16, A_F16: aF16 });
    const matrixTypes = { enables: ['f16', 'subgroups', 'chromium_experimental_subgroup_matrix'] };
    const gemv = (m: number, xF16: boolean) => k.op(llmKernels.gemv, 'gemv', { BATCH: m, WEIGHT_F16: f16, X_F16: xF16, GROUP: sh.gemvGroup, ROWS_PER_WG: sh.gemvRows });
    const matrix = this.gemmKind === 'matrix';
    const [gemm, gemmA16, gemmMatrix, gemmMatrixA16, gemmMatrixDirect, rmsNorm, rope, swiglu, embed, sample, gemvs, gemvX16s] = await Promise.all([
      k.op(llmKernels.gemm, 'gemm', gemmConsts(false)),
      a16 ? k.op(llmKernels.gemm, 'gemm', gemmConsts(true)) : undefined,
      matrix ? k.op(llmKernels.gemmMatrix, 'gemmMatrix', { BK: MATRIX_GEMM_BK, A_F16: false }, matrixTypes) : undefined,
      matrix && a16 ? k.op(llmKernels.gemmMatrix, 'gemmMatrix', { BK: MATRIX_GEMM_BK, A_F16: true }, matrixTypes) : undefined,
      matrix && a16 ? k.op(llmKernels.gemmMatrixDirect, 'gemmMatrixDirect', {}, matrixTypes) : undefined,
      k.op(llmKernels.rmsNorm, 'rmsNorm', { THREADS: sh.normThreads, OUT_F16: a16 }),
      k.op(llmKernels.rope, 'ropeScatter', { THREADS: sh.rowThreads, ACT_F16: a16 }),
      k.op(llmKernels.swiglu, 'swiglu', { OUT_F16: a16 }),
      k.op(llmKernels.embedding, 'embed', { WEIGHT_F16: f16, THREADS: sh.rowThreads }),
      k.op(llmKernels.sampling, 'sampleTokens', { THREADS: sh.sampleThreads }),
      Promise.all(gemvRows.map((m) => gemv(m, false))),
      a16 ? Promise.all(gemvRows.map((m) => gemv(m, true))) : Promise.resolve([] as LlmOp[]),
    ]);
    this.ops = {
      gemm,
      gemmA16,
      gemmMatrix,
      gemmMatrixA16,
      gemmMatrixDirect,
      rmsNorm,
      rope,
      swiglu,
      embed,
      sample,
      gemv: new Map(gemvRows.map((m, i) => [m, gemvs[i]])),
      gemvX16: new Map(gemvX16s.map((op, i) => [gemvRows[i], op])),
    };
    if (this.pagedCache) {
      // One split-KV decode operator per layer (each binds its layer's pages); all sequence slots of the cache, unused ones with 0 keys.
      const c = this.config;
      const q = { shape: [this.maxBatch, c.numHeads, 1, c.headDim] as const, layout: 'BSHD' as const };
      this.decodeOps = await Promise.all(this.pagedCache.layers.map((cache) => this.runtime.createDecode({ q: { ...q, shape: [...q.shape] }, cache, dtype: this.activations })));
    }
  }

  // ---- planning of attention operators ----

  /** The fused prefill operator under `key`, created on first use (a failed creation is not cached). */
  private fusedOp(key: string, options: AttentionOptions): Promise<FlashAttentionPrefill> {
    let op = this.fastOps.get(key);
    if (!op) {
      op = this.runtime.createPrefill(options);
      this.fastOps.set(key, op);
      op.catch(() => this.fastOps.delete(key));
    }
    return op;
  }

  /** The fused prefill operator of a first chunk: its keys are the chunk's own staging rows (`[batch][Hkv][seqQ][D]`). */
  private fastOp(step: AttentionStep): Promise<FlashAttentionPrefill> {
    const c = this.config;
    const kv = { shape: [step.batch, c.numKvHeads, step.seqQ, c.headDim] as [number, number, number, number], layout: 'BHSD' as const };
    return this.fusedOp(`${step.batch}:${step.seqQ}`, {
      q: { shape: [step.batch, c.numHeads, step.seqQ, c.headDim], layout: 'BSHD' },
      k: kv,
      v: kv,
      causal: true,
      dtype: this.activations,
      tile: this.prefillTile,
    });
  }

  /**
   * The fused prefill operators of a later chunk, one per layer, each reading
   * its layer's pages in place. Operators over a cache serve all its sequence
   * slots (`q` is `[maxBatch, Hq, seqQ, D]`): slots past the step's batch get
   * 0 keys, so their rows cost one empty pass and are never read.
   */
  private pagedOps(step: AttentionStep): Promise<FlashAttentionPrefill[]> {
    const c = this.config;
    return Promise.all(
      this.pagedCache!.layers.map((cache, l) =>
        this.fusedOp(`paged:${step.seqQ}:${l}`, {
          q: { shape: [this.maxBatch, c.numHeads, step.seqQ, c.headDim], layout: 'BSHD' },
          cache,
          causal: true,
          dtype: this.activations,
          tile: this.prefillTile,
        }),
      ),
    );
  }

  /** The baseline bakes its key length into its dense mask: one operator per (query length, key length), run per sequence. */
  private standardOp(step: AttentionStep): Promise<StandardAttention> {
    const key = `${step.seqQ}:${step.kvLen}`;
    let op = this.standardOps.get(key);
    if (!op) {
      const c = this.config;
      const kv = { shape: [1, c.numKvHeads, step.kvLen, c.headDim] as [number, number, number, number], layout: 'BSHD' as const };
      op = this.runtime.createStandardAttention({ q: { shape: [1, c.numHeads, step.seqQ, c.headDim], layout: 'BSHD' }, k: kv, v: kv, causal: true, dtype: this.activations });
      this.standardOps.set(key, op);
      op.catch(() => this.standardOps.delete(key));
    }
    return op;
  }

  private async planAttention(steps: AttentionStep[]): Promise<StepAttention[]> {
    return Promise.all(
      steps.map(async (s): Promise<StepAttention> => {
        if (this.attention === 'standard') return { kind: 'standard', op: await this.standardOp(s) };
        if (s.decode) return { kind: 'decode' };
        if (s.kvLen > s.seqQ) return { kind: 'pagedPrefill', ops: await this.pagedOps(s) };
        return { kind: 'prefill', op: await this.fastOp(s) };
      }),
    );
  }

  /** Release the baseline's per-length operators (they hold S×S intermediates). */
  releaseAttentionPlans(): void {
    for (const p of this.standardOps.values()) p.then((op) => op.destroy(), () => undefined);
    this.standardOps.clear();
  }

  // ---- encoding ----

  /** Y (+)= X · Wᵀ: GEMV for decode-sized M, else the subgroup-matrix GEMM where planned (K a multiple of its BK), else the tiled one. */
  private matmul(pass: GPUComputePassEncoder, x: GPUBuffer, w: GPUBuffer, y: GPUBuffer, M: number, N: number, K: number, accumulate: boolean, xF16 = false): void {
    const maxGroups = this.runtime.capabilities.limits.maxComputeWorkgroupsPerDimension;
    const params = { M, N, K, accumulate: accumulate ? 1 : 0 };
    const gemv = M <= GEMV_MAX_ROWS ? (xF16 ? this.ops.gemvX16 : this.ops.gemv).get(M) : undefined;
    if (gemv) {
      this.kernels.dispatch(pass, gemv, { N, K, accumulate: params.accumulate }, [x, w, y], grid(Math.ceil(N / this.shape.gemvRows), maxGroups));
      return;
    }
    // f16 inputs: tensor-core matrices loaded straight from storage (no staging, no barriers in the K loop).
    if (xF16 && this.ops.gemmMatrixDirect && N % 16 === 0 && K % 16 === 0) {
      this.kernels.dispatch(pass, this.ops.gemmMatrixDirect, params, [x, w, y], [Math.ceil(N / DIRECT_TILE_N), Math.ceil(M / DIRECT_TILE_M), 1]);
      return;
    }
    const matrix = xF16 ? this.ops.gemmMatrixA16 : this.ops.gemmMatrix;
    if (matrix && K % MATRIX_GEMM_BK === 0) {
      this.kernels.dispatch(pass, matrix, params, [x, w, y], [Math.ceil(N / MATRIX_TILE_N), Math.ceil(M / MATRIX_TILE_M), 1]);
      return;
    }
    const t = this.gemmTile;
    this.kernels.dispatch(pass, xF16 ? this.ops.gemmA16! : this.ops.gemm, params, [x, w, y], [Math.ceil(N / t.tileN), Math.ceil(M / t.tileM), 1]);
  }

  /**
   * All layers for `batch` sequences of `seqQ` new tokens each (rows b·seqQ + s),
   * then the last token of each sequence to a sampled token. Without direct page
   * writes the fast path ends the compute pass after each layer's RoPE to append
   * the step's K/V rows to the pages (copies), and opens another for attention
   * and the MLP.
   */
  private encodeStep(enc: GPUCommandEncoder, step: AttentionStep, attn: StepAttention, sampleStep: number, temperature: number, seed: number, head: boolean): void {
    const c = this.config;
    const b = this.bufs;
    const w = this.weights;
    const T = step.batch * step.seqQ;
    const H = c.hiddenSize;
    const Hq = c.numHeads * c.headDim;
    const Hkv = c.numKvHeads * c.headDim;
    const maxGroups = this.runtime.capabilities.limits.maxComputeWorkgroupsPerDimension;
    const eps = c.rmsNormEps;
    const a16 = this.activations === 'f16';
    const kv = this.kvScratch.subarray(0, step.batch).fill(step.kvLen);
    const paged = this.pagedCache;
    // With one pool buffer per layer, K/V go straight into reserved page slots: steps that read the pages (decode, a
    // later prefill chunk) write only there, a first prefill chunk also into staging (the fused operator's contiguous
    // input). Otherwise rows go to staging and are appended.
    const direct = attn.kind !== 'standard' && paged !== undefined && paged.directWrite;
    const readsPages = attn.kind === 'decode' || attn.kind === 'pagedPrefill';
    const stage = { kv: b.kvStage!, vOffset: this.stageVBytes / this.bpe, headStride: step.seqQ * c.headDim };
    const kvVisible = { buffer: b.kvStage!, offset: 0 };
    const pageSlot = direct ? paged!.slot(0, 0) : undefined;
    let pass = enc.beginComputePass({ label: 'llm.step' });
    this.kernels.dispatch(pass, this.ops.embed, { tokens: T, dim: H }, [b.tokens, w.embed, b.x], grid(T, maxGroups));
    for (let l = 0; l < c.numLayers; l++) {
      const lw = w.layers[l];
      let kvOut: { kv: GPUBuffer; vOffset: number; headStride: number };
      let pages = b.unusedPages;
      if (attn.kind === 'standard') kvOut = { ...this.contiguousCache!.layer(l), headStride: c.headDim };
      else if (direct && readsPages) kvOut = { kv: paged!.layers[l].pools[0], vOffset: pageSlot!.vOffset, headStride: pageSlot!.headStride };
      else {
        kvOut = stage;
        if (direct) pages = paged!.layers[l].pools[0];
      }
      this.kernels.dispatch(pass, this.ops.rmsNorm, { rows: T, dim: H, rowStep: 1, rowOffset: 0, eps }, [b.x, lw.attnNorm, b.xn], [T, 1, 1]);
      this.matmul(pass, b.xn, lw.qkv, b.qkv, T, Hq + 2 * Hkv, H, false, a16);
      this.kernels.dispatch(
        pass,
        this.ops.rope,
        {
          tokens: T,
          headsQ: c.numHeads,
          headsKV: c.numKvHeads,
          headDim: c.headDim,
          kvHeadStride: kvOut.headStride,
          vOffset: kvOut.vOffset,
          toPages: pages === b.unusedPages ? 0 : 1,
          pageHeadStride: pageSlot?.headStride ?? 0,
          pageVOffset: pageSlot?.vOffset ?? 0,
        },
        [b.qkv, b.meta, b.rope, b.q, kvOut.kv, pages],
        grid(T, maxGroups),
      );
      if (attn.kind === 'standard') {
        for (let s = 0; s < step.batch; s++) {
          const view = this.contiguousCache!.sequenceView(l, s);
          const at = s * step.seqQ * Hq * this.bpe;
          attn.op.encode(pass, { q: { buffer: b.q, offset: at }, k: view.k, v: view.v, o: { buffer: b.attnOut, offset: at } });
        }
      } else {
        if (!direct) {
          // Copies run between passes: append this step's rows to the layer's pages.
          pass.end();
          const cache = paged!.layers[l];
          const seqBytes = step.seqQ * Hkv * this.bpe;
          for (let s = 0; s < step.batch; s++)
            cache.append(enc, s, { k: { buffer: b.kvStage!, offset: s * seqBytes }, v: { buffer: b.kvStage!, offset: this.stageVBytes + s * seqBytes }, tokens: step.seqQ, layout: 'BHSD' });
          pass = enc.beginComputePass({ label: 'llm.step' });
        }
        if (attn.kind === 'decode') this.decodeOps[l].encode(pass, { q: b.q, o: b.attnOut }, { kvLengths: this.cacheLengths(step) });
        // A later prefill chunk: its queries against every key so far (this chunk's included), read from the pages in place.
        else if (attn.kind === 'pagedPrefill') attn.ops[l].encode(pass, { q: b.q, o: b.attnOut }, { kvLengths: this.cacheLengths(step) });
        else attn.op.encode(pass, { q: b.q, k: kvVisible, v: { buffer: b.kvStage!, offset: this.stageVBytes }, o: b.attnOut }, { kvLengths: kv });
      }
      this.matmul(pass, b.attnOut, lw.o, b.x, T, H, Hq, true, a16);
      this.kernels.dispatch(pass, this.ops.rmsNorm, { rows: T, dim: H, rowStep: 1, rowOffset: 0, eps }, [b.x, lw.mlpNorm, b.xn], [T, 1, 1]);
      this.matmul(pass, b.xn, lw.gateUp, b.gateUp, T, 2 * c.intermediateSize, H, false, a16);
      this.kernels.dispatch(pass, this.ops.swiglu, { tokens: T, inter: c.intermediateSize }, [b.gateUp, b.h], grid(Math.ceil((T * c.intermediateSize) / (a16 ? 512 : 256)), maxGroups));
      this.matmul(pass, b.h, lw.down, b.x, T, H, c.intermediateSize, true, a16);
    }
    if (head) {
      this.kernels.dispatch(pass, this.ops.rmsNorm, { rows: step.batch, dim: H, rowStep: step.seqQ, rowOffset: step.seqQ - 1, eps }, [b.x, w.finalNorm, b.last], [step.batch, 1, 1]);
      this.matmul(pass, b.last, w.lmHead, b.logits, step.batch, c.vocabSize, H, false, a16);
      this.kernels.dispatch(pass, this.ops.sample, { vocab: c.vocabSize, batch: step.batch, step: sampleStep, seed: seed >>> 0, temperature }, [b.logits, b.tokens, b.history], [step.batch, 1, 1]);
    }
    pass.end();
  }

  /** Keys per cache sequence for an operator bound to the cache: the batch's, 0 for unused sequence slots. */
  private cacheLengths(step: AttentionStep): Uint32Array {
    const lens = this.decodeKvScratch.fill(0);
    lens.fill(step.kvLen, 0, step.batch);
    return lens;
  }

  /**
   * RoPE's per-token record: position, element index of the K head-0 vector of
   * row (seq b, step-local s) in the buffer RoPE writes, and of its page slot
   * when it writes pages too. `readsPages`: the step's attention reads the pages
   * (decode, a later prefill chunk), so with direct writes the page slot is
   * RoPE's only output.
   */
  private setMeta(at: number, b: number, s: number, pos: number, seqQ: number, readsPages: boolean): void {
    const c = this.config;
    const meta = this.metaScratch;
    const paged = this.pagedCache;
    const direct = paged !== undefined && paged.directWrite;
    const page = direct ? paged.slot(b, pos).element : 0;
    meta[4 * at] = pos;
    if (this.contiguousCache) meta[4 * at + 1] = this.contiguousCache.element(b, pos);
    else meta[4 * at + 1] = direct && readsPages ? page : (b * c.numKvHeads * seqQ + s) * c.headDim;
    meta[4 * at + 2] = page;
    meta[4 * at + 3] = 0;
  }

  private writeTokens(prompts: readonly (readonly number[])[], s0: number, s1: number): void {
    const n = s1 - s0;
    const ids = new Uint32Array(prompts.length * n);
    const meta = this.metaScratch;
    prompts.forEach((p, b) => {
      for (let s = s0; s < s1; s++) {
        const row = b * n + (s - s0);
        ids[row] = p[s];
        this.setMeta(row, b, s - s0, s, n, s0 > 0);
      }
    });
    this.runtime.device.queue.writeBuffer(this.bufs.tokens, 0, ids);
    this.runtime.device.queue.writeBuffer(this.bufs.meta, 0, meta, 0, prompts.length * n * 4);
  }

  private writeDecodeMeta(batch: number, pos: number): void {
    const meta = this.metaScratch;
    for (let b = 0; b < batch; b++) this.setMeta(b, b, 0, pos, 1, true);
    this.runtime.device.queue.writeBuffer(this.bufs.meta, 0, meta, 0, batch * 4);
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
      steps.push({ batch, seqQ: s1 - s0, kvLen: s1, decode: false });
    }
    return steps;
  }

  /** Encode and submit the prefill, chunk by chunk; the last chunk samples the first token (history row 0). */
  private submitPrefill(prompts: readonly (readonly number[])[], steps: AttentionStep[], ops: StepAttention[], temperature: number, seed: number): void {
    const device = this.runtime.device;
    // A new request starts from empty sequences (pages back to the free lists).
    this.pagedCache?.reset();
    steps.forEach((step, i) => {
      // Pages for this chunk's tokens first: RoPE stores their K/V in place.
      if (this.pagedCache?.directWrite) this.pagedCache.reserve(step.batch, step.kvLen);
      this.writeTokens(prompts, step.kvLen - step.seqQ, step.kvLen);
      const enc = device.createCommandEncoder({ label: 'llm.prefill' });
      this.encodeStep(enc, step, ops[i], 0, temperature, seed, i === steps.length - 1);
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
    for (let i = 1; i < n; i++) decodeSteps.push({ batch: B, seqQ: 1, kvLen: P + i, decode: true });
    const [prefillOps, decodeOps] = await Promise.all([this.planAttention(prefillSteps), this.planAttention(decodeSteps)]);
    const planMs = performance.now() - t0;

    const device = this.runtime.device;
    const start = performance.now();
    this.submitPrefill(prompts, prefillSteps, prefillOps, temperature, seed);
    await this.readHistory(1, B);
    const ttft = performance.now() - start;
    // Pages for every token decode will write, so each step stores K/V in place (no copies, no page-table writes).
    if (this.pagedCache?.directWrite && n > 1) this.pagedCache.reserve(B, P + n - 1);
    decodeSteps.forEach((step, i) => {
      // The token fed at this step sits at position kvLen − 1; the sampler already wrote its id into `tokens`.
      this.writeDecodeMeta(B, step.kvLen - 1);
      const enc = device.createCommandEncoder({ label: 'llm.decode' });
      this.encodeStep(enc, step, decodeOps[i], i + 1, temperature, seed, true);
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
    let n = (this.pagedCache?.bytes ?? 0) + (this.contiguousCache?.bytes ?? 0);
    for (const b of Object.values(this.bufs)) n += b.size;
    return n;
  }

  /** Release the runner's buffers, caches and operators (not the weights). */
  destroy(): void {
    for (const b of Object.values(this.bufs ?? {})) this.runtime.ledger.destroy(b);
    for (const p of this.fastOps.values()) p.then((op) => op.destroy(), () => undefined);
    this.fastOps.clear();
    for (const op of this.decodeOps) op.destroy();
    this.decodeOps = [];
    this.releaseAttentionPlans();
    this.kernels.destroy();
    this.pagedCache?.destroy();
    this.contiguousCache?.destroy();
  }
}
