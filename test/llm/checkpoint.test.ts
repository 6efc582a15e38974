import { describe, expect, it } from 'vitest';
import { TINY_TEST_CONFIG, toHfConfig, parseLlamaConfig, type LlamaConfig } from '../../src/llm/config.js';
import { CheckpointError } from '../../src/llm/errors.js';
import { loadLlamaCheckpoint, memorySource, llamaTensorSpecs } from '../../src/llm/checkpoint.js';
import { randomCheckpointTensors } from '../../src/llm/random.js';
import { bf16ToF32, f16ToF32, f32ToF16, parseSafetensors, serializeSafetensors, tensorToF32 } from '../../src/llm/safetensors.js';
import { UnsupportedError } from '../../src/errors.js';

const small: LlamaConfig = { ...TINY_TEST_CONFIG, numLayers: 1, vocabSize: 64 };

function files(config: LlamaConfig, tensors = randomCheckpointTensors(config, 7, 'F32')): Map<string, Uint8Array> {
  return new Map([
    ['config.json', new TextEncoder().encode(JSON.stringify(toHfConfig(config)))],
    ['model.safetensors', serializeSafetensors(tensors)],
  ]);
}

function catchError(f: () => unknown): unknown {
  try {
    f();
  } catch (e) {
    return e;
  }
  return undefined;
}

describe('safetensors', () => {
  it('round-trips F32, F16 and BF16 tensors with their header', () => {
    const f32 = new Float32Array([1.5, -2.25, 3e-3, 65504, 0, -0]);
    const f16 = new Uint16Array([0x3c00, 0xc000, 0x7bff, 0x0001]);
    const bf16 = new Uint16Array([0x3f80, 0xc040]);
    const bytes = serializeSafetensors(
      [
        { name: 'a', dtype: 'F32', shape: [2, 3], data: f32 },
        { name: 'b', dtype: 'F16', shape: [4], data: f16 },
        { name: 'c', dtype: 'BF16', shape: [1, 2], data: bf16 },
      ],
      { format: 'pt' },
    );
    const headerLen = Number(new DataView(bytes.buffer).getBigUint64(0, true));
    expect((8 + headerLen) % 8).toBe(0);
    const parsed = parseSafetensors(bytes);
    expect(parsed.metadata).toEqual({ format: 'pt' });
    expect(parsed.tensors.get('a')!.shape).toEqual([2, 3]);
    expect(Array.from(tensorToF32(parsed.tensors.get('a')!))).toEqual(Array.from(f32));
    expect(Array.from(tensorToF32(parsed.tensors.get('b')!))).toEqual([1, -2, 65504, 2 ** -24]);
    expect(Array.from(tensorToF32(parsed.tensors.get('c')!))).toEqual([1, -3]);
  });

  it('converts f32 to f16 with round-to-nearest-even, subnormals and overflow', () => {
    expect(f32ToF16(1)).toBe(0x3c00);
    expect(f32ToF16(1 + 2 ** -11)).toBe(0x3c00); // tie → even
    expect(f32ToF16(1 + 3 * 2 ** -11)).toBe(0x3c02); // tie → even (up)
    expect(f32ToF16(2 ** -24)).toBe(0x0001);
    expect(f32ToF16(70000)).toBe(0x7c00);
    expect(f32ToF16(-0.5)).toBe(0xb800);
    for (let h = 0; h < 0x7c00; h += 37) expect(f32ToF16(f16ToF32(h))).toBe(h);
    expect(bf16ToF32(0x4049)).toBeCloseTo(3.140625, 6);
  });

  it('names the tensor a truncated file cuts, and the file when the header itself is cut', () => {
    const bytes = serializeSafetensors([
      { name: 'first', dtype: 'F32', shape: [4], data: new Float32Array(4) },
      { name: 'second', dtype: 'F32', shape: [8], data: new Float32Array(8) },
    ]);
    const cut = catchError(() => parseSafetensors(bytes.subarray(0, bytes.length - 4), 'shard.safetensors')) as CheckpointError;
    expect(cut).toBeInstanceOf(CheckpointError);
    expect(cut.problem).toBe('truncated');
    expect(cut.field).toBe('second');
    const header = catchError(() => parseSafetensors(bytes.subarray(0, 20), 'shard.safetensors')) as CheckpointError;
    expect(header.problem).toBe('truncated');
    expect(header.field).toBe('shard.safetensors');
    expect((catchError(() => parseSafetensors(bytes.subarray(0, 5))) as CheckpointError).problem).toBe('truncated');
  });

  it('rejects unloadable dtypes and inconsistent offsets, naming the tensor', () => {
    const enc = (h: object, data: number): Uint8Array => {
      const json = new TextEncoder().encode(JSON.stringify(h));
      const out = new Uint8Array(8 + json.length + data);
      new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
      out.set(json, 8);
      return out;
    };
    const dtype = catchError(() => parseSafetensors(enc({ w: { dtype: 'I8', shape: [2], data_offsets: [0, 2] } }, 2))) as CheckpointError;
    expect([dtype.problem, dtype.field]).toEqual(['dtype', 'w']);
    const span = catchError(() => parseSafetensors(enc({ w: { dtype: 'F32', shape: [3], data_offsets: [0, 8] } }, 8))) as CheckpointError;
    expect([span.problem, span.field]).toEqual(['header', 'w']);
  });
});

