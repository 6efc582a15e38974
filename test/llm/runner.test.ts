import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sharedRuntime, readback, rng } from '../helpers/gpu.js';
import type { FastAttentionRuntime } from '../../src/runtime/runtime.js';
import { ShapeError, UnsupportedError } from '../../src/errors.js';
import { TINY_TEST_CONFIG, toHfConfig, type LlamaConfig } from '../../src/llm/config.js';
import { loadLlamaCheckpoint, memorySource, llamaTensorSpecs, type LoadedCheckpoint } from '../../src/llm/checkpoint.js';
import { randomCheckpointTensors, randomTensor } from '../../src/llm/random.js';
import { f16ToF32, serializeSafetensors, tensorToF32 } from '../../src/llm/safetensors.js';
import { LlamaWeights } from '../../src/llm/weights.js';
import { GEMM_TILE_LARGE, LlamaRunner, type AttentionImpl } from '../../src/llm/runner.js';
import { cpuGreedyGenerate, cpuLlamaLogits, type CpuWeights } from '../../src/llm/cpuModel.js';

/** Build a tiny model, save it as safetensors, and load it back: the path a real checkpoint takes. */
async function tinyCheckpoint(config: LlamaConfig, seed: number, dtype: 'F32' | 'F16'): Promise<{ ckpt: LoadedCheckpoint; cpu: CpuWeights }> {
  const files = new Map([
    ['config.json', new TextEncoder().encode(JSON.stringify(toHfConfig(config)))],
    ['model.safetensors', serializeSafetensors(randomCheckpointTensors(config, seed, dtype))],
  ]);
  const ckpt = await loadLlamaCheckpoint(memorySource(files));
  const cpu = new Map([...ckpt.tensors].map(([name, t]) => [name, tensorToF32(t)]));
  return { ckpt, cpu };
}

function prompts(batch: number, len: number, vocab: number, seed: number): number[][] {
  const r = rng(seed);
  return Array.from({ length: batch }, () => Array.from({ length: len }, () => Math.floor(r() * vocab)));
}

/** Max |gpu − cpu| relative to the largest reference logit. */
function relError(gpu: Float32Array, ref: Float64Array[], vocab: number): number {
  let scale = 1;
  let err = 0;
  ref.forEach((row, b) => {
    for (let i = 0; i < vocab; i++) {
      scale = Math.max(scale, Math.abs(row[i]));
      const d = Math.abs(gpu[b * vocab + i] - row[i]);
      err = Number.isNaN(d) ? Infinity : Math.max(err, d);
    }
  });
  return err / scale;
}

