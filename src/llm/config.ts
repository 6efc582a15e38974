/**
 * Llama-family model configuration: parsed from a Hugging Face `config.json`,
 * or one of the presets whose weights are generated when not at hand.
 */
import { ShapeError, UnsupportedError } from '../errors.js';
import { SUPPORTED_HEAD_DIMS } from '../attention/problem.js';

/** A decoder-only Llama-style transformer (RMSNorm, RoPE, grouped-query attention, SwiGLU). */
export interface LlamaConfig {
  vocabSize: number;
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  /** Query heads. */
  numHeads: number;
  /** Key/value heads (grouped-query attention when fewer than `numHeads`). */
  numKvHeads: number;
  headDim: number;
  rmsNormEps: number;
  ropeTheta: number;
  /** Output head shares the embedding table. */
  tieWordEmbeddings: boolean;
  maxPositionEmbeddings: number;
}

/** LLaMA2-7B shapes (the paper's Table 6 model). */
export const LLAMA2_7B: LlamaConfig = {
  vocabSize: 32000, hiddenSize: 4096, intermediateSize: 11008, numLayers: 32, numHeads: 32, numKvHeads: 32,
  headDim: 128, rmsNormEps: 1e-5, ropeTheta: 10000, tieWordEmbeddings: false, maxPositionEmbeddings: 4096,
};

/** TinyLlama-1.1B shapes (grouped-query attention, 4 KV heads). */
export const TINYLLAMA_1_1B: LlamaConfig = {
  vocabSize: 32000, hiddenSize: 2048, intermediateSize: 5632, numLayers: 22, numHeads: 32, numKvHeads: 4,
  headDim: 64, rmsNormEps: 1e-5, ropeTheta: 10000, tieWordEmbeddings: false, maxPositionEmbeddings: 2048,
};

/** A model small enough for tests on a software adapter: 2 layers, hidden 128, 4 heads, 2 KV heads, head dim 32. */
export const TINY_TEST_CONFIG: LlamaConfig = {
  vocabSize: 256, hiddenSize: 128, intermediateSize: 192, numLayers: 2, numHeads: 4, numKvHeads: 2,
  headDim: 32, rmsNormEps: 1e-5, ropeTheta: 10000, tieWordEmbeddings: false, maxPositionEmbeddings: 256,
};

/** Matrix products stage K in slices of 16; activations are vec4-indexed. */
const K_MULTIPLE = 16;

/** Check the config against what the runner's kernels and the attention library implement. */
export function validateLlamaConfig(c: LlamaConfig): LlamaConfig {
  const ints: Array<keyof LlamaConfig> = ['vocabSize', 'hiddenSize', 'intermediateSize', 'numLayers', 'numHeads', 'numKvHeads', 'headDim', 'maxPositionEmbeddings'];
  for (const k of ints) {
    const v = c[k];
    if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) throw new ShapeError(`config.${k}`, `must be a positive integer, got ${String(v)}`, 'integers ≥ 1');
  }
  if (!(SUPPORTED_HEAD_DIMS as readonly number[]).includes(c.headDim))
    throw new UnsupportedError('config.headDim', `head dimension ${c.headDim} is not supported by the attention kernels`, SUPPORTED_HEAD_DIMS.join(', '));
  if (c.numHeads % c.numKvHeads !== 0)
    throw new ShapeError('config.numHeads', `${c.numHeads} query heads is not a multiple of ${c.numKvHeads} KV heads`, `a multiple of ${c.numKvHeads}`);
  for (const k of ['hiddenSize', 'intermediateSize'] as const)
    if (c[k] % K_MULTIPLE !== 0) throw new UnsupportedError(`config.${k}`, `${c[k]} is not a multiple of ${K_MULTIPLE}`, `multiples of ${K_MULTIPLE}`);
  if ((c.numHeads * c.headDim) % K_MULTIPLE !== 0)
    throw new UnsupportedError('config.numHeads', `numHeads·headDim = ${c.numHeads * c.headDim} is not a multiple of ${K_MULTIPLE}`, `multiples of ${K_MULTIPLE}`);
  if (!(c.rmsNormEps > 0)) throw new ShapeError('config.rmsNormEps', `must be positive, got ${c.rmsNormEps}`, 'numbers > 0');
  if (!(c.ropeTheta > 0)) throw new ShapeError('config.ropeTheta', `must be positive, got ${c.ropeTheta}`, 'numbers > 0');
  return c;
}