describe('Llama checkpoints', () => {
  it('loads a single-file checkpoint and matches the names and shapes the config implies', async () => {
    const ckpt = await loadLlamaCheckpoint(memorySource(files(small)));
    expect(ckpt.config).toEqual(small);
    expect([...ckpt.tensors.keys()].sort()).toEqual(llamaTensorSpecs(small).map((s) => s.name).sort());
  });

  it('loads a sharded checkpoint through its index', async () => {
    const tensors = randomCheckpointTensors(small, 3, 'F16');
    const half = Math.ceil(tensors.length / 2);
    const shards = [tensors.slice(0, half), tensors.slice(half)];
    const weightMap: Record<string, string> = {};
    const map = new Map<string, Uint8Array>([['config.json', new TextEncoder().encode(JSON.stringify(toHfConfig(small)))]]);
    shards.forEach((s, i) => {
      const name = `model-0000${i + 1}-of-00002.safetensors`;
      for (const t of s) weightMap[t.name] = name;
      map.set(name, serializeSafetensors(s));
    });
    map.set('model.safetensors.index.json', new TextEncoder().encode(JSON.stringify({ metadata: {}, weight_map: weightMap })));
    const ckpt = await loadLlamaCheckpoint(memorySource(map));
    expect(ckpt.tensors.size).toBe(tensors.length);
    expect(ckpt.tensors.get('lm_head.weight')!.dtype).toBe('F16');
  });

  it('reports a tensor whose shape disagrees with config.json, by name', async () => {
    const tensors = randomCheckpointTensors(small, 1, 'F32');
    const k = tensors.find((t) => t.name === 'model.layers.0.self_attn.k_proj.weight')!;
    k.shape = [k.shape[1], k.shape[0]];
    const err = await loadLlamaCheckpoint(memorySource(files(small, tensors))).catch((e) => e);
    expect(err).toBeInstanceOf(CheckpointError);
    expect([err.problem, err.field]).toEqual(['shape', 'model.layers.0.self_attn.k_proj.weight']);
  });

  it('reports missing and unexpected tensors, by name', async () => {
    const tensors = randomCheckpointTensors(small, 1, 'F32').filter((t) => t.name !== 'model.norm.weight');
    const missing = await loadLlamaCheckpoint(memorySource(files(small, tensors))).catch((e) => e);
    expect([missing.problem, missing.field]).toEqual(['missing', 'model.norm.weight']);
    const extra = [...randomCheckpointTensors(small, 1, 'F32'), { name: 'model.layers.1.mlp.up_proj.weight', dtype: 'F32' as const, shape: [2], data: new Float32Array(2) }];
    const unexpected = await loadLlamaCheckpoint(memorySource(files(small, extra))).catch((e) => e);
    expect([unexpected.problem, unexpected.field]).toEqual(['unexpected', 'model.layers.1.mlp.up_proj.weight']);
  });

  it('reports a truncated shard by the tensor it cuts', async () => {
    const map = files(small);
    const full = map.get('model.safetensors')!;
    map.set('model.safetensors', full.subarray(0, full.length - 100));
    const err = await loadLlamaCheckpoint(memorySource(map)).catch((e) => e);
    expect(err.problem).toBe('truncated');
    expect(err.field).toBe('lm_head.weight');
  });

  it('rejects configs the runner cannot honour', () => {
    const hf = toHfConfig(small);
    expect(() => parseLlamaConfig({ ...hf, head_dim: 48 })).toThrow(UnsupportedError);
    expect(() => parseLlamaConfig({ ...hf, rope_scaling: { type: 'linear', factor: 2 } })).toThrow(/rope_scaling/);
    expect(() => parseLlamaConfig({ ...hf, num_key_value_heads: 3 })).toThrow(/numHeads/);
  });
});
