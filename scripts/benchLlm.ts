/**
 * End-to-end LLM benchmark (the paper's Table 6 protocol): a Llama model with
 * random weights, prompt 512, 50 generated tokens, batch 1 / 8 / 16, time to
 * first token and tokens per second, with the standard-attention baseline and
 * with FastAttention in the same run; then prompts of 2K–16K at batch 1.
 * Before the table: the prefill GEMM kernels cross-checked on the device (tiled
 * f32-FMA vs subgroup-matrix, max abs difference and TFLOP/s); after it, the
 * fast path at batch 1 without f16 activations / without the matrix GEMM.
 *
 *   EXTRA_ENTRY=scripts/benchLlm.ts EXTRA_NAME=benchllm node scripts/build.mjs benchllm
 *   node dist/benchllm.js [--out FILE] [--config llama2-7b|tinyllama|tiny] [--dtype f16|f32]
 *                         [--peaks peaks.json] [--budget-s 270] [--software]
 *
 * Defaults: LLaMA2-7B shapes with f16 weights on a GPU; the tiny test config
 * with f32 weights on a software adapter (--software re-executes on SwiftShader).
 * Results are written as JSON after every measurement, so a run cut short still
 * leaves what it measured.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { createNodeRuntime } from '../src/node.js';
import { swiftShaderEnv } from '../src/runtime/softwareAdapter.js';
import { LLAMA2_7B, TINYLLAMA_1_1B, TINY_TEST_CONFIG, parameterCount, type LlamaConfig } from '../src/llm/config.js';
import { LlamaWeights, type WeightDType } from '../src/llm/weights.js';
import { LlamaRunner, type AttentionImpl, type GemmKind, type GenerateResult } from '../src/llm/runner.js';
import { checkGemms, type GemmCheckResult } from '../src/llm/gemmCheck.js';
import type { KvDType } from '../src/kvcache/pagedKvCache.js';

const args = process.argv.slice(2);
const flag = (name: string): string | undefined => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : undefined;
};

if (args.includes('--software') && process.env.FASTATTN_SOFTWARE_ADAPTER !== '1') {
  const env = swiftShaderEnv();
  if (!env) throw new Error('@sparticuz/chromium is not installed: no software adapter');
  const r = spawnSync(process.execPath, process.argv.slice(1), { stdio: 'inherit', env: { ...process.env, ...env, FASTATTN_SOFTWARE_ADAPTER: '1' } });
  process.exit(r.status ?? 1);
}

const CONFIGS: Record<string, LlamaConfig> = { 'llama2-7b': LLAMA2_7B, tinyllama: TINYLLAMA_1_1B, tiny: TINY_TEST_CONFIG };

interface Point {
  attention: AttentionImpl;
  batch: number;
  prompt: number;
  newTokens: number;
  prefillChunk?: number;
  /** Attention/KV storage type, prefill GEMM kernel and KV cache of the runner. */
  activations?: KvDType;
  gemm?: GemmKind;
  kvCache?: string;
  ttftMs?: number;
  totalMs?: number;
  decodeMs?: number;
  planMs?: number;
  /** Generated tokens over the whole request (prefill included). */
  tokensPerS?: number;
  /** Tokens of the decode steps over their time. */
  decodeTokensPerS?: number;
  /** Model FLOPs of the prefill (2·params·tokens + attention) over time to first token. */
  prefillTflops?: number;
  /** Weight bytes read per decode step over the step time. */
  decodeWeightGBs?: number;
  reps?: Array<Pick<GenerateResult, 'ttftMs' | 'totalMs' | 'decodeMs'>>;
  error?: string;
}

function randomPrompts(batch: number, len: number, vocab: number, seed: number): number[][] {
  let s = seed >>> 0;
  const next = (): number => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s;
  };
  return Array.from({ length: batch }, () => Array.from({ length: len }, () => next() % vocab));
}

