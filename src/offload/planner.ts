/**
 * The CPU-GPU cooperative planner: how many layers keep their KV cache on the
 * GPU (L_gpu) and how many in host memory with attention on the CPU (L_cpu),
 * from the memory a GPU must hold besides the KV cache. WebGPU does not reveal
 * how much memory a device has, so the budget is the caller's.
 *
 * Per GPU, with tensor parallelism over `gpus` (matrices and heads sharded,
 * norm vectors and the residual stream replicated):
 *   weights       = layers · (matrix params / gpus + norm params) · bytes + final norm
 *   vocabulary    = (tied ? 1 : 2) · vocab · hidden · bytes / gpus   (embedding, LM head)
 *   intermediate  = the largest activation alive at once: max of QKV, FFN hidden
 *                   (both halves when gated), residual stream, last-token logits (f32),
 *                   for the T = batch · min(prefillChunk, prompt) tokens of a prefill chunk
 *   kvPerLayer    = 2 · batch · (prompt + output) · ⌈kvHeads / gpus⌉ · headDim · kvBytes
 *   L_gpu = min(layers, ⌊(budget − weights − vocabulary − intermediate) / kvPerLayer⌋)
 *   L_cpu = layers − L_gpu      (the first L_cpu layers are the offloaded ones)
 */
import { ShapeError, UnsupportedError } from '../errors.js';

/** Storage types of weights, activations and the KV cache. */
export type OffloadDType = 'f32' | 'f16' | 'bf16';
const DTYPE_BYTES: Record<OffloadDType, number> = { f32: 4, f16: 2, bf16: 2 };

/** A decoder-only transformer, as the planner sees it. */
export interface ModelConfig {
  layers: number;
  /** Query heads. */
  heads: number;
  /** Key/value heads (GQA); `heads` must be a multiple. */
  kvHeads: number;
  headDim: number;
  hidden: number;
  /** FFN inner size. */
  ffn: number;
  vocab: number;
  /** Weight and activation type. */
  dtype: OffloadDType;
  /** Gated FFN (SwiGLU: gate, up, down matrices) as in LLaMA; default true. */
  gatedFfn?: boolean;
  /** Embedding and LM head share one matrix; default false. */
  tiedEmbeddings?: boolean;
}

export interface PlanOptions {
  batch: number;
  promptLength: number;
  outputLength: number;
  /** GPUs the model is sharded over (tensor parallel). */
  gpus: number;
  /** Memory the caller lets the library use on each GPU, bytes. */
  gpuMemoryBytes: number;
  /** Prompt tokens per sequence processed in one prefill pass; default the whole prompt. */
  prefillChunk?: number;
  /** KV cache type; default the model's dtype. */
  kvDtype?: OffloadDType;
  /** Host memory available for the offloaded KV cache, bytes; checked when given. */
  hostMemoryBytes?: number;
}

/** Bytes per GPU of each part, and the split. */
export interface OffloadPlan {
  model: ModelConfig;
  options: PlanOptions;
  /** Layers whose KV cache stays on the GPU (the last ones). */
  lGpu: number;
  /** Layers whose KV cache lives in host memory, attention on the CPU (the first ones). */
  lCpu: number;
  perGpu: {
    weights: number;
    vocabulary: number;
    intermediate: number;
    /** Which activation is the largest. */
    intermediateKind: 'qkv' | 'ffn' | 'hidden' | 'logits';
    kvPerLayer: number;
    /** KV of the L_gpu resident layers. */
    kvResident: number;
    /** weights + vocabulary + intermediate + kvResident. */
    total: number;
    budget: number;
  };
  /** Host bytes of the offloaded KV cache, all GPUs' shards together. */
  hostKvBytes: number;
}

function positiveInt(field: string, x: unknown): number {
  if (typeof x !== 'number' || !Number.isInteger(x) || x <= 0) throw new ShapeError(field, `must be a positive integer, got ${String(x)}`, 'integers ≥ 1');
  return x;
}

function dtypeBytes(field: string, t: unknown): number {
  if (typeof t !== 'string' || !(t in DTYPE_BYTES)) throw new UnsupportedError(field, `unknown type ${JSON.stringify(t)}`, Object.keys(DTYPE_BYTES).join(', '));
  return DTYPE_BYTES[t as OffloadDType];
}

const GIB = 1024 ** 3;

