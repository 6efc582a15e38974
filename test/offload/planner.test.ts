// The planner against cases worked out by hand (numbers in the comments), so a
// change in any term of the memory model shows up as a failure.
import { describe, expect, it } from 'vitest';
import { FastAttentionError } from '../../src/errors.js';
import { formatPlan, LLAMA2_7B, planOffload } from '../../src/offload/planner.js';

const GiB = 2 ** 30;
// LLaMA2-7B, f16, one GPU: per layer 4·4096² (attention) + 3·4096·11008 (FFN) + 2·4096 (norms)
// = 202,383,360 params → 404,766,720 B; ×32 + final norm 8,192 B = 12,952,543,232 B.
// Vocabulary: 2·32000·4096·2 = 524,288,000 B.
// Intermediate, chunk 4096: FFN 4096·2·11008·2 = 180,355,072 B (QKV 100,663,296; hidden 33,554,432; logits 128,000).
// Free on 32 GiB: 34,359,738,368 − 12,952,543,232 − 524,288,000 − 180,355,072 = 20,702,552,064 B.
const one = { batch: 1, outputLength: 0, gpus: 1, gpuMemoryBytes: 32 * GiB, prefillChunk: 4096 };

describe('planOffload (Appendix C memory model)', () => {
  it('LLaMA2-7B parts on one GPU', () => {
    const p = planOffload(LLAMA2_7B, { ...one, promptLength: 16384 });
    expect(p.perGpu.weights).toBe(12_952_543_232);
    expect(p.perGpu.vocabulary).toBe(524_288_000);
    expect(p.perGpu.intermediate).toBe(180_355_072);
    expect(p.perGpu.intermediateKind).toBe('ffn');
    expect(p.perGpu.kvPerLayer).toBe(268_435_456); // 2·16384·32·128·2
  });

  it('LLaMA2-7B at 16K fits entirely on a 32 GiB GPU', () => {
    // 20,702,552,064 / 268,435,456 = 77.1 → all 32 layers
    const p = planOffload(LLAMA2_7B, { ...one, promptLength: 16384 });
    expect([p.lGpu, p.lCpu]).toEqual([32, 0]);
    expect(p.hostKvBytes).toBe(0);
  });

  it('LLaMA2-7B at 64K offloads 13 layers', () => {
    // KV/layer 1,073,741,824; 20,702,552,064 / 1,073,741,824 = 19.28 → L_gpu 19
    const p = planOffload(LLAMA2_7B, { ...one, promptLength: 65536 });
    expect([p.lGpu, p.lCpu]).toEqual([19, 13]);
    expect(p.hostKvBytes).toBe(13 * GiB);
  });

  it('LLaMA2-7B at 256K offloads 28 layers', () => {
    // KV/layer 4 GiB; 20,702,552,064 / 4,294,967,296 = 4.82 → L_gpu 4, 28 layers · 4 GiB = 112 GiB on the host
    const p = planOffload(LLAMA2_7B, { ...one, promptLength: 262144 });
    expect([p.lGpu, p.lCpu]).toEqual([4, 28]);
    expect(p.hostKvBytes).toBe(112 * GiB);
    expect(p.perGpu.total).toBe(12_952_543_232 + 524_288_000 + 180_355_072 + 4 * 4 * GiB);
    const text = formatPlan(p);
    expect(text).toContain('L_gpu = 4, L_cpu = 28');
    expect(text).toMatch(/KV on host\s+112\.000 GiB/);
  });

  it('output tokens grow the cache: 64K prompt + 8K output', () => {
    // KV/layer 2·73728·32·128·2 = 1,207,959,552; 20,702,552,064 / that = 17.1 → 17
    const p = planOffload(LLAMA2_7B, { ...one, promptLength: 65536, outputLength: 8192 });
    expect([p.lGpu, p.lCpu]).toEqual([17, 15]);
  });

  it('8 GPUs shard weights and heads: 256K fits on 8 × 32 GiB', () => {
    // matrices 202,375,168·32·2/8 = 1,619,001,344; norms replicated (8192·32 + 4096)·2 = 532,480
    // vocabulary 65,536,000; largest intermediate: residual 4096·4096·2 = 33,554,432
    // KV/layer 2·262144·4·128·2 = 536,870,912; free 32,641,114,112 → 60 ≥ 32
    const p = planOffload(LLAMA2_7B, { ...one, gpus: 8, promptLength: 262144 });
    expect(p.perGpu.weights).toBe(1_619_533_824);
    expect(p.perGpu.vocabulary).toBe(65_536_000);
    expect(p.perGpu.intermediateKind).toBe('hidden');
    expect(p.perGpu.kvPerLayer).toBe(536_870_912);
    expect([p.lGpu, p.lCpu]).toEqual([32, 0]);
  });

  it('GQA and f16 vs f32 KV: fewer KV heads, more resident layers', () => {
    const gqa = { ...LLAMA2_7B, kvHeads: 8 };
    // attention matrices 2·4096·4096 + 2·4096·1024 = 41,943,040; FFN 135,266,304; norms 8192
    // weights (177,217,536·32 + 4096)·2 = 11,341,930,496; free = 34,359,738,368 − 11,341,930,496 − 524,288,000 − 180,355,072
    //       = 22,313,164,800; KV/layer (f32) 2·262144·8·128·4 = 2 GiB → 10
    const p = planOffload(gqa, { ...one, promptLength: 262144, kvDtype: 'f32' });
    expect(p.perGpu.weights).toBe(11_341_930_496);
    expect([p.lGpu, p.lCpu]).toEqual([10, 22]);
  });

  it('rejects a budget that cannot hold the weights, and bad fields, before planning', () => {
    const err = (f: () => unknown): FastAttentionError => {
      try {
        f();
      } catch (e) {
        return e as FastAttentionError;
      }
      throw new Error('expected a throw');
    };
    const small = err(() => planOffload(LLAMA2_7B, { ...one, promptLength: 16384, gpuMemoryBytes: 8 * GiB }));
    expect(small.field).toBe('options.gpuMemoryBytes');
    expect(small.allowed).toContain('13657186304'); // 12,952,543,232 + 524,288,000 + 180,355,072
    expect(err(() => planOffload({ ...LLAMA2_7B, kvHeads: 5 }, { ...one, promptLength: 16 })).field).toBe('model.heads');
    expect(err(() => planOffload(LLAMA2_7B, { ...one, promptLength: 16, gpus: 3 })).field).toBe('options.gpus');
    expect(err(() => planOffload({ ...LLAMA2_7B, dtype: 'int8' as never }, { ...one, promptLength: 16 })).field).toBe('model.dtype');
    expect(err(() => planOffload(LLAMA2_7B, { ...one, promptLength: 0 })).field).toBe('options.promptLength');
    const host = err(() => planOffload(LLAMA2_7B, { ...one, promptLength: 262144, hostMemoryBytes: 64 * GiB }));
    expect(host.field).toBe('options.hostMemoryBytes');
  });
});