async function main(): Promise<void> {
  const t0 = performance.now();
  const rt = await createNodeRuntime();
  const caps = rt.capabilities;
  const software = caps.adapter.isSoftware;
  const configName = flag('config') ?? (software ? 'tiny' : 'llama2-7b');
  const config = CONFIGS[configName];
  if (!config) throw new Error(`--config: unknown ${configName} (allowed: ${Object.keys(CONFIGS).join(', ')})`);
  const dtype = (flag('dtype') ?? (software ? 'f32' : 'f16')) as WeightDType;
  const budgetS = Number(flag('budget-s') ?? (software ? 1800 : 270));
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const out = flag('out') ?? `bench/results/llm-${software ? 'swiftshader' : caps.adapter.vendor || 'gpu'}-${configName}-${stamp}.json`;
  const peaksFile = flag('peaks');
  let peaks: Record<string, unknown> | null = null;
  if (peaksFile) {
    try {
      // Dawn may print shader-compilation warnings on the same stream: the measurement is the last JSON line.
      const line = readFileSync(peaksFile, 'utf8').split('\n').reverse().find((l) => l.trim().startsWith('{'));
      peaks = JSON.parse(line ?? '') as Record<string, unknown>;
    } catch (e) {
      peaks = { error: `could not read ${peaksFile}: ${(e as Error).message}` };
    }
  }
  // Software adapters get the same protocol at a size that finishes: prompts of 32, 8 tokens.
  const table = software ? { prompt: 32, newTokens: 8, batches: [1, 4], long: [64, 128] , longNew: 4 } : { prompt: 512, newTokens: 50, batches: [1, 8, 16], long: [2048, 4096, 8192, 16384], longNew: 16 };
  const params = parameterCount(config);
  const weightBytes = (params - config.vocabSize * config.hiddenSize * (config.tieWordEmbeddings ? 0 : 1)) * (dtype === 'f16' ? 2 : 4);

  const result = {
    tool: 'scripts/benchLlm.ts',
    date: new Date().toISOString(),
    adapter: caps.adapter,
    features: caps.features,
    limits: { maxStorageBufferBindingSize: caps.limits.maxStorageBufferBindingSize, maxBufferSize: caps.limits.maxBufferSize },
    model: { name: configName, config, parameters: params, weightDType: dtype, weights: 'deterministic random (LlamaWeights.random, generated on the GPU)', seed: 1 },
    protocol: {
      table: `batch ${table.batches.join('/')} × prompt ${table.prompt} × ${table.newTokens} generated tokens, greedy; best of 2 requests after a warm-up request; standard and fast in the same run`,
      long: `batch 1, prompts ${table.long.join('/')}, ${table.longNew} generated tokens, one request each`,
      tokensPerS: 'batch × generated tokens / (first upload → last token read back)',
      decodeTokensPerS: 'batch × (generated − 1) / decode time',
      ttft: 'first upload → first token read back (prefill + sampling); operator planning reported separately as planMs',
    },
    peaks,
    table: [] as Point[],
    ratios: [] as Array<Record<string, number | string>>,
    long: [] as Point[],
    /** The prefill GEMM kernels on LLaMA shapes: each against float64 on sampled rows, matrix vs tiled over all of C. */
    gemmCheck: [] as Array<GemmCheckResult | { error: string }>,
    /**
     * Each configuration against the most exact one (fast attention, f32 activations, tiled GEMM) on the same weights:
     * last-position logits of 2 prompts of 64 (max |Δ| over max |logit|) and 8 greedy tokens (positions equal).
     */
    consistency: [] as Array<Record<string, unknown>>,
    /** Prompt 512 with parts of the configuration turned off (same run). */
    ablation: [] as Point[],
    notes: [] as string[],
    elapsedS: 0,
  };
  const save = (): void => {
    result.elapsedS = (performance.now() - t0) / 1000;
    mkdirSync(dirname(out), { recursive: true });
    writeFileSync(out, JSON.stringify(result, null, 2));
  };

  // The prefill GEMMs first: the QKV projection (N = 3H) and the MLP down projection (K = I) at 512 + 7 rows (a partial tile).
  for (const [N, K] of [[3 * config.hiddenSize, config.hiddenSize], [config.hiddenSize, config.intermediateSize]]) {
    if (software || K % 64 !== 0) break;
    try {
      const r = await checkGemms(rt, { M: 519, N, K, reps: 10, sampleRows: 4 });
      result.gemmCheck.push(r);
      console.error(JSON.stringify(r));
    } catch (e) {
      result.gemmCheck.push({ error: `${(e as Error).name}: ${(e as Error).message}` });
    }
  }
  const wt0 = performance.now();
  const weights = await LlamaWeights.random(rt, config, { seed: 1, dtype });
  result.notes.push(`weights: ${(weights.bytes / 2 ** 30).toFixed(2)} GiB generated on the GPU in ${((performance.now() - wt0) / 1000).toFixed(1)} s`);
  save();

  if (!software) {
    const ps = randomPrompts(2, 64, config.vocabSize, 5);
    const configs: Array<[AttentionImpl, KvDType, GemmKind]> = [
      ['fast', 'f32', 'tiled'],
      ['fast', 'f16', 'matrix'],
      ['standard', 'f16', 'matrix'],
      ['fast', 'f16', 'tiled'],
      ['fast', 'f32', 'matrix'],
    ];
    let ref: { logits: Float32Array; tokens: number[][] } | undefined;
    for (const [attention, activations, gemm] of configs) {
      const entry: Record<string, unknown> = { attention, activations, gemm };
      let runner: LlamaRunner | undefined;
      try {
        runner = await LlamaRunner.create(rt, weights, { attention, activations, gemm, maxBatch: 2, maxSeqLen: 80 });
        const logits = await runner.logits(ps);
        const { tokens } = await runner.generate(ps, { maxNewTokens: 8 });
        if (!ref) ref = { logits, tokens };
        let scale = 0;
        let err = 0;
        for (let i = 0; i < logits.length; i++) {
          scale = Math.max(scale, Math.abs(ref.logits[i]));
          const d = Math.abs(logits[i] - ref.logits[i]);
          err = Number.isNaN(d) ? Infinity : Math.max(err, d);
        }
        Object.assign(entry, { maxAbsLogitDiff: err, maxAbsLogit: scale, relative: err / scale, tokensEqual: tokens.map((t, b) => t.filter((x, i) => x === ref!.tokens[b][i]).length), tokens });
      } catch (e) {
        entry.error = `${(e as Error).name}: ${(e as Error).message}`;
      } finally {
        runner?.destroy();
      }
      result.consistency.push(entry);
      console.error(JSON.stringify(entry));
      save();
    }
  }

  const flopsPerToken = 2 * (params - config.vocabSize * config.hiddenSize); // matmuls (embedding lookup is not a matmul)
  const attnFlops = (batch: number, prompt: number): number => 4 * config.headDim * config.numHeads * config.numLayers * batch * ((prompt * (prompt + 1)) / 2);

  const measure = async (attention: AttentionImpl, batch: number, prompt: number, newTokens: number, reps: number, overrides: { activations?: KvDType; gemm?: GemmKind } = {}): Promise<Point> => {
    const point: Point = { attention, batch, prompt, newTokens };
    let runner: LlamaRunner | undefined;
    try {
      runner = await LlamaRunner.create(rt, weights, { attention, maxBatch: batch, maxSeqLen: prompt + newTokens, ...overrides });
      point.prefillChunk = runner.prefillChunk;
      point.activations = runner.activations;
      point.gemm = runner.gemmKind;
      point.kvCache = runner.pagedCache
        ? `paged, ${runner.pagedCache.pageTokens}-token pages, ${runner.activations}, ${(runner.pagedCache.bytes / 2 ** 20).toFixed(0)} MiB, K/V ${runner.pagedCache.directWrite ? 'written into reserved page slots by RoPE' : 'appended (copies)'}`
        : `contiguous, ${runner.activations}, ${((runner.contiguousCache?.bytes ?? 0) / 2 ** 20).toFixed(0)} MiB`;
      // Warm-up: compiles every pipeline this shape uses (operators for other lengths reuse them).
      await runner.generate(randomPrompts(batch, Math.min(prompt, 64), config.vocabSize, 7), { maxNewTokens: 2 });
      const runs: GenerateResult[] = [];
      for (let r = 0; r < reps; r++) runs.push(await runner.generate(randomPrompts(batch, prompt, config.vocabSize, 100 + r), { maxNewTokens: newTokens }));
      const best = runs.reduce((a, b) => (b.totalMs < a.totalMs ? b : a));
      Object.assign(point, {
        ttftMs: best.ttftMs,
        totalMs: best.totalMs,
        decodeMs: best.decodeMs,
        planMs: best.planMs,
        tokensPerS: (batch * newTokens) / (best.totalMs / 1000),
        decodeTokensPerS: newTokens > 1 ? (batch * (newTokens - 1)) / (best.decodeMs / 1000) : undefined,
        prefillTflops: (flopsPerToken * batch * prompt + attnFlops(batch, prompt)) / (best.ttftMs / 1000) / 1e12,
        decodeWeightGBs: newTokens > 1 ? (weightBytes * (newTokens - 1)) / (best.decodeMs / 1000) / 1e9 : undefined,
        reps: runs.map((g) => ({ ttftMs: g.ttftMs, totalMs: g.totalMs, decodeMs: g.decodeMs })),
      });
    } catch (e) {
      point.error = `${(e as Error).name}: ${(e as Error).message}`;
    } finally {
      runner?.destroy();
      await rt.device.queue.onSubmittedWorkDone();
    }
    console.error(JSON.stringify({ ...point, reps: undefined }));
    return point;
  };

  for (const batch of table.batches) {
    const pair: Partial<Record<AttentionImpl, Point>> = {};
    for (const attention of ['standard', 'fast'] as AttentionImpl[]) {
      if ((performance.now() - t0) / 1000 > budgetS) {
        result.notes.push(`skipped batch ${batch} ${attention}: over the ${budgetS} s budget`);
        continue;
      }
      const p = await measure(attention, batch, table.prompt, table.newTokens, 2);
      pair[attention] = p;
      result.table.push(p);
      save();
    }
    const s = pair.standard;
    const f = pair.fast;
    if (s?.tokensPerS && f?.tokensPerS)
      result.ratios.push({
        batch,
        'tokensPerS fast/standard': f.tokensPerS / s.tokensPerS,
        'decodeTokensPerS fast/standard': (f.decodeTokensPerS ?? NaN) / (s.decodeTokensPerS ?? NaN),
        'ttft standard/fast (speedup)': s.ttftMs! / f.ttftMs!,
      });
    save();
  }
  if (!software) {
    // What each part of the configuration contributes (f16 attention/KV, the subgroup-matrix GEMM), same protocol as the table.
    const variants: Array<[AttentionImpl, number, { activations?: KvDType; gemm?: GemmKind }]> = [
      ['fast', 1, { gemm: 'tiled' }],
      ['fast', 1, { activations: 'f32' }],
      ['fast', 1, { activations: 'f32', gemm: 'tiled' }],
      ['fast', 8, { gemm: 'tiled' }],
      ['fast', 8, { activations: 'f32', gemm: 'tiled' }],
      ['standard', 8, { activations: 'f32', gemm: 'tiled' }],
    ];
    for (const [attention, batch, v] of variants) {
      if ((performance.now() - t0) / 1000 > budgetS) break;
      result.ablation.push(await measure(attention, batch, table.prompt, table.newTokens, 2, v));
      save();
    }
  }
  for (const prompt of table.long) {
    for (const attention of ['standard', 'fast'] as AttentionImpl[]) {
      if ((performance.now() - t0) / 1000 > budgetS) {
        result.notes.push(`skipped prompt ${prompt} ${attention}: over the ${budgetS} s budget`);
        continue;
      }
      result.long.push(await measure(attention, 1, prompt, table.longNew, 1));
      save();
    }
  }
  weights.destroy();
  save();
  console.error(`wrote ${out}`);
  rt.destroy();
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
