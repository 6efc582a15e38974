/**
 * The same Llama model in float64 on the CPU, written from the definition
 * (full recomputation of every position, no cache, no fusion): the ground
 * truth the GPU runner's logits and greedy tokens are tested against.
 */
import type { LlamaConfig } from './config.js';
import { llamaTensorSpecs } from './checkpoint.js';

/** Weights by Hugging Face name, as numbers. */
export type CpuWeights = ReadonlyMap<string, ArrayLike<number>>;

function rmsNorm(x: Float64Array, gamma: ArrayLike<number>, eps: number): Float64Array {
  let ss = 0;
  for (let i = 0; i < x.length; i++) ss += x[i] * x[i];
  const inv = 1 / Math.sqrt(ss / x.length + eps);
  const out = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) out[i] = x[i] * inv * gamma[i];
  return out;
}

/** y = W·x for W in [out, in] order. */
function linear(w: ArrayLike<number>, x: Float64Array, out: number): Float64Array {
  const n = x.length;
  const y = new Float64Array(out);
  for (let o = 0; o < out; o++) {
    let s = 0;
    for (let i = 0; i < n; i++) s += w[o * n + i] * x[i];
    y[o] = s;
  }
  return y;
}

/** Llama's rotate-half RoPE on each head of `x` (heads × D) at position `pos`. */
function rope(x: Float64Array, heads: number, D: number, pos: number, theta: number): void {
  const half = D / 2;
  for (let h = 0; h < heads; h++)
    for (let i = 0; i < half; i++) {
      const a = pos * Math.pow(theta, (-2 * i) / D);
      const c = Math.cos(a);
      const s = Math.sin(a);
      const x0 = x[h * D + i];
      const x1 = x[h * D + i + half];
      x[h * D + i] = x0 * c - x1 * s;
      x[h * D + i + half] = x1 * c + x0 * s;
    }
}

/** Logits at every position of one sequence, `[tokens.length][vocab]`. */
export function cpuLlamaLogits(c: LlamaConfig, w: CpuWeights, tokens: readonly number[]): Float64Array[] {
  for (const spec of llamaTensorSpecs(c)) if (!w.has(spec.name)) throw new Error(`cpuLlamaLogits: missing ${spec.name}`);
  const H = c.hiddenSize;
  const D = c.headDim;
  const Hq = c.numHeads;
  const Hkv = c.numKvHeads;
  const group = Hq / Hkv;
  const T = tokens.length;
  const embed = w.get('model.embed_tokens.weight')!;
  let xs = tokens.map((t) => Float64Array.from({ length: H }, (_, i) => embed[t * H + i]));
  for (let l = 0; l < c.numLayers; l++) {
    const p = `model.layers.${l}.`;
    const qs: Float64Array[] = [];
    const ks: Float64Array[] = [];
    const vs: Float64Array[] = [];
    xs.forEach((x, t) => {
      const xn = rmsNorm(x, w.get(`${p}input_layernorm.weight`)!, c.rmsNormEps);
      const q = linear(w.get(`${p}self_attn.q_proj.weight`)!, xn, Hq * D);
      const k = linear(w.get(`${p}self_attn.k_proj.weight`)!, xn, Hkv * D);
      rope(q, Hq, D, t, c.ropeTheta);
      rope(k, Hkv, D, t, c.ropeTheta);
      qs.push(q);
      ks.push(k);
      vs.push(linear(w.get(`${p}self_attn.v_proj.weight`)!, xn, Hkv * D));
    });
    const scale = 1 / Math.sqrt(D);
    xs = xs.map((x, t) => {
      const attn = new Float64Array(Hq * D);
      for (let h = 0; h < Hq; h++) {
        const hk = Math.floor(h / group);
        const scores = new Float64Array(t + 1);
        let max = -Infinity;
        for (let j = 0; j <= t; j++) {
          let dot = 0;
          for (let d = 0; d < D; d++) dot += qs[t][h * D + d] * ks[j][hk * D + d];
          scores[j] = dot * scale;
          max = Math.max(max, scores[j]);
        }
        let sum = 0;
        for (let j = 0; j <= t; j++) sum += scores[j] = Math.exp(scores[j] - max);
        for (let j = 0; j <= t; j++) for (let d = 0; d < D; d++) attn[h * D + d] += (scores[j] / sum) * vs[j][hk * D + d];
      }
      const o = linear(w.get(`${p}self_attn.o_proj.weight`)!, attn, H);
      const x1 = x.map((v, i) => v + o[i]);
      const xn = rmsNorm(x1, w.get(`${p}post_attention_layernorm.weight`)!, c.rmsNormEps);
      const g = linear(w.get(`${p}mlp.gate_proj.weight`)!, xn, c.intermediateSize);
      const u = linear(w.get(`${p}mlp.up_proj.weight`)!, xn, c.intermediateSize);
      const hsw = g.map((gv, i) => (gv / (1 + Math.exp(-gv))) * u[i]);
      const down = linear(w.get(`${p}mlp.down_proj.weight`)!, hsw, H);
      return x1.map((v, i) => v + down[i]);
    });
  }
  const head = w.get(c.tieWordEmbeddings ? 'model.embed_tokens.weight' : 'lm_head.weight')!;
  return xs.map((x) => linear(head, rmsNorm(x, w.get('model.norm.weight')!, c.rmsNormEps), c.vocabSize));
}

/** Index of the largest value (first on ties) and its margin over the runner-up. */
export function argmaxWithMargin(x: ArrayLike<number>): { index: number; margin: number } {
  let best = 0;
  for (let i = 1; i < x.length; i++) if (x[i] > x[best]) best = i;
  let second = -Infinity;
  for (let i = 0; i < x.length; i++) if (i !== best && x[i] > second) second = x[i];
  return { index: best, margin: x[best] - second };
}

/** Greedy generation by full recomputation; also the smallest top-1 margin met (how safe the comparison is). */
export function cpuGreedyGenerate(c: LlamaConfig, w: CpuWeights, prompt: readonly number[], newTokens: number): { tokens: number[]; minMargin: number } {
  const seq = [...prompt];
  const out: number[] = [];
  let minMargin = Infinity;
  for (let i = 0; i < newTokens; i++) {
    const logits = cpuLlamaLogits(c, w, seq);
    const { index, margin } = argmaxWithMargin(logits[logits.length - 1]);
    minMargin = Math.min(minMargin, margin);
    out.push(index);
    seq.push(index);
  }
  return { tokens: out, minMargin };
}