/**
 * Split the layers between GPU and host, as in the paper's Appendix C.
 *
 * @example
 * ```ts
 * const plan = planOffload(LLAMA2_7B, { batch: 1, promptLength: 262144, outputLength: 0, gpus: 1, gpuMemoryBytes: 32 * 2 ** 30, prefillChunk: 4096 });
 * console.log(formatPlan(plan)); // L_gpu = 4, L_cpu = 28
 * ```
 */
export function planOffload(model: ModelConfig, options: PlanOptions): OffloadPlan {
  const L = positiveInt('model.layers', model?.layers);
  const H = positiveInt('model.heads', model.heads);
  const Hkv = positiveInt('model.kvHeads', model.kvHeads);
  const D = positiveInt('model.headDim', model.headDim);
  const hidden = positiveInt('model.hidden', model.hidden);
  const ffn = positiveInt('model.ffn', model.ffn);
  const vocab = positiveInt('model.vocab', model.vocab);
  const wb = dtypeBytes('model.dtype', model.dtype);
  if (H % Hkv !== 0) throw new ShapeError('model.heads', `${H} query heads is not a multiple of ${Hkv} KV heads`, `a multiple of ${Hkv}`);
  const batch = positiveInt('options.batch', options?.batch);
  const prompt = positiveInt('options.promptLength', options.promptLength);
  if (!Number.isInteger(options.outputLength) || options.outputLength < 0)
    throw new ShapeError('options.outputLength', `must be a non-negative integer, got ${options.outputLength}`, 'integers ≥ 0');
  const gpus = positiveInt('options.gpus', options.gpus);
  if (H % gpus !== 0) throw new ShapeError('options.gpus', `${H} query heads cannot be split over ${gpus} GPUs`, `a divisor of ${H}`);
  if (typeof options.gpuMemoryBytes !== 'number' || !(options.gpuMemoryBytes > 0))
    throw new ShapeError('options.gpuMemoryBytes', `must be a positive number of bytes, got ${options.gpuMemoryBytes}`, 'numbers > 0');
  const chunk = options.prefillChunk === undefined ? prompt : Math.min(prompt, positiveInt('options.prefillChunk', options.prefillChunk));
  const kvb = options.kvDtype === undefined ? wb : dtypeBytes('options.kvDtype', options.kvDtype);
  const gated = model.gatedFfn ?? true;

  const matrices = 2 * hidden * H * D + 2 * hidden * Hkv * D + (gated ? 3 : 2) * hidden * ffn;
  const norms = 2 * hidden;
  const weights = (L * (matrices / gpus + norms) + hidden) * wb;
  const vocabulary = ((model.tiedEmbeddings ? 1 : 2) * vocab * hidden * wb) / gpus;
  const T = batch * chunk;
  const kvHeadsPerGpu = Math.ceil(Hkv / gpus);
  const candidates = {
    qkv: T * (H / gpus + 2 * kvHeadsPerGpu) * D * wb,
    ffn: T * (gated ? 2 : 1) * (ffn / gpus) * wb,
    hidden: T * hidden * wb,
    logits: batch * (vocab / gpus) * 4,
  };
  let intermediateKind: OffloadPlan['perGpu']['intermediateKind'] = 'qkv';
  for (const k of Object.keys(candidates) as (keyof typeof candidates)[]) if (candidates[k] > candidates[intermediateKind]) intermediateKind = k;
  const intermediate = candidates[intermediateKind];
  const kvPerLayer = 2 * batch * (prompt + options.outputLength) * kvHeadsPerGpu * D * kvb;
  const free = options.gpuMemoryBytes - weights - vocabulary - intermediate;
  if (free < 0)
    throw new UnsupportedError(
      'options.gpuMemoryBytes',
      `weights, vocabulary and the largest intermediate alone need ${((weights + vocabulary + intermediate) / GIB).toFixed(2)} GiB per GPU`,
      `at least ${Math.ceil(weights + vocabulary + intermediate)} bytes (or more GPUs, or a smaller prefillChunk)`,
    );
  const lGpu = Math.min(L, Math.floor(free / kvPerLayer));
  const lCpu = L - lGpu;
  const hostKvBytes = lCpu * kvPerLayer * gpus;
  if (options.hostMemoryBytes !== undefined && hostKvBytes > options.hostMemoryBytes)
    throw new UnsupportedError('options.hostMemoryBytes', `the ${lCpu} offloaded layers need ${(hostKvBytes / GIB).toFixed(2)} GiB of host memory`, `at least ${hostKvBytes} bytes`);
  const kvResident = lGpu * kvPerLayer;
  return {
    model,
    options,
    lGpu,
    lCpu,
    perGpu: { weights, vocabulary, intermediate, intermediateKind, kvPerLayer, kvResident, total: weights + vocabulary + intermediate + kvResident, budget: options.gpuMemoryBytes },
    hostKvBytes,
  };
}