describe('Llama runner on WebGPU vs the float64 CPU model', () => {
  let rt: FastAttentionRuntime;
  const untied = TINY_TEST_CONFIG;
  const tied: LlamaConfig = { ...TINY_TEST_CONFIG, tieWordEmbeddings: true, numKvHeads: 4 };
  let f32: { ckpt: LoadedCheckpoint; cpu: CpuWeights };
  let weights: LlamaWeights;
  // One runner per attention, shared: SwiftShader pays ~10 ms per dispatch, so the tests keep passes few.
  const runners = new Map<AttentionImpl, LlamaRunner>();

  beforeAll(async () => {
    rt = await sharedRuntime();
    f32 = await tinyCheckpoint(untied, 11, 'F32');
    weights = LlamaWeights.fromCheckpoint(rt, f32.ckpt, 'f32');
    // 8-token pages: prompts of 7 plus generated tokens cross a page boundary of the paged cache.
    for (const attention of ['fast', 'standard'] as AttentionImpl[]) runners.set(attention, await LlamaRunner.create(rt, weights, { attention, maxBatch: 2, maxSeqLen: 10, pageTokens: 8 }));
  });
  afterAll(() => {
    for (const r of runners.values()) r.destroy();
    weights?.destroy();
  });

  for (const attention of ['fast', 'standard'] as AttentionImpl[]) {
    it(`${attention} attention: last-position logits of a batch match the CPU model (f32 weights, GQA, untied head)`, async () => {
      const ps = prompts(2, 7, untied.vocabSize, 1);
      const gpu = await runners.get(attention)!.logits(ps);
      const ref = ps.map((p) => cpuLlamaLogits(untied, f32.cpu, p).at(-1)!);
      expect(relError(gpu, ref, untied.vocabSize)).toBeLessThan(1e-3);
    });

    it(`${attention} attention: greedy generation equals the CPU model's tokens, and a repeat allocates nothing`, async () => {
      const runner = runners.get(attention)!;
      // 7 prompt tokens + 2 decoded ones are cached: the fast path's second 8-token page is in use when the last token is chosen.
      const ps = prompts(2, 7, untied.vocabSize, 3);
      const out = await runner.generate(ps, { maxNewTokens: 3 });
      ps.forEach((p, b) => {
        const ref = cpuGreedyGenerate(untied, f32.cpu, p, 3);
        // A near-tie would make the comparison meaningless rather than wrong: the seed is chosen so it is not.
        expect(ref.minMargin).toBeGreaterThan(1e-3);
        expect(out.tokens[b]).toEqual(ref.tokens);
      });
      if (attention === 'fast') {
        for (const cache of runner.pagedCache!.layers)
          for (let b = 0; b < 2; b++) {
            expect(cache.length(b)).toBe(9);
            expect(cache.pagesOf(b)).toHaveLength(2);
          }
        expect(runner.contiguousCache).toBeUndefined();
      } else {
        expect(runner.pagedCache).toBeUndefined();
      }
      expect(out.ttftMs).toBeGreaterThan(0);
      expect(out.totalMs).toBeGreaterThanOrEqual(out.ttftMs);
      if (attention === 'fast') {
        // Operators are planned per request shape; once planned, a request creates no buffer.
        const created = rt.ledger.createdCount;
        const again = await runner.generate(ps, { maxNewTokens: 2 });
        expect(rt.ledger.createdCount).toBe(created);
        expect(again.tokens.map((t) => t.slice(0, 2))).toEqual(out.tokens.map((t) => t.slice(0, 2)));
      }
    });
  }

  it('decode through PagedKvCache.append when the pages of a layer span several pool buffers gives the same tokens', async () => {
    // One 8-token page per pool buffer (2 KV heads × 8 tokens × 32 dims × 4 bytes × K and V = 4 KiB): 2 sequences × 2 pages take 4 pools.
    const runner = await LlamaRunner.create(rt, weights, { attention: 'fast', maxBatch: 2, maxSeqLen: 10, pageTokens: 8, kvPoolBytes: 4096 });
    try {
      expect(runner.pagedCache!.directWrite).toBe(false);
      const ps = prompts(2, 7, untied.vocabSize, 3);
      const out = await runner.generate(ps, { maxNewTokens: 3 });
      ps.forEach((p, b) => expect(out.tokens[b]).toEqual(cpuGreedyGenerate(untied, f32.cpu, p, 3).tokens));
      expect(runner.pagedCache!.layers[0].pools.length).toBeGreaterThan(1);
      expect(runner.pagedCache!.layers[0].length(1)).toBe(9);
    } finally {
      runner.destroy();
    }
  });

  // Chunked prefill: the first chunk attends over its own K/V rows, every later one over the pages so far, read in place
  // by the fused operator bound to each layer's cache (no gather copy). maxSeqLen 12 with 8-token pages and chunks of 4:
  // 10-token prompts run chunks 4, 4, 2, and the keys of the later chunks cross a page boundary.
  const chunked = { attention: 'fast', maxBatch: 2, maxSeqLen: 12, pageTokens: 8, prefillChunk: 4 } as const;

  it('chunked prefill reads the pages in place: logits of a batch, then one sequence on the same runner prefilled and decoded', async () => {
    const runner = await LlamaRunner.create(rt, weights, chunked);
    try {
      expect(runner.pagedCache!.directWrite).toBe(true);
      const ps = prompts(2, 10, untied.vocabSize, 2);
      const gpu = await runner.logits(ps);
      expect(relError(gpu, ps.map((p) => cpuLlamaLogits(untied, f32.cpu, p).at(-1)!), untied.vocabSize)).toBeLessThan(1e-3);
      for (const cache of runner.pagedCache!.layers) expect([...cache.lengths]).toEqual([10, 10]);
      // A batch of 1 on 2 sequence slots: the operators over the cache give slot 1 no keys.
      const one = prompts(1, 9, untied.vocabSize, 8);
      const ref = cpuGreedyGenerate(untied, f32.cpu, one[0], 2);
      expect(ref.minMargin).toBeGreaterThan(1e-3);
      const out = await runner.generate(one, { maxNewTokens: 2 });
      expect(out.tokens[0]).toEqual(ref.tokens);
      for (const cache of runner.pagedCache!.layers) expect([...cache.lengths]).toEqual([10, 0]);
    } finally {
      runner.destroy();
    }
  });

  it('chunked prefill through appends when each layer spans two pool buffers (the paged prefill binds both)', async () => {
    // 4 KiB pages (K and V of 2 heads × 8 tokens × 32 dims, f32), two per pool buffer: 2 sequences × 2 pages take 2 pools.
    const runner = await LlamaRunner.create(rt, weights, { ...chunked, kvPoolBytes: 8192 });
    try {
      expect(runner.pagedCache!.directWrite).toBe(false);
      const ps = prompts(2, 10, untied.vocabSize, 2);
      const gpu = await runner.logits(ps);
      expect(relError(gpu, ps.map((p) => cpuLlamaLogits(untied, f32.cpu, p).at(-1)!), untied.vocabSize)).toBeLessThan(1e-3);
      const cache = runner.pagedCache!.layers[1];
      expect(cache.pools).toHaveLength(2);
      const pools = new Set([0, 1].flatMap((b) => cache.pagesOf(b)).map((p) => Math.floor(p / cache.geometry.pagesPerBuffer)));
      expect(pools.size).toBe(2);
    } finally {
      runner.destroy();
    }
  });

  it('a chunked prefill over more pool buffers than the fused operator binds is rejected at creation, leaving nothing behind', async () => {
    const before = rt.ledger.entries().length;
    const err = await LlamaRunner.create(rt, weights, { ...chunked, kvPoolBytes: 4096 }).catch((e) => e);
    expect(err).toBeInstanceOf(UnsupportedError);
    expect(err.field).toBe('kvPoolBytes');
    expect(err.allowed).toMatch(/prefillChunk ≥ maxSeqLen \(12\), or pool buffers of at least 8192 bytes/);
    expect(rt.ledger.entries().length).toBe(before);
  });

  // Hardware runs pick these by default. Compiling them on SwiftShader takes ~30 s, so CI skips it; FASTATTN_LLM_FULL=1 runs it.
  it.runIf(process.env.FASTATTN_LLM_FULL === '1')('the GPU configuration (128×128 GEMM tiles, wide reductions, default attention tiles) gives the same tokens', async () => {
    const runner = await LlamaRunner.create(rt, weights, { attention: 'fast', maxBatch: 2, maxSeqLen: 8, gemmTile: GEMM_TILE_LARGE, reductions: 'wide', prefillTile: undefined });
    try {
      // 10 prompt rows: the prefill goes through the GEMM in one partial 128×128 tile; decode through the 2-row GEMV.
      const ps = prompts(2, 5, untied.vocabSize, 12);
      const out = await runner.generate(ps, { maxNewTokens: 3 });
      ps.forEach((p, b) => expect(out.tokens[b]).toEqual(cpuGreedyGenerate(untied, f32.cpu, p, 3).tokens));
    } finally {
      runner.destroy();
    }
  });

  it('f16 checkpoint, f16 weights on the GPU, tied embeddings, MHA: logits and greedy tokens match', async () => {
    const m = await tinyCheckpoint(tied, 5, 'F16');
    const w = LlamaWeights.fromCheckpoint(rt, m.ckpt, 'f16');
    const runner = await LlamaRunner.create(rt, w, { attention: 'fast', maxBatch: 1, maxSeqLen: 8 });
    try {
      expect(w.lmHead).toBe(w.embed);
      const ps = prompts(1, 5, tied.vocabSize, 4);
      const ref = cpuGreedyGenerate(tied, m.cpu, ps[0], 3);
      expect(ref.minMargin).toBeGreaterThan(1e-3);
      const out = await runner.generate(ps, { maxNewTokens: 3 });
      expect(out.tokens[0]).toEqual(ref.tokens);
      // A fresh prefill over the prompt and the first two generated tokens gives the logits the third token was chosen from.
      const gpu = await runner.logits([[...ps[0], ...ref.tokens.slice(0, 2)]]);
      expect(relError(gpu, [cpuLlamaLogits(tied, m.cpu, [...ps[0], ...ref.tokens.slice(0, 2)]).at(-1)!], tied.vocabSize)).toBeLessThan(1e-3);
    } finally {
      runner.destroy();
      w.destroy();
    }
  });

  it('temperature sampling is reproducible from its seed and not the greedy path', async () => {
    const runner = runners.get('fast')!;
    const ps = prompts(2, 4, untied.vocabSize, 6);
    const a = await runner.generate(ps, { maxNewTokens: 3, temperature: 5, seed: 42 });
    const b = await runner.generate(ps, { maxNewTokens: 3, temperature: 5, seed: 42 });
    const c = await runner.generate(ps, { maxNewTokens: 3, temperature: 5, seed: 43 });
    expect(a.tokens).toEqual(b.tokens);
    expect(a.tokens).not.toEqual(c.tokens);
    expect(a.tokens).not.toEqual(ps.map((p) => cpuGreedyGenerate(untied, f32.cpu, p, 3).tokens));
    for (const row of a.tokens) for (const t of row) expect(t).toBeLessThan(untied.vocabSize);
  });

  it('GPU random weights equal the CPU initializer (f32 up to fma rounding, f16 within one ulp)', async () => {
    const cfg: LlamaConfig = { ...TINY_TEST_CONFIG, numLayers: 1 };
    for (const dtype of ['f32', 'f16'] as const) {
      const w = await LlamaWeights.random(rt, cfg, { seed: 9, dtype });
      try {
        for (const spec of llamaTensorSpecs(cfg).filter((s) => /k_proj|norm.weight|embed/.test(s.name))) {
          const at = w.placement(spec.name)!;
          const n = spec.shape.reduce((x, y) => x * y, 1);
          const f16 = dtype === 'f16' && !at.f32;
          const bytes = f16 ? 2 : 4;
          const raw = await readback(rt.device, at.buffer);
          const words = new Uint8Array(raw.buffer, at.elementOffset * bytes, n * bytes);
          const gpu = f16 ? Array.from(new Uint16Array(words.slice().buffer), f16ToF32) : Array.from(new Float32Array(words.slice().buffer));
          const cpu = randomTensor(9, spec, f16 ? 'F16' : 'F32');
          const ref = f16 ? Array.from(cpu as Uint16Array, f16ToF32) : Array.from(cpu);
          let err = 0;
          for (let i = 0; i < n; i++) err = Math.max(err, Math.abs(gpu[i] - ref[i]) / Math.max(1, Math.abs(ref[i])));
          expect(err, spec.name).toBeLessThan(f16 ? 2 ** -10 : 1e-6);
          expect(new Set(gpu.slice(0, 64)).size, spec.name).toBeGreaterThan(32);
        }
      } finally {
        w.destroy();
      }
    }
  });

  it('rejects a prompt longer than the planned cache, naming the limit, before any dispatch', async () => {
    const runner = runners.get('fast')!;
    const created = rt.ledger.createdCount;
    const err = await runner.generate(prompts(1, 8, untied.vocabSize, 7), { maxNewTokens: 3 }).catch((e) => e);
    expect(err).toBeInstanceOf(ShapeError);
    expect(err.field).toBe('prompts');
    expect(err.allowed).toMatch(/≤ 10/);
    await expect(runner.logits(prompts(3, 2, untied.vocabSize, 7))).rejects.toThrow(/1 to 2 sequences/);
    await expect(runner.logits([[1, 2], [3]])).rejects.toThrow(ShapeError);
    await expect(runner.logits([[1, untied.vocabSize]])).rejects.toThrow(/outside the vocabulary/);
    await expect(runner.generate([[1]], { maxNewTokens: 0 })).rejects.toThrow(/maxNewTokens/);
    expect(rt.ledger.createdCount).toBe(created);
  });
});