/**
 * Read a Hugging Face Llama `config.json` (LlamaForCausalLM / MistralForCausalLM
 * without sliding window). Fields it cannot honour (rope scaling, biases) are
 * rejected rather than ignored, so a model never runs with the wrong math.
 */
export function parseLlamaConfig(json: unknown): LlamaConfig {
  if (typeof json !== 'object' || json === null) throw new ShapeError('config.json', 'is not a JSON object', 'a Llama-style config.json');
  const j = json as Record<string, unknown>;
  const num = (key: string, fallback?: number): number => {
    const v = j[key] ?? fallback;
    if (typeof v !== 'number') throw new ShapeError(`config.json:${key}`, `is missing or not a number (got ${JSON.stringify(v)})`, 'a number');
    return v;
  };
  if (j.rope_scaling !== undefined && j.rope_scaling !== null)
    throw new UnsupportedError('config.json:rope_scaling', `rope scaling ${JSON.stringify(j.rope_scaling)} is not implemented`, 'null (plain RoPE)');
  if (j.attention_bias === true || j.mlp_bias === true)
    throw new UnsupportedError('config.json:attention_bias', 'biased projections are not implemented', 'false');
  if (j.hidden_act !== undefined && j.hidden_act !== 'silu')
    throw new UnsupportedError('config.json:hidden_act', `activation ${JSON.stringify(j.hidden_act)} is not implemented`, 'silu');
  const hiddenSize = num('hidden_size');
  const numHeads = num('num_attention_heads');
  return validateLlamaConfig({
    vocabSize: num('vocab_size'),
    hiddenSize,
    intermediateSize: num('intermediate_size'),
    numLayers: num('num_hidden_layers'),
    numHeads,
    numKvHeads: num('num_key_value_heads', numHeads),
    headDim: num('head_dim', hiddenSize / numHeads),
    rmsNormEps: num('rms_norm_eps', 1e-6),
    ropeTheta: num('rope_theta', 10000),
    tieWordEmbeddings: j.tie_word_embeddings === true,
    maxPositionEmbeddings: num('max_position_embeddings', 2048),
  });
}

/** The `config.json` a Hugging Face loader would read for this config. */
export function toHfConfig(c: LlamaConfig): Record<string, unknown> {
  return {
    architectures: ['LlamaForCausalLM'],
    model_type: 'llama',
    vocab_size: c.vocabSize,
    hidden_size: c.hiddenSize,
    intermediate_size: c.intermediateSize,
    num_hidden_layers: c.numLayers,
    num_attention_heads: c.numHeads,
    num_key_value_heads: c.numKvHeads,
    head_dim: c.headDim,
    rms_norm_eps: c.rmsNormEps,
    rope_theta: c.ropeTheta,
    tie_word_embeddings: c.tieWordEmbeddings,
    max_position_embeddings: c.maxPositionEmbeddings,
    hidden_act: 'silu',
    rope_scaling: null,
  };
}

/** Parameters of the model (embedding and output head counted once when tied). */
export function parameterCount(c: LlamaConfig): number {
  const H = c.hiddenSize;
  const qo = 2 * H * c.numHeads * c.headDim;
  const kv = 2 * H * c.numKvHeads * c.headDim;
  const mlp = 3 * H * c.intermediateSize;
  const layer = qo + kv + mlp + 2 * H;
  return c.vocabSize * H * (c.tieWordEmbeddings ? 1 : 2) + c.numLayers * layer + H;
}