/**
 * The per-GPU budget that holds the weights, vocabulary and largest
 * intermediate of `options` plus the KV cache of every layer for exactly
 * `gpuTokens` tokens per sequence (prompt + output): with it, contexts up to
 * `gpuTokens` stay entirely on the GPU and longer ones offload layers.
 */
export function budgetForGpuTokens(model: ModelConfig, gpuTokens: number, options: Omit<PlanOptions, 'promptLength' | 'outputLength' | 'gpuMemoryBytes' | 'hostMemoryBytes'>): number {
  positiveInt('gpuTokens', gpuTokens);
  // A budget with no limit gives the fixed parts and one layer's KV at gpuTokens.
  const p = planOffload(model, { ...options, promptLength: gpuTokens, outputLength: 0, gpuMemoryBytes: Number.MAX_SAFE_INTEGER });
  return p.perGpu.weights + p.perGpu.vocabulary + p.perGpu.intermediate + model.layers * p.perGpu.kvPerLayer;
}

/**
 * The longest prompt (a multiple of `granularity` tokens) the cooperative
 * scheme serves with `gpuMemoryBytes` per GPU and `hostMemoryBytes` of host
 * memory for the offloaded layers: the planner's split at each length, the host
 * bound checked. Returns the plan at that length, or throws the planner's typed
 * error when even `granularity` tokens do not fit (e.g. the weights alone exceed
 * the budget).
 */
export function maxCooperativeContext(model: ModelConfig, options: Omit<PlanOptions, 'promptLength'> & { hostMemoryBytes: number }, granularity = 1024, limit = 1 << 24): OffloadPlan {
  positiveInt('granularity', granularity);
  if (typeof options.hostMemoryBytes !== 'number' || !(options.hostMemoryBytes > 0))
    throw new ShapeError('options.hostMemoryBytes', `must be a positive number of bytes, got ${options.hostMemoryBytes}`, 'numbers > 0');
  const at = (n: number): OffloadPlan | null => {
    try {
      return planOffload(model, { ...options, promptLength: n * granularity });
    } catch (e) {
      if (e instanceof UnsupportedError && e.field === 'options.hostMemoryBytes') return null;
      throw e;
    }
  };
  let best = at(1);
  if (!best) return planOffload(model, { ...options, promptLength: granularity }); // throws the host error
  // Host bytes grow with the length (L_cpu never falls as the context grows): binary search.
  let lo = 1;
  let hi = Math.max(2, Math.floor(limit / granularity));
  if (at(hi)) return at(hi)!;
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    const p = at(mid);
    if (p) {
      lo = mid;
      best = p;
    } else hi = mid;
  }
  return best;
}

/** The plan as a small table (GiB), for logs and the CLI. */
export function formatPlan(plan: OffloadPlan): string {
  const g = (x: number): string => `${(x / GIB).toFixed(3).padStart(9)} GiB`;
  const o = plan.options;
  const p = plan.perGpu;
  return [
    `batch ${o.batch}, prompt ${o.promptLength} + output ${o.outputLength} tokens, ${o.gpus} GPU(s) × ${g(o.gpuMemoryBytes).trim()}`,
    `  weights        ${g(p.weights)}  per GPU`,
    `  vocabulary     ${g(p.vocabulary)}  per GPU`,
    `  intermediate   ${g(p.intermediate)}  per GPU (largest: ${p.intermediateKind})`,
    `  KV, one layer  ${g(p.kvPerLayer)}  per GPU`,
    `  KV resident    ${g(p.kvResident)}  per GPU (${plan.lGpu} layers)`,
    `  total on GPU   ${g(p.total)}  of ${g(p.budget).trim()}`,
    `  KV on host     ${g(plan.hostKvBytes)}  (${plan.lCpu} layers)`,
    `L_gpu = ${plan.lGpu}, L_cpu = ${plan.lCpu}`,
  ].join('\n');
}

/** LLaMA2-7B (Touvron et al. 2023): 32 layers, 32 heads of 128, hidden 4096, FFN 11008, vocabulary 32000, f16. */
export const LLAMA2_7B: ModelConfig = { layers: 32, heads: 32, kvHeads: 32, headDim: 128, hidden: 4096, ffn: 11008, vocab: 32000, dtype: 'f16' };
